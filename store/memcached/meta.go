package memcached

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// metaClient speaks the few memcached meta commands gomemcache lacks, on
// its own small pool of connections to one node: `mg` with the remaining
// TTL (for TTL reads and repairs that keep a copy's TTL), `md` with a CAS
// compare (removing a copy only if it is still the one read), and
// `version` (health checks).
type metaClient struct {
	addr    string
	timeout time.Duration
	maxIdle int
	// dial opens connections (Config.DialContext); nil means a
	// net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex
	idle   []*metaConn
	closed bool // after close, connections are not pooled
}

type metaConn struct {
	nc net.Conn
	rw *bufio.ReadWriter
}

// metaItem is one `mg` reply.
type metaItem struct {
	value []byte
	cas   uint64
	ttl   int64  // seconds left; -1 means no expiry
	flags uint32 // memcached client flags (a repair's claimStamp)
}

// errProtocol reports a reply the client does not understand.
var errProtocol = errors.New("unexpected reply")

func (c *metaClient) conn() (*metaConn, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, nil
	}
	c.mu.Unlock()
	dial := c.dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: c.timeout}).DialContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	nc, err := dial(ctx, "tcp", c.addr)
	cancel()
	if err != nil {
		return nil, err
	}
	return &metaConn{nc: nc, rw: bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))}, nil
}

// do runs fn on a pooled connection under the op timeout. The connection
// goes back to the pool only when fn read a whole reply.
func (c *metaClient) do(fn func(*metaConn) error) error {
	cn, err := c.conn()
	if err != nil {
		return err
	}
	_ = cn.nc.SetDeadline(time.Now().Add(c.timeout))
	err = fn(cn)
	if err != nil && !isReply(err) {
		cn.nc.Close()
		return err
	}
	c.mu.Lock()
	if !c.closed && len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
	return err
}

// isReply reports errors that are complete replies, after which the
// connection is still in step.
func isReply(err error) bool {
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored)
}

// closeIdle closes the pooled connections (they may lead to a dead
// process).
func (c *metaClient) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
}

// close closes the pooled connections and stops pooling.
func (c *metaClient) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.closeIdle()
}

// get reads keys with one pipelined `mg <key> c t f [v]` each. A missing
// key gives a nil entry.
func (c *metaClient) get(withValue bool, keys ...string) ([]*metaItem, error) {
	flags := " c t f"
	if withValue {
		flags += " v"
	}
	items := make([]*metaItem, len(keys))
	err := c.do(func(cn *metaConn) error {
		for _, k := range keys {
			if _, err := cn.rw.WriteString("mg " + k + flags + "\r\n"); err != nil {
				return err
			}
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		for i := range keys {
			it, err := readMetaGet(cn.rw.Reader)
			if err != nil {
				return err
			}
			items[i] = it
		}
		return nil
	})
	return items, err
}

// getTouch reads key with its value and sets its expiration to exp in
// the same step: `mg <key> c t f v T<exp>`. A missing key gives nil.
func (c *metaClient) getTouch(key string, exp int32) (*metaItem, error) {
	var it *metaItem
	err := c.do(func(cn *metaConn) error {
		if _, err := cn.rw.WriteString("mg " + key + " c t f v T" + strconv.FormatInt(int64(exp), 10) + "\r\n"); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		var err error
		it, err = readMetaGet(cn.rw.Reader)
		return err
	})
	return it, err
}

func readMetaGet(r *bufio.Reader) (*metaItem, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if line == "EN" {
		return nil, nil
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, fmt.Errorf("%w to mg: %q", errProtocol, line)
	}
	it := &metaItem{ttl: -1}
	var flags []string
	switch f[0] {
	case "VA":
		if len(f) < 2 {
			return nil, fmt.Errorf("%w to mg: %q", errProtocol, line)
		}
		size, err := strconv.Atoi(f[1])
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%w to mg: %q", errProtocol, line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if string(buf[size:]) != "\r\n" {
			return nil, fmt.Errorf("%w: mg value not followed by CRLF", errProtocol)
		}
		it.value = buf[:size]
		flags = f[2:]
	case "HD":
		flags = f[1:]
	default:
		return nil, replyError("mg", line)
	}
	for _, fl := range flags {
		if len(fl) < 2 {
			continue
		}
		n, err := strconv.ParseInt(fl[1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w to mg: %q", errProtocol, line)
		}
		switch fl[0] {
		case 'c':
			it.cas = uint64(n)
		case 't':
			it.ttl = n
		case 'f':
			it.flags = uint32(n)
		}
	}
	return it, nil
}

// set stores value under key with client flags flags, with
// `ms <key> <len> T<exp> F<flags> c [ME] [C<cas>]`, and returns the item's
// new CAS. With add, the key must be absent (memcache.ErrNotStored
// otherwise); with a non-zero cas, the item's CAS must still be cas
// (memcache.ErrCASConflict when it changed, memcache.ErrCacheMiss when it
// is gone).
func (c *metaClient) set(key string, value []byte, exp int32, flags uint32, add bool, cas uint64) (uint64, error) {
	var newCAS uint64
	err := c.do(func(cn *metaConn) error {
		cmd := fmt.Sprintf("ms %s %d T%d F%d c", key, len(value), exp, flags)
		if add {
			cmd += " ME"
		}
		if cas != 0 {
			cmd += " C" + strconv.FormatUint(cas, 10)
		}
		if _, err := cn.rw.WriteString(cmd + "\r\n"); err != nil {
			return err
		}
		if _, err := cn.rw.Write(value); err != nil {
			return err
		}
		if _, err := cn.rw.WriteString("\r\n"); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		line, err := readLine(cn.rw.Reader)
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			return fmt.Errorf("%w to ms: %q", errProtocol, line)
		}
		switch f[0] {
		case "HD":
			for _, fl := range f[1:] {
				if len(fl) > 1 && fl[0] == 'c' {
					newCAS, err = strconv.ParseUint(fl[1:], 10, 64)
					if err != nil {
						return fmt.Errorf("%w to ms: %q", errProtocol, line)
					}
				}
			}
			return nil
		case "NS":
			return memcache.ErrNotStored
		case "EX":
			return memcache.ErrCASConflict
		case "NF":
			return memcache.ErrCacheMiss
		}
		return replyError("ms", line)
	})
	return newCAS, err
}

// deleteIf removes key only if its CAS is still cas (`md <key> C<cas>`).
// It returns memcache.ErrCacheMiss when the key is gone and
// memcache.ErrCASConflict when it changed.
func (c *metaClient) deleteIf(key string, cas uint64) error {
	return c.do(func(cn *metaConn) error {
		if _, err := fmt.Fprintf(cn.rw, "md %s C%d\r\n", key, cas); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		line, err := readLine(cn.rw.Reader)
		if err != nil {
			return err
		}
		switch line {
		case "HD":
			return nil
		case "NF":
			return memcache.ErrCacheMiss
		case "EX":
			return memcache.ErrCASConflict
		}
		return replyError("md", line)
	})
}

// version checks that the node answers.
func (c *metaClient) version() error {
	return c.do(func(cn *metaConn) error {
		if _, err := cn.rw.WriteString("version\r\n"); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		line, err := readLine(cn.rw.Reader)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "VERSION ") {
			return replyError("version", line)
		}
		return nil
	})
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// replyError turns an error reply into an error whose text keeps the
// server's words, so classify sees SERVER_ERROR and CLIENT_ERROR.
func replyError(cmd, line string) error {
	return fmt.Errorf("memcache: unexpected response line from %q: %q", cmd, line)
}
