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
	"sync/atomic"
	"time"
)

// metaClient is the one client of one node: memcached's meta commands
// (`mg`, `ms`, `md`, `mn`; memcached 1.6 or later) plus `flush_all` and
// `version`, on one pool of connections. Every connection is opened through
// dial (Config.DialContext), and every write and read on it is bounded by
// the earlier of the operation's context deadline and Timeout; a context
// cancelled while a reply is awaited interrupts the read. No lock is held
// while waiting on the network: the pool's mutex only guards the idle list.
type metaClient struct {
	addr    string
	timeout time.Duration
	maxIdle int
	// dial opens connections (Config.DialContext); nil means a
	// net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// hello, when set (the witness scheme), runs on every new connection
	// before its first command and returns the node's incarnation
	// (witness_inc.go), kept with the connection.
	hello func(cn *metaConn) (uint64, error)
	// inc is the label of the node's memcached process: the incarnation
	// (sentinel) the first connection to it read with hello. Connections
	// of another label are not pooled again. See label.
	inc atomic.Uint64
	// labelSem (one slot; a channel, not a mutex: waiting on it ends with
	// the caller's context, and the simulation's synctest bubble sees it
	// as blocked, so its clock can fire the probe's deadline) serialises
	// label's decisions; sentinel is the incarnation value the newest
	// hello read, whose label is inc.
	labelSem chan struct{}
	sentinel uint64
	// relabelOnFlush is a test's broken variant (SetRelabelOnFlush, the
	// code before): every new sentinel is a new label, a flush's too.
	// labelNoProbe is another (SetLabelNoProbe): a new sentinel keeps
	// the label without the probe, a restart's too. noProbeConn
	// (SetNoProbeConn, the first version of label): no connection is
	// kept for the probe, which then finds one only when the pool holds
	// one idle (a dial is mostly made when it holds none).
	relabelOnFlush, labelNoProbe, noProbeConn bool
	// probeCtx, when set (tests' broken variants SetProbeIgnoresCtx,
	// SetProbeNoCancel), is the context begin bounds the probe by, made
	// from the caller's; probeKeptByCloseIdle (SetCloseIdleKeepsProbe):
	// closeIdle leaves the probe connection open and in its slot.
	probeCtx             func(context.Context) (context.Context, context.CancelFunc)
	probeKeptByCloseIdle bool
	// labelWaits, when set (tests), is called when label is about to wait
	// for labelSem.
	labelWaits func()

	// pipe, when not nil, multiplexes operations over a few shared
	// connections (ConnsPipelined; see pipeline.go) instead of the pool.
	pipe *pipeline

	// touchLostOK is a test's broken variant (SetAppendTouchLostOK, the
	// code before): an append whose touch found the key gone succeeds.
	touchLostOK bool
	// touchErrOK is a test's broken variant (SetAppendTouchErrorOK, the
	// code before): an append whose touch got an error reply succeeds
	// with no touch sent again, its TTL not set.
	touchErrOK bool

	mu   sync.Mutex
	idle []*metaConn
	// probe (with hello) is a connection of the current label kept out of
	// the pool, never lent: label's probe after a flush. A dial is made
	// when no connection is idle, so the pool alone mostly had none to
	// ask (cold review rv-label M1). end parks a returned connection here
	// when the slot is empty and another connection is idle already, so a
	// process that never has two connections to a node at once (and so
	// never dials while one is idle) keeps no extra one.
	probe  *metaConn
	closed bool // after close, connections are not pooled
}

// metaResult is what a reply parser fills in: the items of `mg` replies,
// a new CAS, the CAS an appendTouch's touch found.
type metaResult struct {
	items   []*metaItem
	cas     uint64
	touched uint64
	// touchErr: appendTouch's touch got an error reply (SERVER_ERROR,
	// CLIENT_ERROR, ERROR).
	touchErr bool
}

// parseFunc reads the replies to one request's commands from r into res.
// It returns errors that are complete replies (isReply: the connection
// stays in step) or anything else when the stream cannot be trusted. It
// writes only to res, never to variables of the caller, so that a reader
// can still run it after the caller gave up.
type parseFunc func(r *bufio.Reader, res *metaResult) error

type metaConn struct {
	nc  net.Conn
	rw  *bufio.ReadWriter
	inc uint64 // the node's incarnation read when it was opened (hello), else 0
	out *countWriter
}

// countWriter counts the bytes its writer took (send: a request of which
// no byte went out was not sent).
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// metaItem is one `mg` reply.
type metaItem struct {
	value []byte
	cas   uint64
	ttl   int64  // seconds left; -1 means no expiry
	flags uint32 // memcached client flags (a repair's claimStamp)
	// won: memcached's W flag, the item was made by this `mg … N` on a
	// miss (a blank): no other client read its token before this reply.
	won bool
}

// Replies that are complete answers (the connection stays in step). They
// are typed where they are parsed; node.check maps them to the provider's
// sentinels.
var (
	errMiss      = errors.New("miss")         // EN, NF
	errNotStored = errors.New("not stored")   // NS
	errExists    = errors.New("cas mismatch") // EX
	// errAppendFull: an append conditioned on the item's CAS was not
	// stored (NS) though the key is there: the item with it would exceed
	// the server's item size (-I), or memory ran out.
	errAppendFull = errors.New("append not stored: the item with it is too large")
	errProtocol   = errors.New("unexpected reply")
	// errAppendedGone: an append stored (its CAS returned with it)
	// whose touch, the next command, found the key gone: memcached's
	// append keeps the item's expiry, and it passed between the two (or a
	// delete, a flush or an eviction came between). A miss: with one
	// copy, the key is gone with the value appended.
	errAppendedGone = fmt.Errorf("%w: appended, then gone by its touch", errMiss)
)

// serverError is an error reply: SERVER_ERROR, CLIENT_ERROR or ERROR.
type serverError struct {
	cmd, line string
}

func (e *serverError) Error() string {
	if e.line == "ERROR" {
		return fmt.Sprintf("%s: %q: %v", e.cmd, e.line, ErrNoMetaProtocol)
	}
	return fmt.Sprintf("%s: %q", e.cmd, e.line)
}

// Unwrap makes a bare ERROR, memcached's answer to a command it does not
// know, ErrNoMetaProtocol: every command this package sends on its meta
// path is known to memcached 1.6 and later.
func (e *serverError) Unwrap() error {
	if e.line == "ERROR" {
		return ErrNoMetaProtocol
	}
	return nil
}

// tooLarge reports memcached's refusal of an item over its -I limit.
func (e *serverError) tooLarge() bool {
	return strings.HasPrefix(e.line, "SERVER_ERROR object too large")
}

// ctxError reports that an operation failed because its context ended
// (cancelled, or its deadline passed before Timeout): the node is not to
// blame, and a write's outcome is unknown.
type ctxError struct{ err error }

func (e *ctxError) Error() string { return "context ended during the round trip: " + e.err.Error() }
func (e *ctxError) Unwrap() error { return e.err }

// notSentError is a network failure before any byte of the request could
// reach the node: the dial failed, or the connection closed while the
// request was still queued on it. A write's outcome is then known: nothing
// was written. Every other network failure (a timeout, reset or EOF after
// the request was handed to the socket) leaves a write's outcome unknown
// (node.check).
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// connPick says which connection conn returns.
type connPick int

const (
	anyConn  connPick = iota // a pooled one if any, else a new one
	liveConn                 // a pooled one its node has not closed (connCheck), else a new one
	newConn                  // a new one
)

func (c *metaClient) conn(ctx context.Context, pick connPick) (cn *metaConn, pooled bool, err error) {
	for pick != newConn {
		c.mu.Lock()
		n := len(c.idle)
		if n == 0 {
			c.mu.Unlock()
			break
		}
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		// A connection its node closed while idle (a killed or restarted
		// process) would take the request and lose it: a write sent so
		// has an unknown outcome although nothing could have run. For a
		// write (liveConn) it is dropped before use; a read on it fails
		// and is sent again on a new connection (wdo), which costs less
		// than a check of every read.
		if pick == liveConn && (cn.rw.Reader.Buffered() > 0 || connCheck(cn.nc) != nil) {
			cn.nc.Close()
			continue
		}
		return cn, true, nil
	}
	nc, err := c.dialNode(ctx)
	if err != nil {
		return nil, false, err
	}
	out := &countWriter{w: nc}
	cn = &metaConn{nc: nc, rw: bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(out)), out: out}
	if c.hello != nil {
		// The hello, as every operation (begin): bounded by Timeout and
		// ctx's deadline, interrupted when ctx is cancelled. It fails
		// before the caller's request is written: nothing of that was
		// sent (*notSentError), or ctx ended (*ctxError, which counts
		// against no node). Before (cold review rv-probe m3), bounded by
		// Timeout only, its failure a bare network error: a caller's
		// deadline was overrun up to Timeout, and a write was answered
		// of unknown outcome.
		inc, err := c.helloOn(ctx, ctx, cn)
		var ce *ctxError
		if err != nil {
			nc.Close()
			if errors.As(err, &ce) {
				return nil, false, err
			}
			return nil, false, &notSentError{err}
		}
		if cn.inc, err = c.label(ctx, inc); err != nil {
			nc.Close()
			return nil, false, err
		}
	}
	return cn, false, nil
}

// label returns the label of a new connection whose hello read the
// node's sentinel v: the label of the memcached process holding v. A
// token is refused on a connection of another label (R1), because a
// restart resets memcached's CAS counter: a token of the old process may
// name an item of the new one. A flush_all deletes the sentinel (the
// next hello makes a new one) but keeps the process, its connections and
// its counter: tokens read before and after it are of one counter and
// keep one label, so a token read on a connection opened before the
// flush is not refused on one opened after it (the refusal cost the
// call a read again: docs/replication.md, R1).
//
// A new sentinel is of the same process when a connection opened before
// it, of the current label (the probe connection, else an idle pooled
// one), still answers and holds that very sentinel: a connection does
// not outlive its memcached process (a restart closes every one;
// docs/replication.md 11.2), and the sentinel's 64 random bits were made
// by the process that holds it (the comparison guards against two
// processes behind one address, which 11.2 rules out). Otherwise (no
// connection to ask, no answer, another value: a restart, or a flush
// whose probe could not be made) the sentinel is the new label and the
// idle connections, of the old one, are closed, as after a restart. The
// probe is one round trip (bounded by Timeout and ctx's deadline, and
// interrupted when ctx is cancelled, as every operation) at the first dial
// after a flush; label holds labelSem meanwhile, so concurrent dials
// wait for it (or until their context ends: a *ctxError), and for one
// more per other new sentinel (another flush).
func (c *metaClient) label(ctx context.Context, v uint64) (uint64, error) {
	if c.labelWaits != nil {
		c.labelWaits()
	}
	select {
	case c.labelSem <- struct{}{}:
	case <-ctx.Done():
		return 0, &ctxError{ctx.Err()}
	}
	defer func() { <-c.labelSem }()
	old := c.inc.Load()
	if old != 0 && v == c.sentinel {
		return old, nil
	}
	if old != 0 {
		same := c.labelNoProbe
		if !same && !c.relabelOnFlush {
			var err error
			if same, err = c.sameProcess(ctx, v); err != nil {
				// The caller gave up during the probe: nothing learnt,
				// the label kept (cold review rv-label2 m1: relabelling a
				// node that was only flushed closed its pool).
				return 0, err
			}
		}
		if same {
			c.sentinel = v
			return old, nil
		}
	}
	c.inc.Store(v)
	if old != 0 {
		c.closeIdle() // after the Store: end pools no connection of the old label again
	}
	c.sentinel = v
	return v, nil
}

// sameProcess reports whether a connection of the current label, the
// probe connection or else an idle pooled one, answers a hello with the
// sentinel v (label). The connection is kept when it answered (as the
// probe connection when that slot is empty), closed when it did not. Its
// round trip is begin's: bounded by Timeout and ctx's deadline, and
// interrupted when ctx is cancelled. A *ctxError: ctx ended before the
// answer (nothing learnt; the connection closed).
func (c *metaClient) sameProcess(ctx context.Context, v uint64) (bool, error) {
	c.mu.Lock()
	cn := c.probe
	c.probe = nil
	if n := len(c.idle); cn == nil && n > 0 {
		cn = c.idle[n-1]
		c.idle = c.idle[:n-1]
	}
	c.mu.Unlock()
	if cn == nil {
		return false, nil
	}
	bctx := ctx
	if c.probeCtx != nil {
		var cancel context.CancelFunc
		bctx, cancel = c.probeCtx(ctx)
		defer cancel()
	}
	w, err := c.helloOn(ctx, bctx, cn)
	var ce *ctxError
	if err != nil {
		cn.nc.Close()
		if errors.As(err, &ce) {
			return false, err
		}
		return false, nil // no answer, as from a process gone
	}
	c.keep(cn, true)
	return w == v, nil
}

// helloOn runs the hello on cn as every operation runs (begin: bounded by
// Timeout and bctx's deadline, interrupted when bctx is cancelled; bctx is
// ctx but in the tests' broken variants, probeCtx) and returns the
// sentinel it read, or a *ctxError when ctx ended meanwhile (its answer
// then not trusted), or the hello's own error.
func (c *metaClient) helloOn(ctx, bctx context.Context, cn *metaConn) (uint64, error) {
	_, stop := c.begin(bctx, cn)
	v, err := c.hello(cn)
	// stop's result (false: begin's interruption ran, the connection's
	// deadline pulled in) adds nothing to the check below: bctx is ctx
	// outside the tests' variants, and the interruption runs only once
	// ctx is done, which ctxEnded sees; the caller then closes cn.
	stop()
	if cerr := ctxEnded(ctx); cerr != nil {
		return 0, cerr
	}
	return v, err
}

// keep pools cn, or parks it as the probe connection when that slot is
// empty and park or another connection is idle, or closes it: the client
// closed, cn of another label, or the pool full.
func (c *metaClient) keep(cn *metaConn, park bool) {
	c.mu.Lock()
	switch {
	case c.closed || cn.inc != c.inc.Load():
	case c.hello != nil && c.probe == nil && !c.noProbeConn && (park || len(c.idle) > 0):
		c.probe, cn = cn, nil // kept for label's probe
	case len(c.idle) < c.maxIdle:
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
}

// hasIdle reports whether the pool holds a connection now (conn would
// then not dial, unless another operation takes it first).
func (c *metaClient) hasIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle) > 0
}

// dialNode opens a connection to the node through dial, bounded by ctx
// and Timeout; a ctx that ended is a *ctxError, any other failure a
// *notSentError.
func (c *metaClient) dialNode(ctx context.Context) (net.Conn, error) {
	dial := c.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	nc, err := dial(dctx, "tcp", c.addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &ctxError{ctx.Err()}
		}
		return nil, &notSentError{err}
	}
	return nc, nil
}

// round sends cmd (one or more encoded commands) and reads their replies
// with parse: over the pipeline when there is one, else on a pooled
// connection (do).
func (c *metaClient) round(ctx context.Context, cmd []byte, parse parseFunc) (metaResult, error) {
	if c.pipe != nil {
		return c.pipe.do(ctx, cmd, parse)
	}
	var res metaResult
	err := c.do(ctx, func(cn *metaConn) error {
		if _, err := cn.rw.Write(cmd); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		return parse(cn.rw.Reader, &res)
	})
	return res, err
}

// do runs fn on a pooled connection, its reads and writes bounded by the
// earlier of ctx's deadline and Timeout, and interrupted when ctx is
// cancelled. The connection goes back to the pool only when fn read whole
// replies.
func (c *metaClient) do(ctx context.Context, fn func(*metaConn) error) error {
	_, err := c.doOn(ctx, anyConn, fn)
	return err
}

// doOn is do on the connection pick says; pooled reports that it came
// from the pool.
func (c *metaClient) doOn(ctx context.Context, pick connPick, fn func(*metaConn) error) (pooled bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, &ctxError{err}
	}
	cn, pooled, err := c.conn(ctx, pick)
	if err != nil {
		return false, err
	}
	return pooled, c.run(ctx, cn, fn)
}

// run is do's work on cn.
func (c *metaClient) run(ctx context.Context, cn *metaConn, fn func(*metaConn) error) error {
	_, stop := c.begin(ctx, cn)
	return c.end(ctx, cn, fn(cn), stop)
}

// begin bounds cn's reads and writes by the earlier of ctx's deadline and
// Timeout (dl) and has them interrupted when ctx is cancelled, until stop;
// end finishes the operation.
func (c *metaClient) begin(ctx context.Context, cn *metaConn) (dl time.Time, stop func() bool) {
	dl = time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = cn.nc.SetDeadline(dl)
	return dl, context.AfterFunc(ctx, func() { _ = cn.nc.SetDeadline(time.Unix(1, 0)) })
}

// end is the end of an operation on cn that begin began and that ended
// with err: the connection goes back to the pool only when the operation
// read whole replies; a network error of an interrupted operation is the
// context's (*ctxError).
func (c *metaClient) end(ctx context.Context, cn *metaConn, err error, stop func() bool) error {
	interrupted := !stop()
	if err != nil && !isReply(err) {
		cn.nc.Close()
		if cerr := ctxEnded(ctx); cerr != nil {
			return cerr
		}
		return err
	}
	if interrupted {
		// The reply was read whole, but the deadline was pulled in.
		cn.nc.Close()
		return err
	}
	c.keep(cn, false)
	return err
}

// ctxEnded returns a *ctxError when ctx has ended (begin's interruption
// runs only then, so an interrupted operation's ctx has) or its deadline
// has passed (the connection's deadline, the same instant, may fire
// before ctx's own timer); nil when ctx is still live.
func ctxEnded(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return &ctxError{err}
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return &ctxError{context.DeadlineExceeded}
	}
	return nil
}

// isReply reports errors that are complete replies, after which the
// connection is still in step.
func isReply(err error) bool {
	var se *serverError
	return errors.Is(err, errMiss) || errors.Is(err, errExists) || errors.Is(err, errNotStored) ||
		errors.Is(err, errAppendFull) || errors.Is(err, errOtherInc) || errors.Is(err, errLostInc) || errors.As(err, &se)
}

// closeIdle closes the pooled connections and the probe connection
// (they may lead to a dead process), and the pipeline's connections that
// have nothing in flight.
func (c *metaClient) closeIdle() {
	if c.pipe != nil {
		c.pipe.closeIdle()
	}
	c.mu.Lock()
	idle := c.idle
	if c.probe != nil && !c.probeKeptByCloseIdle {
		idle = append(idle, c.probe)
		c.probe = nil
	}
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
}

// close closes the pooled connections and stops pooling; the pipeline's
// connections are closed, failing what is in flight on them.
func (c *metaClient) close() {
	if c.pipe != nil {
		c.pipe.close()
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.closeIdle()
}

// appendExp appends " T<exp>".
func appendExp(b []byte, exp int32) []byte {
	b = append(b, " T"...)
	return strconv.AppendInt(b, int64(exp), 10)
}

// get reads keys with one pipelined `mg <key> c t f [v]` each. A missing
// key gives a nil entry.
func (c *metaClient) get(ctx context.Context, withValue bool, keys ...string) ([]*metaItem, error) {
	flags := " c t f\r\n"
	if withValue {
		flags = " c t f v\r\n"
	}
	var cmd []byte
	for _, k := range keys {
		cmd = append(cmd, "mg "...)
		cmd = append(cmd, k...)
		cmd = append(cmd, flags...)
	}
	n := len(keys)
	res, err := c.round(ctx, cmd, func(r *bufio.Reader, res *metaResult) error {
		res.items = make([]*metaItem, n)
		for i := range n {
			it, err := readMetaGet(r)
			if err != nil {
				return err
			}
			res.items[i] = it
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res.items, nil
}

// readOne parses one `mg` reply; a miss is errMiss.
func readOne(r *bufio.Reader, res *metaResult) error {
	it, err := readMetaGet(r)
	if err == nil && it == nil {
		err = errMiss
	}
	res.items = []*metaItem{it}
	return err
}

// getOne reads key with its value and CAS (`mg <key> c f v`, and T<exp>
// when exp is not 0: the item's expiration is set in the same step). A
// missing key is errMiss.
func (c *metaClient) getOne(ctx context.Context, key string, exp int32) (*metaItem, error) {
	cmd := make([]byte, 0, len(key)+24)
	cmd = append(cmd, "mg "...)
	cmd = append(cmd, key...)
	cmd = append(cmd, " c f v"...)
	if exp != 0 {
		cmd = appendExp(cmd, exp)
	}
	cmd = append(cmd, "\r\n"...)
	res, err := c.round(ctx, cmd, readOne)
	if err != nil {
		return nil, err
	}
	return res.items[0], nil
}

// touch sets key's expiration: `mg <key> T<exp>`. A missing key is
// errMiss.
func (c *metaClient) touch(ctx context.Context, key string, exp int32) error {
	cmd := make([]byte, 0, len(key)+20)
	cmd = append(cmd, "mg "...)
	cmd = append(cmd, key...)
	cmd = appendExp(cmd, exp)
	cmd = append(cmd, "\r\n"...)
	_, err := c.round(ctx, cmd, readOne)
	return err
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
		if fl == "W" {
			it.won = true // mg … N made the item: this reply's token is new
			continue
		}
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
// new CAS. With add, the key must be absent (errNotStored otherwise); with
// a non-zero cas, the item's CAS must still be cas (errExists when it
// changed, errMiss when it is gone).
func (c *metaClient) set(ctx context.Context, key string, value []byte, exp int32, flags uint32, add bool, cas uint64) (uint64, error) {
	line := setLine(key, len(value), exp, flags, add, cas)
	cmd := make([]byte, 0, len(line)+len(value)+4)
	cmd = append(cmd, line...)
	cmd = append(cmd, "\r\n"...)
	cmd = append(cmd, value...)
	cmd = append(cmd, "\r\n"...)
	res, err := c.round(ctx, cmd, readSet)
	return res.cas, err
}

// setLine is the `ms` command line of set.
func setLine(key string, n int, exp int32, flags uint32, add bool, cas uint64) string {
	line := "ms " + key + " " + strconv.Itoa(n) + " T" + strconv.FormatInt(int64(exp), 10) + " c"
	if flags != 0 {
		line += " F" + strconv.FormatUint(uint64(flags), 10)
	}
	if add {
		line += " ME"
	}
	if cas != 0 {
		line += " C" + strconv.FormatUint(cas, 10)
	}
	return line
}

// readSet parses an `ms` reply.
func readSet(r *bufio.Reader, res *metaResult) error {
	reply, err := readLine(r)
	if err != nil {
		return err
	}
	res.cas, err = setReply(reply)
	return err
}

// send writes one command line (and a data block when data is not nil)
// on cn and flushes: for the witness scheme's commands on one connection
// (hello, setOn, delOn).
func send(cn *metaConn, line string, data []byte) error {
	before := cn.out.n
	err := sendOn(cn, line, data)
	if err != nil && cn.out.n == before {
		// The connection took no byte of it (e.g. its node had closed
		// it): nothing was sent.
		return &notSentError{err}
	}
	return err
}

// sendOn is send's work.
func sendOn(cn *metaConn, line string, data []byte) error {
	if _, err := cn.rw.WriteString(line); err != nil {
		return err
	}
	if _, err := cn.rw.WriteString("\r\n"); err != nil {
		return err
	}
	if data != nil {
		if _, err := cn.rw.Write(data); err != nil {
			return err
		}
		if _, err := cn.rw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	return cn.rw.Flush()
}

// setOn sends one `ms` line with its value on cn and reads the reply.
func setOn(cn *metaConn, line string, value []byte) (uint64, error) {
	if err := send(cn, line, value); err != nil {
		return 0, err
	}
	var res metaResult
	err := readSet(cn.rw.Reader, &res)
	return res.cas, err
}

// setReply reads an `ms` reply: the new CAS of HD, or the typed error.
func setReply(reply string) (uint64, error) {
	f := strings.Fields(reply)
	if len(f) == 0 {
		return 0, fmt.Errorf("%w to ms: %q", errProtocol, reply)
	}
	switch f[0] {
	case "HD":
		var newCAS uint64
		for _, fl := range f[1:] {
			if len(fl) > 1 && fl[0] == 'c' {
				var err error
				if newCAS, err = strconv.ParseUint(fl[1:], 10, 64); err != nil {
					return 0, fmt.Errorf("%w to ms: %q", errProtocol, reply)
				}
			}
		}
		return newCAS, nil
	case "NS":
		return 0, errNotStored
	case "EX":
		return 0, errExists
	case "NF":
		return 0, errMiss
	}
	return 0, replyError("ms", reply)
}

// appendTouch appends data to key only if the item's CAS is still cas,
// then sets its expiration, in one round trip: `ms <key> <len> MA C<cas> c`
// and `mg <key> T<exp> c`, sent together as one request (adjacent on one
// connection, on the pipeline too). memcached's append keeps the item's
// expiration (it ignores T), hence the touch, sent after the append so
// that it sets the expiration of the value the append made, unless another
// write landed in between. The touch is sent whatever the append's
// outcome. It returns the new CAS and the CAS of the item the touch set
// (touched, 0 when the key was gone by then); the error is the append's:
// errExists when the CAS changed, errMiss when the key is gone,
// errAppendFull when the item with data would be too large (memcached
// answers NS to both of the last two; the touch tells them apart: only
// the item with token cas is too large, appendNotStored). An append stored
// whose touch got an error reply sends its touch once more, on its own.
func (c *metaClient) appendTouch(ctx context.Context, key string, data []byte, cas uint64, exp int32) (newCAS, touched uint64, err error) {
	cmd := make([]byte, 0, 2*len(key)+len(data)+72)
	cmd = append(cmd, "ms "...)
	cmd = append(cmd, key...)
	cmd = append(cmd, ' ')
	cmd = strconv.AppendInt(cmd, int64(len(data)), 10)
	cmd = append(cmd, " MA c C"...)
	cmd = strconv.AppendUint(cmd, cas, 10)
	cmd = append(cmd, "\r\n"...)
	cmd = append(cmd, data...)
	cmd = append(cmd, "\r\n"...)
	withTouch := exp != 0 // exp 0: a test's broken variant (SetAppendWithoutTouch)
	if withTouch {
		cmd = append(cmd, "mg "...)
		cmd = append(cmd, key...)
		cmd = append(cmd, " c"...)
		cmd = appendExp(cmd, exp)
		cmd = append(cmd, "\r\n"...)
	}
	res, err := c.round(ctx, cmd, func(r *bufio.Reader, res *metaResult) error {
		reply, err := readLine(r)
		if err != nil {
			return err
		}
		gone := false // the touch answered EN: no item under key
		if withTouch {
			// Both replies are read before either is acted on: the
			// connection stays in step.
			it, terr := readMetaGet(r)
			var se *serverError
			if terr != nil && !errors.As(terr, &se) {
				return terr
			}
			if it != nil {
				res.touched = it.cas
			}
			gone = it == nil && terr == nil
			res.touchErr = terr != nil
		}
		res.cas, err = setReply(reply)
		if errors.Is(err, errNotStored) {
			// memcached answers NS both for a missing key and for an
			// item that cannot be stored with the data appended (EX
			// when the CAS differs): the touch tells them apart.
			err = appendNotStored(res.touched != 0, res.touched, cas)
		}
		if err == nil && gone && !c.touchLostOK {
			// Stored, but the item was gone by the touch: memcached's
			// append keeps the item's expiry, and its clock ticked past
			// it between the two commands (or a delete, a flush or an
			// eviction came between). The value appended is lost with
			// its key, and the TTL was set on nothing: the key is gone,
			// as if the append had come a moment later. The append's CAS
			// is returned with it (a backup copy may live on with the
			// same append: CompareAndAppend).
			err = errAppendedGone
		}
		return err
	})
	if err == nil && res.touchErr && !c.touchErrOK {
		// Stored, but the touch got an error reply: the TTL is not set
		// (the append kept the item's old expiry, which may be near),
		// and no token was touched. The touch is sent once more on its
		// own (getOne: the value comes with it, on this rare path); it
		// lands on whatever the key holds by now and reports it
		// (touched), as the first would have. The key gone by then is
		// the key gone by the touch (errAppendedGone). Another failure
		// leaves the TTL unconfirmed: the append is reported done, with
		// no token touched, as before (review-oc31 F4).
		it, terr := c.getOne(ctx, key, exp)
		switch {
		case errors.Is(terr, errMiss):
			err = errAppendedGone
		case terr == nil:
			res.touched = it.cas
		}
	}
	return res.cas, res.touched, err
}

// appendNotStored is the error of an append conditioned on token cas
// that memcached answered NS, given what a touch or look right after it
// found (found, with token got): memcached answers NS both for a missing
// key and for an item that cannot take the data (EX when the token
// differs). Only the very item the append was conditioned on means "too
// large" (errAppendFull); no item, or another one (made after the append
// found the key gone: after a flush, a reader's blank), means the item was
// lost (errMiss).
func appendNotStored(found bool, got, cas uint64) error {
	if found && got == cas {
		return errAppendFull
	}
	return errMiss
}

// del removes key (`md <key>`), or, with a non-zero cas, only if its CAS
// is still cas (`md <key> C<cas>`). It returns errMiss when the key is gone
// and errExists when it changed.
func (c *metaClient) del(ctx context.Context, key string, cas uint64) error {
	cmd := make([]byte, 0, len(key)+28)
	cmd = append(cmd, "md "...)
	cmd = append(cmd, key...)
	if cas != 0 {
		cmd = append(cmd, " C"...)
		cmd = strconv.AppendUint(cmd, cas, 10)
	}
	cmd = append(cmd, "\r\n"...)
	_, err := c.round(ctx, cmd, readDel)
	return err
}

// delOn sends one `md` line on cn and reads the reply.
func delOn(cn *metaConn, line string) error {
	if err := send(cn, line, nil); err != nil {
		return err
	}
	return readDel(cn.rw.Reader, nil)
}

// readDel parses an `md` reply.
func readDel(r *bufio.Reader, _ *metaResult) error {
	reply, err := readLine(r)
	if err != nil {
		return err
	}
	switch reply {
	case "HD":
		return nil
	case "NF":
		return errMiss
	case "EX":
		return errExists
	}
	return replyError("md", reply)
}

// simple sends a text command whose success reply is one line starting
// with want (flush_all: OK; version: VERSION).
func (c *metaClient) simple(ctx context.Context, cmd, want string) error {
	_, err := c.round(ctx, []byte(cmd+"\r\n"), func(r *bufio.Reader, _ *metaResult) error {
		reply, err := readLine(r)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(reply, want) {
			return replyError(cmd, reply)
		}
		return nil
	})
	return err
}

// version checks that the node answers.
func (c *metaClient) version(ctx context.Context) error {
	return c.simple(ctx, "version", "VERSION ")
}

// probeMeta reports whether the node understands meta commands: `mn`
// answers MN on memcached 1.6 and later, ERROR before.
func (c *metaClient) probeMeta(ctx context.Context) (bool, error) {
	err := c.simple(ctx, "mn", "MN")
	var se *serverError
	if errors.As(err, &se) {
		return false, nil
	}
	return err == nil, err
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// replyError types a reply line that is not the command's answer: error
// replies as *serverError (the connection stays in step), anything else
// as errProtocol (the connection is dropped).
func replyError(cmd, line string) error {
	if line == "ERROR" || strings.HasPrefix(line, "SERVER_ERROR") || strings.HasPrefix(line, "CLIENT_ERROR") {
		return &serverError{cmd: cmd, line: line}
	}
	return fmt.Errorf("%w to %s: %q", errProtocol, cmd, line)
}

// ProbeMeta reports whether the memcached server at addr understands meta
// commands (memcached 1.6 or later answers `mn`): when it does not, use
// Config.TextProtocol. dial may be nil (a net.Dialer); the probe is bounded
// by ctx and DefaultTimeout.
func ProbeMeta(ctx context.Context, addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (bool, error) {
	c := &metaClient{addr: addr, timeout: DefaultTimeout, dial: dial, labelSem: make(chan struct{}, 1)}
	defer c.close()
	return c.probeMeta(ctx)
}
