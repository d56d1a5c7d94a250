package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// found is a copy of a key found on some node under some local key.
type found struct {
	n    *node
	key  string
	item *metaItem
	seq  uint64
}

// getMissed handles a primary miss: it looks for copies on the backup node
// ("bak:"+key, and key itself: the node was the primary before a node was
// added) and on the primary ("bak:"+key: it was the backup before a node
// was removed), restores the newest by Seq to the backup and then the
// primary, and returns the primary's copy. Lookup failures count as misses.
//
// The backup copy is written first, conditioned on the copy read there and
// marked with the time of the claim (claimStamp): a write whose primary
// write landed before the primary lost it, and whose backup write is still
// to come,
// then finds its backup write refused or the claim in its way, and brings
// the primary up to its value itself (bakWrite.fixPrimary); a backup write
// that landed before the claim makes the claim fail, and the copies are
// read again. So a repair never leaves on the primary a copy older than a
// write acknowledged before or during the repair.
func (s *Store) getMissed(ctx context.Context, rt route, miss error) (provider.Entry, error) {
	if rt.b == nil {
		return provider.Entry{}, miss
	}
	for range maxRepairRounds {
		best, bakOnB, err := s.readCopies(ctx, rt)
		if err != nil || best == nil {
			if err == nil {
				err = miss
			}
			return provider.Entry{}, err
		}
		exp := remaining(best.item.ttl)
		if rt.b.isUp() {
			s.baks.drop(rt.key)
			stamp := claimStamp(time.Now())
			var cerr error
			if bakOnB != nil {
				_, cerr = rt.b.msetFlags(ctx, rt.bakKey(), best.item.value, exp, stamp, false, bakOnB.cas)
			} else {
				_, cerr = rt.b.msetFlags(ctx, rt.bakKey(), best.item.value, exp, stamp, true, 0)
			}
			if errors.Is(cerr, provider.ErrCASConflict) || errors.Is(cerr, provider.ErrNotFound) || errors.Is(cerr, provider.ErrExists) {
				continue // the backup copy changed since it was read
			}
			// Any other failure: a backup node now marked down takes no
			// backup writes, so there is nothing to claim it against.
		}
		// Restore the primary; ErrExists means another request restored or
		// wrote it meanwhile, and the primary's copy stands.
		err = rt.p.add(ctx, rt.key, best.item.value, exp)
		if err != nil && !errors.Is(err, provider.ErrExists) {
			return provider.Entry{}, err
		}
		if err == nil {
			s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventRepair, Node: rt.p.addr, Detail: "a missing copy was restored from the newest copy found"})
		}
		it, err := rt.p.get(ctx, rt.key)
		if err != nil {
			return provider.Entry{}, err
		}
		return entry(rt.p, it.value, it.cas)
	}
	return provider.Entry{}, fmt.Errorf("memcached: node %s: repair %s: %w: the backup copy kept changing", rt.b.addr, rt.key, provider.ErrUnavailable)
}

// maxRepairRounds bounds how often a repair reads the copies again because
// the backup copy changed under it (each time, a write landed there).
const maxRepairRounds = 4

// readCopies reads the copies a primary miss looks for (see getMissed)
// and returns the newest, or nil when there is none, with the backup
// node's copy under "bak:"+key (nil when absent or not read).
func (s *Store) readCopies(ctx context.Context, rt route) (best *found, bakOnB *metaItem, err error) {
	var pItems, bItems []*metaItem
	var bDo func() error
	if rt.b.isUp() {
		bDo = func() error {
			var err error
			bItems, err = rt.b.mget(ctx, true, rt.bakKey(), rt.key)
			return err
		}
	}
	parallel(func() error {
		var err error
		pItems, err = rt.p.mget(ctx, true, rt.bakKey())
		return err
	}, bDo)
	if s.hooks.afterRepairRead != nil {
		s.hooks.afterRepairRead(rt.key)
	}
	var copies []found
	if len(bItems) == 2 {
		bakOnB = bItems[0]
		copies = appendFound(copies, rt.b, rt.bakKey(), bItems[0])
		copies = appendFound(copies, rt.b, rt.key, bItems[1])
	}
	if len(pItems) == 1 {
		copies = appendFound(copies, rt.p, rt.bakKey(), pItems[0])
	}
	if len(copies) == 0 {
		return nil, nil, nil
	}
	f, err := newest(rt, copies)
	if err != nil {
		return nil, nil, err
	}
	return &f, bakOnB, nil
}

func appendFound(copies []found, n *node, key string, it *metaItem) []found {
	if it == nil {
		return copies
	}
	return append(copies, found{n: n, key: key, item: it})
}

// newest picks the copy with the highest record Seq; on equal Seq the
// earlier in copies wins (the backup copy first). Copies that do not parse
// as records are skipped; if none parses, the error wraps
// provider.ErrCorrupt.
func newest(rt route, copies []found) (found, error) {
	best := -1
	var firstErr error
	for i := range copies {
		h, err := record.Parse(copies[i].item.value)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("memcached: node %s: key %s: %w", copies[i].n.addr, copies[i].key, err)
			}
			continue
		}
		copies[i].seq = h.Seq
		if best < 0 || h.Seq > copies[best].seq {
			best = i
		}
	}
	if best < 0 {
		return found{}, firstErr
	}
	return copies[best], nil
}

// settleSplitAdd brings the copies of key to one value after an Add whose
// halves split: the primary took the Add and the backup copy refused it
// (it held a copy): the primary had lost the key (an eviction, a restart)
// and the backup copy holds the session, or a process that took the
// primary for down wrote it there. (Two Adds of the key no longer cross:
// an Add's backup half is sent only after its primary half succeeded.)
// Every party that settles reads both copies
// and applies one rule to the pair it read, so that all move the copies
// the same way: the backup copy goes onto the primary when it is a record
// of a higher Seq (the session a primary that lost the key no longer
// holds: a repair would restore it the same way, newest by Seq), else the
// primary's copy, which readers have been served since it landed, goes
// onto the backup (a tie included: the provider's Adds all write Seq 1,
// and the primary's stays). Each write is conditioned on the
// CAS of the copy it replaces, as read: a refused one means another party
// (another Add's settle, or a write) changed it, and the pair is read
// again. The code before rv-d4 M2 moved the copies opposite ways from the
// two sides of a crossing, and two crossing Adds left each copy with the
// other's value.
//
// The settle ends only on a read of the pair (never on a write), and
// answers nil only when that read shows a state the rules accept:
//   - the copies equal;
//   - the primary without a copy: the next read of the key misses there
//     and restores it from the newest copy (getMissed), as the Seq rule
//     would;
//   - while the backup copy follows the primary, a record of a higher Seq
//     on the backup that the first read did not find: a writer's backup
//     half ahead of its primary half, left to that writer (its primary
//     half lands and the copies are equal, or its undo puts the primary's
//     copy back on the backup).
//
// Any other end is an error (settleAdd reports it: the Add's answer, if
// the caller still waits, and an EventWarning): a read or write that
// failed, maxRepairRounds refused writes (each one another party's write
// landing on a copy meanwhile), or twice that many rounds in all. A
// stored write does not count against the bound, and the pair is read
// again after it: another party may have moved the other copy between
// this settle's read and its write (an undo, rv-d4b mn3; or another
// settle going the other way, one following the primary and one applying
// the Seq rule, both writes stored: the copies swapped, which the next
// round, on which both rules agree, settles).
//
// Why the end is checked, and said when it is not a settled one: one
// divergence nothing else repairs. The next write's slow path
// (afterPrimary) replaces a backup copy older than the primary's, and a
// read restores a primary that lost its copy (getMissed); but a backup
// copy of a higher Seq than the primary's stays under the next writes of
// lower Seqs (afterPrimary finds it "newer already there"), and a primary
// loss then restores it over them. The code before ended after its
// fourth round's write without reading the pair again, and said nothing
// when it ran out of rounds: two settles swapping the copies in their
// last rounds both answered as settled over diverged copies (rv-mj2
// mn-c).
func (s *Store) settleSplitAdd(ctx context.Context, rt route, added []byte) error {
	s.baks.drop(rt.key)
	defer rt.b.noteIfDown(rt.bakKey())
	primaryWins := false
	refused := 0
	for round := 0; ; round++ {
		bItems, err := rt.b.mget(ctx, true, rt.bakKey())
		if err != nil {
			return err
		}
		pItems, err := rt.p.mget(ctx, true, rt.key)
		if err != nil {
			return err
		}
		bak, prim := bItems[0], pItems[0]
		if prim == nil || (bak != nil && bytes.Equal(bak.value, prim.value)) {
			return nil
		}
		if round == 0 && !bytes.Equal(prim.value, added) && !s.hooks.settleOverPrimary {
			// The primary took this Add and holds another value already:
			// a write built on the Add's value (maybe acknowledged: its
			// writer read it there) or another settle's put-back. No
			// backup copy goes over it (rv-mj2, a write before the
			// settle's first read).
			primaryWins = true
		}
		if refused >= maxRepairRounds || round >= 2*maxRepairRounds {
			return fmt.Errorf("memcached: %s: the copies kept changing (%d writes refused in %d rounds)", rt.key, refused, round)
		}
		if s.hooks.beforePutBack != nil {
			s.hooks.beforePutBack(rt.key)
		}
		switch {
		case bak == nil:
			err = rt.b.add(ctx, rt.bakKey(), prim.value, remaining(prim.ttl))
		case !primaryWins && newerBackup(prim.value, bak.value):
			err = rt.p.cas(ctx, rt.key, bak.value, prim.cas, remaining(bak.ttl))
			// Refused: the primary changed since it was read, by another
			// settle (the copies are then equal) or by a write, maybe
			// acknowledged, whose writer read the Add's value there: no
			// backup copy goes over it (rv-d4b MJ2), and the backup
			// copy follows the primary from now on.
			primaryWins = err != nil && !s.hooks.settleOverPrimary
		default:
			err = rt.b.cas(ctx, rt.bakKey(), prim.value, bak.cas, remaining(prim.ttl))
		}
		switch {
		case err == nil:
		case errors.Is(err, provider.ErrCASConflict) || errors.Is(err, provider.ErrNotFound) || errors.Is(err, provider.ErrExists):
			refused++
		default:
			return err
		}
		if s.hooks.settleLastUnread && round == maxRepairRounds-1 {
			return nil // the code before: the fourth round's write, stored or refused, not read again
		}
		// Stored or refused: read the pair again.
	}
}

// settleAdd answers an Add whose halves split (why; refusal, the refused
// half's error) once it has run the settle, settleSplitAdd. The settle
// runs on a goroutine of the Store's that Close waits for (it counts in
// s.adds, started while the Add's own count, taken by enterAdd, holds the
// counter above zero), without the caller's cancellation or deadline: it
// goes on to its own bounds (maxRepairRounds refused writes, twice that
// many rounds, each command bounded by Timeout). The caller is answered
// when the settle ends, or one Timeout past its deadline if the settle is
// still running then: a request is not held much past its deadline
// (rv-d4b mn5), and in a healthy cluster a settle's few round trips take
// a millisecond. The answer is ErrOutcomeUnknown either way
// (splitAddErr); a settle that ends unsettled is also reported with an
// EventWarning (warnUnsettled), whether the caller still waited or not.
// The warning is emitted after the caller's answer and after the settle
// leaves s.adds, so an OnEvent that calls Close (which it must not) does
// not wait for itself (rv-settle2 R2). The settle works on its own copy
// of value: the caller may reuse its slice once answered (rv-settle2 R4).
//
// Why the settle is not cut at a deadline (as it was in between, rv-settle
// S1): cut before its write, it leaves the copies as the split did, maybe
// the backup copy a record of a higher Seq than the primary's, which
// nothing else repairs (settleSplitAdd): the writes acknowledged next on
// the primary are lost when the primary loses the key. Stopped by the
// caller's cancellation, it would leave them so by choice; not started
// because Close began meanwhile, too (rv-settle2 R1: Close waits for the
// Add itself, enterAdd).
func (s *Store) settleAdd(ctx context.Context, rt route, value []byte, why string, refusal error) error {
	sctx, cancel := s.settleContext(ctx)
	value = bytes.Clone(value)
	done := make(chan error, 1)
	switch {
	case !s.hooks.addUntracked:
		s.adds.Add(1) // legal while Close waits: the Add's own count (enterAdd) keeps the counter above zero
	case !s.enterAdd(): // the code before rv-settle2 R1: the Add not counted, its settle counted if not closed yet
		cancel()
		err := errors.New("the store was closed before the settle started")
		s.warnUnsettled(rt, err)
		return splitAddErr(rt, why, refusal, err)
	}
	go func() {
		err := errors.New("the settle's goroutine exited") // runtime.Goexit: a test's hook that failed
		defer func() {
			cancel()
			done <- err
			s.adds.Done()
			if err != nil && !s.hooks.warnBeforeAnswer {
				s.warnUnsettled(rt, err)
			}
		}()
		err = s.settleSplitAdd(sctx, rt, value)
		if err != nil && s.hooks.warnBeforeAnswer {
			s.warnUnsettled(rt, err)
		}
	}()
	var late <-chan time.Time
	if at, ok := settleAnswerAt(ctx, s.cfg.Timeout, s.hooks.settleUnbounded || s.hooks.settleCut); ok {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		late = t.C
	}
	select {
	case err := <-done:
		return splitAddErr(rt, why, refusal, err)
	case <-late:
		return splitAddErr(rt, why, refusal, errSettleGoesOn)
	}
}

// settleAnswerAt returns when settleAdd answers its caller if the settle
// is still running then: one timeout past ctx's deadline. Without a
// deadline, or with waitForEnd (the test hooks settleUnbounded, the code
// before rv-d4b mn5, and settleCut, whose settle ends at its own cut), it
// reports false: the caller is answered when the settle ends.
func settleAnswerAt(ctx context.Context, timeout time.Duration, waitForEnd bool) (time.Time, bool) {
	d, ok := ctx.Deadline()
	if !ok || waitForEnd {
		return time.Time{}, false
	}
	return d.Add(timeout), true
}

// errSettleGoesOn is the reason an Add answered before its settle ended.
var errSettleGoesOn = errors.New("still running one Timeout past the caller's deadline: it goes on, and warns if it ends unsettled")

// settleContext is the context of a split Add's settle: ctx's values
// without its cancellation or deadline. With the test hook settleCut
// (d76aa64, rv-settle S1), the settle itself ends 2 Timeouts after it
// starts, or one Timeout past the caller's deadline if that comes first.
func (s *Store) settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !s.hooks.settleCut {
		return context.WithoutCancel(ctx), func() {}
	}
	end := time.Now().Add(2 * s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Add(s.cfg.Timeout).Before(end) {
		end = d.Add(s.cfg.Timeout)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), end)
}

// enterAdd counts a BackupOn Add, before it sends anything, in s.adds,
// which Close waits for, and reports whether it may go on: once the Store
// is closed, none may. The caller calls s.adds.Done when it returns. Close
// sets closed, then takes addsMu before it waits: an Add counted before
// that is waited for, one after it sees closed (rv-settle2 R1).
func (s *Store) enterAdd() bool {
	s.addsMu.RLock()
	defer s.addsMu.RUnlock()
	if s.closed.Load() {
		return false
	}
	s.adds.Add(1)
	return true
}

// warnUnsettled reports, with an EventWarning on the key's primary node, a
// split Add's settle that ended without a read showing its copies
// settled (err: why). The key is not named (events never carry one): err's
// text shows it as <key>.
func (s *Store) warnUnsettled(rt route, err error) {
	s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventWarning, Node: rt.p.addr,
		Detail: "an Add split a session's two copies and they were not brought to one value: they may differ (a backup copy newer than the primary's outlives the writes acknowledged on the primary if the primary then loses the key)",
		Err:    redactedKey{err, rt.key}})
}

// redactedKey is err with every occurrence of key in its text shown as
// <key>.
type redactedKey struct {
	err error
	key string
}

func (r redactedKey) Error() string { return strings.ReplaceAll(r.err.Error(), r.key, "<key>") }

func (r redactedKey) Unwrap() error { return r.err }

// newerBackup reports whether settleSplitAdd puts the backup copy bak on
// the primary rather than the primary's copy prim on the backup: bak is a
// record of a higher Seq than prim, or prim is not a record and bak is.
func newerBackup(prim, bak []byte) bool {
	hb, err := record.Parse(bak)
	if err != nil {
		return false
	}
	hp, err := record.Parse(prim)
	return err != nil || hb.Seq > hp.Seq
}

// splitAddErr is the error of an Add whose halves split (settleSplitAdd):
// refusal, the refused half's error, is kept as text only, since the
// Add's value was on the other copy, where others may have read it, and
// may be the value kept. settled is the settle's error: nil when it left
// the copies in a state its rules accept, else why it did not (the copies
// may differ, or that it was still running when the caller's time was
// up), also as text only (the settle's failures are not the caller's).
func splitAddErr(rt route, why string, refusal, settled error) error {
	if settled != nil {
		return fmt.Errorf("memcached: %s: add: %s (%v), and bringing the copies to one value did not finish (%v): they may differ, one of them maybe this add's: %w", rt.key, why, refusal, settled, provider.ErrOutcomeUnknown)
	}
	return fmt.Errorf("memcached: %s: add: %s (%v), and the copies were brought to one value, which may be this add's: %w", rt.key, why, refusal, provider.ErrOutcomeUnknown)
}

// restoreBackup copies the primary's value to a backup node that lost it.
func (s *Store) restoreBackup(ctx context.Context, rt route) {
	s.baks.drop(rt.key)
	pItems, err := rt.p.mget(ctx, true, rt.key)
	if err != nil || pItems[0] == nil {
		return
	}
	_ = rt.b.add(ctx, rt.bakKey(), pItems[0].value, remaining(pItems[0].ttl))
}
