package memcached

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pipeline is a node's client connections when pipelined (ConnsPipelined):
// a small fixed set of connections, each shared by every operation in
// flight (auto-pipelining, as rueidis does for Redis). An operation is a
// request: its encoded commands, the parser of their replies and a waiter.
// Each connection has one writer goroutine, which writes every request
// queued while it was writing in one system call (a batch is flushed when
// the queue drains), and one reader goroutine, which parses the replies in
// the order the commands were written (memcached answers the commands of
// one connection in order) and hands each to its waiter. The commands of
// one request (appendTouch's append and touch, get's keys) are written
// together, so they stay adjacent on one connection. A request that finds
// its connection idle (nothing in flight, no write under way) is written
// by its caller at once instead (send): there is nothing to batch it with,
// and a lone request then pays one goroutine hand-off (reader to waiter)
// instead of two.
//
// Deadlines: each request has its own, the earlier of its context's and
// Timeout after it was queued. The context's is the waiter's: when the
// context ends the waiter returns a *ctxError (a write's outcome unknown),
// and the reader still consumes and discards the reply, so the stream
// stays in step; a request not yet written when its waiter gave up is not
// written at all. Timeout is the connection's: its writes and the read of
// each reply are bounded by the request's queue time plus Timeout, and a
// reply overdue past it means the connection is broken: it is closed and
// every request on it fails with the timeout (a network error: the node
// is marked down, writes have an unknown outcome).
type pipeline struct {
	c      *metaClient // addr, timeout, dial
	slots  []pipeSlot
	next   atomic.Uint32
	active atomic.Int32 // requests in do (pick)
	closed atomic.Bool
}

// pipeSlot holds one of the node's connections, dialled when first
// needed and again after it broke.
type pipeSlot struct {
	mu   sync.Mutex
	conn *pipeConn
	dial *dialAttempt // the dial in progress, if any
}

// dialAttempt is a dial other requests for the same slot wait for, on a
// channel: a goroutine blocked on a channel is durably blocked in a
// testing/synctest bubble, where one blocked on a mutex is not.
type dialAttempt struct {
	done chan struct{}
	err  error
}

// errPipeClosed fails the requests in flight when the Store closes.
var errPipeClosed = fmt.Errorf("memcached: client closed: %w", net.ErrClosed)

// errIdleClosed marks a connection closed by closeIdle (nothing was in
// flight on it).
var errIdleClosed = fmt.Errorf("memcached: idle connection closed: %w", net.ErrClosed)

func newPipeline(c *metaClient, conns int) *pipeline {
	return &pipeline{c: c, slots: make([]pipeSlot, conns)}
}

// metaReq is one request on a pipelined connection.
type metaReq struct {
	cmd      []byte
	parse    parseFunc
	deadline time.Time // queued + Timeout
	// state moves from reqQueued to reqSent (the writer took it) or to
	// reqAbandoned (its waiter gave up before that: it is never written).
	state atomic.Int32
	// res and err are set by the reader or by fail before done is
	// closed; the waiter reads them only after done is closed.
	res  metaResult
	err  error
	done chan struct{}
}

const (
	reqQueued int32 = iota
	reqSent
	reqAbandoned
)

func (r *metaReq) finish(err error) {
	r.err = err
	close(r.done)
}

// do sends cmd on one of the node's connections and waits for parse to
// have read its replies, or for ctx to end.
func (p *pipeline) do(ctx context.Context, cmd []byte, parse parseFunc) (metaResult, error) {
	if err := ctx.Err(); err != nil {
		return metaResult{}, &ctxError{err}
	}
	r := &metaReq{cmd: cmd, parse: parse, done: make(chan struct{})}
	s := p.pick(p.active.Add(1))
	defer p.active.Add(-1)
	for tries := 0; ; tries++ {
		cn, err := p.conn(ctx, s)
		if err != nil {
			return metaResult{}, err
		}
		r.deadline = time.Now().Add(p.c.timeout)
		var own bool
		own, err = cn.send(r)
		if err == nil && own {
			return cn.readOwn(ctx, r)
		}
		if err == nil {
			break
		}
		if tries > 0 || p.closed.Load() {
			// The connection broke as the request was queued, twice.
			return metaResult{}, err
		}
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
	}
	if !r.state.CompareAndSwap(reqQueued, reqAbandoned) {
		select {
		case <-r.done:
			return r.res, r.err
		default:
		}
	}
	return metaResult{}, &ctxError{context.Cause(ctx)}
}

// pick returns the slot for a request, given that n requests (this one
// included) are in flight on the node: the first slot when it is the only
// one, else the next in turn. A process serving one request at a time thus
// keeps using one connection, as a pool hands back the connection used
// last: each of memcached's connections is served by one of its worker
// threads, and taking the connections in turn woke another thread each
// round trip, which cost a lone exclusive cycle about 0.4-0.6 x a raw Get
// on a loaded 2-core machine (docs/performance.md, the warm pipelined
// gap). Concurrent requests still take the connections in turn, so they
// spread over them and batch (preferring any idle connection instead sent
// those that found the first one idle at once all to it, and measured
// slower under concurrency).
func (p *pipeline) pick(n int32) *pipeSlot {
	if n == 1 {
		return &p.slots[0]
	}
	return &p.slots[int(p.next.Add(1))%len(p.slots)]
}

// conn returns the slot's live connection, dialling one when there is
// none (one dial at a time per slot; the others wait for it).
func (p *pipeline) conn(ctx context.Context, s *pipeSlot) (*pipeConn, error) {
	for {
		if p.closed.Load() {
			return nil, &notSentError{errPipeClosed}
		}
		s.mu.Lock()
		if cn := s.conn; cn != nil && !cn.broken.Load() {
			s.mu.Unlock()
			return cn, nil
		}
		if a := s.dial; a != nil {
			s.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
				return nil, &ctxError{context.Cause(ctx)}
			}
			var ce *ctxError
			if a.err != nil && !errors.As(a.err, &ce) {
				return nil, a.err
			}
			continue // connected, or the dialler's own context ended: look again
		}
		a := &dialAttempt{done: make(chan struct{})}
		s.dial = a
		s.mu.Unlock()
		nc, err := p.c.dialNode(ctx)
		var cn *pipeConn
		s.mu.Lock()
		s.dial = nil
		if err == nil {
			if p.closed.Load() {
				nc.Close()
				err = &notSentError{errPipeClosed}
			} else {
				cn = newPipeConn(nc)
				s.conn = cn
			}
		}
		a.err = err
		s.mu.Unlock()
		close(a.done)
		if err != nil {
			return nil, err
		}
		return cn, nil
	}
}

// closeIdle closes the connections that have nothing in flight (after a
// node was marked down: they may lead to a dead process). Busy ones are
// left to their requests' deadlines.
func (p *pipeline) closeIdle() {
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		cn := s.conn
		s.mu.Unlock()
		if cn != nil {
			cn.closeIfIdle()
		}
	}
}

// close closes every connection, failing the requests in flight on them;
// requests after it fail with errPipeClosed. The connections' goroutines
// exit.
func (p *pipeline) close() {
	p.closed.Store(true)
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		cn := s.conn
		s.conn = nil
		s.mu.Unlock()
		if cn != nil {
			cn.fail(errPipeClosed)
		}
	}
}

// pipeConn is one multiplexed connection with its writer and reader
// goroutines.
type pipeConn struct {
	nc     net.Conn
	broken atomic.Bool // err is set

	// wturn orders the writes (a lock, as a channel of capacity 1: a
	// goroutine waiting on a channel is durably blocked in a
	// testing/synctest bubble, one waiting on a mutex is not): whoever
	// writes (the writer goroutine, or a caller writing its own request on
	// an idle connection: send) holds it from moving requests to sent
	// until they are written, so that the stream carries them in the
	// order of sent.
	wturn chan struct{}
	// rturn is the read side's lock (a channel, as wturn): the reader
	// goroutine holds it while it reads a batch, a caller reading its own
	// reply (readOwn) while it does. Its holder alone uses br and the
	// read deadline.
	rturn chan struct{}
	br    *bufio.Reader

	mu       sync.Mutex
	queue    []*metaReq // queued, not yet written
	sent     []*metaReq // handed to the reader (written or being written), in stream order
	inflight int        // requests queued or sent whose reply is not read yet
	err      error      // why the connection is closed; set once

	// handedOff counts the requests whose reply the reader goroutine
	// read and handed to their waiter (a goroutine hand-off), as opposed
	// to those their caller read itself (readOwn). Tests read it.
	handedOff atomic.Uint64

	wwake chan struct{} // wakes the writer (capacity 1)
	rwake chan struct{} // wakes the reader (capacity 1)
	dead  chan struct{} // closed when err is set
}

// maxBatch bounds the bytes gathered into one write.
const maxBatch = 64 << 10

func newPipeConn(nc net.Conn) *pipeConn {
	cn := &pipeConn{
		nc:    nc,
		wturn: make(chan struct{}, 1),
		rturn: make(chan struct{}, 1),
		br:    bufio.NewReaderSize(nc, 32<<10),
		wwake: make(chan struct{}, 1),
		rwake: make(chan struct{}, 1),
		dead:  make(chan struct{}),
	}
	go cn.writeLoop()
	go cn.readLoop()
	return cn
}

// send writes r on the caller's goroutine when the connection is idle
// (nothing in flight, no write under way): there is nothing to gather
// into a batch, and the caller then reads its reply itself too (own:
// call readOwn), as on a pooled connection, with no goroutine hand-off.
// When the reader goroutine still holds the read side, r goes to it
// (one hand-off, to the waiter). Otherwise send queues r for the writer
// (enqueue). It fails when the connection is closed, with nothing sent; a
// failed write fails the connection, and with it r.
func (cn *pipeConn) send(r *metaReq) (own bool, err error) {
	select {
	case cn.wturn <- struct{}{}:
	default:
		return false, cn.enqueue(r) // the writer is at work: join its batch
	}
	cn.mu.Lock()
	if cn.err != nil || cn.inflight > 0 {
		cn.mu.Unlock()
		<-cn.wturn
		return false, cn.enqueue(r)
	}
	r.state.Store(reqSent) // never queued: nobody can abandon it yet
	cn.inflight++
	select {
	case cn.rturn <- struct{}{}:
		// Nothing is in flight, so r's reply comes first: the caller
		// reads it, and the reader goroutine waits for rturn to read the
		// replies of the requests sent after r.
		own = true
	default:
		cn.sent = append(cn.sent, r) // sent was empty
	}
	cn.mu.Unlock()
	if !own {
		signal(cn.rwake)
	}
	_ = cn.nc.SetWriteDeadline(r.deadline)
	_, err = cn.nc.Write(r.cmd)
	<-cn.wturn
	if err != nil {
		// r may be partly written: it fails with err (unknown outcome),
		// from readOwn (whose read finds the connection closed) or from
		// fail (r is in sent), never as not sent.
		cn.fail(err)
	}
	return own, nil
}

// readOwn reads the reply to r, which its caller wrote on an idle
// connection and holds rturn for (send), and releases rturn. Until the
// first byte of the reply arrives the read is interrupted when ctx ends:
// r is then handed to the reader goroutine, which consumes its reply
// later, and the caller returns the context's error (as a waiter does).
// Once the reply has begun it is read whole, bounded by r's deadline
// (Timeout).
func (cn *pipeConn) readOwn(ctx context.Context, r *metaReq) (metaResult, error) {
	_ = cn.nc.SetReadDeadline(r.deadline)
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = cn.nc.SetReadDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	_, err := cn.br.Peek(1)
	if !stop() {
		<-interrupted // the deadline is pulled in: put it back
		_ = cn.nc.SetReadDeadline(r.deadline)
		if err != nil && cn.br.Buffered() == 0 {
			// No byte of the reply was read: the reader goroutine
			// reads it, before the replies sent after r.
			cn.mu.Lock()
			if cn.err == nil {
				cn.sent = append([]*metaReq{r}, cn.sent...)
				err = nil
			}
			cn.mu.Unlock()
			<-cn.rturn
			signal(cn.rwake)
			if err == nil {
				return metaResult{}, &ctxError{context.Cause(ctx)}
			}
			return metaResult{}, cn.fail(err)
		}
	}
	if err == nil {
		err = r.parse(cn.br, &r.res)
	}
	if err != nil && !isReply(err) {
		// The stream is broken or out of step: every request on the
		// connection fails.
		err = cn.fail(err)
		<-cn.rturn
		return metaResult{}, err
	}
	cn.mu.Lock()
	if cn.err == nil {
		cn.inflight--
	}
	cn.mu.Unlock()
	<-cn.rturn
	return r.res, err
}

// enqueue queues r for the writer; it fails when the connection is
// closed.
func (cn *pipeConn) enqueue(r *metaReq) error {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return &notSentError{err}
	}
	cn.queue = append(cn.queue, r)
	cn.inflight++
	wake := len(cn.queue) == 1
	cn.mu.Unlock()
	if wake {
		signal(cn.wwake)
	}
	return nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// take moves the queued requests that are still wanted to sent, appends
// their commands to buf and reports the earliest deadline among them;
// ok is false once the connection is closed.
func (cn *pipeConn) take(buf []byte) (out []byte, took int, first time.Time, ok bool) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return buf, 0, first, false
	}
	wasEmpty := len(cn.sent) == 0
	for i, r := range cn.queue {
		cn.queue[i] = nil
		if !r.state.CompareAndSwap(reqQueued, reqSent) {
			cn.inflight-- // abandoned before it was written
			continue
		}
		if took == 0 {
			first = r.deadline
		}
		took++
		cn.sent = append(cn.sent, r)
		buf = append(buf, r.cmd...)
	}
	cn.queue = cn.queue[:0]
	if took > 0 && wasEmpty {
		signal(cn.rwake)
	}
	return buf, took, first, true
}

// writeLoop writes the queued requests, gathering all that are queued
// into one write, and flushes when the queue is empty (or maxBatch bytes
// are gathered).
func (cn *pipeConn) writeLoop() {
	var buf []byte
	for {
		select {
		case <-cn.wwake:
		case <-cn.dead:
			return
		}
		buf = buf[:0]
		var deadline time.Time
		select {
		case cn.wturn <- struct{}{}:
		case <-cn.dead:
			return
		}
		for {
			var took int
			var first time.Time
			var ok bool
			buf, took, first, ok = cn.take(buf)
			if !ok {
				<-cn.wturn
				return
			}
			if took > 0 && deadline.IsZero() {
				deadline = first
			}
			if len(buf) == 0 {
				break
			}
			if took > 0 && len(buf) < maxBatch {
				// Let the goroutines that are ready to run queue their
				// requests before this batch is written, for as long
				// as that brings more (up to maxBatch): on a busy
				// server that gathers several requests per write (4.3
				// on average in the side-by-side throughput benchmark,
				// 1.25 without), at the cost of a scheduler pass when
				// nothing else is ready.
				runtime.Gosched()
				continue
			}
			_ = cn.nc.SetWriteDeadline(deadline)
			if _, err := cn.nc.Write(buf); err != nil {
				<-cn.wturn
				cn.fail(err)
				return
			}
			buf = buf[:0]
			deadline = time.Time{}
		}
		<-cn.wturn
		if cap(buf) > 4*maxBatch {
			buf = nil
		}
	}
}

// readLoop reads the replies in order and hands each to its waiter.
func (cn *pipeConn) readLoop() {
	var batch []*metaReq
	for {
		cn.mu.Lock()
		for len(cn.sent) == 0 {
			if cn.err != nil {
				cn.mu.Unlock()
				return
			}
			cn.mu.Unlock()
			select {
			case <-cn.rwake:
			case <-cn.dead:
			}
			cn.mu.Lock()
		}
		cn.mu.Unlock()
		// A caller reading its own reply (readOwn) comes first in the
		// stream: wait for it.
		select {
		case cn.rturn <- struct{}{}:
		case <-cn.dead:
			return
		}
		cn.mu.Lock()
		batch, cn.sent = cn.sent, batch[:0]
		cn.mu.Unlock()
		for i, r := range batch {
			_ = cn.nc.SetReadDeadline(r.deadline)
			err := r.parse(cn.br, &r.res)
			if err != nil && !isReply(err) {
				// The stream is broken or out of step: every request on
				// the connection fails.
				err = cn.fail(err)
				for _, q := range batch[i:] {
					q.finish(err)
				}
				<-cn.rturn
				return
			}
			r.finish(err)
			batch[i] = nil
		}
		cn.handedOff.Add(uint64(len(batch)))
		cn.mu.Lock()
		if cn.err == nil {
			cn.inflight -= len(batch)
		}
		cn.mu.Unlock()
		<-cn.rturn
	}
}

// fail closes the connection with err (the first cause wins, which it
// returns) and fails the requests queued or sent on it, except those the
// reader holds: it fails them itself.
func (cn *pipeConn) fail(err error) error {
	err, _ = cn.close(err, false)
	return err
}

// closeIfIdle closes the connection when nothing is in flight on it.
func (cn *pipeConn) closeIfIdle() {
	cn.close(errIdleClosed, true)
}

// close sets err, unless it is set already (it returns the one that is)
// or idleOnly and something is in flight (closed is then false).
func (cn *pipeConn) close(err error, idleOnly bool) (cause error, closed bool) {
	cn.mu.Lock()
	if cn.err != nil || (idleOnly && cn.inflight > 0) {
		err = cn.err
		cn.mu.Unlock()
		return err, false
	}
	cn.err = err
	cn.broken.Store(true)
	queue, sent := cn.queue, cn.sent
	cn.queue, cn.sent = nil, nil
	cn.inflight = 0
	cn.mu.Unlock()
	close(cn.dead)
	_ = cn.nc.Close()
	for _, r := range queue {
		r.finish(&notSentError{err}) // not yet taken by the writer
	}
	for _, r := range sent {
		r.finish(err)
	}
	return err, true
}
