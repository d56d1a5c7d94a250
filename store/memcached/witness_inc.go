package memcached

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// The node's incarnation (R1): a random 64-bit value kept under
// incarnationKey, read on every new connection (created when missing: a
// flush or a restart deletes it). memcached's CAS values count from 1 again
// after a restart, so a token is only ever sent on a connection of the
// incarnation it was read in: a token of another one is refused without
// sending (errOtherInc), and the next read gets a token of the new one.

const incarnationKey = "__sl_inc"

// errOtherInc: a token of another incarnation of the node; nothing was
// sent. A complete answer: the connection stays usable.
var errOtherInc = errors.New("token of another incarnation of the node; not sent")

// errLostInc: a write was sent and got no reply, and a new connection
// found another incarnation of the node: whatever the write did went with
// the old incarnation, but it may have run (and been observed) before the
// flush or restart. Not a refusal (review 13e B1): the outcome of the
// write on that node is unknown, and its record is gone.
var errLostInc = errors.New("no reply, and the node has a new incarnation since (flushed or restarted); the write may have run")

// helloIncarnation reads (or creates) the node's incarnation on a new
// connection.
func helloIncarnation(cn *metaConn) (uint64, error) {
	for range 3 {
		if err := send(cn, "mg "+incarnationKey+" v", nil); err != nil {
			return 0, err
		}
		it, err := readMetaGet(cn.rw.Reader)
		if err != nil {
			return 0, err
		}
		if it != nil {
			if len(it.value) != 8 {
				return 0, fmt.Errorf("%w: %s holds %d bytes", errProtocol, incarnationKey, len(it.value))
			}
			return binary.BigEndian.Uint64(it.value), nil
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		if _, err := setOn(cn, setLine(incarnationKey, 8, 0, 0, true, 0), b[:]); err == nil {
			return binary.BigEndian.Uint64(b[:]), nil
		} else if !errors.Is(err, errNotStored) {
			return 0, err
		}
		// Another connection created it first: read it.
	}
	return 0, fmt.Errorf("%w: %s keeps changing", errProtocol, incarnationKey)
}

// witItem is one read of the witness scheme: the item (nil when absent)
// and the incarnation of the connection that read it.
type witItem struct {
	*metaItem
	inc uint64
}

// wget sends `mg <key><flags>` and returns the item (nil item: a miss).
func (n *node) wget(ctx context.Context, key, flags string) (witItem, error) {
	var r witItem
	op := n.wgetOp(ctx, key, flags, &r)
	wdoAll(op)
	return r, op.err
}

// wgetOp is wget as an op of wdoAll: the item goes to *r.
func (n *node) wgetOp(ctx context.Context, key, flags string, r *witItem) *wop {
	return &wop{n: n, ctx: ctx,
		send: func(cn *metaConn) error { return send(cn, "mg "+key+flags, nil) },
		recv: func(cn *metaConn) error {
			it, err := readMetaGet(cn.rw.Reader)
			*r = witItem{metaItem: it, inc: cn.inc}
			return err
		}}
}

// wcas stores value with client flags kind and expiration exp, only if the
// item's token is still cas in incarnation inc (R1): `ms <key> <n> T<exp>
// c F<kind> C<cas>`. It returns the new token.
func (n *node) wcas(ctx context.Context, key string, value []byte, exp int32, kind uint32, cas, inc uint64) (uint64, error) {
	var newCAS uint64
	op := n.wcasOp(ctx, key, value, exp, kind, cas, inc, &newCAS)
	wdoAll(op)
	return newCAS, op.err
}

// wcasOp is wcas as an op of wdoAll: the new token goes to *newCAS.
func (n *node) wcasOp(ctx context.Context, key string, value []byte, exp int32, kind uint32, cas, inc uint64, newCAS *uint64) *wop {
	if value == nil {
		value = []byte{} // a blank: the data block is sent, empty
	}
	return &wop{n: n, ctx: ctx, inc: inc,
		send: func(cn *metaConn) error { return send(cn, setLine(key, len(value), exp, kind, false, cas), value) },
		recv: func(cn *metaConn) error {
			var res metaResult
			err := readSet(cn.rw.Reader, &res)
			*newCAS = res.cas
			return err
		}}
}

// wrestamp re-stamps key only if its token is still cas in incarnation
// inc: `ms <key> 0 MA c C<cas>`, an append of nothing. memcached's append
// keeps the item's bytes, client flags and expiry and gives it a new
// token, under the item's lock: a touch that landed after the read that
// returned cas is kept, where a CAS with the read's t sets it back (a
// touch keeps the token, so that CAS is not refused: issue 13). A missing
// item is not stored (errNotStored). It returns the new token.
func (n *node) wrestamp(ctx context.Context, key string, cas, inc uint64) (uint64, error) {
	var newCAS uint64
	err := n.wdo(ctx, inc, func(cn *metaConn) error {
		var err error
		newCAS, err = setOn(cn, "ms "+key+" 0 MA c C"+strconv.FormatUint(cas, 10), []byte{})
		return err
	})
	return newCAS, err
}

// wappend is the send of R3's write as an append (witness_append.go):
// `ms <key> <n> MA c C<cas>` with data, only if the item's token is still
// cas in incarnation inc, and the touch `mg <key> c f T<exp>` (memcached's
// append keeps the item's expiry). Sent together (pipelined: one round
// trip), the touch lands on whatever the key holds after the append,
// another writer's record when the append is refused; so by default the
// touch is sent only once the append is stored (a second round trip), and
// pipelined only when the caller expects the append to land (a handle
// just read). strayed reports that the touch set this caller's T on
// another value than the one the append made (the append refused, or a
// write landed between the two): untouch puts its own back. The error is
// the append's: errExists (the token changed), errMiss (the item is gone),
// errAppendFull (memcached did not store the append though the item it
// was conditioned on is still there: too large; appendNotStored); a
// stored append whose touch got no reply is a success (the value keeps the
// expiry it had, as after a lost touch: D1).
//
// A stored append whose touch answered EN, or found a blank where the
// append stored (a reader's get-or-blank after the copy went), is
// (review-oc31 F2) errAppendedGone, a miss: the copy is gone now (the
// item expired on the clock tick between the two commands, memcached's
// append keeping its expiry, or a flush, an eviction or a delete came
// between). R3's table (witness.write, appendGoneUnknown) never takes it
// for "not applied": the appended value sat on the copy until it went,
// where a plain read may have returned it and a reader's R4.4 may have
// copied it on. strayed stays false for EN: it touched nothing. A stored
// append whose touch found another item than the append's, not a blank
// (strayed: a reader's re-stamp of it, a record built on it, or one that
// replaced it), is sorted out by sendAppend, which reads that item
// (errAppendReplaced).
//
// wappend returns it as an op of wdoAll (appendRes.op), whose outcome is
// appendRes.done's.
func (n *node) wappend(ctx context.Context, key string, data []byte, exp int32, cas, inc uint64, pipelined bool) *appendRes {
	line := "ms " + key + " " + strconv.Itoa(len(data)) + " MA c C" + strconv.FormatUint(cas, 10)
	touch := "mg " + key + " c f T" + strconv.FormatInt(int64(exp), 10)
	r := &appendRes{op: &wop{n: n, ctx: ctx, inc: inc}, key: key, cas: cas}
	readTouch := func(cn *metaConn, stored bool) error {
		it, err := readMetaGet(cn.rw.Reader)
		var se *serverError
		if err != nil && !errors.As(err, &se) {
			return &touchError{err}
		}
		// An error reply (SERVER_ERROR, CLIENT_ERROR) to the touch of a
		// stored append: no TTL set (sendAppend touches again).
		r.touchErr = stored && err != nil
		r.strayed = it != nil && (!stored || it.cas != r.newCAS)
		// Gone: no item (EN), or a blank where the append stored (a
		// reader's `mg … N30` on the miss after the copy went: the
		// model's AppendStrayStored).
		r.gone = stored && err == nil && (it == nil || r.strayed && it.flags == 0 && !r.blankStored) && !r.goneIgnored
		return nil
	}
	if pipelined {
		r.op.send = func(cn *metaConn) error {
			if _, err := cn.rw.WriteString(line + "\r\n"); err != nil {
				return err
			}
			if _, err := cn.rw.Write(data); err != nil {
				return err
			}
			return send(cn, "\r\n"+touch, nil)
		}
		r.op.recv = func(cn *metaConn) error {
			reply, err := readLine(cn.rw.Reader)
			if err != nil {
				return err
			}
			r.newCAS, r.appendErr = setReply(reply)
			if errors.Is(r.appendErr, errNotStored) {
				r.appendErr = errAppendFull // sorted out below: or the item is gone
			}
			if terr := readTouch(cn, r.appendErr == nil); terr != nil {
				return terr // the connection is out of step: not a reply
			}
			return r.appendErr
		}
		return r
	}
	r.op.send = func(cn *metaConn) error { return send(cn, line, data) }
	r.op.recv = func(cn *metaConn) error {
		var res metaResult
		err := readSet(cn.rw.Reader, &res)
		r.newCAS = res.cas
		if errors.Is(err, errNotStored) {
			return errAppendFull // sorted out below: or the item is gone
		}
		if err != nil {
			return err
		}
		// Stored: the touch, in a second round trip on this connection.
		r.op.send = func(cn *metaConn) error {
			if err := send(cn, touch, nil); err != nil {
				return &touchError{err}
			}
			return nil
		}
		r.op.recv = func(cn *metaConn) error { return readTouch(cn, true) }
		return nil
	}
	return r
}

// errAppendReplaced: an append stored on a data copy whose touch found
// another item there (not a blank), one that neither holds this write
// (its identity: a reader's re-stamp of it) nor a record built on it
// (sendAppend reads it): another record replaced the appended item
// between the two commands (another writer's completion or failover, a
// witness). The appended value sat on the copy until then, as on a copy
// gone by its touch (errAppendedGone), so R3's table takes it as one
// (appendGoneUnknown), save that the key is not gone: it never makes
// "not found" (the model's rStray). Not a miss (errMiss): classify maps
// it to woMissing for the one row where a missing copy is right, P
// stored and Q replaced (the completion).
var errAppendReplaced = errors.New("appended, then replaced by a record not built on it before its touch")

// errAppendLostTie: errAppendReplaced where the record found is a rival
// write of the append's own base (the same configuration and version,
// the same parent, another nonce), stored on its primary and completed
// over the append on Q (by its writer's R3 completion, or a reader's
// R4.4 from P: the rival on its own primary wins R4.2's tie). On Q
// beside a P that refused the append, the write is a conflict (lostTie:
// the model's rTie), not unknown.
var errAppendLostTie = fmt.Errorf("%w: a rival write of the same base won the tie", errAppendReplaced)

// errAppendRolledBack: errAppendReplaced where the record found is the
// append's own base, its identity (docs/replication.md §16 item 6, the
// two-trip append): the append's copy was taken back before its touch.
// Only a roll-back puts a write's base back on its secondary (R4.4′,
// which re-stamps the primary first, so the write never reaches it from
// there) or the writer's own undo (the same call, later), so beside a P
// that refused the append it was never on P, nor returned, and nothing
// of it is left: a conflict (lostTie's row).
var errAppendRolledBack = fmt.Errorf("%w: the secondary was rolled back to the append's base", errAppendReplaced)

// appendRes is a wappend: its op and what its replies showed.
type appendRes struct {
	op  *wop
	key string
	cas uint64 // the token the append was conditioned on
	// fullByPresence: the broken variant (the code before): an NS is
	// "too large" when the look finds any item.
	fullByPresence bool
	// goneIgnored: the broken variant (the code before review-oc31 F2):
	// a stored append whose touch answered EN is a success.
	goneIgnored bool
	// blankStored: the broken variant (the first fix of F2): a touch that
	// finds a blank where the append stored counts the copy stored.
	blankStored bool
	newCAS      uint64
	strayed     bool
	gone        bool  // stored, then the touch answered EN: no item
	touchErr    bool  // stored, and the touch got an error reply
	appendErr   error // the append's reply (pipelined)
}

// done returns the outcome of r once wdoAll ran r.op.
func (r *appendRes) done() (newCAS uint64, strayed bool, err error) {
	err = r.op.err
	var te *touchError
	switch {
	case errors.As(err, &te):
		// The append's reply came (stored, or pipelined: refused); the
		// touch's fate is unknown.
		err = r.appendErr
	case err == nil && r.gone:
		// Stored, then gone by its touch: the copy is missing (wappend).
		err = errAppendedGone
	}
	switch {
	case errors.Is(err, errAppendFull):
		// memcached answers NS both for a missing key and for an item
		// that cannot be stored with the data appended: a look tells
		// them apart (a refusal either way). Only the very item the
		// append was conditioned on (its token, this incarnation) is
		// "too large"; anything else the look finds was made after the
		// append found the key gone (a flush, then a reader's blank,
		// `mg … N30`): the copy was lost (appendNotStored).
		it, gerr := r.op.n.wget(r.op.ctx, r.key, " c")
		switch {
		case gerr != nil:
		case r.fullByPresence: // the broken variant: any item found
			if it.metaItem == nil {
				err = errMiss
			}
		case it.metaItem == nil:
			err = errMiss
		default:
			err = appendNotStored(it.inc == r.op.inc, it.cas, r.cas)
		}
	}
	return r.newCAS, r.strayed, err
}

// sentIfMoved is err with its "not sent" verdict dropped when the
// operation's connection took bytes (moved): send judges one command, and
// an operation of several (an append, then its touch) whose later command
// went out with no byte was still sent (review of 2026-11-30, B1: a
// stored append whose touch took no byte was sent again, refused by its
// own new token, and reported refused).
func sentIfMoved(err error, moved bool) error {
	var ns *notSentError
	if !moved || !errors.As(err, &ns) {
		return err
	}
	var te *touchError
	if errors.As(err, &te) {
		return &touchError{errors.Unwrap(ns)}
	}
	return fmt.Errorf("memcached: sent, then: %w", errors.Unwrap(ns))
}

// touchError: the touch after a stored append got no reply.
type touchError struct{ err error }

func (e *touchError) Error() string { return "touch after the append: " + e.err.Error() }
func (e *touchError) Unwrap() error { return e.err }

// wcasAgain is wcas (value, exp, kind) on c, a record this call wrote or
// read (a witness when witness, of identity id), for a write the caller
// must still make (an undo). A token
// refused as of another incarnation, not sent (errOtherInc), may only be
// mislabelled: flush_all keeps the open connections and the CAS counter,
// and a connection learns its node's incarnation once, when it opens, so
// a token read or returned on a connection opened before a flush is
// labelled with the old incarnation although it is the live item's, and a
// newer connection (which made the new incarnation) refuses it. The key is
// read again: if it holds the record id with the very token (the item
// unchanged since: the counter did not restart, as after a restart), the
// write is sent with the token under its current label. The simulation's
// tiered seeds (an Add's undo of its witness refused so left a lone
// witness: every process's Get found the session lost and every Add a
// record, for TW).
func (w *witness) wcasAgain(ctx context.Context, key string, c written, witness bool, id envelope.Identity, value []byte, exp int32, kind uint32) (uint64, error) {
	cas, err := c.n.wcas(ctx, key, value, exp, kind, c.tok.cas, c.tok.inc)
	if !errors.Is(err, errOtherInc) {
		return cas, err
	}
	r, rerr := w.read(ctx, c.n, c.tok.cand, key, " v c t f")
	if rerr != nil || !r.present() || r.env.ID() != id || r.cas != c.tok.cas || r.inc == c.tok.inc ||
		witness != (r.st == stWitness) {
		return cas, err
	}
	return c.n.wcas(ctx, key, value, exp, kind, r.cas, r.inc)
}

// wdel deletes key only if its token is still cas in incarnation inc.
func (n *node) wdel(ctx context.Context, key string, cas, inc uint64) error {
	return n.wdo(ctx, inc, func(cn *metaConn) error {
		return delOn(cn, "md "+key+" C"+strconv.FormatUint(cas, 10))
	})
}

// wdo runs fn on one of the node's connections, refusing (errOtherInc,
// nothing sent) when inc is not 0 and the connection is of another
// incarnation, and feeds the node's failure detection: a complete reply
// clears it, no reply counts towards failed.
//
// A pooled connection that fails without a reply may only have been
// closed by a restart of the node: a read is then sent again on a new
// connection; a write is not (it may have been applied), and a new
// connection of another incarnation shows that whatever it did is gone
// with the old one: errLostInc (not errOtherInc: it was sent). A write
// takes no pooled connection its node had already closed (liveConn: after
// a kill or restart every pooled one is), so that only a write in flight
// at the node's end gets there; a write of which the connection took no
// byte (it had been closed meanwhile) is sent again on a new one.
//
// wdo is a wdoAll of one op whose fn sends and reads everything.
func (n *node) wdo(ctx context.Context, inc uint64, fn func(*metaConn) error) error {
	op := &wop{n: n, ctx: ctx, inc: inc, send: fn}
	wdoAll(op)
	return op.err
}

// wop is one node's part of a round trip of the witness scheme (the two
// data copies' commands of R2 or R3 and the witness touch): wdoAll sends
// the commands of all its ops, each on a connection of its own node, then
// reads their replies in turn, all on the caller's goroutine: no
// goroutine per copy (with one, a request took about 1.5 × its parallel
// floor on the 2-core machine, without 1.1 ×: docs/performance.md, "One,
// two and three copies"). Each op keeps wdo's rules: its own deadline,
// refusal of another incarnation's token, retry on a new connection,
// failure detection.
type wop struct {
	n   *node
	ctx context.Context
	inc uint64 // not 0: a write with a token of incarnation inc (wdo)
	// send writes the op's commands on cn and flushes them; recv (nil:
	// none) reads their replies. recv may set send and recv again: one
	// more round trip on the same connection, whose commands go out with
	// the other ops' (wappend's touch after its append).
	send, recv func(cn *metaConn) error
	// detach: the caller does not wait for this op's reply (the witness
	// touch): wdoAll reads it after the others' when it is there already
	// (replyReady), else on a goroutine of its own, and then calls then.
	detach bool
	then   func()
	// hold (tests: holdWitnessTouch), when set on a detached op, runs on
	// its goroutine before the op is sent, as a dial would delay it.
	hold func()
	err  error // the op's outcome, once wdoAll ran it

	sendFirst, recvFirst func(cn *metaConn) error // as given: a retry starts over
	start, began         time.Time                // the op's start; its last attempt's send
	cn                   *metaConn                // the connection in use
	pooled               bool                     // cn came from the pool
	before               int64                    // cn's bytes out before the first send
	dl                   time.Time                // cn's deadline
	stop                 func() bool              // ends cn's interruption by ctx
}

// wdoAll runs ops (nil ones are skipped) as one round trip (wop). An op
// whose node has no pooled connection runs whole on a goroutine of its
// own, as every op did before wdoAll: the dials (and their incarnation
// reads) of several nodes go on at once, and a node that does not answer
// its dial or hello (paused, partitioned) holds up no other op.
func wdoAll(ops ...*wop) {
	now := make([]*wop, 0, len(ops))
	var detached []*wop
	var dialling sync.WaitGroup
	for _, op := range ops {
		if op == nil {
			continue
		}
		op.start = op.n.wh.sending()
		op.sendFirst, op.recvFirst = op.send, op.recv
		pick := anyConn
		if op.inc != 0 {
			pick = liveConn // a write: never sent on a connection already dead
		}
		dials := len(ops) > 1 && !op.n.meta.hasIdle()
		switch {
		case (dials || op.hold != nil) && op.detach:
			go func() {
				if op.hold != nil {
					op.hold()
				}
				op.open(pick)
				op.complete()
			}()
		case dials:
			dialling.Go(func() {
				op.open(pick)
				roundTrips([]*wop{op})
				op.finish()
			})
		case op.detach:
			op.open(pick)
			detached = append(detached, op)
		default:
			op.open(pick)
			now = append(now, op)
		}
	}
	roundTrips(now)
	for _, op := range now {
		op.finish()
	}
	dialling.Wait()
	for _, op := range detached {
		if op.err == nil && op.cn != nil && replyReady(op.cn) {
			op.complete()
		} else {
			go op.complete()
		}
	}
}

// complete reads a detached op's replies, finishes it and calls its then.
func (op *wop) complete() {
	roundTrips([]*wop{op})
	op.finish()
	if op.then != nil {
		op.then()
	}
}

// open takes a connection of pick for op and sends op's first commands
// on it, refusing (errOtherInc, nothing sent) when op.inc is not 0 and
// the connection is of another incarnation.
func (op *wop) open(pick connPick) {
	op.cn = nil
	if err := op.ctx.Err(); err != nil {
		op.pooled, op.err = false, &ctxError{err}
		return
	}
	cn, pooled, err := op.n.meta.conn(op.ctx, pick)
	op.pooled, op.err = pooled && err == nil, err
	if err != nil {
		return
	}
	op.cn = cn
	op.dl, op.stop = op.n.meta.begin(op.ctx, cn)
	op.before = cn.out.n
	if op.inc != 0 && cn.inc != op.inc {
		op.send, op.recv, op.err = nil, nil, errOtherInc
		return
	}
	op.began = time.Now()
	op.sendNext()
}

// roundTrips reads the replies of the ops' commands, and sends and reads
// the further round trips their recv asked for, all ops' at once.
func roundTrips(ops []*wop) {
	for {
		more := false
		for _, op := range ops {
			if op.recvNext() {
				more = true
			}
		}
		if !more {
			return
		}
		for _, op := range ops {
			op.sendNext()
		}
	}
}

// sendNext sends op's pending commands, if any.
func (op *wop) sendNext() {
	send := op.send
	op.send = nil
	if send != nil && op.err == nil && op.cn != nil {
		op.timely()
		op.err = send(op.cn)
	}
	if op.err != nil {
		op.recv = nil
	}
}

// recvNext reads the replies to op's commands, if any, and reports
// whether op has more to send.
func (op *wop) recvNext() bool {
	recv := op.recv
	op.recv = nil
	if recv != nil && op.err == nil && op.cn != nil {
		op.timely()
		op.err = recv(op.cn)
	}
	return op.err == nil && op.send != nil
}

// readGrace is how long a reply is waited for when its op's deadline
// passed while wdoAll read the other ops' replies (timely).
const readGrace = 10 * time.Millisecond

// timely gives op's connection readGrace more when its deadline (Timeout)
// passed while wdoAll waited for another op's reply: the reply may have
// come in time and wait in the socket, and a read past its deadline fails
// without looking. readGrace is well below lateAfter: it never makes a
// reply late (witHealth.late). The context's own end still interrupts.
func (op *wop) timely() {
	if op.ctx.Err() != nil || !time.Now().After(op.dl) {
		return
	}
	_ = op.cn.nc.SetDeadline(time.Now().Add(readGrace))
	if op.ctx.Err() != nil {
		_ = op.cn.nc.SetDeadline(time.Unix(1, 0)) // as begin's interruption
	}
}

// close ends op's use of its connection (metaClient.end): an operation
// whose connection took bytes was sent (sentIfMoved).
func (op *wop) close() {
	if op.cn == nil {
		return
	}
	op.err = op.n.meta.end(op.ctx, op.cn, sentIfMoved(op.err, op.cn.out.n != op.before), op.stop)
	op.cn, op.send, op.recv = nil, nil, nil
}

// finish closes op, sends it again on a new connection where wdo's rules
// say so, and feeds the node's failure detection: a complete reply clears
// it, no reply counts towards failed.
//
// A pooled connection that fails without a reply may only have been
// closed by a restart of the node: a read is then sent again on a new
// connection; a write is not (it may have been applied), and a new
// connection of another incarnation shows that whatever it did is gone
// with the old one: errLostInc (not errOtherInc: it was sent). A write
// takes no pooled connection its node had already closed (liveConn: after
// a kill or restart every pooled one is), so that only a write in flight
// at the node's end gets there; a write of which the connection took no
// byte (it had been closed meanwhile) is sent again on a new one.
func (op *wop) finish() {
	op.close()
	n, err, inc := op.n, op.err, op.inc
	late := err != nil && n.wh.late(op.began, n.meta.timeout)
	var ce *ctxError
	var ns *notSentError
	if op.pooled && err != nil && !isReply(err) && !errors.As(err, &ce) {
		unsent := errors.As(err, &ns) // not a byte went out: a write too is sent again
		op.send, op.recv = op.sendFirst, op.recvFirst
		if inc != 0 && !unsent {
			op.inc, op.send, op.recv = 0, func(cn *metaConn) error {
				if cn.inc != inc {
					return errLostInc
				}
				return nil // the same incarnation: the first outcome stands
			}, nil
		}
		op.began = time.Time{}
		op.open(newConn)
		roundTrips([]*wop{op})
		op.close()
		op.inc = inc
		// A write's check that cannot be made (the new connection fails)
		// leaves the first error: it was sent, never "not sent" (M2).
		if rerr := op.err; inc == 0 || unsent || errors.Is(rerr, errLostInc) {
			err = rerr
			late = rerr != nil && n.wh.late(op.began, n.meta.timeout)
		}
		op.err = err
	}
	switch {
	case err == nil || isReply(err):
		n.wh.answered()
	case errors.As(err, &ce):
		// The caller gave up: the node is not to blame.
	case late:
		// This process did not run for a while around the command's
		// deadline (it was stopped, SIGSTOP, or starved): the deadline
		// fired late and the reply may have come in time. No evidence
		// against the node: a resumed app server that counted its own
		// stop failed every node it had a command in flight to, and
		// failed over healthy sessions, taking other servers' writes in
		// flight (TestOwnStopDoesNotFailNodes).
	default:
		n.wh.unanswered(op.start)
	}
}
