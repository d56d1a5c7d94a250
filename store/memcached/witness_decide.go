package memcached

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// anomalyFlags are R4's read: value, token, TTL, client flags, and a blank
// made on a miss (N30); no T: an anomaly read never extends a TTL.
const anomalyFlags = " v c t f N30"

// resolveOpts say what kind of call runs the anomaly reads.
type resolveOpts struct {
	// touched: this call sent R2's witness touch (R10 is skipped).
	touched bool
	// touch: the call sets the session's TTL (GetAndTouch, Touch): the
	// data copies its decisions write get the session's timeout T, as its
	// own touch gives them after (review-r11 m3).
	touch bool
	// repair: the repair client, which runs R9 on the record it finds.
	repair bool
	// own: the write whose call runs the reads (the write failover's
	// resolution, reclaimed: rvcarries2 R2); a plain split of it ahead on
	// its primary is completed at once, neither put off nor waited for
	// (decide). The zero Identity names no record (every record's version
	// is at least 1).
	own envelope.Identity
}

// resolveState is what one resolve call carries from one anomaly read
// to the next.
type resolveState struct {
	// waited: a completion was put off once (decide).
	waited bool
	// refused: the last decision's promise, fence or copy was refused or
	// unanswered (configure), so the next read backs off first.
	refused bool
	// refusals counts the decisions refused so far.
	refusals int
	// writerUntil: the end of the call's budget for waiting on writes of
	// its own process before completing them (waitWriter): one Timeout
	// from its first such wait, at most half the time then left before
	// its deadline; zero before it.
	writerUntil time.Time
	// free: the last read does not count towards the cap (it led to a
	// wait for this process's writer, not to contention).
	free bool
}

// resolve is R4: anomaly reads, each followed by at most one decision
// (R4.4 completion, R7 failover), until one returns the session or an
// answer; at most maxAnomalyReads.
//
// Implementation choice: a read that shows progress (a record of a
// greater rank than any earlier read of this call: other writers are
// moving the session on) does not count towards the cap, up to
// maxBusyReads in all; the cap bounds reads that make no progress.
//
// Review-r11 m4 (review-ballot m3): a read that follows a refused
// decision (configure: R7, the re-ballot) is put off by a random back-off
// first (backoff), so that two processes deciding on the same key stop
// cancelling each other's ballots. Nothing else waits: the first read,
// and every read after a decision stored or none made, go at once.
func (w *witness) resolve(ctx context.Context, key string, cs candidates, o resolveOpts) (f *hit, err error) {
	if !o.repair {
		done := w.startResolving(key)
		defer func() { done(err == nil || errors.Is(err, provider.ErrNotFound)) }()
	}
	var st resolveState
	var top envelope.Envelope
	var seen bool
	for reads, counted := 0, 0; counted < maxAnomalyReads && reads < maxBusyReads; reads++ {
		if st.refused {
			st.refused = false
			st.refusals++
			if err := w.backoff(ctx, key, st.refusals); err != nil {
				return nil, err
			}
		}
		rs, err := w.anomalyRead(ctx, key, cs)
		if err != nil {
			return nil, err
		}
		progress := false
		if b, _, ok := best(&rs); ok && (!seen || rankLess(top, b)) {
			progress = seen // this read does not count
			top, seen = b, true
		}
		if !progress {
			counted++
		}
		f, decided, err := w.decide(ctx, key, cs, &rs, o, &st)
		if st.free {
			// The read led to a wait for this process's writer (not
			// contention): not counted, once (rv-wait m1: a read that
			// showed progress too was credited twice).
			st.free = false
			if !progress {
				counted--
			}
		}
		if errors.Is(err, errExpiring) {
			t := time.NewTimer(expiringWait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("memcached: %w: %w", provider.ErrUnavailable, ctx.Err())
			}
			continue
		}
		if err != nil || f != nil {
			return f, err
		}
		if !decided {
			return nil, fmt.Errorf("memcached: %w: no decision possible", provider.ErrUnavailable)
		}
	}
	return nil, fmt.Errorf("memcached: %w: %d anomaly reads without an answer", provider.ErrUnavailable, maxAnomalyReads)
}

// The back-off after a refused decision (resolve): uniform in [0, d)
// (full jitter), d = backoffBase doubled per refusal of the call, at most
// backoffMax. A decision is four round trips (its read, the promise, the
// fence, the copy), well under a millisecond on a LAN: the first window
// already spreads two deciders apart, and a call's back-offs are bounded
// by maxBusyReads × backoffMax (about 1 s, about half that expected).
const (
	backoffBase = time.Millisecond
	backoffMax  = 32 * time.Millisecond
)

// backoff waits before the read that follows the nth refused decision of
// a resolve call (review-r11 m4), or until ctx is done.
func (w *witness) backoff(ctx context.Context, key string, n int) error {
	if w.s.hooks.noBackoff {
		return nil
	}
	d := rand.N(min(backoffBase<<min(n-1, 16), backoffMax))
	if h := w.s.hooks.backoff; h != nil {
		h(key, n, d)
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		return fmt.Errorf("memcached: %w: %w", provider.ErrUnavailable, ctx.Err())
	}
}

// errWriteInFlight: the repair client found a write in flight (one copy
// holds its parent) for the first time and left it to its writer.
var errWriteInFlight = fmt.Errorf("memcached: %w: a write in flight, repair put off", provider.ErrUnavailable)

// errCallResolving: the repair client found a call of its own process
// resolving the key and left the decision to that call (decide,
// putOffForCall).
var errCallResolving = fmt.Errorf("memcached: %w: a call of this process is resolving the key, repair put off", provider.ErrUnavailable)

// errExpiring: the best record has at most clockSlack seconds left (no
// copy of it could be made, copyExp): no decision.
var errExpiring = fmt.Errorf("memcached: %w: the best record is expiring", provider.ErrUnavailable)

// expiringWait is how long a call waits for an expiring record to go.
const expiringWait = 1100 * time.Millisecond

// anomalyRead reads all three candidates in parallel (`mg … N30`); a
// failed node is not asked and reads as silent.
func (w *witness) anomalyRead(ctx context.Context, key string, cs candidates) ([3]copyRead, error) {
	return w.readAll(ctx, key, cs, anomalyFlags, true)
}

// readAll reads key on all three candidates in parallel with flags; with
// skipFailed a failed node is not asked and reads as silent.
func (w *witness) readAll(ctx context.Context, key string, cs candidates, flags string, skipFailed bool) ([3]copyRead, error) {
	var rs [3]copyRead
	var errs [3]error
	var wg sync.WaitGroup
	for i, n := range cs {
		rs[i] = copyRead{cand: uint8(i), n: n}
		if skipFailed && n.wh.isFailed() {
			continue
		}
		wg.Go(func() { rs[i], errs[i] = w.read(ctx, n, uint8(i), key, flags) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return rs, err
	}
	return rs, ctx.Err()
}

// silent reports whether c is a silent copy in R4.5's sense (§9): its node
// is failed, or it did not answer and its node is failed once
// FailoverAfter has passed since its first unanswered command.
func silent(ctx context.Context, c *copyRead) bool {
	if c.st != stSilent {
		return false
	}
	if !c.asked {
		return true
	}
	return c.n.wh.waitFailed(ctx)
}

// rankLess orders data records by rank (E, established, V).
func rankLess(a, b envelope.Envelope) bool {
	if a.E != b.E {
		return a.E < b.E
	}
	if a.Pending != b.Pending {
		return a.Pending
	}
	return a.V < b.V
}

// best is R4.2: the data record of greatest rank; among different records
// of that rank, the one held by more nodes, then the one on its own
// primary, then the lowest candidate. ok is false when there is no data.
func best(rs *[3]copyRead) (b envelope.Envelope, payload []byte, ok bool) {
	var bestHolders int
	var bestOwn bool
	for i := range rs {
		c := &rs[i]
		if c.st != stData {
			continue
		}
		holders := 0
		for j := range rs {
			if rs[j].holds(c.env.ID()) {
				holders++
			}
		}
		own := rs[c.env.P].holds(c.env.ID())
		better := !ok || rankLess(b, c.env) ||
			(!rankLess(c.env, b) && (holders > bestHolders || (holders == bestHolders && own && !bestOwn)))
		if better {
			b, payload, ok, bestHolders, bestOwn = c.env, c.payload, true, holders, own
		}
	}
	return b, payload, ok
}

// decide acts on one anomaly read: it returns the session (R4.3), an
// answer (R4.1, R4.6), or makes one decision (decided: read again).
//
// st.waited: a completion was already put off in this call. Implementation
// choice: the first completion (R4.4) or roll-back (R4.4′) a call wants is
// put off, and the call reads again. Most splits a read sees are writes in flight (the
// writer's second copy lands a moment later); completing them races the
// writer, whose CAS is then refused and whose outcome becomes unknown.
// Reading again makes no write, so it is always safe; a lasting split is
// completed one round trip later (once per call: under a stream of writes
// each read may see another split).
//
// st.refused is set when the decision made (R7, a re-ballot) was refused
// or unanswered.
func (w *witness) decide(ctx context.Context, key string, cs candidates, rs *[3]copyRead, o resolveOpts, st *resolveState) (f *hit, decided bool, err error) {
	if o.repair && w.s.hooks.repairPutsOffAll && w.putOffForCall(key) {
		return nil, false, errCallResolving // the first build of r9blank: every visit put off
	}
	// A call of this process resolving key makes the decisions a visit
	// would make on the same read (below: R4.1's fences and burials, the
	// lone copy's and R14's, which a touching call skips but whose
	// witness it makes young; R4.4's completion, R11.3's re-ballots, R7,
	// and R9 on a nowit configuration: R4.3), so the repair client puts
	// them off (putOffForCall, bounded). Deciding at once raced the call,
	// its own process: the repair's re-stamp of P refused the call's R9, the
	// call's completion (its re-stamp of x) the repair's R9 on Q, read
	// after read, and the call hit the cap of 6 reads (the simulation's
	// expiry seed 11238, "6 anomaly reads without an answer", with no
	// fault). What only the repair client does (R8's resumption, the
	// nowit clear under a witness already stored, R9 on a configuration
	// without nowit) is done at once: no call makes it (rv-r9 M1).
	putOff := func() bool { return o.repair && w.putOffForCall(key) }
	shorten := false // complete y with a second less (an expiring half-established pair)
	var data, empty int
	for i := range rs {
		switch {
		case rs[i].st == stData:
			data++
		case rs[i].empty():
			empty++
		}
	}
	b, payload, _ := best(rs)
	// R4.1.
	switch {
	case data == 0 && empty >= 2:
		if !(o.repair && allHeard(rs) && w.repair.resuming(key) && !w.s.hooks.putOffR8Drop) && putOff() {
			return nil, false, errCallResolving
		}
		// Review-ballot m4: with a candidate unheard, first re-stamp the
		// blanks counted, each with its read token, so that no CAS
		// holding a token read before (R9's witness CAS, its reply lost)
		// lands on one afterwards and, with a copy this read did not hear,
		// brings the session back. Refused or no reply: read again.
		if !w.s.hooks.notFoundUnfenced && !w.fenceBlanks(ctx, key, rs) {
			return nil, true, nil
		}
		if o.repair && allHeard(rs) && w.repair.resuming(key) {
			// R8's resumption: this process's creation of unknown
			// outcome has no record here. Its data CAS may still land
			// (late, or run by a paused node): re-stamp the blanks so
			// that it never does, and only then stop resuming it.
			// Refused: something landed; read again. With a candidate
			// unheard (the CAS may wait there) the key stays listed.
			if !w.s.hooks.resumeDropUnfenced && !w.restampCounted(ctx, key, rs) {
				return nil, true, nil
			}
			w.repair.forgetUnknown(key)
		}
		w.buryOldWitness(ctx, key, rs, o)
		return nil, false, w.notFound(key, rs, o)
	case data == 1 && empty == 2 && !b.NoWit && (!creation(b) || w.s.hooks.buryCreation):
		// Review 4's D3: bury the lone copy (CAS it to a blank with the
		// read's token) before answering not found, so that no late write
		// can give it a second present record; refused: read again.
		// Review 13e B2 (R0): first fence the two empties the decision
		// relies on (re-stamp their blanks with the read's tokens), and
		// bury only if both were stored.
		//
		// A creation's record (epoch 0, version 1) is never buried: it
		// stays ErrUnavailable (below: one copy and nothing to fail over
		// to) until it is written or expires. An Add in flight may have
		// stored its secondary only (the fence would stop it), but a
		// reader's R4.4 may also have established a creation's
		// configuration that its Add then left without a witness (its
		// undo), a value already returned, which one flush leaves alone
		// (review-lonewit m4's cold review, B1; the model's
		// BuryCreationFenced, rejected in TestLoneWitness).
		if putOff() {
			return nil, false, errCallResolving
		}
		if !w.fenceEmpties(ctx, key, rs) {
			return nil, true, nil
		}
		for i := range rs {
			if c := &rs[i]; c.st == stData {
				if _, err := w.casBlank(ctx, key, c); err != nil {
					return nil, true, nil
				}
			}
		}
		return nil, false, w.notFound(key, rs, o)
	case data == 0:
		for i := range rs {
			if errors.Is(rs[i].err, ErrNoMetaProtocol) {
				return nil, false, fmt.Errorf("memcached: %w: no data record answered: %w", provider.ErrUnavailable, rs[i].err)
			}
		}
		return nil, false, fmt.Errorf("memcached: %w: no data record answered", provider.ErrUnavailable)
	}
	x, y, third := &rs[b.P], &rs[b.Q], &rs[3-b.P-b.Q]
	touch := w.touchExp(o, b.Timeout)
	reballot := func(x, wc *copyRead) (*hit, bool, error) {
		if putOff() {
			return nil, false, errCallResolving
		}
		stored, err := w.reballot(ctx, key, rs, x, wc, b, payload, touch, "a promised copy re-balloted")
		st.refused = !stored && err == nil
		return nil, true, err
	}
	// R4.3.
	if !b.Pending && x.holds(b.ID()) && y.holds(b.ID()) {
		// R11.3: no record is returned from a copy promised above its
		// epoch: re-ballot b onto its two copies, the promised one as w.
		switch {
		case y.promisedAbove(b.E):
			return reballot(x, y)
		case x.promisedAbove(b.E):
			return reballot(y, x)
		}
		f := &hit{key: key, cs: cs, b: b, p: *x, q: *y}
		w.remember(key, configOf(b))
		switch {
		case o.repair:
			if b.NoWit && r9Candidate(third, b) && putOff() {
				return nil, false, errCallResolving // R9 as the call's R4.3 runs it
			}
			f.witnessed = w.repairWitness(ctx, f, third)
		case b.NoWit && r9Candidate(third, b) && !w.s.hooks.nowitR43Returns && !expiring(f):
			// Review-n4b F2: a plain reader does not return a nowit
			// configuration whose third node answered until R9 has
			// stored its witness there: it runs R9, then reads again
			// (R9's re-stamps changed both copies' tokens), or, R9 not
			// done, reads again after a back-off (the cap makes it
			// ErrUnavailable). With the witness there (R9's nowit clear
			// refused, or not yet run) it is returned, the key queued;
			// with the third node silent or answering an error, returned
			// as it is: R8's D6; so too on an expiring base (no decision
			// on it, review-2 m6: the session ends, or a touch extends it
			// and the next read runs R9).
			st.refused = !w.repairWitness(ctx, f, third)
			return nil, true, nil
		case third.st != stSilent && (b.NoWit || !ownWitness(third, b)):
			w.repair.enqueue(key)
		}
		return f, false, nil
	}
	if !x.holds(b.ID()) {
		x, y = y, x
	}
	if !x.holds(b.ID()) {
		return nil, false, fmt.Errorf("memcached: %w: the best record is on neither of its copies", provider.ErrUnavailable)
	}
	if _, ok := copyExp(x.ttl, b.Timeout); !ok {
		// review-2 m6: no decision on an expiring base. Implementation
		// choice: wait a second and read again (until it is gone, or
		// something touched it), instead of failing the call.
		//
		// Except the completion of a half-established failover (§4: y
		// holds b itself, still pending, the fence R7 or a re-ballot
		// left; x the copy it made): it copies nothing onto another
		// node. It re-stamps x (its expiry kept) and clears y's flag
		// with a second less than y's own t (complete's shorten), with
		// no touch floor. Waiting instead held the call until x expired
		// and then until y did (the copy made from a base with 3 or 4 s
		// left has 1 or 2: expiring at once), up to about 4 s for a
		// session whose fence had seconds to live (the simulation's
		// expiry seed 11238, a final request stuck). The second less
		// (cold review rv-half m1): y's node's clock may tick between
		// the read of t and the CAS, a second later in all; with R7's
		// failovers between copies that chain (a failover, this
		// completion, R9, the copy expiring, a failover back) kept a
		// session alive with no touch at all.
		if !halfEstablished(x, y, b) || w.s.hooks.halfEstablishedWaits {
			return nil, false, errExpiring
		}
		touch, shorten = 0, true
	}
	if o.repair && w.isWriting(b.ID()) {
		// Review of 2026-11-30, M1 (the sim's opposite seed 3428): b is
		// a write of this process still deciding its outcome (its own
		// completion, undo or write failover follows). Deciding on it
		// (R7's failover, R4.4's completion) raced the writer, whose
		// fence was then refused and whose outcome became unknown,
		// although the repair's failover was of this very write. The
		// repair client writes nothing and looks again a Timeout later.
		w.repair.later(key, w.s.cfg.Timeout)
		return nil, false, errWriteInFlight
	}
	if y.promisedAbove(b.E) {
		// R11.3: b is not completed onto a copy promised above it (nor
		// its parent returned from it): re-ballot, y as w.
		return reballot(x, y)
	}
	// rvcarries2 R2: the caller's own write, on its primary with its
	// parent on the secondary (P-ahead), is completed by the writer itself
	// (R4.4, as any reader completes it after its put-off), not answered
	// with its parent at a first sight nor waited for: the caller is its
	// writer, whose in-flight mark says only "my call may still decide
	// it", and its call decides it here (nothing of its call follows but
	// the answer). Its own sends still in flight cannot contradict the
	// completion: its CAS (or append) of Q carries the handle's token of
	// Q, so it lands only before the completion's CAS of Q (which it then
	// refuses: the next read finds the write on both) and is refused
	// after; either way Q ends holding this write.
	own := o.own.V != 0 && b.ID() == o.own && x.cand == b.P && inFlight(x, y, b)
	switch {
	case inFlight(x, y, b) && !own && (!o.repair || !w.s.hooks.repairCompletesInFlight) && w.firstSight(key, b.ID()):
		if o.repair {
			// Review 5's m4: the repair client keeps the first-sight rule
			// too. It needs no answer, so it writes nothing now and looks
			// again a Timeout later (the writer's second copy has landed,
			// or its call has given up on it by then): seen again, the
			// split is decided as a reader would (a Q-ahead one rolled
			// back, R4.4′; a P-ahead one completed). Completing at once
			// raced the live writer, whose CAS on y was then refused.
			w.repair.later(key, w.s.cfg.Timeout)
			return nil, false, errWriteInFlight
		}
		// Implementation choice (not in the model): a write in flight,
		// seen for the first time. Return its parent, which a common read
		// would have returned a moment earlier, without a usable handle
		// (0: a CAS with it is a conflict, nothing sent): the write is not
		// acknowledged yet (one copy holds its parent), so the read is
		// linearized before it. Seen again by a later call, it is
		// completed (an abandoned write) when P holds it, rolled back
		// (R4.4′) when Q alone does.
		return &hit{key: key, cs: cs, b: y.env, p: *y, q: *x, inFlight: true}, false, nil
	case y.present():
		plain := inFlight(x, y, b) // a plain split: b on x, its parent on y
		if plain && !own && !o.repair && !w.s.hooks.sameProcessCompletes {
			// §16 item 2: a write in flight of this process's own is
			// waited for, not completed (waitWriter).
			if waited, err := w.waitWriter(ctx, key, b.ID(), st); err != nil || waited {
				return nil, err == nil, err
			}
		}
		if !st.waited && !own {
			st.waited = true
			return nil, true, nil
		}
		if putOff() {
			return nil, false, errCallResolving
		}
		if creation(b) && y.st == stWitness && !w.s.hooks.completeOverWitness {
			// Review-resume-4 N4: a creation stopped at its secondary
			// with a witness of another configuration on its primary
			// (a late witness CAS of an earlier session of the id, on
			// the blank the Add read: the Add itself takes a lone
			// witness over before it writes; the Add's outcome unknown
			// at x, or its primary CAS refused by that witness and its
			// witness undone). Completing b over it made b whole
			// without its creator knowing, and after a Delete not
			// hearing x the creator's resumption served it again.
			// Re-ballot instead (R11.3's steps, y as w): a new
			// identity, which no resumption of b's matches, nowit as
			// every re-ballot of a creation (reballot; review-n4b F1).
			stored, err := w.reballot(ctx, key, rs, x, y, b, payload, touch, "a creation re-balloted over a foreign witness")
			st.refused = !stored && err == nil
			return nil, true, err
		}
		if plain && x.cand == b.Q && !w.s.hooks.splitCompletes {
			// §16 item 1, R4.4′: a Q-ahead plain split (b on its
			// configuration's secondary alone, its parent on the
			// primary) is rolled back, never completed: only its
			// writer's own completion may copy b onto P in its
			// configuration (L4″), so that the writer, however late,
			// can tell "not applied" from "applied".
			if x.promisedAbove(b.E) {
				// R11.3: no record of b's epoch goes onto Q, promised
				// above it (the roll-back's CAS would): re-ballot b
				// into a greater epoch, Q as w (promised again and
				// copied to), P fenced (rv-roll2 m2; the model's
				// reballot(y, x)).
				stored, err := w.reballot(ctx, key, rs, y, x, b, payload, touch, "a write on its promised secondary alone re-balloted")
				st.refused = !stored && err == nil
				return nil, true, err
			}
			// The parent's timeout, not b's (cold review rv-build m1):
			// Q gets the parent back, which lives by its own T.
			return nil, true, w.rollBack(ctx, key, x, y, w.touchExp(o, y.env.Timeout))
		}
		_, _ = w.complete(ctx, key, x, y, b, payload, touch, shorten, nil)
		return nil, true, nil
	case y.st == stSilent && !silent(ctx, y), y.empty() && third.st == stSilent && !silent(ctx, third):
		// §9: a copy that did not answer this read, on a node that has
		// answered since (restarted, or a connection reset): read it
		// again. Failing the call here failed every request in flight
		// at a node's restart a failover time later, with the node
		// back and empty (restart-node's 503s).
		return nil, true, nil
	case (y.empty() || y.st == stSilent) && third.present():
		if putOff() {
			return nil, false, errCallResolving
		}
		st.refused = !w.failover(ctx, key, rs, x, y, third, b, payload, touch)
		return nil, true, nil
	}
	if data == 1 && empty == 2 && o.repair && w.repair.resuming(key) {
		return w.resume(ctx, key, x, y, b, payload, touch)
	}
	if data == 1 && empty == 2 {
		// A creation's or a witness-less lone copy (R4.1 does not bury
		// them), both other candidates answered empty: unconfirmed, not
		// merely unreachable (tiered replaces it from its durable tier).
		return nil, false, fmt.Errorf("memcached: %w: one copy and nothing to fail over to", provider.ErrUnconfirmed)
	}
	return nil, false, fmt.Errorf("memcached: %w: one copy and nothing to fail over to", provider.ErrUnavailable)
}

// resume is R8's resumption, on a read that found b, a record of a key
// listed as this process's creation of unknown outcome, as the only data
// record, on x, beside two empty candidates, every candidate answering
// (b not listed: ErrUnconfirmed, as any lone creation copy). It completes b
// as R4.4 does (x re-stamped, then y's blank CASed), as the Add's late
// primary CAS would have, only when x is the secondary (the Add writes it
// first) and y the primary's blank, and, for an Add whose outcome was
// unknown at the primary, that very blank (the token its CAS targeted:
// that CAS has not landed, and nothing was there since). Before its own
// CAS to y it records the Add as unknown at the primary, onto y (review-
// resume-3 N2), and puts the record back if that CAS is refused. Stored,
// or any other lone copy of b (its secondary's copy removed since, by an
// acknowledged Delete, or the primary written since: review-resume B1,
// review-resume-2 N1), the key leaves the list; R9 then stores the
// witness. One resumption of a key runs at a time (review-resume-4 N3).
// A reader never completes b over a foreign witness on the primary: it
// re-ballots it, a new identity (review-resume-4 N4, R8).
func (w *witness) resume(ctx context.Context, key string, x, y *copyRead, b envelope.Envelope, payload []byte, touch int32) (*hit, bool, error) {
	// Review-resume-4 N3: one resumption of a key at a time in the
	// process (the loop and a scan visitor may both visit it), on the
	// entry as it is once claimed: a visit whose read came before
	// another's resumption must not put back what that one recorded.
	// Not b's (not listed, or its time passed): as any lone creation copy.
	rec, release, claimed := w.repair.claimResume(key, b.ID())
	if !claimed {
		return nil, false, fmt.Errorf("memcached: %w: one copy and nothing to fail over to", provider.ErrUnconfirmed)
	}
	defer release()
	ok := x.cand == b.Q && y.st == stBlank && (!rec.atP || y.cas == rec.p.cas && y.inc == rec.p.inc)
	switch {
	case w.s.hooks.resumeAnyCopy:
		ok = y.st == stBlank
	case w.s.hooks.resumeAnyBlank:
		ok = x.cand == b.Q && y.st == stBlank
	}
	if !ok {
		if x.cand == b.P || y.st == stBlank {
			w.repair.forgetUnknown(key)
		}
		return nil, false, fmt.Errorf("memcached: %w: one copy and nothing to fail over to", provider.ErrUnconfirmed)
	}
	// Review-resume-3 N2: this CAS may be stored with its reply lost, and
	// then the key still listed; from now on the creation is one unknown
	// at P, onto this very blank: a later visit resumes it only if the
	// blank is still there (the CAS did not land).
	asP := rec
	asP.atP, asP.p = true, copyToken{cand: y.cand, cas: y.cas, inc: y.inc}
	sent, err := w.complete(ctx, key, x, y, b, payload, touch, false, func() {
		if !w.s.hooks.resumeUnmarked {
			w.repair.updateUnknown(key, asP)
		}
	})
	switch {
	case sent && err == nil:
		w.repair.forgetUnknown(key)
		if b.NoWit {
			// Review-resume-3 m1: a creation without its witness
			// goes on the witness-less list, as R8's two-record form.
			w.repair.addWitless(key, configOf(b))
		}
	case sent && (classify(err).refused() || classify(err) == woNotSent && !w.s.hooks.resumeRestoreRefusedOnly):
		// Nothing of this landed on y: as it was. A CAS not sent (y's
		// node gone as it went out: its connection refused) cannot land
		// either; tied to y's blank, the entry would wait for a blank
		// the node's restart erases (rv-pk500 m1).
		w.repair.updateUnknown(key, rec)
	}
	return nil, true, nil
}

// fenceEmpties re-stamps the empty candidates of rs as blanks (T30), in
// parallel, each with the token its read returned, and reports whether
// all were stored. An absent one (no token to fence with) fails it.
func (w *witness) fenceEmpties(ctx context.Context, key string, rs *[3]copyRead) bool {
	errs := w.restampBlanks(ctx, key, rs)
	return errors.Join(errs[:]...) == nil
}

// fenceBlanks is R4.1's fence before a "not found" (review-ballot m4).
// When a candidate did not answer (silent, or a server error: it may hold
// a copy), it re-stamps, in parallel, each blank of rs that this read did
// not make, with the token its read returned, and reports whether all
// were stored. With all three heard and none data nothing is written: a
// late CAS on a blank cannot revive the session, since only an Add writes
// data onto a blank (a new session). A blank the read made (mg … N30 on
// a miss, the W flag) has a token no other process read before, and an
// absent candidate none: a CAS read before the read is refused there
// (NF, or EX on any item made since), so neither needs a write. A Get of
// an id with no session on healthy nodes therefore costs what it did (two
// round trips); only a not-found read with a node unheard and blanks
// made earlier costs one more, in parallel.
func (w *witness) fenceBlanks(ctx context.Context, key string, rs *[3]copyRead) bool {
	if allHeard(rs) {
		return true
	}
	return w.restampCounted(ctx, key, rs)
}

// allHeard reports whether every candidate of rs answered with an item
// or a miss (none silent, none a server error).
func allHeard(rs *[3]copyRead) bool {
	for i := range rs {
		if c := &rs[i]; c.st != stAbsent && c.st != stBlank && !c.present() {
			return false
		}
	}
	return true
}

// restampCounted re-stamps the blanks of rs that were there before the
// read (not those its own `mg … N30` made), in parallel, each with its
// read token, and reports whether all were stored.
func (w *witness) restampCounted(ctx context.Context, key string, rs *[3]copyRead) bool {
	var errs [3]error
	var wg sync.WaitGroup
	for i := range rs {
		if c := &rs[i]; c.st == stBlank && !c.won {
			wg.Go(func() { _, errs[i] = w.casBlank(ctx, key, c) })
		}
	}
	wg.Wait()
	return errors.Join(errs[:]...) == nil
}

// restampBlanks is fenceEmpties with each candidate's error: a blank
// re-stamped gets its new token in rs.
func (w *witness) restampBlanks(ctx context.Context, key string, rs *[3]copyRead) [3]error {
	var errs [3]error
	var wg sync.WaitGroup
	for i := range rs {
		c := &rs[i]
		switch c.st {
		case stAbsent:
			errs[i] = errMiss
		case stBlank:
			wg.Go(func() {
				var cas uint64
				if cas, errs[i] = w.casBlank(ctx, key, c); errs[i] == nil {
					c.cas = cas
				}
			})
		}
	}
	wg.Wait()
	return errs
}

// casBlank CASes c's item to a blank (T30, no flags) with the token c's
// read returned, and returns the new token: a blank's re-stamp (a fence),
// or the blanking of a record a decision no longer keeps (an Add's
// takeover of a lone witness, R4.1's burial, R14). Refused: something
// was written there since the read.
func (w *witness) casBlank(ctx context.Context, key string, c *copyRead) (uint64, error) {
	return c.n.wcas(ctx, key, nil, blankTTL, 0, c.cas, c.inc)
}

// halfEstablished reports whether x holds b with some life left and y
// holds the same record still pending, with some life left too: §4's
// Half-established state, a failover's fence on y and its copy on x (a
// base with t = 0 counts as expired: no decision, R4).
func halfEstablished(x, y *copyRead, b envelope.Envelope) bool {
	fence := b.ID()
	fence.Pending = true
	return !b.Pending && x.holds(b.ID()) && x.ttl >= 1 && y.st == stData && y.env.ID() == fence && y.ttl >= 1
}

// inFlight reports that x holds b and y b's parent: two established
// records of one configuration, one version apart, the later built on the
// earlier (a client write that reached one copy). The parent slot names
// the write its parent carried (§17: a decision's base's write).
func inFlight(x, y *copyRead, b envelope.Envelope) bool {
	return x.holds(b.ID()) && y.st == stData && !b.Pending && !y.env.Pending &&
		configOf(y.env) == configOf(b) && y.env.V+1 == b.V && b.Ancestors[0] == y.env.Carried()
}

// writer is this process's count of writes storing one record
// (startWriting), and done, closed when the count drops to 0.
type writer struct {
	n    int
	done chan struct{}
}

// startWriting notes that this process is storing the record id, until
// the returned function is called.
func (w *witness) startWriting(id envelope.Identity) (done func()) {
	w.mu.Lock()
	wr := w.writing[id]
	if wr == nil {
		wr = &writer{done: make(chan struct{})}
		w.writing[id] = wr
	}
	wr.n++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		if wr.n--; wr.n <= 0 {
			delete(w.writing, id)
			close(wr.done)
		}
		w.mu.Unlock()
	}
}

// waitWriter is §16 item 2 (rv-roll2 M2): a call (not the repair client)
// that would complete a write in flight seen again (decide's inFlight)
// which this process is writing (its call may be deciding it: its own
// completion, undo or write failover) waits for that write's call to end,
// holding no lock, and reports waited: the caller reads again. Completing
// it raced the writer: P refused, Q stored, the call completing it before
// the writer read P, and a writer that reads again only past
// envelope.Lineage versions could not tell it was completed
// (ErrOutcomeUnknown with no fault: the stalled writer).
//
// A call waits within one budget (st.writerUntil): one Timeout from its
// first wait, at most half the time left before its deadline (cold review
// rv-wait m2: a call with a short deadline still falls back in time), so a
// writer stuck on a silent node holds its process's readers no longer;
// under contention a call may meet several of its process's writes in
// turn, each waited for within the budget. Past it (waited false) the
// call decides as another process's would, without the put-off, which the
// wait replaced (st.waited): a Q-ahead split rolled back (R4.4′: no call
// but the writer's own completes it, so the writer answers a conflict),
// a P-ahead one completed. The read that led to a wait is not counted
// towards the cap (st.free: a wait for this process's writer is not
// contention; the reads stay bounded by maxBusyReads). A ctx that ends
// while waiting is ErrUnavailable.
func (w *witness) waitWriter(ctx context.Context, key string, id envelope.Identity, st *resolveState) (waited bool, err error) {
	w.mu.Lock()
	wr := w.writing[id]
	w.mu.Unlock()
	if wr == nil {
		return false, nil
	}
	if st.writerUntil.IsZero() {
		d := w.s.cfg.Timeout
		if dl, ok := ctx.Deadline(); ok && time.Until(dl)/2 < d {
			d = time.Until(dl) / 2
		}
		st.writerUntil = time.Now().Add(d)
	}
	d := time.Until(st.writerUntil)
	if d <= 0 {
		return false, nil
	}
	st.waited, st.free = true, true
	if h := w.s.hooks.writerWait; h != nil {
		h(key)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-wr.done:
	case <-t.C:
	case <-ctx.Done():
		return false, fmt.Errorf("memcached: %w: waiting for this process's write in flight: %w", provider.ErrUnavailable, ctx.Err())
	}
	return true, nil
}

// callsResolving is the count of this process's calls resolving one key
// (resolve), and, with SetRepairPutsOffAll only, whether the repair
// client put a visit of it off (queued again when the count drops to 0).
type callsResolving struct {
	n      int
	putOff bool
}

// putOffs is the repair client's record of visits of one key it put off
// in a row (putOffForCall): how many, when the first was put off, and
// whether a visit is queued again for a Timeout later. It lasts one
// episode of the key, which ends (endEpisode: the record deleted, or
// its count cleared while its re-queue is pending) at a visit of the key
// that is not put off (putOffForCall, repairKey's endVisit) and when a
// call of this process resolving the key answers (the session, or not
// found: startResolving's done), which made the decisions put off for it
// or found none due. Kept, it outlived its episode and its count made the
// next episode's first visit decide at once while a call resolved the
// key (rv-r9b M1). A call that fails (its deadline, the cap) ends no
// episode: a stream of such calls, overlapping or one after another,
// keeps the count, and no clock ends it either, so a visit the loop
// brings late (busy with other keys' visits) still counts (rv-r9c m1:
// r9fix2's record counted as absent once its last put-off was 4
// Timeouts old, and with visits that sparse the bound never fired).
type putOffs struct {
	n      int
	first  time.Time
	last   time.Time // SetPutOffRecordAges only
	queued bool
}

// putOffBound is how many visits of a key in a row the repair client
// puts off for calls of its own process (putOffForCall) before one that
// comes a Timeout or more after the first decides all the same. A key
// the process's calls keep resolving (a hot session) is decided within
// about putOffBound Timeouts (the put-offs' re-queues) while none of
// its calls answers (an answer ends the episode and starts the count
// again: docs/replication.md §14): one decision in that time races a
// call, at most a refusal (rv-r9 M1). Visits the calls' own enqueues
// bring in a burst do not use the bound up (rv-r9b m1).
const putOffBound = 3

// endVisit ends the episode of key's putOffs record (endEpisode): a
// visit of key ended without being put off (repairKey).
func (w *witness) endVisit(key string) {
	if w.s.hooks.putOffRecordKept {
		return
	}
	w.mu.Lock()
	w.endEpisode(key)
	w.mu.Unlock()
}

// endEpisode ends the episode of key's putOffs record (w.mu held): the
// record is deleted, or, while a re-queue it set is pending, its count
// is cleared and the record left for that re-queue, whose visit deletes
// it (or its drop, if the queue is full: requeueDropped). So a key has at most one
// re-queue pending at a time (rv-r9d (a): deleted at once, the next
// put-off set a second timer beside the pending one).
func (w *witness) endEpisode(key string) {
	p := w.putOffs[key]
	switch {
	case p == nil:
	case p.queued && !w.s.hooks.requeuesStack:
		p.n = 0
	default:
		delete(w.putOffs, key)
	}
}

// startResolving records that a call of this process (not the repair
// client) is resolving key until done is called; done(true), the call
// answered, also ends the episode of key's putOffs record.
func (w *witness) startResolving(key string) (done func(answered bool)) {
	w.mu.Lock()
	c := w.resolving[key]
	if c == nil {
		c = &callsResolving{}
		w.resolving[key] = c
	}
	c.n++
	w.mu.Unlock()
	if h := w.s.hooks.callResolving; h != nil {
		h(key)
	}
	return func(answered bool) {
		w.mu.Lock()
		c.n--
		visit := c.n == 0 && c.putOff
		if c.n == 0 {
			delete(w.resolving, key)
		}
		if answered && w.answerEndsEpisode(c.n == 0) {
			w.endEpisode(key)
		}
		w.mu.Unlock()
		if visit {
			w.repair.enqueue(key) // SetRepairPutsOffAll: at once
		}
	}
}

// answerEndsEpisode reports whether a call's answer ends the episode of
// its key's putOffs record: always, but in the test builds before the
// episode rule (the record kept, outliving its episode, or ageing) and
// in SetPutOffEndsAtLastCall's, where only the last call (last) ends it.
func (w *witness) answerEndsEpisode(last bool) bool {
	h := &w.s.hooks
	return !h.putOffRecordKept && !h.putOffOutlivesEpisode && !h.putOffRecordAges && (last || !h.putOffEndsAtLastCall)
}

// putOffForCall reports whether the repair client puts off its decision
// on key: a call of this process is resolving key, and fewer than
// putOffBound visits of key in a row were put off or the first of them
// less than a Timeout ago (in one episode: putOffs). A visit put off
// queues key again a Timeout later, one at a time (rv-r9 M2: queued again
// at once when the last call ended, a hot key had the loop visit it
// thousands of times a second); a visit that decides starts the count
// again.
func (w *witness) putOffForCall(key string) bool {
	if w.s.hooks.repairRacesCalls {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.resolving[key]
	if w.s.hooks.repairPutsOffAll {
		if c != nil {
			c.putOff = true
		}
		return c != nil
	}
	now := time.Now()
	p := w.putOffs[key]
	if p != nil && w.s.hooks.putOffRecordAges && now.Sub(p.last) > (putOffBound+1)*w.s.cfg.Timeout {
		p = nil // r9fix2: taken for a record left from an episode over
	}
	if c == nil || p != nil && !w.s.hooks.putOffUnbounded &&
		p.n >= putOffBound && (w.s.hooks.putOffRecordKept || now.Sub(p.first) >= w.s.cfg.Timeout) {
		// This visit decides: the episode ends (no call resolving, or
		// the bound), its record left to a pending re-queue.
		if w.s.hooks.putOffRecordKept {
			delete(w.putOffs, key) // r9fix's build
		} else {
			w.endEpisode(key)
		}
		return false
	}
	created := p == nil
	if created {
		p = &putOffs{}
		w.putOffs[key] = p
	}
	if p.n == 0 && (created || !w.s.hooks.putOffFirstKept) { // the episode's first put-off (a record left for its re-queue has none)
		p.first = now
	}
	p.n++
	p.last = now
	if !p.queued {
		w.requeue(key, p)
	}
	return true
}

// requeue queues key again a Timeout later for the put-off visits p
// records (w.mu held): p.queued is set until then, so a key has one such
// re-queue at a time.
func (w *witness) requeue(key string, p *putOffs) {
	p.queued = true
	time.AfterFunc(w.s.cfg.Timeout, func() {
		if h := w.s.hooks.requeueFired; h != nil {
			h(key)
		}
		// The flag is cleared before the visit it queues can reach the
		// check (rv-r9b m2), and w.mu held until a drop is handled (the
		// enqueue does not wait): no put-off comes between, whose own
		// re-queue a drop's would then stand beside (rv-r9e n1).
		w.mu.Lock()
		p.queued = false
		queued := w.repair.enqueue(key)
		if !queued {
			w.requeueDropped(key, p)
		}
		w.mu.Unlock()
		if h := w.s.hooks.requeueDropped; !queued && h != nil {
			h(key)
		}
	})
}

// requeueDropped handles a re-queue of key for the put-off visits p
// records that the repair queue dropped (full; w.mu held). While a call
// of this process still resolves key, p's episode goes on: the record
// and its count are kept and the re-queue is tried again a Timeout
// later, so the bound still fires in that episode, by the re-queue's
// visit or by one the next read's R4.3 or witness touch, the scan or the
// lists' ticks bring (rv-r9d (b): deleted, the count started again at
// that visit, and while the queue stayed full the bound might never
// fire). Once no call resolves key, or the episode ended (its count
// cleared), the record is deleted: a call always ends (its answer, its
// deadline), so a record retried leaks no more than one with no re-queue
// would (rv-r9b M1).
func (w *witness) requeueDropped(key string, p *putOffs) {
	switch {
	case w.putOffs[key] != p:
		// Deleted since, and maybe another's: none of this re-queue's.
	case p.n > 0 && w.resolving[key] != nil && !w.s.hooks.requeueDropDeletes:
		w.requeue(key, p)
	default:
		delete(w.putOffs, key)
	}
}

// isWriting reports whether this process is storing the record id.
func (w *witness) isWriting(id envelope.Identity) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writing[id] != nil
}

// firstSight records that key's read saw the write in flight id and
// reports whether it is the first time.
func (w *witness) firstSight(key string, id envelope.Identity) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.splits[key] == id {
		return false
	}
	if _, ok := w.splits[key]; !ok && len(w.splits) >= maxSplits {
		// Review 5's m6: make room by forgetting one other key (its
		// split, seen again, is answered with its parent once more), not
		// every key at once.
		for k := range w.splits {
			delete(w.splits, k)
			break
		}
	}
	w.splits[key] = id
	return true
}

// buryOldWitness is R14: an anomaly read that heard all three
// candidates, no data record, and a lone witness older than its
// session's timeout plus oldWitnessAfter (TW − t: every witness write and
// touch gives TW) buries it: both blanks re-stamped with their read
// tokens first (R0: an Add in flight or abandoned, whose data CAS holds a
// blank's token read before, is refused after that), then the witness
// CASed to a blank with its read token. The answer is R4.1's "not found"
// either way (every candidate heard, none holds data); the burial only
// keeps a later fault from turning this expired session into
// "undecidable": with the witness left, a data copy's node dying before
// the witness expires (TW) made every read of the id ErrUnavailable (a
// 503) for as long as the node stayed down (the expiry probes' kill-node
// defect). The age keeps the rule off an Add's witness (it writes the
// witness before its data copies, milliseconds apart) and off R10's
// case; safety does not rest on it. A call that touched the witness
// itself (GetAndTouch, Touch: o.touched, R2's touch gives it TW) buries
// nothing (review-r14 M1): burying there refused tiered's revival Adds
// racing such reads (the conformance suite's I6 on tiered saw two
// InitializeItem holders once); plain Gets and the repair scan's visits
// bury it once no touching read came for T + 10 s. Such a call is told by
// o.touched, not by the witness's age: its touch is not waited for and
// goes on a connection of its own (on a goroutine when it dials), so the
// anomaly read may reach the witness first and read it as old as before
// (the flake of TestOldWitnessGetAndTouch, third session of 2026-12-01:
// the GetAndTouch re-stamped both blanks and buried the witness).
// Refused or unanswered: left as it was (a CAS unanswered may
// still run: R9 re-stamps a witness it adopts before relying on it,
// fenceWitness). A promised witness is buried too (review-r14 m5): the
// promising decision's fence is a CAS of a data copy with that copy's
// read token, and both other candidates were read blank and are
// re-stamped first (R11's argument for R9 writing over a promise); its
// copy onto this node holds the promise's token, which the burial
// replaces.
func (w *witness) buryOldWitness(ctx context.Context, key string, rs *[3]copyRead, o resolveOpts) {
	if w.s.hooks.keepOldWitness {
		return
	}
	if o.touched && !w.s.hooks.buryTouched && !w.s.hooks.buryAnyAge {
		return
	}
	var wit *copyRead
	for i := range rs {
		switch c := &rs[i]; {
		case c.st == stWitness && wit == nil:
			wit = c
		case !c.empty():
			return // a candidate unheard, or a second witness
		}
	}
	if wit == nil {
		return
	}
	if int64(w.tw)-wit.ttl <= int64(wit.env.Timeout)+int64(oldWitnessAfter/time.Second) && !w.s.hooks.buryAnyAge {
		return
	}
	if !w.s.hooks.buryUnfenced && !w.fenceEmpties(ctx, key, rs) {
		return
	}
	if h := w.s.hooks.beforeBury; h != nil {
		h(key)
	}
	if w.s.hooks.buryFreshToken {
		if r, err := w.read(ctx, wit.n, wit.cand, key, " v c t f"); err == nil {
			wit.cas = r.cas
		}
	}
	if _, err := w.casBlank(ctx, key, wit); err == nil {
		w.emit(provider.EventRepair, wit.n, "an expired session's witness buried (R14)", nil)
	}
}

// oldWitnessAfter is how much older than its session's timeout a lone
// witness must be for R14 to bury it: far longer than an Add takes
// between its witness and its data copies.
const oldWitnessAfter = 10 * time.Second

// notFound is R4.1's "not found", told apart by R10: ErrSessionLost when a
// witness answered with more than TW − T left (touched less than T ago:
// both data copies were lost), unless this call touched it itself.
func (w *witness) notFound(key string, rs *[3]copyRead, o resolveOpts) error {
	w.repair.forget(key)
	if !o.touched {
		for i := range rs {
			c := &rs[i]
			if c.st == stWitness && c.ttl > int64(w.tw)-int64(c.env.Timeout) {
				w.emit(provider.EventRepair, c.n, "session lost: its witness is fresh and both data copies are gone", provider.ErrSessionLost)
				return fmt.Errorf("memcached: %w", provider.ErrSessionLost)
			}
		}
	}
	return fmt.Errorf("memcached: %w", provider.ErrNotFound)
}

// restampExp is the expiration of an internal write (a decision, R9, an
// undo) that rewrites a record on the node it was read from with t
// seconds left, as `mg … t` reported them: t itself. That node's clock
// counts t, so the item keeps its expiry (or gets a second more, when the
// clock ticked between the read and the write). Issue 13 (the sim's early
// expiry): it was t − 1, and every decision on the same node then took a
// second off the session: a failover, the completion and R9's re-stamps
// and nowit clear that follow it cut a session's life by 4 s within
// milliseconds, below the timeout its last client access set. A rewrite
// that only changes the token keeps the expiry exactly (wrestamp).
//
// Review 13e M1: capped at what a client write of the record's own
// timeout T (from its envelope) gets, timeoutExp(T) (not T: that took a
// second off a session a client had just touched): a correct copy never
// has more, and a copy that a stale-configuration witness touch gave TW
// must not pass it on (R9's larger t, D2).
func restampExp(t int64, timeout uint32) int32 {
	return int32(max(1, min(t, maxRelativeExpiration, int64(timeoutExp(timeout)))))
}

// copyExp is the expiration of an internal write that copies a record
// with t seconds left onto another node (R4.4's and R7's copy, D2's carry
// of the larger t): t − clockSlack, capped as restampExp, and no decision
// (ok false) below 1. memcached's clock is whole seconds and lags real
// time by up to clockSlack (expiration), each node's at its own phase, so
// a record reported with t left lives between t − clockSlack and t more
// seconds; a copy made with T<t> on another node could outlive its source
// by up to clockSlack, and a chain of failovers between copies expiring
// at different instants then kept an expired session alive (the
// conformance suite's Expiry check caught it, at t). With t − clockSlack
// no copy outlives its source; the source itself keeps its expiry
// (restampExp), so the session does not end earlier.
func copyExp(t int64, timeout uint32) (int32, bool) {
	t = min(t-clockSlack, maxRelativeExpiration, int64(timeoutExp(timeout)))
	return int32(t), t >= 1
}

// keepExp is the expiration of a rewrite of f's copy c (other: f's other
// copy) on its own node: its own t, or when the two copies' t are split
// (review 4's D2: a touch reached one copy only) the other's carried
// over (copyExp), if larger.
func keepExp(f *hit, c, other *copyRead) int32 {
	exp := restampExp(c.ttl, f.b.Timeout)
	if e, ok := copyExp(other.ttl, f.b.Timeout); ok && ttlSplit(f) && e > exp {
		exp = e
	}
	return exp
}

// complete is R4.4: re-stamp x (the same bytes and expiry: only its token
// changes), and only if stored, CAS y to b not pending, b's identity
// otherwise. y gets x's t less the clock slack (copyExp), or keeps its
// own expiry if longer: y holds this session too (b pending, or b's
// parent), and x may itself be a copy made from y (a failover's
// established copy completing its pending fence), shorter already. A
// touching call's completion gives y at least touch (touchExp). sending
// (nil: none) is called just before y's CAS is sent; sent reports
// whether it was, err the error of the re-stamp or of that CAS (nil:
// stored).
func (w *witness) complete(ctx context.Context, key string, x, y *copyRead, b envelope.Envelope, payload []byte, touch int32, shorten bool, sending func()) (sent bool, err error) {
	if _, err := x.n.wrestamp(ctx, key, x.cas, x.inc); err != nil {
		return false, err
	}
	exp, _ := copyExp(x.ttl, b.Timeout)
	if y.st == stData {
		t := y.ttl
		if shorten {
			t-- // restampExp keeps at least 1 s
		}
		exp = max(exp, restampExp(t, b.Timeout))
	}
	exp = max(exp, touch)
	nb := b
	nb.Pending = false
	if sending != nil {
		sending()
	}
	if _, err := y.n.wcas(ctx, key, nb.Wrap(payload), exp, kindData, y.cas, y.inc); err != nil {
		return true, err
	}
	w.emit(provider.EventRepair, y.n, "copy completed from its peer", nil)
	return true, nil
}

// rollBack is R4.4′ (§16 item 1): q, b's configuration's secondary,
// holds the write b alone and p, its primary, b's parent (inFlight), both
// read by one anomaly read (§16 item 3: both tokens read before the first
// CAS). It re-stamps p (an append of nothing with its read token: the same
// bytes and expiry, a new token), and only if stored CASes q, with its
// read token, to p's exact bytes as read (trailers included), with p's t
// less the clock slack, capped by the parent's own timeout (copyExp: no
// copy outlives its source), or a touching call's floor for the parent
// (touch) if longer. The caller reads again. The
// re-stamp first (R0): a writer's own completion of b (completeOwn: read
// P, re-stamp Q, CAS P) and this roll-back each CAS the copy the other
// re-stamps, with a token read before their own first CAS, so at most one
// stores its second CAS; a roll-back stored leaves the writer both copies
// holding the parent (undo: "replaced on both copies", ErrCASConflict).
// errExpiring when p has too little left to copy (no decision: the call
// waits, and p expired, R7 carries b into a greater epoch from q).
func (w *witness) rollBack(ctx context.Context, key string, q, p *copyRead, touch int32) error {
	exp, ok := copyExp(p.ttl, p.env.Timeout)
	if !ok {
		return errExpiring
	}
	if _, err := p.n.wrestamp(ctx, key, p.cas, p.inc); err != nil {
		return nil // P changed since the read (the writer's completion, another decision): read again
	}
	if h := w.s.hooks.rollBackRestamped; h != nil {
		h(key)
	}
	if _, err := q.n.wcas(ctx, key, p.raw, max(exp, touch), kindData, q.cas, q.inc); err != nil {
		return nil
	}
	w.emit(provider.EventRepair, q.n, rolledBack, nil)
	return nil
}

// rolledBack is the detail of the repair event of a roll-back (rollBack).
const rolledBack = "a write on its secondary alone rolled back"

// failover is R7 with R11's ballot: a new configuration of epoch
// newEpoch (above every record and promise the read rs returned), x its
// primary and the third node its secondary; promised on the third node,
// then fenced on x, then copied to the third node (configure). The next
// anomaly read completes it (R4.4). It reports whether all three were
// stored. touch (touchExp) is for the fence and the copy only: the third
// node's own record, promised, keeps its expiry (a stale record given T
// could outlive the session, F3).
func (w *witness) failover(ctx context.Context, key string, rs *[3]copyRead, x, y, third *copyRead, b envelope.Envelope, payload []byte, touch int32) bool {
	fence := b
	fence.E, fence.P, fence.Q = w.newEpoch(b.E, rs[:]...), x.cand, third.cand
	fence.NoWit = y.empty() || creation(b)
	exp, _ := copyExp(x.ttl, b.Timeout)
	if !w.configure(ctx, key, x, third, fence, payload, decisionExp{copy: exp, touch: touch}) {
		return false
	}
	w.emit(provider.EventFailover, y.n, "a session's copy moved off this node", nil)
	w.afterFailover(key, y)
	return true
}

// reballot is R11.3's re-ballot: b, held by x and by wc, which a decision
// promised above b's epoch (a decision that may never land, or one in
// flight), is made a configuration of a new epoch on the same two nodes,
// x its primary and wc its secondary: promised on wc, fenced on x, copied
// to wc (configure), then completed by the next read as any failover.
// Its third node keeps the witness of b's configuration until R9 (the key
// is queued). errExpiring when x's copy has too little left to copy;
// otherwise stored reports whether all three writes were stored. wc holds
// this session, so a touching call's (touch, touchExp) is for all three.
// why is the detail of the repair event it emits once stored.
func (w *witness) reballot(ctx context.Context, key string, rs *[3]copyRead, x, wc *copyRead, b envelope.Envelope, payload []byte, touch int32, why string) (stored bool, err error) {
	exp, ok := copyExp(x.ttl, b.Timeout)
	if !ok {
		return false, errExpiring
	}
	if wc.st == stData {
		exp = max(exp, restampExp(wc.ttl, b.Timeout)) // wc holds this session too
	}
	fence := b
	fence.E, fence.P, fence.Q = w.newEpoch(b.E, rs[:]...), x.cand, wc.cand
	// Review-n4b F1: a creation's re-ballot is nowit, as its failover
	// (R7): the Add may have undone its witness on the third node (its
	// primary CAS refused), and the re-ballot's promise, left alone, makes
	// every later decision on the key a re-ballot.
	fence.NoWit = b.NoWit || creation(b) && !w.s.hooks.reballotKeepsNoWit
	if !w.configure(ctx, key, x, wc, fence, payload, decisionExp{copy: exp, touch: touch, touchPromise: true}) {
		return false, nil
	}
	w.emit(provider.EventRepair, wc.n, why, nil)
	w.repair.enqueue(key)
	return true, nil
}

// decisionExp are the expirations of configure's writes: copy, the
// copy's (copyExp of x's t, or wc's own when longer); touch, a touching
// call's floor for the fence and the copy (touchExp; 0 for none), and for
// the promise too when touchPromise (wc holds this session: the
// re-ballot).
type decisionExp struct {
	copy, touch  int32
	touchPromise bool
}

// touchExp is the floor of the expirations a decision of a call with o
// gives the data copies of its session (timeout T) it writes:
// timeoutExp(T) for a touching call, 0 for others (review-r11 m3). A
// touching call (GetAndTouch, Touch) touches both copies with T once R4
// returns the session (get's touchCopies); its decisions writing T first
// (instead of the t its read saw) do not set back a touch another call
// made between that read and them, and leave both copies T even when the
// call's own touch fails afterwards. It extends no expired or expiring
// session: the decisions that use it are on a base with more than
// clockSlack left (copyExp's check, errExpiring), and each of their CASes
// is refused on an item gone since the read.
func (w *witness) touchExp(o resolveOpts, timeout uint32) int32 {
	if !o.touch || w.s.hooks.decisionNoTouch {
		return 0
	}
	return timeoutExp(timeout)
}

// configure makes the configuration of fence (its epoch, P = x, Q = wc,
// its content payload) by R7's steps with R11's promise first: CAS wc
// with its read token to its own record promised fence.E (promise), and
// only if stored, CAS x with its read token to fence pending (same
// expiry: restampExp), and only if stored, CAS wc with the promise's
// token to fence established (e.copy). A touching call's floor e.touch
// raises the fence and the copy (and the promise, e.touchPromise). It
// reports whether all three were stored; refused or unanswered, nothing
// more is sent (the next read decides again, after a back-off).
func (w *witness) configure(ctx context.Context, key string, x, wc *copyRead, fence envelope.Envelope, payload []byte, e decisionExp) bool {
	// §17 (M3): the decision carries its base's write (Carries set from
	// the base before its own nonce is drawn).
	fence = fence.Decision(rand.Uint64())
	fence.Pending = true
	if w.s.hooks.decisionNewLifetime {
		fence.Lifetime = newLifetime() // broken variant: the session's lifetime not carried
	}
	var pfloor int32
	if e.touchPromise {
		pfloor = e.touch
	}
	if !w.promise(ctx, key, wc, fence.E, pfloor) {
		return false
	}
	if _, err := x.n.wcas(ctx, key, fence.Wrap(payload), max(restampExp(x.ttl, fence.Timeout), e.touch), kindData, x.cas, x.inc); err != nil {
		return false
	}
	fence.Pending = false
	if _, err := wc.n.wcas(ctx, key, fence.Wrap(payload), max(e.copy, e.touch), kindData, wc.cas, wc.inc); err != nil {
		return false
	}
	w.remember(key, configOf(fence))
	return true
}

// newEpoch is R11.1: the epoch of a decision's new configuration, 1 + the
// greatest of base (the epoch of the decision's base) and of the epoch of
// every data or witness record, and of every promise, in reads.
func (w *witness) newEpoch(base uint32, reads ...copyRead) uint32 {
	e := base
	if !w.s.hooks.noPromise {
		for i := range reads {
			if c := &reads[i]; c.present() {
				e = max(e, c.env.E, c.prom)
			}
		}
	}
	return e + 1
}

// promise is R11.2: CAS c, with the token of its read, to its own record
// (a witness as it is, a data record in its whole form) promised e,
// keeping its expiry (a data record at least floor: a touching call's
// re-ballot, touchExp); stored, c gets the new token and bytes. It
// reports whether it was stored.
func (w *witness) promise(ctx context.Context, key string, c *copyRead, e uint32, floor int32) bool {
	if w.s.hooks.noPromise {
		return true
	}
	// A data record is promised in its whole form (its envelope and
	// payload, trailers folded in: the same identity and content; 4
	// bytes more than the record written whole, fewer than an item with
	// trailers. Review-r11 m5: a promise that grew an item an append had
	// filled to memcached's size limit was refused every time).
	item := c.raw
	kind, exp := uint32(kindData), restampExp(c.ttl, c.env.Timeout)
	if c.st == stWitness {
		// A witness keeps its own t (TW), which no session timeout caps.
		kind, exp = kindWitness, int32(max(1, min(c.ttl, maxRelativeExpiration)))
	} else {
		item, exp = c.env.Wrap(c.payload), max(exp, floor)
	}
	raw, err := envelope.Promised(item, e)
	if err != nil {
		return false
	}
	cas, err := c.n.wcas(ctx, key, raw, exp, kind, c.cas, c.inc)
	if err != nil {
		return false
	}
	c.cas, c.raw, c.prom = cas, raw, e
	if h := w.s.hooks.afterPromise; h != nil {
		h(key)
	}
	return true
}

// afterFailover is what follows a failover (R7, R3's write failover)
// that found the replaced copy y empty (blank or absent, not silent): the
// key is queued for R9, which re-stamps both copies first and then CASes
// the third record into the witness (R0) and clears nowit. (Review 4's
// D4 wrote the witness at once, skipping the re-stamps: the model showed
// it can revive an expired session.)
func (w *witness) afterFailover(key string, y *copyRead) {
	if y != nil && y.empty() {
		w.repair.enqueue(key)
	}
}

// creation reports whether env is a creation's record, never written
// since its Add (epoch 0, version 1). A failover of it is marked nowit as
// well (the model's CreationFailoverUnmarked: an abandoned Add failed over
// without the mark loses an acknowledged write after one flush).
func creation(env envelope.Envelope) bool { return env.E == 0 && env.V == 1 }

// repairWitness is R9: when the third node of f's configuration holds a
// blank, a data record of lower rank or a witness of another
// configuration, re-stamp both copies, and only if both were stored, CAS
// the third record into the witness of f's configuration (TW). It reports
// whether the third node now holds that witness.
func (w *witness) repairWitness(ctx context.Context, f *hit, third *copyRead) bool {
	cfg := configOf(f.b)
	switch {
	case ownWitness(third, f.b):
		if f.b.NoWit && !w.fenceWitness(ctx, f.key, third) {
			return false
		}
		if !w.witnessOutlives(ctx, f, third) {
			return false
		}
		if f.b.NoWit || ttlSplit(f) {
			// Review 13e m3: the witness is there (stored by an R9 whose
			// nowit clear was refused, or by an older process's D4 third
			// step) but the copies still say nowit: clear it, with the
			// read's tokens. Review 13e m1 (D2's first half): the copies'
			// t differ by more than 2 s: re-stamp both with the larger.
			w.clearNoWit(ctx, f, f.p, f.q)
		}
		return true
	case r9Candidate(third, f.b) && !(third.st == stData && w.s.hooks.r9KeepsData):
		// Also a promised witness of b's configuration (review-r11 m2):
		// a dead decision's promise, which nothing else replaces and
		// which processes of earlier releases cannot decode, is dropped
		// by the new witness, after the re-stamps (as over any promise:
		// review-ballot M2).
	default:
		return false
	}
	if expiring(f) {
		return false // no decision on an expiring base (review-2 m6)
	}
	// Each copy keeps its expiry (wrestamp: a client touch that landed
	// since the read is kept, issue 13), or, split (review 4's D2), gets
	// the larger t carried over (copyExp).
	pcas, qcas, ok := w.restampBoth(ctx, f)
	if !ok {
		return false
	}
	wit := f.b
	wit.Pending, wit.NoWit = false, false
	if _, err := third.n.wcas(ctx, f.key, wit.Append(nil), w.tw, kindWitness, third.cas, third.inc); err != nil {
		// Review 13e m3: refused because another R9 (or an older
		// process's D4 third step) stored this very witness meanwhile:
		// clear nowit all the same.
		c, rerr := w.read(ctx, third.n, third.cand, f.key, " v c t f")
		if rerr != nil || c.st != stWitness || configOf(c.env) != cfg ||
			(f.b.NoWit && !w.fenceWitness(ctx, f.key, &c)) || !w.witnessOutlives(ctx, f, &c) {
			return false
		}
		if f.b.NoWit {
			w.clearNoWitAfter(ctx, f, pcas, qcas)
		}
		return true
	}
	w.emit(provider.EventRepair, third.n, "witness restored", nil)
	if f.b.NoWit {
		// Review 4's D4: the configuration has its witness now; clear
		// nowit on both copies (the same identity), never before.
		w.clearNoWitAfter(ctx, f, pcas, qcas)
	}
	return true
}

// restampBoth is R9's re-stamps: the primary first, then, only if that
// was stored, the secondary (ok: both stored, with their new tokens).
// In turn, not in parallel: processes running R9 on one key at once
// (the readers of a burst after a failover: R4.3) read the same tokens,
// and in parallel one would win P and another Q, every one refused, read
// after read, until each gave up (the simulation's flush-step seeds:
// "6 anomaly reads without an answer" a failover time after the fault).
// In turn, the first re-stamp of P decides which of them goes on; the
// others have changed nothing (as if they had not run R9) and read
// again. The order is one of those the model's parallel re-stamps
// explore. SetR9ParallelRestamps is the code before.
func (w *witness) restampBoth(ctx context.Context, f *hit) (pcas, qcas uint64, ok bool) {
	stamp := func(c, other *copyRead) (uint64, error) {
		h := w.s.hooks.r9Restamp
		if h != nil {
			h(f.key, c == &f.p, false, nil)
		}
		cas, err := w.restamp(ctx, f, c, other)
		if h != nil {
			h(f.key, c == &f.p, true, err)
		}
		return cas, err
	}
	if w.s.hooks.r9ParallelRestamps {
		var ep, eq error
		var wg sync.WaitGroup
		wg.Go(func() { qcas, eq = stamp(&f.q, &f.p) })
		pcas, ep = stamp(&f.p, &f.q)
		wg.Wait()
		return pcas, qcas, ep == nil && eq == nil
	}
	pcas, err := stamp(&f.p, &f.q)
	if err != nil {
		return 0, 0, false
	}
	qcas, err = stamp(&f.q, &f.p)
	return pcas, qcas, err == nil
}

// r9Candidate reports whether R9 would write b's witness over what the
// third node answered (repairWitness): a blank, a witness other than b's
// own unpromised one, or a data record of lower rank.
func r9Candidate(third *copyRead, b envelope.Envelope) bool {
	switch third.st {
	case stBlank:
		return true
	case stWitness:
		return !ownWitness(third, b)
	case stData:
		return rankLess(third.env, b)
	}
	return false
}

// expiring reports that f's base is too close to its expiry for a
// decision (copyExp of the larger t: review-2 m6).
func expiring(f *hit) bool {
	_, ok := copyExp(max(f.p.ttl, f.q.ttl), f.b.Timeout)
	return !ok
}

// ownWitness reports whether c is the witness of b's configuration, with
// no promise on it (a promised one is rewritten by R9: repairWitness).
func ownWitness(c *copyRead, b envelope.Envelope) bool {
	return c.st == stWitness && configOf(c.env) == configOf(b) && c.prom == 0
}

// fenceWitness re-stamps the witness c (an append of nothing with its
// read token: its bytes and expiry kept, its token new) before R9 clears
// nowit relying on a witness it did not write (review-r14 B1): a touch
// keeps an item's token, so a CAS holding an older one (R14's or an Add
// takeover's burial, sent before and run late) could otherwise still
// land on the adopted witness after the clear, and one flush then leave
// a lone copy between two blanks. It reports whether the re-stamp was
// stored (c then holds the new token).
func (w *witness) fenceWitness(ctx context.Context, key string, c *copyRead) bool {
	if w.s.hooks.adoptNoFence {
		return true
	}
	cas, err := c.n.wrestamp(ctx, key, c.cas, c.inc)
	if err != nil {
		return false
	}
	c.cas = cas
	return true
}

// witnessOutlives reports whether c, the witness of f's configuration on
// its third node, outlives f's copies, touching it `T<TW>` first when it
// may not (review-lonewit M1): R9 adopts a witness it did not write when f
// is nowit (R8 created the copies without one: W answered nothing, and
// may hold an old witness of this configuration, an expired session's,
// with less than T left), or whenever its t is not above both copies'
// by clockSlack. Only a reply showing a witness of this configuration
// counts (a data record the touch hit gets its own T back, as R2's
// witness touch does); without one, R9 clears no nowit (R0: the witness's
// life is what the clear relies on).
func (w *witness) witnessOutlives(ctx context.Context, f *hit, c *copyRead) bool {
	if w.s.hooks.adoptNoTouch || (!f.b.NoWit && c.ttl > max(f.p.ttl, f.q.ttl)+clockSlack) {
		return true
	}
	t, err := w.read(ctx, c.n, c.cand, f.key, w.touchFlags())
	if err == nil && t.st == stData {
		w.dataTTLBack(ctx, c.n, f.key, t.env)
	}
	return err == nil && t.st == stWitness && configOf(t.env) == configOf(f.b)
}

// restamp re-stamps f's copy c (other: its other copy) with the token of
// its read: an append of nothing (wrestamp), which keeps its expiry, or,
// when the copies' t are split (D2) and other's carries further, a CAS of
// the same bytes with keepExp. It returns the new token.
func (w *witness) restamp(ctx context.Context, f *hit, c, other *copyRead) (uint64, error) {
	if exp := keepExp(f, c, other); exp > restampExp(c.ttl, f.b.Timeout) {
		return c.n.wcas(ctx, f.key, c.raw, w.cutExp(exp), kindData, c.cas, c.inc)
	}
	return c.n.wrestamp(ctx, f.key, c.cas, c.inc)
}

// clearNoWit CASes both copies of f, in parallel with the tokens of the
// reads p and q, to f's record without the nowit mark (the same
// identity), each with keepExp.
func (w *witness) clearNoWit(ctx context.Context, f *hit, p, q copyRead) {
	env := f.b
	env.Pending, env.NoWit = false, false
	raw := env.Wrap(f.p.payload)
	if h := w.s.hooks.r9Clear; h != nil {
		h(f.key)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = q.n.wcas(ctx, f.key, raw, w.cutExp(keepExp(f, &q, &p)), kindData, q.cas, q.inc) })
	_, _ = p.n.wcas(ctx, f.key, raw, w.cutExp(keepExp(f, &p, &q)), kindData, p.cas, p.inc)
	wg.Wait()
}

// cutExp is exp as R9's whole-record rewrites send it: exp itself, less
// the test hook r9ExpCut (a broken variant that ends sessions early).
func (w *witness) cutExp(exp int32) int32 { return max(1, exp-w.s.hooks.r9ExpCut) }

// clearNoWitAfter is clearNoWit after R9's re-stamps, whose tokens are
// pcas and qcas: it reads both copies again first (their t now: a client
// touch may have landed since R9's read, issue 13) and clears nowit only
// on copies that still hold those tokens.
func (w *witness) clearNoWitAfter(ctx context.Context, f *hit, pcas, qcas uint64) {
	var p, q copyRead
	var ep, eq error
	var wg sync.WaitGroup
	wg.Go(func() { q, eq = w.read(ctx, f.q.n, f.q.cand, f.key, " v c t f") })
	p, ep = w.read(ctx, f.p.n, f.p.cand, f.key, " v c t f")
	wg.Wait()
	if ep != nil || eq != nil || p.cas != pcas || q.cas != qcas || !p.holds(f.b.ID()) || !q.holds(f.b.ID()) {
		return
	}
	w.clearNoWit(ctx, f, p, q)
}

// ttlSplit reports that f's two copies' remaining t differ by more than
// 2 s (review 4's D2: a touch reached one copy only).
func ttlSplit(f *hit) bool { return max(f.p.ttl, f.q.ttl)-min(f.p.ttl, f.q.ttl) > 2 }
