package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-oc31 F2: in the witness scheme, a data copy's append stored
// whose touch answered EN (the copy expired on the tick between the two
// commands, memcached's append keeping the item's expiry; goneDialer
// deletes it there, which memcached answers the same) counted as stored
// in R3's table. Both copies so: the write was acknowledged (a lock
// granted) on a session already gone. One copy so: acknowledged with one
// live data copy and no fault (D1), which one flush then lost. Now such a
// copy is missing (errAppendedGone), and the table completes the write
// from the other copy, undoes it, or answers not found. Each test runs
// the append's touch in the append's round trip (a handle just read, or a
// lock's for its release) and in a second one (memcached.SetAppendTwoTrips),
// and the code before (memcached.SetAppendGoneIgnored) must fail its
// check.

// witGoneEnv is a session over three nodes in the witness scheme, created
// through p2 (on s2, another app server), used through p (on s, whose
// connections are goneDialer's).
type witGoneEnv struct {
	servers []*mcserver.Server
	s, s2   *memcached.Store
	p, p2   *provider.Provider
	d       *goneDialer
	id, key string
	cands   []string // c0, c1, c2: P, Q, W of the session's configuration
	path    string   // the append path the test wants: "pipelined", "two trips"
}

func newWitGoneEnv(t *testing.T, twoTrips, broken bool) *witGoneEnv {
	t.Helper()
	e := &witGoneEnv{servers: startNodes(t, 3), d: newGoneDialer(t), path: "pipelined"}
	if twoTrips {
		e.path = "two trips"
	}
	cfg := memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 700 * time.Millisecond}
	e.s2 = newStore(t, e.servers, cfg)
	cfg.DialContext = e.d.dial
	e.s = newStore(t, e.servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		if twoTrips {
			memcached.SetAppendTwoTrips(s)
		}
		if broken {
			memcached.SetAppendGoneIgnored(s)
		}
	}))
	e.p, e.p2 = defaultProvider(t, e.s), defaultProvider(t, e.s2)
	e.id = newBenchSession(t, e.p2)
	var err error
	e.key, err = e.p.Key(e.id)
	require.NoError(t, err)
	e.cands = memcached.WitnessCandidates(e.s, e.key)
	return e
}

// goneAt arms the deletion of the session's copy on candidate i between
// its next append and that append's touch.
func (e *witGoneEnv) goneAt(t *testing.T, i int) {
	addr := e.cands[i]
	e.d.on(e.key, addr, func() {
		if err := raw(t, addr).Delete(e.key); err != nil {
			t.Errorf("deleting %s on %s between its append and its touch: %v", e.key, addr, err)
		}
	})
}

// fired requires that the hooks armed on candidates is ran, on the
// test's path.
func (e *witGoneEnv) fired(t *testing.T, is ...int) {
	t.Helper()
	for _, i := range is {
		require.Equal(t, e.path, e.d.pathOf(e.key, e.cands[i]), "the append on c%d and its touch", i)
	}
}

// holders returns the candidates whose item is a data copy of a record
// for which is holds.
func (e *witGoneEnv) holders(t *testing.T, is func(rec.Record) bool) []int {
	t.Helper()
	var hs []int
	for i, a := range e.cands {
		it := rawGet(t, a, e.key)
		if !it.found || it.flags != 1 {
			continue
		}
		_, payload, err := envelope.Decode(it.value)
		require.NoError(t, err, "c%d", i)
		r, err := rec.Decode(payload)
		require.NoError(t, err, "c%d", i)
		if is(r) {
			hs = append(hs, i)
		}
	}
	return hs
}

func lockedBy(id uint64) func(rec.Record) bool {
	return func(r rec.Record) bool { return r.Locked && r.LockID == id }
}

func releasedFrom(id uint64) func(rec.Record) bool {
	return func(r rec.Record) bool { return !r.Locked && r.LockID == id }
}

// survives waits (bounded) for R9 to make the node whose copy was gone
// (c1, empty since: the write failover's y) the witness of the new
// configuration, flushes the data node flushed, and requires that the
// session survives with a record for which is holds.
func (e *witGoneEnv) survives(t *testing.T, flushed int, is func(rec.Record) bool) error {
	t.Helper()
	testwait.Until(t, 10*time.Second, "R9 making c1 the witness", func() bool {
		return rawGet(t, e.cands[1], e.key).flags == 2
	})
	require.NoError(t, serverAt(t, e.servers, e.cands[flushed]).FlushAll(context.Background()))
	en, err := e.s2.Get(context.Background(), e.key)
	if err != nil {
		return fmt.Errorf("after a flush of c%d, the session: %w", flushed, err)
	}
	r, err := rec.Decode(en.Value)
	require.NoError(t, err)
	if !is(r) {
		return fmt.Errorf("after a flush of c%d, the session holds %+v: not the acknowledged write", flushed, r)
	}
	return nil
}

// runWitGone runs check on each path, the fix and the code before; the
// code before must fail it.
func runWitGone(t *testing.T, check func(t *testing.T, twoTrips, broken bool) error) {
	for _, twoTrips := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			name := map[bool]string{false: "pipelined", true: "two trips"}[twoTrips] + map[bool]string{false: "", true: "/before"}[broken]
			t.Run(name, func(t *testing.T) {
				err := check(t, twoTrips, broken)
				switch {
				case broken && err == nil:
					t.Fatal("the code before (SetAppendGoneIgnored) passed the check")
				case broken:
					t.Logf("the code before fails: %v", err)
				case err != nil:
					t.Fatal(err)
				}
			})
		}
	}
}

// TestWitnessAppendGoneBoth: the lock's append stored on both data copies,
// both gone by their touches: the session expired at the write. Not
// found: no lock granted, nothing acknowledged (before: the lock granted
// on a session already gone, whose next read found it lost and whose
// release read ErrLockLost).
func TestWitnessAppendGoneBoth(t *testing.T) {
	runWitGone(t, func(t *testing.T, twoTrips, broken bool) error {
		e := newWitGoneEnv(t, twoTrips, broken)
		ctx := context.Background()
		e.goneAt(t, 0)
		e.goneAt(t, 1)
		item, err := e.p.GetItemExclusive(ctx, e.id)
		e.fired(t, 0, 1)
		if item != nil {
			return fmt.Errorf("GetItemExclusive granted lock %d on a session gone at the write (err %v)", item.LockID, err)
		}
		if !errors.Is(err, provider.ErrNotFound) {
			return fmt.Errorf("GetItemExclusive: %w, want not found", err)
		}
		if hs := e.holders(t, func(rec.Record) bool { return true }); len(hs) != 0 {
			return fmt.Errorf("data copies on %v after a write not acknowledged", hs)
		}
		if got, err := e.p2.GetItemExclusive(ctx, e.id); !errors.Is(err, provider.ErrNotFound) || got != nil {
			return fmt.Errorf("another process's GetItemExclusive = (%v, %v), want not found", got, err)
		}
		return nil
	})
}

// TestWitnessAppendGoneSecondary: the lock's (or its release's) append
// stored on P, Q's copy gone by its touch. As if Q had expired just
// before: the write is completed by the write failover (P and the witness
// node hold it; R9 makes Q's node the witness), acknowledged with two live
// copies, and survives a flush of either (before: acknowledged with P's
// copy alone, no fault; one flush of P lost the session). The release
// succeeds (no ErrLockLost) and leaves the session free on two copies.
func TestWitnessAppendGoneSecondary(t *testing.T) {
	t.Run("lock", func(t *testing.T) {
		runWitGone(t, func(t *testing.T, twoTrips, broken bool) error {
			e := newWitGoneEnv(t, twoTrips, broken)
			ctx := context.Background()
			e.goneAt(t, 1)
			item, err := e.p.GetItemExclusive(ctx, e.id)
			e.fired(t, 1)
			if err != nil || item == nil {
				return fmt.Errorf("GetItemExclusive = (%v, %v), want the lock", item, err)
			}
			hs := e.holders(t, lockedBy(item.LockID))
			if len(hs) != 2 {
				return fmt.Errorf("lock %d acknowledged on the data copies of %v, want two", item.LockID, hs)
			}
			// The P of the new configuration when two trips, the witness
			// node's copy when pipelined: a flush of either.
			flushed := hs[0]
			if !twoTrips {
				flushed = hs[1]
			}
			if err := e.survives(t, flushed, lockedBy(item.LockID)); err != nil {
				return err
			}
			if err := e.p.ReleaseItemExclusive(ctx, e.id, item.LockID); err != nil {
				return fmt.Errorf("release: %w", err)
			}
			return nil
		})
	})
	t.Run("release", func(t *testing.T) {
		runWitGone(t, func(t *testing.T, twoTrips, broken bool) error {
			return releaseGone(t, newWitGoneEnv(t, twoTrips, broken), 1, true)
		})
	})
}

// TestWitnessAppendGonePrimary: the append stored on Q, P's copy gone by
// its touch. The appended value sat on P until it went, where a plain
// read may have returned it (both copies holding it) or a reader copied
// it on: the write is not "not applied" but unknown, and Q is left as it
// is (the model's appendGone; the first fix undid Q and answered a
// conflict, the model's AppendGoneRefused). The next read fails the
// session over from Q: the write is there. Before: acknowledged with
// Q's copy alone. Through the provider, the release settles its unknown
// outcome by the lock id and succeeds (no ErrLockLost), the session free
// on two copies.
func TestWitnessAppendGonePrimary(t *testing.T) {
	t.Run("append", func(t *testing.T) {
		runWitGone(t, func(t *testing.T, twoTrips, broken bool) error {
			e := newWitGoneEnv(t, twoTrips, broken)
			ctx := context.Background()
			en, next, delta := readLocking(t, e.s, e.key) // a handle just read
			pre := rawGet(t, e.cands[1], e.key)
			e.goneAt(t, 0)
			_, _, err := e.s.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
			e.fired(t, 0)
			if !errors.Is(err, provider.ErrOutcomeUnknown) {
				return fmt.Errorf("CompareAndAppend = %v with P gone by its touch, want unknown (a read may have returned the value)", err)
			}
			if now := rawGet(t, e.cands[1], e.key); len(now.value) <= len(pre.value) {
				return fmt.Errorf("unknown, yet Q was put back (%d bytes, %d before the append)", len(now.value), len(pre.value))
			}
			g, err := e.s2.Get(ctx, e.key)
			if err != nil {
				return fmt.Errorf("a later read: %w", err)
			}
			if r, err := rec.Decode(g.Value); err != nil || !r.Locked || r.LockID != next.LockID {
				return fmt.Errorf("a later read: %v, locked %v by %d, want the append's lock %d", err, r.Locked, r.LockID, next.LockID)
			}
			return nil
		})
	})
	t.Run("release", func(t *testing.T) {
		runWitGone(t, func(t *testing.T, twoTrips, broken bool) error {
			return releaseGone(t, newWitGoneEnv(t, twoTrips, broken), 0, false)
		})
	})
}

// releaseGone locks e's session through p, then releases it with the
// release's append on candidate gone deleted before its touch: the
// release succeeds (no ErrLockLost), two data copies hold it, the session
// survives a flush of c0 when flush (the write failover's P: R9 having
// made c1 the witness), and another process then takes the lock.
func releaseGone(t *testing.T, e *witGoneEnv, gone int, flush bool) error {
	ctx := context.Background()
	item, err := e.p.GetItemExclusive(ctx, e.id)
	require.NoError(t, err)
	require.NotNil(t, item)
	e.goneAt(t, gone)
	err = e.p.ReleaseItemExclusive(ctx, e.id, item.LockID)
	e.fired(t, gone)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if hs := e.holders(t, releasedFrom(item.LockID)); len(hs) != 2 {
		return fmt.Errorf("release acknowledged on the data copies of %v, want two", hs)
	}
	if flush {
		if err := e.survives(t, 0, releasedFrom(item.LockID)); err != nil {
			return err
		}
	}
	got, err := e.p2.GetItemExclusive(ctx, e.id)
	if err != nil || got == nil {
		return fmt.Errorf("another process's lock after the release = (%v, %v)", got, err)
	}
	return e.p2.ReleaseItemExclusive(ctx, e.id, got.LockID)
}

// TestWitnessAppendGoneBlank: the lock's append stored on both data
// copies, each copy then gone and a blank in its place (a reader's
// get-or-blank, `mg … N30`, on the miss) before its touch, which finds
// that blank, not EN: both copies gone, not found, as TestWitnessAppendGoneBoth
// (the model's AppendStrayStored: the first fix took a touch that found
// another item, the blank, for a stray touch of a stored copy, and
// granted the lock on a session already gone). SetAppendBlankStored is
// that first fix.
func TestWitnessAppendGoneBlank(t *testing.T) {
	for _, twoTrips := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			name := map[bool]string{false: "pipelined", true: "two trips"}[twoTrips] + map[bool]string{false: "", true: "/first-fix"}[broken]
			t.Run(name, func(t *testing.T) {
				e := newWitGoneEnv(t, twoTrips, false)
				if broken {
					memcached.SetAppendBlankStored(e.s)
				}
				for _, i := range []int{0, 1} {
					addr := e.cands[i]
					e.d.on(e.key, addr, func() { rawSet(t, addr, e.key, nil, 30, 0) })
				}
				item, err := e.p.GetItemExclusive(context.Background(), e.id)
				e.fired(t, 0, 1)
				switch {
				case broken && item == nil:
					t.Fatalf("the first fix refused the lock (%v): the test does not reach the blank", err)
				case broken:
					t.Logf("the first fix grants lock %d on a session gone at the write", item.LockID)
				case item != nil:
					t.Fatalf("GetItemExclusive granted lock %d on a session gone at the write", item.LockID)
				default:
					require.ErrorIs(t, err, provider.ErrNotFound)
				}
			})
		}
	}
}
