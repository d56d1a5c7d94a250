package memcached_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-r14 m5's missing tests of R14 (docs/replication.md: an old lone
// witness is buried): the provider's GetAndTouch, an Add racing the
// burial, a promised lone witness. (The late burial CAS delivered after
// R9's adoption is TestAdoptedWitnessFenced.)

// r14Config is witnessConfig with the repair scan off: the tests run the
// scan's visit (RepairKey) themselves.
func r14Config() memcached.Config {
	cfg := witnessConfig
	cfg.RepairEvery = -1
	return cfg
}

// r14Reader is a second process over the same nodes (its own connections,
// its own caches), with hook applied.
func r14Reader(t *testing.T, servers []*mcserver.Server, hook func(*memcached.Store)) *memcached.Store {
	t.Helper()
	cfg := r14Config()
	cfg.Backup = memcached.BackupWitness
	b := newStore(t, servers, cfg)
	memcached.SetRepairQueueOff(b)
	hook(b)
	return b
}

// rawItems reads key on every candidate.
func rawItems(t *testing.T, cands []string, key string) [3]rawItem {
	var its [3]rawItem
	for i, a := range cands {
		its[i] = rawGet(t, a, key)
	}
	return its
}

// TestOldWitnessGetAndTouch (review-r14 m5, M1): the provider's read, a
// GetAndTouch of an expired id whose old witness is alone, answers not
// found (not ErrSessionLost: it touched the witness itself) and writes
// nothing but its witness touch: both blanks keep their tokens, the
// witness its token and record, and it is young again (TW: the touch
// re-arms it). A plain Get within T of that touch buries nothing (the
// witness is young) and answers ErrSessionLost (R10: a witness touched
// less than T ago and no data). Once no touching read has come for T + the
// margin, the repair scan's visit (RepairKey), or a plain Get, buries it,
// and the id then stays not found after a data copy's node dies. Broken
// variants: SetBuryAnyAge (the tried-and-undone GetAndTouch burial: the
// touching read buries), SetKeepOldWitness (nothing buries: 503 after the
// death).
//
// overtaken (third session of 2026-12-01): the GetAndTouch's witness
// touch, which it does not wait for, is held until the call has returned
// (SetHoldWitnessTouch), so its anomaly read finds the witness as old as
// before the call, as under load (a touch on another connection, or one
// that dials, is overtaken): it still writes nothing. The code before
// (SetBuryTouched) went by that age: it re-stamped both blanks and buried
// the witness (the flake seen twice under load: candidate 0's blank
// rewritten, cas 5 then 6).
func TestOldWitnessGetAndTouch(t *testing.T) {
	const T = time.Minute
	type burier func(t *testing.T, servers []*mcserver.Server, s *memcached.Store, key string, hook func(*memcached.Store))
	var visit burier = func(_ *testing.T, _ []*mcserver.Server, s *memcached.Store, key string, _ func(*memcached.Store)) {
		memcached.RepairKey(s, key)
	}
	var get burier = func(t *testing.T, _ []*mcserver.Server, s *memcached.Store, key string, _ func(*memcached.Store)) {
		_, err := s.Get(context.Background(), key)
		require.ErrorIs(t, err, provider.ErrNotFound)
	}
	// scan: another process's repair scan, started now, with no call.
	var scan burier = func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, _ string, hook func(*memcached.Store)) {
		cfg := r14Config()
		cfg.Backup, cfg.RepairEvery = memcached.BackupWitness, scanEvery()
		if cfg.RepairEvery < 0 {
			t.Skip("SESSIONLOCK_SCAN_OFF")
		}
		sc := newStore(t, servers, memcached.WithHooks(cfg, hook)) // set before the scan runs (-race)
		waitScans(t, sc, 2)
		require.Positive(t, memcached.ScanVisits(sc), "the scan visited the key")
	}
	for _, tc := range []struct {
		name      string
		hook      func(*memcached.Store)
		bury      burier
		gatBuries bool  // the GetAndTouch itself buries the witness
		buried    bool  // the visit or Get buries it once old again
		after     error // a GetAndTouch once a data copy's node is dead
		overtaken bool  // the GetAndTouch's witness touch is held until it returned
	}{
		{"visit", func(*memcached.Store) {}, visit, false, true, provider.ErrNotFound, false},
		{"get", func(*memcached.Store) {}, get, false, true, provider.ErrNotFound, false},
		{"scan", func(*memcached.Store) {}, scan, false, true, provider.ErrNotFound, false},
		{"broken-any-age", memcached.SetBuryAnyAge, visit, true, true, provider.ErrNotFound, false},
		{"code-before", memcached.SetKeepOldWitness, visit, false, false, provider.ErrUnavailable, false},
		{"code-before-scan", memcached.SetKeepOldWitness, scan, false, false, provider.ErrUnavailable, false},
		{"overtaken", func(*memcached.Store) {}, visit, false, true, provider.ErrNotFound, true},
		{"overtaken-code-before", memcached.SetBuryTouched, visit, true, true, provider.ErrNotFound, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			servers, s := witnessSetup(t, r14Config())
			memcached.SetRepairQueueOff(s)
			tc.hook(s)
			ctx := context.Background()
			const key = "gat"
			cands := oldSession(t, s, key, T)
			expireCopies(t, cands, key, T+time.Minute)
			before := rawItems(t, cands, key)
			require.Equal(t, [3]uint32{0, 0, 2}, [3]uint32{before[0].flags, before[1].flags, before[2].flags})
			var touched atomic.Int32
			memcached.SetWitnessTouched(s, func(k string) {
				if k == key {
					touched.Add(1)
				}
			})
			release := make(chan struct{})
			if tc.overtaken {
				memcached.SetHoldWitnessTouch(s, func(k string) {
					if k != key {
						return
					}
					select {
					case <-release:
					case <-time.After(10 * time.Second): // bound: the call never waits for its touch
					}
				})
			}
			_, err := s.GetAndTouch(ctx, key, T)
			close(release)
			require.ErrorIs(t, err, provider.ErrNotFound)
			require.NotErrorIs(t, err, provider.ErrSessionLost, "this call touched the witness itself")
			testwait.Until(t, 5*time.Second, "the GetAndTouch's witness touch answered", func() bool { return touched.Load() >= 1 })
			after := rawItems(t, cands, key)
			if tc.gatBuries {
				require.Equal(t, uint32(0), after[2].flags, "the broken variant buries on the touching read")
				return
			}
			for i := range after {
				require.Equal(t, before[i].cas, after[i].cas, "candidate %d rewritten by the GetAndTouch", i)
				require.Equal(t, before[i].value, after[i].value)
				require.Equal(t, before[i].flags, after[i].flags)
			}
			tw := int64(2 * memcached.DefaultMaxTimeout / time.Second)
			require.Greater(t, after[2].ttl, tw-int64(T/time.Second), "the touch re-armed the witness (TW)")

			// Young again: a plain Get buries nothing, and R10 reads the
			// fresh witness as a lost session.
			_, err = s.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrSessionLost)
			require.Equal(t, uint32(2), rawGet(t, cands[2], key).flags, "a young witness is kept")

			// No touching read for T + 1 min: the visit or a plain Get
			// buries it.
			rawTouch(t, cands[2], key, int((2*memcached.DefaultMaxTimeout-T-time.Minute)/time.Second))
			tc.bury(t, servers, s, key, tc.hook)
			want := uint32(2)
			if tc.buried {
				want = 0
			}
			require.Equal(t, want, rawGet(t, cands[2], key).flags, "the witness's node holds a witness (2) or a blank (0)")
			serverAt(t, servers, cands[1]).Kill()
			_, err = s.GetAndTouch(ctx, key, T)
			require.ErrorIs(t, err, tc.after)
		})
	}
}

// TestOldWitnessAddRace (review-r14 m2, m5; the model's R14Unfenced): an
// Add of the same id racing R14 may fail (ErrExists, ErrOutcomeUnknown)
// but never succeeds with its witness buried.
//
//   - add-witness: an Add has stored its witness, not yet its data copies,
//     when another process's plain Get reads witness, blank, blank and
//     (its age check off, SetBuryAnyAge: safety does not rest on the age)
//     buries it. The re-stamps refuse the Add's data CASes: the Add fails.
//     The broken variant buries without the re-stamps (SetBuryUnfenced):
//     the Add is acknowledged with no witness, one flush from lost.
//   - takeover: an Add over the old lone witness (R8's takeover) has
//     re-stamped the blanks when R14 runs whole: R14's burial wins the
//     witness, the takeover's CAS there is refused, ErrExists (nothing of
//     the Add written); a second Add then succeeds. The code before R14
//     (SetKeepOldWitness) lets the first Add through.
//   - late-burial: R14 has re-stamped both blanks and not yet sent its
//     burial when an Add of the same id takes the witness over and
//     succeeds: the burial, sent after, holds the witness's old token and
//     is refused; the session is intact.
func TestOldWitnessAddRace(t *testing.T) {
	const T = time.Minute
	const (
		addWitness = iota // R14 runs once the Add stored its witness
		takeover          // R14 runs once the Add's takeover re-stamped the blanks
		lateBurial        // the Add runs once R14 re-stamped the blanks
	)
	for _, tc := range []struct {
		name   string
		race   int
		reader func(*memcached.Store)
		addOK  bool      // the Add succeeds
		want   [3]uint32 // the candidates' kinds after (1 data, 2 witness, 0 blank)
	}{
		{"add-witness", addWitness, memcached.SetBuryAnyAge, false, [3]uint32{0, 0, 0}},
		{"add-witness-broken-unfenced", addWitness, func(s *memcached.Store) { memcached.SetBuryAnyAge(s); memcached.SetBuryUnfenced(s) }, true, [3]uint32{1, 1, 0}},
		{"takeover", takeover, func(*memcached.Store) {}, false, [3]uint32{0, 0, 0}},
		{"takeover-code-before", takeover, memcached.SetKeepOldWitness, true, [3]uint32{1, 1, 2}},
		{"late-burial", lateBurial, func(*memcached.Store) {}, true, [3]uint32{1, 1, 2}},
		{"late-burial-broken-fresh-token", lateBurial, memcached.SetBuryFreshToken, true, [3]uint32{1, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			servers, a := witnessSetup(t, r14Config())
			memcached.SetRepairQueueOff(a)
			b := r14Reader(t, servers, tc.reader)
			ctx := context.Background()
			const key = "race"
			cands := memcached.WitnessCandidates(a, key)
			if tc.race != addWitness {
				cands = oldSession(t, a, key, T)
				expireCopies(t, cands, key, T+time.Minute)
			}
			var fired atomic.Int32
			readerGet := func(string) {
				if fired.Add(1) != 1 {
					return
				}
				_, err := b.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound)
			}
			var addErr error
			switch tc.race {
			case addWitness:
				memcached.SetAfterAddWitness(a, readerGet)
				_, addErr = a.Add(ctx, key, []byte("new"), T)
			case takeover:
				memcached.SetTakeoverHook(a, readerGet)
				_, addErr = a.Add(ctx, key, []byte("new"), T)
			case lateBurial:
				memcached.SetBeforeBury(b, func(string) {
					if fired.Add(1) != 1 {
						return
					}
					_, addErr = a.Add(ctx, key, []byte("new"), T)
				})
				_, err := b.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound, "R14's read answers not found")
			}
			require.Equal(t, int32(1), fired.Load(), "the race was run")
			require.Equal(t, tc.want, kinds(t, cands, key))
			if !tc.addOK {
				require.Error(t, addErr, "the Add raced by R14 must not succeed")
				require.True(t, errorsIsAny(addErr, provider.ErrExists, provider.ErrOutcomeUnknown), "%v", addErr)
				_, err := a.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound)
				if tc.race == takeover {
					_, err = a.Add(ctx, key, []byte("again"), T)
					require.NoError(t, err, "the next Add succeeds")
				}
				return
			}
			require.NoError(t, addErr)
			if tc.want[2] != 2 {
				return // the broken variants: acknowledged with its witness buried
			}
			for _, s := range []*memcached.Store{a, b} {
				e, err := s.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "new", string(e.Value))
			}
		})
	}
}

// errorsIsAny reports whether err is one of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestOldWitnessPromisedBuried (review-r14 m5): R14 buries an old lone
// witness whatever its promise. The promise belongs to a decision (R7, a
// re-ballot, R3's write failover: R11) whose fence is a CAS of a data
// copy with that copy's token; R14 buries only after reading both other
// candidates blank and re-stamping them, so that fence can no longer land
// (R11's own argument for R9 writing over a promise), and the decision's
// copy onto the witness node holds the promise's token, which the burial
// replaces. Here a process's failover (R7: the secondary lost) has
// promised epoch 1 on the witness when the primary's copy expires and
// another process's plain Get reads blank, blank, the promised witness,
// aged past T + the margin: it buries it; the failover's fence is then
// refused, the failover's read again finds three blanks: not found, and
// nothing of the decision is anywhere. The code before R14
// (SetKeepOldWitness) leaves the promised witness.
func TestOldWitnessPromisedBuried(t *testing.T) {
	const T = time.Minute
	for _, tc := range []struct {
		name   string
		reader func(*memcached.Store)
		want   [3]uint32
	}{
		{"fixed", func(*memcached.Store) {}, [3]uint32{0, 0, 0}},
		{"code-before", memcached.SetKeepOldWitness, [3]uint32{0, 0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			servers, a := witnessSetup(t, r14Config())
			memcached.SetRepairQueueOff(a)
			tc.reader(a)
			b := r14Reader(t, servers, tc.reader)
			ctx := context.Background()
			const key = "promised"
			cands := oldSession(t, a, key, T)
			rawSet(t, cands[1], key, nil, 30, 0) // the secondary lost: a's Get fails over (R7)
			var fired atomic.Int32
			memcached.SetAfterPromise(a, func(string) {
				if fired.Add(1) != 1 {
					return
				}
				w := rawGet(t, cands[2], key)
				require.Equal(t, uint32(1), envelope.PromiseOf(w.value), "the failover promised epoch 1 on the witness")
				// The primary's copy expires; the witness was last
				// touched T + 1 min ago.
				rawSet(t, cands[0], key, nil, 30, 0)
				rawTouch(t, cands[2], key, int((2*memcached.DefaultMaxTimeout-T-time.Minute)/time.Second))
				_, err := b.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound)
				require.NotErrorIs(t, err, provider.ErrSessionLost)
				require.Equal(t, tc.want[2], rawGet(t, cands[2], key).flags, "the promised witness buried (0) or kept (2)")
			})
			_, err := a.Get(ctx, key)
			require.Equal(t, int32(1), fired.Load(), "the failover promised")
			require.ErrorIs(t, err, provider.ErrNotFound, "the decision's fence refused, read again: nothing")
			require.Equal(t, tc.want, kinds(t, cands, key), "nothing of the decision landed")
			_, err = b.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)
		})
	}
}
