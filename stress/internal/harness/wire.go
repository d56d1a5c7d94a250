package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// WireEnv, set (to anything) together with LogDirEnv, makes each app
// server write every byte it exchanges with the memcached nodes to
// app-<proc>-wire.log there, one line per read or write: the Unix ns
// time, the connection's number, the node as placement names it, the
// direction (> sent, < received), and the bytes quoted; the partitioned
// process's proxy writes each chunk it held and delivered after the heal
// to proxy-wire.log. With it a failed fault run shows which store
// commands a process sent for a session, what each copy answered, and
// which writes a partition delivered late. Off by default (it slows the
// app servers down).
const WireEnv = "SESSIONLOCK_STRESS_WIRE"

// wireLog is one file of wire lines, shared by its connections.
type wireLog struct {
	mu   sync.Mutex
	f    *os.File
	next int
}

// openWireLog opens name in LogDirEnv's directory when WireEnv and
// LogDirEnv are both set; nil otherwise.
func openWireLog(name string) (*wireLog, error) {
	dir := os.Getenv(LogDirEnv)
	if dir == "" || os.Getenv(WireEnv) == "" {
		return nil, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", WireEnv, err)
	}
	return &wireLog{f: f}, nil
}

// Close closes the file (nil-safe).
func (l *wireLog) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// line writes one line: what happened on connection id to node.
func (l *wireLog) line(id int, node, dir string, b []byte, err error) {
	s := strconv.FormatInt(time.Now().UnixNano(), 10) + " c" + strconv.Itoa(id) + " " + node + " " + dir + " " + strconv.Quote(string(b))
	if err != nil {
		s += " err=" + strconv.Quote(err.Error())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.WriteString(s + "\n")
}

// wrap returns nc logging to l as connection to node (nc itself when l
// is nil).
func (l *wireLog) wrap(nc net.Conn, node string) net.Conn {
	if l == nil {
		return nc
	}
	l.mu.Lock()
	l.next++
	id := l.next
	l.mu.Unlock()
	l.line(id, node, "dial", []byte(nc.LocalAddr().String()), nil)
	return &wireConn{Conn: nc, log: l, id: id, node: node}
}

// wireConn logs its reads and writes. It exposes the socket
// (syscall.Conn), as the memcached store's idle checks need.
type wireConn struct {
	net.Conn
	log  *wireLog
	id   int
	node string
}

func (c *wireConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.log.line(c.id, c.node, "<", b[:n], err)
	return n, err
}

func (c *wireConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.log.line(c.id, c.node, ">", b[:n], err)
	return n, err
}

func (c *wireConn) Close() error {
	err := c.Conn.Close()
	c.log.line(c.id, c.node, "close", nil, err)
	return err
}

// SyscallConn exposes the socket under the log.
func (c *wireConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("harness: %T is not a socket", c.Conn)
	}
	return sc.SyscallConn()
}
