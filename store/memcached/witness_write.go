package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// wout is what one conditional write's reply says.
type wout int

const (
	woStored   wout = iota
	woExists        // EX: the token changed
	woMissing       // NF, NS: the item is gone
	woOtherInc      // a token of another incarnation: not sent
	woLost          // sent, no reply, and the node has a new incarnation since
	woSilent        // no reply (timeout, reset, refused, the context ended)
	woServer        // an error reply
	woNotSent       // no connection could be made: nothing was sent (M2)
)

func classify(err error) wout {
	var se *serverError
	var ns *notSentError
	switch {
	case err == nil:
		return woStored
	case errors.Is(err, errExists), errors.Is(err, errAppendFull):
		// An append refused for size wrote nothing there either: a
		// refusal (witness_append.go).
		return woExists
	case errors.Is(err, errMiss), errors.Is(err, errNotStored):
		return woMissing
	case errors.Is(err, errAppendReplaced):
		// As a copy gone by its touch (appendGoneUnknown answers every
		// row but P stored, Q replaced: the completion).
		return woMissing
	case errors.Is(err, errOtherInc):
		return woOtherInc
	case errors.Is(err, errLostInc):
		return woLost
	case errors.As(err, &ns):
		// Before an error reply: a new connection's hello answered with
		// one (conn) precedes the request, which was not sent (before,
		// woServer: a write's outcome unknown).
		return woNotSent
	case errors.As(err, &se):
		return woServer
	}
	return woSilent
}

// unsent reports an outcome that wrote nothing: a refusal, or not sent.
func (o wout) unsent() bool { return o.refused() || o == woNotSent }

func (o wout) refused() bool { return o == woExists || o == woMissing || o == woOtherInc }

// unknown is the error of a write whose outcome cannot be known.
func unknown(what string, errs ...error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("memcached: %s: %w: %w", what, provider.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("memcached: %s: %w", what, provider.ErrOutcomeUnknown)
}

// written is a data copy a write stored: its node, candidate and new
// token.
type written struct {
	n   *node
	tok copyToken
}

// cas is R3, the common write, with the handle id of a read or an
// earlier write: both data copies in parallel, CAS with the handle's
// tokens, and a touch of the witness in the same round trip; then
// completion, undo or write failover by R3's table.
func (w *witness) cas(ctx context.Context, key string, value []byte, id uint64, ttl time.Duration) (uint64, error) {
	return w.write(ctx, key, value, nil, id, ttl)
}

// write is R3 for cas (value: the whole record) and for casAppend (delta:
// a lock change, sent as a trailer: witness_append.go). Both compute the
// same new record (envelope and payload) and go through the same table;
// an append differs only in what is sent to the data copies and in the
// bytes the new handle keeps for the undo.
func (w *witness) write(ctx context.Context, key string, value, delta []byte, id uint64, ttl time.Duration) (uint64, error) {
	exp, timeout, err := w.checkTTL(ttl)
	if err != nil {
		return 0, err
	}
	h, ok := w.handles.get(id)
	if !ok || h.key != key {
		return 0, fmt.Errorf("memcached: cas: %w: the handle was evicted or is of another key; nothing sent", provider.ErrCASConflict)
	}
	cs := w.candidates(key)
	p, q := cs[h.copies[0].cand], cs[h.copies[1].cand]
	if p.wh.isFailed() || q.wh.isFailed() {
		return 0, fmt.Errorf("memcached: cas: %w: a data copy's node is failed; nothing sent (read again to fail over)", provider.ErrCASConflict)
	}
	cfg := configOf(h.env)
	env := h.env.Next(rand.Uint64(), timeout)
	env.Digest = w.digest
	var ap *appendPlan
	if delta != nil {
		if ap, err = w.planAppend(h, env, delta); err != nil {
			return 0, err // nothing sent
		}
		value = ap.value
	}
	raw := env.Wrap(value)
	defer w.startWriting(env.ID())()
	top := w.touchOp(context.WithoutCancel(ctx), key, cs, cfg) // sent with the copies' commands
	var pcas, qcas uint64
	var perr, qerr error
	var ao appendOut
	if ap != nil {
		ao = w.sendAppend(ctx, key, h, ap, exp, top)
		pcas, qcas, perr, qerr = ao.pcas, ao.qcas, ao.perr, ao.qerr
	} else {
		pop := p.wcasOp(ctx, key, raw, exp, kindData, h.copies[0].cas, h.copies[0].inc, &pcas)
		qop := q.wcasOp(ctx, key, raw, exp, kindData, h.copies[1].cas, h.copies[1].inc, &qcas)
		wdoAll(pop, qop, top)
		perr, qerr = pop.err, qop.err
	}
	po, qo := classify(perr), classify(qerr)
	if lostTie(perr, qerr, po, qo, w.s.hooks.appendTieAnyCopy) {
		return 0, fmt.Errorf("memcached: cas: %w: %w", provider.ErrCASConflict, errors.Join(perr, qerr))
	}
	if appendGoneUnknown(perr, qerr, po, qo, w.s.hooks.appendReplacedAsGone) && !w.s.hooks.appendGoneAsMissing {
		return 0, unknown("cas: a copy took the append and was gone or replaced by its touch", perr, qerr)
	}
	pw := written{p, copyToken{cand: cfg.P, cas: pcas, inc: h.copies[0].inc}}
	qw := written{q, copyToken{cand: cfg.Q, cas: qcas, inc: h.copies[1].inc}}
	switch {
	case po == woStored && qo == woStored:
		if ap != nil {
			switch {
			case ao.later:
				// A copy holds a record built on this write (its touch
				// strayed onto it): applied, and written over since.
				// Success, with no usable handle (0: the caller reads
				// again).
				return 0, nil
			case ao.pread != nil || ao.qread != nil:
				// A copy's touch found this write re-stamped (a reader's
				// R4.4 or R9): the handle carries the re-stamp's token
				// (the append's would refuse the next write), and Q's
				// bytes as read; the copies may differ outside the
				// identity (a reader's completion copied one's bytes
				// onto the other): the next write is whole. (Only here:
				// the rows below keep the append's tokens, which prove
				// that nobody copied the write from the copy since, as
				// the undo needs.)
				base := ap.qbytes
				if ao.pread != nil {
					pw.tok = ao.pread.token()
				}
				if ao.qread != nil {
					qw.tok, base = ao.qread.token(), ao.qread.raw
				}
				return w.written(key, env, pw, qw, base, int64(exp), -1), nil
			}
			return w.written(key, env, pw, qw, ap.qbytes, int64(exp), ap.trailers), nil
		}
		return w.written(key, env, pw, qw, raw, int64(exp), 0), nil
	case po == woStored && (qo.refused() || qo == woLost):
		// A lost Q (sent, then a new incarnation: review 13e B1) is
		// as a refusal here: read Q, which is then empty or holds a
		// completion, and complete or fail over (R3's table).
		return w.completeWrite(ctx, key, cs, env, value, raw, exp, pw, ap != nil)
	case po == woStored && (qo == woSilent || qo == woNotSent):
		return w.writeFailover(ctx, key, cs, env, value, exp, ap != nil, pw, nil, qerr)
	case po == woExists && qo == woStored:
		if hold := w.s.hooks.beforeCompleteOwn; hold != nil {
			hold(key)
		}
		var tries ownTries
		id, ok, seen := w.completeOwn(ctx, key, h, env, raw, exp, pw, &qw, &tries)
		if ok {
			return id, nil
		}
		return w.undo(ctx, key, h, env, value, exp, ap != nil, pw, qw, perr, seen, &tries)
	case po.unsent() && qo == woStored:
		// M2: P not reached at all (the dial failed) is, for the undo, as
		// P refusing: nothing of this write is on P.
		return w.undo(ctx, key, h, env, value, exp, ap != nil, pw, qw, perr, seenNothing, &ownTries{})
	case (po == woSilent || po == woLost) && qo == woExists:
		// P may hold this write (sent, no reply); Q refused it.
		return w.refusedOver(ctx, key, cs, q, cfg.Q, wrote{env, value, exp, ap != nil}, "the secondary", perr, qerr)
	case po == woExists && (qo == woSilent || qo == woLost):
		return w.refusedOver(ctx, key, cs, p, cfg.P, wrote{env, value, exp, ap != nil}, "the primary", perr, qerr)
	case po == woMissing && qo == woMissing:
		return 0, fmt.Errorf("memcached: cas: %w: both copies gone", provider.ErrNotFound)
	case po == woNotSent && qo == woNotSent:
		return 0, fmt.Errorf("memcached: cas: %w: nothing sent: %w", provider.ErrUnavailable, errors.Join(perr, qerr))
	case po.unsent() && qo.unsent() && (errors.Is(perr, errAppendFull) || errors.Is(qerr, errAppendFull)):
		// Nothing written; the caller writes whole (provider.Appender).
		return 0, fmt.Errorf("memcached: cas: %w: %w", provider.ErrTooLarge, errors.Join(perr, qerr))
	case po.unsent() && qo.unsent():
		return 0, fmt.Errorf("memcached: cas: %w: %w", provider.ErrCASConflict, errors.Join(perr, qerr))
	}
	return 0, unknown("cas", perr, qerr)
}

// appendGoneUnknown is R3's table for an append one of whose copies took it
// and was gone by its touch (errAppendedGone; the model's appendGone,
// docs/replication.md, R3). The appended value sat on that copy,
// unfenced, until it went: a plain read may have returned it (both
// copies holding it), and a reader's R4.4 may have copied it onto the
// other copy, where it keeps that copy's own, longer life. So a gone copy
// never makes "not applied":
//   - P stored (and touched), Q gone: Q missing, as an NF on the CAS:
//     completeWrite, Q empty, the write failover;
//   - both gone, or one gone and the other refused because the key was
//     missing: not found, the session expired with the value (applied,
//     then expired: no call that starts later may return it);
//   - P gone and Q stored, or one gone and the other refused otherwise
//     (the token changed, another incarnation), not sent or silent:
//     ErrOutcomeUnknown, Q left as it is (the first fix undid Q and
//     answered a conflict: the model's AppendGoneRefused, a value a read
//     returned reported not applied; and the cold review's W1, a lock
//     refused while a reader had copied it onto Q; SetAppendGoneAsMissing).
//
// A copy replaced by its touch (errAppendReplaced: the touch found a
// record that neither holds this write nor was built on it, the model's
// rStray) is as a gone one, save that the key is not gone, so it never
// makes "not found": P stored, Q replaced: Q missing (completeWrite reads
// Q and CASes it to this write, or fails over, or finds it moved on);
// every other row with a replaced copy (P replaced; both replaced;
// replaced beside a gone, missing, refused, silent or unsent copy):
// ErrOutcomeUnknown, the copies left as they are.
//
// appendGoneUnknown reports the unknown rows (write answers them before
// the table); the table's own rows, a gone or replaced copy being
// woMissing, give the others. asGone is the broken variant
// (SetAppendReplacedAsGone): a replaced copy is a gone one in every row.
func appendGoneUnknown(perr, qerr error, po, qo wout, asGone bool) bool {
	pg, qg := errors.Is(perr, errAppendedGone), errors.Is(qerr, errAppendedGone)
	pr, qr := errors.Is(perr, errAppendReplaced), errors.Is(qerr, errAppendReplaced)
	if asGone {
		// The broken variant: replaced is gone, "not found" included.
		pg, qg, pr, qr = pg || pr, qg || qr, false, false
	}
	return pg && qo != woMissing || qg && po != woMissing && po != woStored ||
		pr || qr && po != woStored
}

// lostTie is R3's tie row for an append (the model's rTie): Q's touch
// found a rival write of the same base (errAppendLostTie) and P refused
// the append (EX, NF, another incarnation, too large): a conflict.
// Nothing of this write was returned (it was never on P, and a reader
// that completed it onto P would have kept the rival off Q: the same P
// token), and nothing of it is left (stress/replmodel TestAppendTouchGone,
// "holds, two writers and a reader"). A lost tie on P, or on both, is
// unreachable by the protocol's steps, but there the append was on its
// own primary: unknown, as every other row with a replaced copy
// (appendGoneUnknown; the tie row's cold review, m1).
//
// The same row takes Q's touch finding the append's base again
// (errAppendRolledBack, §16 item 6: a reader's roll-back, R4.4′, took
// the append back off Q): beside a P that refused it, the append was
// never on P, so no read returned it and no completion can copy it there.
func lostTie(perr, qerr error, po, qo wout, anyCopy bool) bool {
	refused := func(err error, o wout) bool {
		return o.refused() && !errors.Is(err, errAppendedGone) && !errors.Is(err, errAppendReplaced)
	}
	if anyCopy {
		// The broken variant: a lost tie on either copy, beside a
		// refusal or another lost tie.
		pt, qt := errors.Is(perr, errAppendLostTie), errors.Is(qerr, errAppendLostTie)
		return (pt || qt) && (pt || refused(perr, po)) && (qt || refused(qerr, qo))
	}
	return (errors.Is(qerr, errAppendLostTie) || errors.Is(qerr, errAppendRolledBack)) && refused(perr, po)
}

// refusedOver decides a write that one copy (n, candidate cand) refused
// while the other gave no reply (it may have stored it): unknown by R3's
// table, unless the refusing copy now holds a record of a greater epoch
// (a failover moved the session on meanwhile, as in the simulation's
// pause seeds: an app server that had not yet found the paused node
// failed wrote to it with a cached handle), which may make the outcome
// certain (overtaken).
func (w *witness) refusedOver(ctx context.Context, key string, cs candidates, n *node, cand uint8, wr wrote, which string, perr, qerr error) (uint64, error) {
	c, err := w.read(ctx, n, cand, key, " v c t f")
	if err != nil || c.st != stData || c.env.E <= wr.env.E {
		return 0, unknown("cas", perr, qerr, err)
	}
	id, err := w.overtaken(ctx, key, cs, &c, wr, which)
	if errors.Is(err, provider.ErrOutcomeUnknown) {
		return 0, fmt.Errorf("%w: %w", err, errors.Join(perr, qerr))
	}
	return id, err
}

// notBuiltOn reports that c holds a data record of env's configuration
// that is certainly not env and not built on it (envelope.Descends). A
// record of another lifetime (w.recreated) is of another chain, which
// says nothing of env's: the callers check.
func notBuiltOn(c *copyRead, env envelope.Envelope) bool {
	return c.st == stData && configOf(c.env) == configOf(env) && c.env.V >= env.V &&
		c.env.ID() != env.ID() && c.env.Descends(env) == envelope.NotDescendant
}

// written caches a write's configuration and returns the handle of the
// record it stored on p and q; raw is q's bytes, trailers what the handle
// knows of both copies' trailers (handle.trailers: -1 when the next write
// must not append).
func (w *witness) written(key string, env envelope.Envelope, p, q written, raw []byte, ttl int64, trailers int) uint64 {
	w.remember(key, configOf(env))
	w.rememberTimeout(key, env.Timeout)
	return w.handles.put(handle{key: key, env: env, copies: [2]copyToken{p.tok, q.tok}, base: raw, baseTTL: ttl, baseAt: time.Now(), trailers: trailers})
}

// completeWrite is R3's row "P stored, Q refused": read Q; if it holds this
// write, or a data record of the same configuration with a version not
// above this one (CAS it to this write, at most 2 tries): success; if it
// holds nothing or is silent: write failover; otherwise unknown.
func (w *witness) completeWrite(ctx context.Context, key string, cs candidates, env envelope.Envelope, value, raw []byte, exp int32, pw written, appended bool) (uint64, error) {
	cfg := configOf(env)
	qn := cs[cfg.Q]
	var last error
	// Implementation choice: up to 4 tries (R3 says at most 2): a refusal
	// here is usually a reader's completion of this very write landing on
	// Q, which the next read shows.
	for range 4 {
		c, err := w.read(ctx, qn, cfg.Q, key, anomalyFlags)
		if err != nil {
			return 0, unknown("cas: completing the secondary", err)
		}
		switch {
		case c.promisedAbove(env.E):
			// R11.3 (review-ballot M1): a decision promised a higher
			// epoch on Q since this write's read; the write is neither
			// put over the promise nor acknowledged from it.
			return 0, unknown("cas: a failover promised a newer configuration on the secondary")
		case c.holds(env.ID()):
			// Q's bytes as read (a reader's completion copied P's); P
			// may hold this write as a trailer: the next write is whole.
			if appended && !w.s.hooks.appendCompleteUntouched {
				// A reader's completion made from P's appended item
				// before P's touch gave Q P's old life (copyExp): touch
				// Q with T before acknowledging; gone by then, Q is
				// missing: the write failover (the model's
				// AppendCompleteUntouched).
				switch o, err := w.touchCompleted(ctx, qn, cfg.Q, key, c.cas, exp); o {
				case touchFailed:
					return 0, unknown("cas: touching the secondary a reader completed", err)
				case touchGone:
					// Gone (EN, or a blank a reader's get-or-blank left
					// on the miss: the cold review of the merged rules,
					// A1). The reader's completion re-stamped P first:
					// the failover fences P with its token now, unless
					// a decision promised a newer epoch there (R11.3).
					pc, err := w.read(ctx, pw.n, cfg.P, key, " v c t f")
					if err != nil || !pc.holds(env.ID()) || pc.promisedAbove(env.E) && !w.s.hooks.appendFailoverNoPromise {
						return 0, unknown("cas: the secondary a reader completed lapsed, and the primary changed", err)
					}
					gone := copyRead{n: qn, cand: cfg.Q, st: stAbsent}
					return w.writeFailover(ctx, key, cs, env, value, exp, appended, written{pw.n, pc.token()}, &gone, errAppendedGone)
				case touchChanged:
					return 0, unknown("cas: the secondary a reader completed changed before its touch")
				}
			}
			return w.written(key, env, pw, written{qn, c.token()}, c.raw, int64(exp), -1), nil
		case c.st == stData && configOf(c.env) == cfg && c.env.V <= env.V:
			qcas, err := qn.wcas(ctx, key, raw, exp, kindData, c.cas, c.inc)
			if err == nil {
				return w.written(key, env, pw, written{qn, copyToken{cand: cfg.Q, cas: qcas, inc: c.inc}}, raw, int64(exp), -1), nil
			}
			last = err
			if o := classify(err); o == woSilent || o == woLost {
				return 0, unknown("cas: completing the secondary", err)
			}
			continue
		case c.empty(), c.st == stSilent:
			return w.writeFailover(ctx, key, cs, env, value, exp, appended, pw, &c, c.err)
		case c.st == stData && configOf(c.env) == cfg && c.env.V > env.V:
			// Implementation note (not in the model): P holds this write
			// under the token it returned, so every later record of this
			// configuration was built on it: it was applied, and
			// overwritten since. Success, with no usable handle (0: the
			// caller reads again).
			return 0, nil
		case c.st == stData && c.env.E > cfg.E:
			// M2 (issue 13; the sim's partition seeds): a failover moved
			// the session to a configuration of a greater epoch while this
			// write was stored on P (overtaken).
			return w.overtaken(ctx, key, cs, &c, wrote{env, value, exp, appended}, "the secondary")
		}
		return 0, unknown("cas: the secondary holds another record")
	}
	return 0, unknown("cas: completing the secondary", last)
}

// touchOutcome is what touchCompleted found.
type touchOutcome int

const (
	touchStored  touchOutcome = iota // the copy read, touched
	touchFailed                      // no answer: the touch's outcome unknown
	touchGone                        // the copy gone (EN, or a blank left on the miss)
	touchChanged                     // another record since the read: its touch undone (untouch)
)

// touchCompleted touches with T<exp> the copy on n that a reader's
// completion made of an append (read with token cas): the completion may
// have copied the appended item before the append's own touch, with the
// old life (copyExp). Before such a write is acknowledged from that copy,
// the copy gets the write's T: completeWrite's row for Q
// (AppendCompleteUntouched) and the undo's "both copies hold it" row for
// P (UndoBothHeldUntouched), both found by the model.
func (w *witness) touchCompleted(ctx context.Context, n *node, cand uint8, key string, cas uint64, exp int32) (touchOutcome, error) {
	it, err := n.wget(ctx, key, " c f T"+strconv.FormatInt(int64(exp), 10))
	switch {
	case err != nil:
		return touchFailed, err
	case it.metaItem == nil, it.cas != cas && it.flags == 0:
		return touchGone, nil
	case it.cas != cas:
		// Another record since the read: it got this T.
		w.untouch(ctx, n, cand, key)
		return touchChanged, nil
	}
	return touchStored, nil
}

// wrote is a write overtaken decides: its envelope, its payload value, its
// expiry (T) and whether it was sent as an append (a trailer).
type wrote struct {
	env      envelope.Envelope
	value    []byte
	exp      int32
	appended bool
}

// overtaken decides a write (wr: its envelope and payload) of which one
// copy (c, read after it refused the write; which: "the primary" or "the
// secondary") holds a record of a greater epoch: a failover moved the
// session on while the write was in flight, and the other copy stored it
// or may have (it gave no reply). That record says whether it was built
// on this write (descent); if not, and the failover's other copy holds an
// established record of a greater epoch not built on it either (the
// fence's, once established, was copied there first: R7), no decision
// can ever take this write again: two nodes but the write's other copy
// hold records that outrank it, and every read sees one (R4.2's rank),
// so it is a certain conflict whatever that copy did with it. A fence
// (pending) alone may still lose its other copy's node to an opposite
// failover built on this write: unknown. Built on it: applied, and
// failed over since (success, handle 0: the caller reads again).
//
// §17: a record of the greater epoch at the write's own version that
// carries it (Carries: a decision made of this very write) counts only
// when established (rvcarry B1): a fence carrying the write may still
// lose to an opposite failover of its parent, so a pending one is decided
// by its other copy, as a pending one not built on it is. An append
// acknowledged so (from another process's decision, made maybe before
// the append's touch, with the old life: copyExp) first has the
// decision's two copies touched with its T (rvcarry M5, touchDecision):
// either not touched, unknown.
func (w *witness) overtaken(ctx context.Context, key string, cs candidates, c *copyRead, wr wrote, which string) (uint64, error) {
	env, value := wr.env, wr.value
	r := w.chainRules()
	d := descent(c, env, value, r)
	carried := d == envelope.Descendant && c.env.V == env.V // rests on Carries
	recreated := w.recreated(c, env)
	from := c
	if c.env.Pending && (d == envelope.NotDescendant || carried && !w.s.hooks.carriesPending) {
		wc, err := w.read(ctx, cs[c.env.Q], c.env.Q, key, " v c t f")
		if err != nil || wc.st != stData || wc.env.Pending || wc.env.E <= env.E {
			return 0, unknown("cas: "+which+" holds a failover's fence and its other copy no established record after it", err)
		}
		d = descent(&wc, env, value, r)
		carried = d == envelope.Descendant && wc.env.V == env.V
		recreated = recreated || w.recreated(&wc, env)
		from = &wc
	}
	switch {
	case d == envelope.Descendant && carried && wr.appended && !w.s.hooks.carriesNoTouch:
		if err := w.touchDecision(ctx, key, cs, from, wr.exp); err != nil {
			return 0, unknown("cas: "+which+" holds a decision carrying this append, not touched", err)
		}
		return 0, nil // applied, and failed over since
	case d == envelope.Descendant:
		return 0, nil // applied, and failed over since
	case d == envelope.NotDescendant && recreated:
		// A record of another lifetime (§16 item 5): the session was
		// created again since, and its chain tells nothing of this
		// write's.
		return 0, unknown("cas: " + which + " holds a newer configuration of a session created again since this write")
	case d == envelope.NotDescendant:
		return 0, fmt.Errorf("memcached: cas: %w: a failover moved the session on, not built on this write", provider.ErrCASConflict)
	}
	return 0, unknown("cas: " + which + " holds a newer configuration that may be built on this write")
}

// touchDecision touches with T<exp> both copies of the decision that c
// holds (its configuration's primary and secondary: the fence, pending or
// established, and the copy), each read first and required to hold that
// decision's record; an error unless both touches were stored
// (touchCompleted). rvcarry M5: a decision made of an appended item before
// the append's touch copied the old life.
//
// A copy that has moved on to a later record of the decision's
// configuration built on it (a client write, not a fence; up to
// envelope.Lineage versions on) is not touched and not an error
// (rvcarries2 R3 (a): the write is applied, as overtaken answers from
// such a record without a touch): that later write set its own life.
// Such a record may be one half of a split; its other copy, when it
// still holds the decision, is touched, so a copy of the session keeps
// the append's life whichever way the split is decided.
func (w *witness) touchDecision(ctx context.Context, key string, cs candidates, c *copyRead, exp int32) error {
	if h := w.s.hooks.touchDecisionHold; h != nil {
		h(key)
	}
	for _, cand := range []uint8{c.env.P, c.env.Q} {
		n := cs[cand]
		r, err := w.read(ctx, n, cand, key, " v c t f")
		if err != nil {
			return err
		}
		if r.st == stData && r.env.SameConfig(c.env) && !r.env.Pending && r.env.Descends(c.env) == envelope.Descendant && !w.s.hooks.touchMovedOnUnknown {
			continue
		}
		if r.st != stData || !r.env.SameConfig(c.env) || r.env.V != c.env.V || r.env.Nonce != c.env.Nonce {
			return errors.New("memcached: a copy of the decision holds another record")
		}
		if o, err := w.touchCompleted(ctx, n, cand, key, r.cas, exp); o != touchStored {
			return errors.Join(errors.New("memcached: a copy of the decision not touched"), err)
		}
	}
	return nil
}

// chainRules are the variants of descent's rules a Store's test hooks
// select (inChain).
type chainRules struct {
	off       bool // the code before §17: no Carries, no negative slot rule
	noNegSlot bool // rvcarry M2 not applied
}

// chainRules returns the rules w's hooks select.
func (w *witness) chainRules() chainRules {
	return chainRules{off: w.s.hooks.carriesOff, noNegSlot: w.s.hooks.carriesNoNegSlot}
}

// descent is inChain for a record c read from a node, with its payload:
// a record of a greater epoch at env's own version that does not name
// the write it carries (version 4 and below) and has env's parent is a
// failover of a write of that version (a client write of the greater
// epoch has a failover's nonce for parent), which carries its base's
// payload unchanged (R7; R3's write failover carries the write's own
// value): one whose payload is not env's is certainly not built on env.
// (The simulation's pause seeds 1249, 1319 and 3727 of 4000: the failover
// at the write's own version hid which write it was built on.)
func descent(c *copyRead, env envelope.Envelope, value []byte, r chainRules) envelope.Descent {
	d := inChain(c.env, env, r)
	if d == envelope.Unknown && c.env.V == env.V && !bytes.Equal(c.payload, value) {
		return envelope.NotDescendant
	}
	return d
}

// inChain says whether later, a record of a greater epoch than env's (a
// failover moved the session on while env, a client write, was written),
// has env in its chain of versions: certainly (envelope.Descendant),
// certainly not (NotDescendant), or Unknown.
//
// §17: every record names the client write whose value it carries
// (Carried: a decision its base's write, a client write itself), and an
// ancestor slot names the write its record carried. So:
//   - later at env's version that names the write it carries (version
//     5): Descendant when that is env (a decision made of env, through
//     any number of decisions; the caller requires it established,
//     rvcarry B1), else NotDescendant (a decision of a sibling, or a
//     client write of the greater epoch);
//   - later 1 to envelope.Lineage versions on: the slot of env's version
//     is env's nonce: Descendant; another (rvcarry M2, later of version
//     5): NotDescendant, the chain's record at env's version carried
//     another write;
//   - the parent-slot rule: the slot of env's parent's version holds
//     another nonce than env's parent: NotDescendant (the chain's record
//     at env's version has another parent);
//   - later below env's version: NotDescendant.
//
// The negative rules hold only with no process of an earlier release
// running (rvcarry M4): such a process's decision names itself, not its
// base's write, and a slot built on it would hide env.
func inChain(later, env envelope.Envelope, r chainRules) envelope.Descent {
	if later.V < env.V {
		return envelope.NotDescendant
	}
	if later.V == env.V && later.Carries != 0 && !r.off {
		if later.Carries == env.Nonce {
			return envelope.Descendant
		}
		return envelope.NotDescendant
	}
	if d := later.V - env.V; d >= 1 && d <= envelope.Lineage {
		if later.Ancestors[d-1] == env.Carried() {
			return envelope.Descendant
		}
		if later.Carries != 0 && !r.off && !r.noNegSlot {
			return envelope.NotDescendant
		}
	}
	if d := later.V - env.V + 1; d <= envelope.Lineage && later.Ancestors[d-1] != env.Ancestors[0] {
		return envelope.NotDescendant
	}
	return envelope.Unknown
}

// writeFailover is R3's write failover (R7 with this write as the base):
// read the witness node; only if it holds the witness of this
// configuration or data of a lower epoch, CAS P (with the token its store
// returned) to (E+1, P, W, V, value, pending), and only if stored, CAS W
// to the same record established. Both stored: success on {P, W}. y is
// the secondary's read when it answered (nil when silent): absent or
// blank (or a creation's record being failed over) marks the new
// configuration nowit, and an empty y queues the key for R9, which makes
// it the new witness (the lead's revision of review 4's D4).
//
// §17 (rvcarry M1): another process's failover of this same write may
// have won the race. The witness node holding a data record of a greater
// epoch is decided by it (overtaken: it carries this write, or is built
// on it, or not). The promise, the fence or the copy refused leaves at
// most a pending fence of either decision: the writer resolves the
// session (R4's bounded anomaly reads and decisions, as a read does:
// reclaimed) and answers from the established record it returns. Nothing
// established within the bound, or a witness node holding nothing (D6,
// the simulation's finalUnknown): unknown.
func (w *witness) writeFailover(ctx context.Context, key string, cs candidates, env envelope.Envelope, value []byte, exp int32, appended bool, pw written, y *copyRead, cause error) (uint64, error) {
	nowit := (y != nil && y.empty()) || creation(env)
	cfg := configOf(env)
	wc := cfg.wit()
	wn := cs[wc]
	wr := wrote{env, value, exp, appended}
	if h := w.s.hooks.writeFailoverHold; h != nil {
		h(key, false)
	}
	c, err := w.read(ctx, wn, wc, key, " v c t f")
	if err != nil {
		return 0, unknown("cas: write failover", cause, err)
	}
	if !(c.st == stWitness && configOf(c.env) == cfg) && !(c.st == stData && c.env.E < cfg.E) {
		if c.st == stData && c.env.E > cfg.E && !w.s.hooks.carriesOff {
			id, err := w.overtaken(ctx, key, cs, &c, wr, "the witness node")
			if errors.Is(err, provider.ErrOutcomeUnknown) {
				return 0, fmt.Errorf("%w: %w", err, cause)
			}
			return id, err
		}
		return 0, unknown("cas: the secondary is lost and the witness node holds no record to fail over to", cause)
	}
	if h := w.s.hooks.writeFailoverHold; h != nil {
		h(key, true)
	}
	// The decision carries this write (§17: Carries before the nonce).
	fence := env.Decision(rand.Uint64())
	fence.E, fence.Q = w.newEpoch(cfg.E, c), wc
	fence.Pending, fence.NoWit = true, nowit
	writing := sync.OnceFunc(w.startWriting(fence.ID()))
	defer writing()
	// R11.2: the new epoch promised on W first (W's own record, its
	// read's token); refused or unanswered, nothing is decided, and the
	// write is on P: resolved (reclaimed).
	if !w.promise(ctx, key, &c, fence.E, 0) {
		return w.reclaimed(ctx, key, cs, wr, "promising on the witness node", cause, nil, writing)
	}
	pcas, err := pw.n.wcas(ctx, key, fence.Wrap(value), exp, kindData, pw.tok.cas, pw.tok.inc)
	if err != nil {
		if classify(err).refused() {
			return w.reclaimed(ctx, key, cs, wr, "fencing the primary", cause, err, writing)
		}
		return 0, unknown("cas: write failover: fencing the primary", cause, err)
	}
	fence.Pending = false
	raw := fence.Wrap(value)
	wcas, err := wn.wcas(ctx, key, raw, exp, kindData, c.cas, c.inc)
	if err != nil {
		if classify(err).refused() {
			return w.reclaimed(ctx, key, cs, wr, "copying to the witness node", cause, err, writing)
		}
		return 0, unknown("cas: write failover: copying to the witness node", cause, err)
	}
	w.emit(provider.EventFailover, cs[cfg.Q], "a write moved a session's copy off this node", cause)
	w.afterFailover(key, y)
	p := written{pw.n, copyToken{cand: cfg.P, cas: pcas, inc: pw.tok.inc}}
	// P holds the pending fence: the next write is whole.
	return w.written(key, fence, p, written{wn, copyToken{cand: wc, cas: wcas, inc: c.inc}}, raw, int64(exp), -1), nil
}

// reclaimed decides a write whose write failover's step what (the promise,
// the fence or the copy) was refused (rvcarry M1): another process's
// decision is in flight on the session. It resolves the session (R4: the
// bounded anomaly reads, each with at most one decision, as a read does),
// this process's fence no longer noted as written (writing: resolve waits
// for no write of its own), this write named as the call's own
// (resolveOpts.own, rvcarries2 R2: a plain split of it on P is completed
// at once), and answers from the established record resolve returns: of
// a greater epoch, overtaken (carries this write or is built on it:
// success; not: a conflict); this write itself, or a record of its
// configuration built on it: success. Anything else, or no answer within
// the bound: unknown.
func (w *witness) reclaimed(ctx context.Context, key string, cs candidates, wr wrote, what string, cause, err error, writing func()) (uint64, error) {
	if w.s.hooks.carriesOff {
		return 0, unknown("cas: write failover: "+what, cause, err)
	}
	if h := w.s.hooks.writeFailoverRefused; h != nil {
		h(key)
	}
	writing()
	env := wr.env
	// rvcarries2 R2: the resolution names this write as its own. A plain
	// split of it on P (P this write, Q its parent) is completed by this
	// call at once: without it the resolution waited one Timeout on this
	// call's own in-flight mark (waitWriter) when this process had seen
	// the split before, or took the first sight itself and answered the
	// parent (unknown below), where the writer can complete its write.
	o := resolveOpts{own: env.ID()}
	if w.s.hooks.reclaimedNotOwn {
		o.own = envelope.Identity{}
	}
	f, rerr := w.resolve(ctx, key, cs, o)
	switch {
	case rerr != nil || f == nil:
		return 0, unknown("cas: write failover: "+what+" (not resolved)", cause, err, rerr)
	case f.b.E > env.E:
		id, oerr := w.overtaken(ctx, key, cs, &f.p, wr, "the session's newer configuration")
		if errors.Is(oerr, provider.ErrOutcomeUnknown) {
			return 0, fmt.Errorf("%w: write failover: %s: %w", oerr, what, errors.Join(cause, err))
		}
		return id, oerr
	case f.b.ID() == env.ID() && wr.appended && !w.s.hooks.carriesNoTouch:
		// This very append, on both copies of its configuration: the
		// copy on Q was made by a reader's completion, maybe before the
		// append's touch, with the old life (rvcarry M5 inside one
		// configuration, completeWrite's AppendCompleteUntouched row).
		if err := w.touchDecision(ctx, key, cs, &f.p, wr.exp); err != nil {
			return 0, unknown("cas: write failover: "+what+" (resolved to this append, not touched)", cause, err)
		}
		return 0, nil
	case f.b.ID() == env.ID(), configOf(f.b) == configOf(env) && f.b.Descends(env) == envelope.Descendant && !w.recreated(&f.p, env):
		return 0, nil // applied (handle 0: the caller reads again)
	}
	return 0, unknown("cas: write failover: "+what+" (resolved to another record)", cause, err)
}

// completeOwn: P refused this write only because its record was
// re-stamped (R4.4 or R9: the same identity as the handle's base, a new
// token), and Q stored it. Implementation choice, an instance of R4.4
// made by the writer itself: the split (P the base, Q this write, of
// greater rank) is completed as any reader would complete it: re-stamp Q
// (the token its store returned), and only if stored, CAS P to this write
// with the token just read. Both stored: success. Without it, a reader's
// completion that re-stamped P turns a write nobody else touched into an
// undo, which then races the readers completing this very write.
//
// seen is what its read of P, when P did not hold the base, proved
// (primaryShows; undo uses it).
//
// A re-stamp of Q that was stored and a CAS of P that was then refused
// leave qw with the re-stamp's token, for the undo (M2: with the token of
// the write's own store the undo was refused by this very re-stamp, and
// the call ended unknown though nobody else had touched Q). It is as safe
// as the undo with the store's token: both tokens stored in turn mean no
// completion re-stamped Q's copy of this write, so none copied it onto P
// (R0), and P refused this CAS.
//
// tries records what its read of P and its CAS of P did (ownTries).
func (w *witness) completeOwn(ctx context.Context, key string, h handle, env envelope.Envelope, raw []byte, exp int32, pw written, qw *written, tries *ownTries) (id uint64, ok bool, seen primarySeen) {
	c, err := w.read(ctx, pw.n, pw.tok.cand, key, " v c t f")
	if err != nil {
		return 0, false, seenNothing
	}
	tries.sawP(&c, env)
	if !c.holds(h.env.ID()) || c.promisedAbove(env.E) && !w.s.hooks.completeOwnOverPromise {
		// R11.3: a P promised above this write's epoch takes no
		// record of it (the undo's refusal then decides).
		return 0, false, w.primaryShows(&c, env)
	}
	qcas, err := qw.n.wcas(ctx, key, raw, exp, kindData, qw.tok.cas, qw.tok.inc)
	if err != nil {
		return 0, false, seenNothing
	}
	pcas, err := pw.n.wcas(ctx, key, raw, exp, kindData, c.cas, c.inc)
	if err == nil && w.s.hooks.completeOwnReplyLost {
		err = errors.New("test: the reply of the primary's completion CAS lost") // fault injection: stored, no reply
	}
	if err != nil {
		if !classify(err).unsent() {
			tries.maybeOnP = true // sent, no reply: it may land
		}
		if classify(err).refused() {
			qw.tok.cas = qcas // P certainly does not hold it: the undo may run
		}
		return 0, false, seenNothing
	}
	p := written{pw.n, copyToken{cand: pw.tok.cand, cas: pcas, inc: c.inc}}
	q := written{qw.n, copyToken{cand: qw.tok.cand, cas: qcas, inc: qw.tok.inc}}
	return w.written(key, env, p, q, raw, int64(exp), 0), true, seenNothing
}

// ownTries is what the writer's own completions (completeOwn: R3's, and
// the undo's) did to P, for the undo's row "not applied, however far"
// (docs/replication.md §16 item 4, L7″).
type ownTries struct {
	// maybeOnP: a completion CAS of P was sent and not refused (stored,
	// or no reply): P may hold the write (rv-roll M2).
	maybeOnP bool
	// pAbove: a read of P showed a record of a greater epoch than the
	// write's, or a promise above it. A defence: within one lifetime P's
	// epochs only grow, so a later read of P that answers a record of the
	// write's configuration (neverOnBoth's other condition) already
	// excludes it (cold review rv-build n1: no test reaches it alone).
	pAbove bool
}

// sawP notes a read c of P for the write env.
func (t *ownTries) sawP(c *copyRead, env envelope.Envelope) {
	if c.present() && (c.env.E > env.E || c.prom > env.E) {
		t.pAbove = true
	}
}

// primarySeen is what a read of P, after P refused a write, proves of the
// write's configuration's chain of versions at the write's version, within
// one lifetime of the session (from its creation to its deletion or loss;
// a configuration names no lifetime, so an id deleted and created again
// starts another chain in the home configuration: the envelope's lifetime
// tells them apart, w.recreated). P's record is on that chain: a record
// reaches P only by its own CAS there, by a completion from Q made while P
// holds a record of lower rank after Q was re-stamped (R4.4, R0; since
// R4.4′, not of a write on Q alone over its parent: that split is rolled
// back), or by the writer's own completion (completeOwn); a tie at one
// version is decided for the record on its own primary (R4.2).
type primarySeen uint8

const (
	seenNothing primarySeen = iota // nothing certain (P the base, another configuration, pending, unread)
	seenBeaten                     // P held a competitor: the chain runs through another write
	seenHeld                       // P held this write, or a record of its configuration built on it: the chain runs through this write
)

// primaryShows is what c, a read of P, proves about env (primarySeen):
// beaten when it is an established record of env's configuration at env's
// version that is not env, or a later one built on another write (then no
// completion can ever copy env onto P); held when it is env, not promised
// above env's epoch (R11.3), or a later record of the configuration built
// on env (its ancestors say so). A writer that reads again only after the
// session moved more than envelope.Lineage versions on can no longer
// tell by the ancestors (undo's stalled writer); what an earlier read of
// P proved still holds. A record of another lifetime (the session created
// again since: §16 item 5) proves nothing.
func (w *witness) primaryShows(c *copyRead, env envelope.Envelope) primarySeen {
	if c.st != stData || configOf(c.env) != configOf(env) || c.env.Pending || w.recreated(c, env) {
		return seenNothing
	}
	switch {
	case c.holds(env.ID()):
		if c.promisedAbove(env.E) {
			return seenNothing
		}
		return seenHeld
	case c.env.V == env.V:
		return seenBeaten
	case c.env.V < env.V:
		return seenNothing
	}
	switch c.env.Descends(env) {
	case envelope.Descendant:
		return seenHeld
	case envelope.NotDescendant:
		return seenBeaten
	}
	return seenNothing
}

// undo is R3's row "P refused, Q stored": CAS Q, with the token its store
// returned, back to the handle's base bytes, with the base's remaining
// TTL less the time since it was read (at least 1 s). Stored: the write
// certainly did not happen (ErrCASConflict); otherwise unknown.
//
// Implementation notes (not in the model): an undo refused because Q
// changed again reads both copies. Both hold this write: a reader's
// completion copied it onto P, so it is applied: success. Q holds a record
// of the same configuration, not this write, with a version not above
// this write's: a certain conflict: P never held this write (it refused
// it, and a completion onto P keeps this write's identity on Q until a
// newer version), so it is on no node and nothing was built on it. A
// later version of this configuration (up to envelope.Lineage later) on
// either copy tells by its ancestors whether it was built on this write
// (applied: success, handle 0) or, on both copies, not (conflict: one
// configuration has one chain of versions). These are common under contention (readers complete writes
// in flight), where R3's table alone answers unknown.
//
// Q still holding this write and P its base (the same identity, a new
// token) is the split any reader's R4.4 completes to this write: a
// completion in flight re-stamped Q (so the undo was refused) and has not
// CASed P yet, stalled or refused by a re-stamp of P. Five reads in a row
// found it unchanged and answered unknown (the likely trace of make soak's
// 500 in repair-every-default, 4 s after a flush with no fault in flight:
// P re-stamped by R9 re-making the flushed witness, which re-stamps P and
// then Q, its Q re-stamp refused by this write). The undo now completes
// it as completeOwn does, with Q's token just read (never over a promise
// on Q, R11.3) and wexp, the write's own expiry: both stored, success;
// refused, read again.
//
// seen is what completeOwn's read of P proved (primaryShows).
//
// beaten (seenBeaten): P held a competitor after refusing this write, so
// this write can reach P by no completion; it can survive only on Q, and
// only a failover from Q (a new epoch) can make it the truth. Q now
// holding a data record of this epoch and configuration therefore means
// it is gone: a certain conflict.
//
// P holding a record of a greater epoch (the handle was of the
// configuration before a failover, and Q, the failover's old copy, took
// the write: the simulation's partition seed 592, whose final request's
// undo was refused by the witness R9 had just made of that stale copy) is
// decided as a write stored on P over a failover is (overtaken): this
// write is at most on Q, below two nodes that outrank it.
//
// held (seenHeld, from completeOwn's read, or a read of the loop below,
// mostly its completeOwn's): P held this write or a record built on it.
// P gets this write only by a completion that re-stamped Q first (R0: the
// undo is then refused), so the write was on both copies at one instant:
// a read may have returned it, and within the session's lifetime every
// later record of the configuration is built on it. A writer that reads
// both copies again only after the session moved more than
// envelope.Lineage versions on (stalled: descheduled, a GC pause), where
// the ancestors no longer tell, answers success (handle 0), as for a
// later record the ancestors show built on it. Only then (far): P holding
// exactly an append a reader copied from Q may carry Q's old life
// (touchCompleted; the "both hold" row touches it first), and past
// Lineage versions every later write has rewritten P with its own T.
// Without held the answer was unknown (the stalled writer, seen in a
// clean-clone CI run's TestRealFaults/flush-one-node, second session of
// 2026-12-02; a writer stalled before any read of P showed the write
// still answers unknown). A row that would answer a conflict by the one
// chain (replaced on both copies; later versions built on another write;
// overtaken by a failover not built on it) contradicts held within one
// lifetime: the session was deleted and created again since, so the
// answer is unknown, never "not applied" for a write a read may have
// returned (cold review rv-held m1; before, a conflict).
//
// Lifetimes (§16 item 5): a configuration names no lifetime, so a session
// deleted or expired and created again starts over in its home
// configuration, and its records can pass for this write's competitors.
// A record of a known lifetime other than this write's (w.recreated) is
// of such a session: every row of certain conflict that would answer from
// it (the beaten re-read's "another write of this version won", replaced
// on both copies, later versions built on another write, overtaken)
// answers unknown instead, and it proves nothing for primaryShows or for
// beaten. With no lifetime known on either side (records written before
// lifetimes), the rows answer as before.
//
// Not applied, however far (§16 item 4, L7″; neverOnBoth): with none of
// its completion CASes of P possibly stored (tries), a write whose copies
// both hold other records of its configuration and lifetime was never on
// both copies (only its writer completes a write on Q alone: R4.4′), so a
// stalled writer past the ancestors answers a conflict, not unknown.
func (w *witness) undo(ctx context.Context, key string, h handle, env envelope.Envelope, value []byte, wexp int32, appended bool, pw, qw written, perr error, seen primarySeen, tries *ownTries) (uint64, error) {
	if w.s.hooks.undoStart != nil {
		w.s.hooks.undoStart(key)
	}
	beaten, held := seen == seenBeaten, w.provesHeld(seen)
	// Q's own expiry as read (issue 13: the elapsed whole seconds, not
	// rounded up, which took a second off the session).
	exp := restampExp(h.baseTTL-int64(time.Since(h.baseAt)/time.Second), h.env.Timeout)
	base := h.base
	if w.s.hooks.undoWholeBase {
		if e, payload, err := envelope.Decode(base); err == nil {
			base = e.Wrap(payload) // broken variant: the trailers compacted away
		}
	}
	_, err := w.wcasAgain(ctx, key, qw, false, env.ID(), base, exp, kindData)
	if err == nil {
		return 0, fmt.Errorf("memcached: cas: %w: %w", provider.ErrCASConflict, perr)
	}
	// An undo refused as of another incarnation was not sent: wcasAgain
	// found Q changed since (or could not tell it unchanged), where a
	// connection opened before a flush_all labels the live item's token
	// with the old incarnation (a label the pool keeps until its first
	// new connection, seconds after the flush maybe). Nothing of the undo
	// landed, as on a refusal: both copies decide below. Answered unknown
	// at once, it was a 500 two seconds after the last flush
	// (TestRealFaults/flush-seeded; TestUndoRefusedOtherIncDecided).
	if o := classify(err); o != woExists && (o != woOtherInc || w.s.hooks.undoOtherIncUnknown) {
		return 0, unknown("cas: undoing the secondary", perr, err)
	}
	if beaten {
		c, rerr := w.read(ctx, qw.n, qw.tok.cand, key, " v c t f")
		if rerr == nil && c.st == stData && configOf(c.env) == configOf(env) && !c.holds(env.ID()) {
			if w.recreated(&c, env) {
				return 0, unknown(recreatedSince, perr, err)
			}
			return 0, fmt.Errorf("memcached: cas: %w: another write of this version won: %w", provider.ErrCASConflict, perr)
		}
	}
	// Q changed again: read both copies (a few times while a reader's
	// completion of this write is in flight).
	far := false // a copy was past envelope.Lineage versions on: no ancestor tells
	for range 5 {
		var cp, cq copyRead
		var ep, eq error
		var wg sync.WaitGroup
		wg.Go(func() { cq, eq = w.read(ctx, qw.n, qw.tok.cand, key, " v c t f") })
		cp, ep = w.read(ctx, pw.n, pw.tok.cand, key, " v c t f")
		wg.Wait()
		if ep != nil || eq != nil {
			break
		}
		tries.sawP(&cp, env)
		if cp.holds(env.ID()) && cq.holds(env.ID()) {
			if cp.promisedAbove(env.E) || cq.promisedAbove(env.E) {
				// R11.3: not acknowledged from a promised copy.
				return 0, unknown("cas: undoing the secondary: a failover promised a newer configuration on a copy of this write", perr, err)
			}
			// A reader's completion (R4.4) copied this write onto P: it
			// is applied, on both copies, as a common read returns it.
			if appended && !w.s.hooks.undoBothHeldUntouched {
				// An append: the completion may have copied Q's appended
				// item before Q's touch, giving P Q's old life (copyExp),
				// as completeWrite's row for Q: touch P with the write's
				// T before acknowledging; P gone or replaced by then: not
				// acknowledged (helper undom: the model's
				// UndoBothHeldUntouched, one flush of Q then lost the
				// write after P expired early).
				switch o, terr := w.touchCompleted(ctx, pw.n, pw.tok.cand, key, cp.cas, wexp); o {
				case touchFailed:
					return 0, unknown("cas: undoing the secondary: touching the primary a reader completed", perr, terr)
				case touchGone:
					return 0, unknown("cas: undoing the secondary: the primary a reader completed was gone before its touch", perr, err)
				case touchChanged:
					return 0, unknown("cas: undoing the secondary: the primary a reader completed changed before its touch", perr, err)
				}
			}
			return w.written(key, env, written{pw.n, cp.token()}, written{qw.n, cq.token()}, cq.raw, cq.ttl, pairTrailers(&cp, &cq)), nil
		}
		if cp.st == stData && cp.env.E > env.E {
			id, oerr := w.overtaken(ctx, key, w.candidates(key), &cp, wrote{env, value, wexp, appended}, "the primary")
			return w.notApplied(held, id, oerr, perr)
		}
		if cq.st == stData && configOf(cq.env) == configOf(env) && cq.env.V <= env.V && cq.env.ID() != env.ID() {
			if w.recreated(&cq, env) {
				return 0, unknown(recreatedSince, perr, err)
			}
			return w.notApplied(held, 0, fmt.Errorf("memcached: cas: %w: replaced on both copies: %w", provider.ErrCASConflict, perr), perr)
		}
		for _, c := range []*copyRead{&cp, &cq} {
			if c.st == stData && configOf(c.env) == configOf(env) && c.env.Descends(env) == envelope.Descendant {
				return 0, nil // applied, and built on since
			}
		}
		if notBuiltOn(&cp, env) && notBuiltOn(&cq, env) {
			if w.recreated(&cp, env) || w.recreated(&cq, env) {
				return 0, unknown(recreatedSince, perr, err)
			}
			return w.notApplied(held, 0, fmt.Errorf("memcached: cas: %w: later versions were built on another write: %w", provider.ErrCASConflict, perr), perr)
		}
		if !held && w.neverOnBoth(&cp, &cq, env, tries) {
			return w.notApplied(held, 0, fmt.Errorf("memcached: cas: %w: the write was taken off its secondary before its primary held it (rolled back or undone), and the session moved on: %w", provider.ErrCASConflict, perr), perr)
		}
		for _, c := range []*copyRead{&cp, &cq} {
			far = far || c.st == stData && configOf(c.env) == configOf(env) && c.env.Descends(env) == envelope.Unknown
		}
		if notBuiltOn(&cp, env) && !w.recreated(&cp, env) {
			beaten = true // P is past this write on another chain (of this lifetime)
		}
		held = held || w.provesHeld(w.primaryShows(&cp, env))
		if !cq.holds(env.ID()) {
			break
		}
		if !beaten && cp.holds(h.env.ID()) && (!cq.promisedAbove(env.E) || w.s.hooks.undoCompleteOverPromise) && !w.s.hooks.undoNoComplete {
			// Q still holds this write and P its base: the split a
			// reader's R4.4 completes to this write. Its completer
			// re-stamped Q (the undo's refusal) and has not CASed P yet
			// (stalled, or refused by P's own re-stamp: R9's): complete
			// it as completeOwn does, with Q's token just read (not over
			// a promise on Q: R11.3; completeOwn reads P again and
			// declines over one there). Refused: read again.
			// A copy of qw: completeOwn records a refused P's token as
			// "the undo may run", true only of the write's own store
			// token on Q (rv-undo7 m2: with a read token, a stalled
			// reader's CAS of P may land in between).
			q := qw
			q.tok.cas, q.tok.inc = cq.cas, cq.inc
			id, ok, seen := w.completeOwn(ctx, key, h, env, env.Wrap(value), wexp, pw, &q, tries)
			if ok {
				return id, nil
			}
			held = held || w.provesHeld(seen)
			continue
		}
		if beaten && held && !w.s.hooks.undoHeldConflict {
			// P on another chain, Q still this write, after P held it:
			// another lifetime on P (held's comment); nothing put back.
			return 0, unknown(heldRecreated, perr, err)
		}
		if beaten {
			if cq.promisedAbove(env.E) {
				// R11.3 (review-r11 M1): the base is not put back over a
				// promise: the write stays on Q, unknown.
				return 0, unknown("cas: undoing the secondary: a failover promised a newer configuration on it", perr, err)
			}
			// Q still holds this write (a reader re-stamped it) and P
			// can never get it: undo again with Q's new token.
			if _, uerr := qw.n.wcas(ctx, key, base, exp, kindData, cq.cas, cq.inc); uerr == nil {
				return 0, fmt.Errorf("memcached: cas: %w: %w", provider.ErrCASConflict, perr)
			}
		}
	}
	if far && held {
		return 0, nil // applied (P held it), and built on since
	}
	if far {
		// M2's residual (issue 13): whether a reader's completion copied
		// this write onto P is told only by the ancestors of the records
		// after it; a writer that reads again only after more than
		// envelope.Lineage versions (stalled: descheduled, a GC pause)
		// before any read of P showed it cannot know.
		return 0, unknown(fmt.Sprintf("cas: undoing the secondary: %s", stalledWriter), perr, err)
	}
	return 0, unknown("cas: undoing the secondary", perr, err)
}

// neverOnBoth is the undo's row "not applied, however far" (L7″,
// docs/replication.md §16 item 4): no completion CAS of P of the writer's
// may have stored (tries.maybeOnP), no read of P showed a greater epoch
// (tries.pAbove), P answered a data record of the write's configuration
// and lifetime, and Q an established one of the write's exact
// configuration and lifetime that is not the write. Within one lifetime
// a write on Q alone reaches P in its configuration only by its writer's
// own completion (R4.4′ rolls such a split back, every other writer of
// data records needs the write on both copies or writes a greater
// epoch: L4″), so the write was never on both copies: no read returned
// it and nothing was built on it, and Q holding another record of the
// configuration means it was taken off Q (a roll-back, an undo). Records
// of no known lifetime (written before lifetimes, or by a process that
// completes such splits) never answer here, nor does a writer whose read
// of P showed the write held (held: success past the ancestors, which
// within one lifetime only its own completion can have made).
func (w *witness) neverOnBoth(cp, cq *copyRead, env envelope.Envelope, tries *ownTries) bool {
	if tries.maybeOnP && !w.s.hooks.maybeOnPIgnored || tries.pAbove || w.s.hooks.farNotAppliedOff {
		return false
	}
	ofWrite := func(c *copyRead) bool {
		return c.st == stData && configOf(c.env) == configOf(env) && (envelope.SameLifetime(c.env, env) || w.s.hooks.lifetimeIgnored)
	}
	return ofWrite(cp) && ofWrite(cq) && !cq.env.Pending && cq.env.ID() != env.ID()
}

// provesHeld reports whether seen proves the write held by P (seenHeld;
// never in the code before, SetUndoForgetsHeld).
func (w *witness) provesHeld(seen primarySeen) bool {
	return seen == seenHeld && !w.s.hooks.undoForgetsHeld
}

// heldRecreated is the reason given for the unknown outcome of an undo
// whose rows would answer a conflict though P held the write (notApplied).
const heldRecreated = "cas: undoing the secondary: the primary held this write, and the session was created again since"

// notApplied is an undo's answer of certain conflict (err, or id and err
// from overtaken), unless held: the write was then on both copies at one
// instant of the call, and the conflict says that the session was deleted
// and created again since (undo's held): unknown.
func (w *witness) notApplied(held bool, id uint64, err, perr error) (uint64, error) {
	if held && errors.Is(err, provider.ErrCASConflict) && !w.s.hooks.undoHeldConflict {
		// Not wrapped: errors.Is must not find the conflict.
		return 0, unknown(fmt.Sprintf("%s (%v)", heldRecreated, err), perr)
	}
	return id, err
}

// recreatedSince is the reason given for the unknown outcome of an undo
// whose row of certain conflict found a record of another lifetime: the
// session was deleted or expired and created again since this write, so
// its versions tell nothing of this write's chain (§16 item 5).
const recreatedSince = "cas: undoing the secondary: the session was created again since (a record of another lifetime)"

// stalledWriter is the reason given for the unknown outcome of a writer stalled past
// the ancestors its records keep (undo).
var stalledWriter = fmt.Sprintf("the session was more than %d versions past this write when its writer read it again", envelope.Lineage)
