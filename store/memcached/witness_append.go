package memcached

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// CompareAndAppend in the witness scheme: R3 with a lock change (a
// record.Delta) sent as a trailer (package envelope) appended to both data
// copies, instead of the whole record.
//
// The record is the same. A trailer carries the delta and the new
// version's nonce and timeout; the item then decodes to exactly the
// envelope a whole write of the change would carry (the handle's envelope's
// Next: version + 1, its nonce first among the ancestors, the same
// configuration, marks and digest, not pending) and to the base followed by
// the delta, the bytes the provider wrote. Its identity is that envelope's:
// one write, one new nonce, on both copies.
//
// The send. `ms <key> <n> MA c C<tok>` to P and Q in parallel, each with
// the token of the handle (R1: an append is a CAS of the item's content,
// with a token read from that node in its incarnation), and the touch `mg
// <key> c f T<T>` (memcached's append keeps the item's expiry): in the same
// round trip when the handle is a read's of less than pipelineFresh ago
// (the lock after a read: it lands unless another writer came between),
// else once the append is stored (node.wappend). R3's witness touch is sent
// as for a whole write. A touch that landed on another value than the one
// the append made (a refused pipelined append, or a write between the
// append and its touch) gave it the caller's T: that value gets its own
// back at once (a data record its envelope's T, read again, a witness TW),
// as R2 does for its touches (D1, D5).
//
// The table. The outcomes of the two appends are those of two CASes
// (stored, refused, lost, silent, not sent) and go through R3's table
// unchanged (an append stored whose touch found the copy gone, EN, is that
// copy missing: node.wappend; one whose touch found another record, not
// this write nor built on it, is that copy replaced: sendAppend,
// appendGoneUnknown); what follows an outcome other than both stored writes whole
// values, as for a whole write: the completion of a refused Q and the
// write failover CAS the whole new record (the handle's payload and the
// delta); the undo CASes Q, with the token its append returned, back to
// the handle's base bytes, which are Q's exact bytes at the handle's token
// (the pre-image); the completion of the writer's own split (P re-stamped)
// rewrites both whole. An append memcached does not store because the
// item would be too large (NS, and the item of the handle's token still
// there: errAppendFull; another item found, such as a reader's blank
// after a flush, is the copy lost) is a
// refusal of that copy (nothing written there): the table completes the
// write whole from the other copy, or, when neither copy stored it,
// CompareAndAppend fails with provider.ErrTooLarge and the provider writes
// the record whole.
//
// When it declines (provider.ErrNoAppend, nothing sent, the provider writes
// whole): the handle does not know that both copies hold the record with
// the same envelope in every field and in version 2 (handle.trailers -1:
// after a write failover, whose P holds the pending fence; after a
// completion that found the write on Q; a read whose copies differ outside
// the identity, such as a half-cleared nowit mark), the copies carry
// maxTrailers trailers (compaction: the next change is written whole; the
// provider compacts too, after record.MaxDeltas deltas, and on every change
// of the data), or the delta is longer than envelope.MaxDelta.

// maxTrailers bounds the trailers of a data item: a change of an item
// that carries as many is written whole. Every trailer costs its delta and
// envelope.TrailerOverhead bytes on every later read of the session until
// the next whole write; 12 keeps an exclusive request that changes nothing
// within the 1.5 × target of issue 12 (docs/performance.md) over a whole
// cycle of compaction.
const maxTrailers = 12

// pipelineFresh: an append with a handle younger than this sends its
// touch with it (one round trip) when the handle is a read's (the lock
// that follows a read) or a write's of a locked record (the holder's
// release, commit or renewal that follows its lock: nobody else writes a
// locked record but a lock-free writer or, past the lease, a breaker).
// Others (the provider's guesses from its own last write of an unlocked
// record: the next request's lock, which another server's write since
// refuses) send it once the append is stored: a refused append's touch
// would land on another writer's record, whose TTL must then be read and
// put back (untouch). Only the key's latest handle in this Store
// (handleTable.latest) qualifies: an older one is a state this Store has
// seen the copies leave.
const pipelineFresh = time.Second

// appendPlan is what an append sends and what it leaves on Q.
type appendPlan struct {
	env      envelope.Envelope // the write's envelope (the handle's Next)
	base     envelope.Identity // the handle's record's identity (the append's base)
	trailer  []byte            // the bytes appended to each copy
	value    []byte            // the new record's payload: the base's and the delta
	qbytes   []byte            // Q's bytes after the append: the handle's base and the trailer
	trailers int               // handle.trailers after the append
	locked   bool              // the handle's record is locked (record.Header)
}

// casAppend is CompareAndAppend in the witness scheme (see above).
func (w *witness) casAppend(ctx context.Context, key string, delta []byte, id uint64, ttl time.Duration) (uint64, error) {
	return w.write(ctx, key, nil, delta, id, ttl)
}

// planAppend returns the plan of appending delta as env (the handle's
// envelope's Next) to the copies of h, or an error wrapping
// provider.ErrNoAppend when it declines (nothing sent).
func (w *witness) planAppend(h handle, env envelope.Envelope, delta []byte) (*appendPlan, error) {
	switch {
	case w.s.hooks.witnessWholeWrites:
		return nil, provider.ErrNoAppend
	case h.trailers < 0:
		return nil, fmt.Errorf("memcached: append: %w: the copies may differ outside the record's identity", provider.ErrNoAppend)
	case h.trailers >= maxTrailers:
		return nil, fmt.Errorf("memcached: append: %w: %d trailers (compacting)", provider.ErrNoAppend, h.trailers)
	case len(delta) > envelope.MaxDelta:
		return nil, fmt.Errorf("memcached: append: %w: a delta of %d bytes", provider.ErrNoAppend, len(delta))
	case h.env.Digest != w.digest || h.env.Pending:
		return nil, fmt.Errorf("memcached: append: %w: not an established record of this node list", provider.ErrNoAppend)
	case !envelope.CarriesHead(h.base):
		// §17, rvcarry M4: a trailer after a head of an earlier
		// release's version is a record that release's processes read
		// and decide on (naming the decision's nonce, not the write it
		// carries, in the next record's slots): write whole.
		return nil, fmt.Errorf("memcached: append: %w: a head of an earlier version", provider.ErrNoAppend)
	}
	qenv, payload, err := envelope.Decode(h.base)
	if err != nil || qenv != h.env {
		return nil, fmt.Errorf("memcached: append: %w: the secondary's bytes are not the handle's record", provider.ErrNoAppend)
	}
	trailer := env.AppendTrailer(nil, delta)
	hdr, err := record.Parse(payload)
	return &appendPlan{
		env:      env,
		base:     h.env.ID(),
		locked:   err == nil && hdr.Locked,
		trailer:  trailer,
		value:    append(append(make([]byte, 0, len(payload)+len(delta)), payload...), delta...),
		qbytes:   append(append(make([]byte, 0, len(h.base)+len(trailer)), h.base...), trailer...),
		trailers: h.trailers + 1,
	}, nil
}

// appendOut is what sendAppend's appends did: each copy's new token and
// outcome (the errors of node.wappend, errAppendedGone, errAppendReplaced),
// and what the reads of copies whose touch strayed onto another item than
// the append's, where the append was stored, found.
type appendOut struct {
	pcas, qcas uint64
	perr, qerr error
	// pread, qread: the copy's touch found this write re-stamped (a
	// reader's R4.4, R9): the copy as read, its token the handle's.
	pread, qread *copyRead
	// later: a copy's touch found a record built on this write (a later
	// write, or a failover's record of a greater epoch built on it).
	later bool
}

// sendAppend appends ap's trailer to both copies of h in parallel, each
// touched with the caller's T once stored (node.wappend), with the
// witness touch top (nil: none) in the same round trip, and gives a value
// that a touch landed on by mistake its own TTL back (untouch). A refusal
// for size is returned as errAppendFull (write's table takes it for a
// refusal).
//
// A stored append whose touch strayed onto another item than the append
// made (not a blank: that is a gone copy) is decided by untouch's read of
// that item (the model's appendTouched): the copy is stored when the item
// holds this write (a reader re-stamped it: its token is then the
// handle's when both copies stored, appendOut.pread/qread) or a record built on it (later);
// otherwise this write was replaced there (errAppendReplaced: R3's table,
// appendGoneUnknown), and the item, another record, still gets its own
// TTL back. A read that fails cannot tell: replaced.
func (w *witness) sendAppend(ctx context.Context, key string, h handle, ap *appendPlan, exp int32, top *wop) (o appendOut) {
	cs := w.candidates(key)
	p, q := cs[h.copies[0].cand], cs[h.copies[1].cand]
	pipelined := h.latest && (h.read || ap.locked) && time.Since(h.baseAt) < pipelineFresh && !w.s.hooks.appendTwoTrips
	pa := p.wappend(ctx, key, ap.trailer, exp, h.copies[0].cas, h.copies[0].inc, pipelined)
	qa := q.wappend(ctx, key, ap.trailer, exp, h.copies[1].cas, h.copies[1].inc, pipelined)
	pa.fullByPresence, qa.fullByPresence = w.s.hooks.appendFullByPresence, w.s.hooks.appendFullByPresence
	pa.goneIgnored, qa.goneIgnored = w.s.hooks.appendGoneIgnored, w.s.hooks.appendGoneIgnored
	pa.blankStored, qa.blankStored = w.s.hooks.appendBlankStored, w.s.hooks.appendBlankStored
	wdoAll(pa.op, qa.op, top)
	pcas, pstrayed, perr := pa.done()
	qcas, qstrayed, qerr := qa.done()
	if !w.s.hooks.appendTouchErrorOK {
		if perr == nil && pa.touchErr {
			var strayed bool
			strayed, perr = w.retouch(ctx, p, key, exp, pcas)
			pstrayed = pstrayed || strayed
		}
		if qerr == nil && qa.touchErr {
			var strayed bool
			strayed, qerr = w.retouch(ctx, q, key, exp, qcas)
			qstrayed = qstrayed || strayed
		}
	}
	o = appendOut{pcas: pcas, qcas: qcas, perr: perr, qerr: qerr}
	var plater, qlater bool
	if pstrayed {
		o.pread, plater, o.perr = w.strayed(ctx, p, h.copies[0].cand, key, ap, perr)
	}
	if qstrayed {
		o.qread, qlater, o.qerr = w.strayed(ctx, q, h.copies[1].cand, key, ap, qerr)
	}
	o.later = plater || qlater
	return o
}

// strayed untouches the item on n that an append's touch found though
// the append did not make it, and, when the append was stored there (err
// nil), decides that copy by untouch's read (sendAppend): self, the item
// holds this write (its token the re-stamp's); later, a record built on
// it; else errAppendReplaced. err is the append's outcome otherwise.
func (w *witness) strayed(ctx context.Context, n *node, cand uint8, key string, ap *appendPlan, err error) (self *copyRead, later bool, _ error) {
	c, ok := w.untouch(ctx, n, cand, key)
	if err != nil || w.s.hooks.appendStrayStored || w.s.hooks.appendBlankStored {
		// The code before (the first fix of F2 did not sort strays
		// either): stored.
		return nil, false, err
	}
	switch {
	case !ok:
	case c.holds(ap.env.ID()):
		return &c, false, nil
	case builtOn(&c, ap.env, ap.value, w.chainRules()):
		return nil, true, nil
	case c.holds(ap.base) && !w.s.hooks.rolledBackAsReplaced:
		return nil, false, errAppendRolledBack
	case rivalLine(&c, ap.env) && !w.s.hooks.appendTieUnknown && (c.env.V == ap.env.V || !w.s.hooks.appendTieLineUnknown),
		w.s.hooks.appendTieWide && c.st == stData:
		return nil, false, errAppendLostTie
	}
	return nil, false, errAppendReplaced
}

// rivalLine reports that c holds a rival write of env's own base, or a
// record built on one (errAppendLostTie): a data record, established, of
// env's configuration, at env's version or less than envelope.Lineage
// past it, whose chain has another nonce than env's at env's version and
// env's parent before it. At env's version it is the rival itself (the
// model's tie); past it, the rival moved on before the append's touch
// (found by running 2,400 flush-step seeds of the simulation, seed
// 1461): the rival was stored on both copies, since a client write is
// made only with a handle of both.
func rivalLine(c *copyRead, env envelope.Envelope) bool {
	if c.st != stData || c.env.Pending || configOf(c.env) != configOf(env) || c.env.V < env.V {
		return false
	}
	d := c.env.V - env.V // c is d versions past env's
	if d == 0 {
		return c.env.Nonce != env.Nonce && c.env.Ancestors[0] == env.Ancestors[0]
	}
	return d < envelope.Lineage && env.Ancestors[0] != 0 && c.env.Ancestors[d-1] != env.Carried() && c.env.Ancestors[d] == env.Ancestors[0]
}

// builtOn reports that c holds a data record certainly built on env (its
// payload value): a later version of env's configuration with env among
// its ancestors, or a record of a greater epoch past env's version whose
// chain has env in it (descent: a failover of a later version, or a
// write on a decision that carried env). A record of a greater epoch at
// env's own version that carries env (§17) does not count here: pending,
// it shows nothing (rvcarry B1), and established, it may be a decision
// made of the append before its touch (M5): the copy is then a replaced
// one, as before §17.
func builtOn(c *copyRead, env envelope.Envelope, value []byte, r chainRules) bool {
	switch {
	case c.st != stData:
		return false
	case configOf(c.env) == configOf(env):
		return c.env.Descends(env) == envelope.Descendant
	case c.env.E > env.E:
		return c.env.V > env.V && descent(c, env, value, r) == envelope.Descendant
	}
	return false
}

// retouch sends the touch of an append stored on n (token newCAS) once
// more, on its own, after the first got an error reply and set no TTL
// (the append keeps the item's old expiry, which may be near: the second
// cold review of the append-gone fixes, W3; review-oc31 F4 in the
// witness scheme). Gone by then (EN, or a blank where the append stored)
// is the copy gone by its touch (errAppendedGone); another item found is
// a stray touch (strayed: sendAppend reads it); another failure leaves
// the TTL unconfirmed and the append stored, as before.
func (w *witness) retouch(ctx context.Context, n *node, key string, exp int32, newCAS uint64) (strayed bool, err error) {
	it, err := n.wget(ctx, key, " c f T"+strconv.FormatInt(int64(exp), 10))
	switch {
	case err != nil:
		return false, nil
	case it.metaItem == nil, it.cas != newCAS && it.flags == 0:
		return false, errAppendedGone
	}
	return it.cas != newCAS, nil
}

// untouch gives the value on n that an append's touch landed on though
// the append did not make it (a refused pipelined append, or another
// write between the two) its own TTL back: the T of its envelope when it is data, TW when it is a
// witness (as R2 does for its touches: D1, D5). Failures are left alone:
// the next read or write of the session sets the TTL again. It returns
// its read of the value (ok false: the read failed).
func (w *witness) untouch(ctx context.Context, n *node, cand uint8, key string) (c copyRead, ok bool) {
	r, err := w.read(ctx, n, cand, key, " v c t f")
	switch {
	case err != nil:
		return r, false
	case w.s.hooks.appendNoUntouch:
	case r.st == stData:
		w.dataTTLBack(ctx, n, key, r.env)
	case r.st == stWitness:
		w.rewitness(ctx, n, key)
	}
	return r, true
}

// pairTrailers is handle.trailers for copies p and q of one record: the
// larger of their trailer counts when both are version 2 items whose
// envelopes are equal in every field, else -1.
func pairTrailers(p, q *copyRead) int {
	if p.st != stData || q.st != stData || p.env != q.env {
		return -1
	}
	np, okp := envelope.Trailers(p.raw)
	nq, okq := envelope.Trailers(q.raw)
	if !okp || !okq {
		return -1
	}
	return max(np, nq)
}
