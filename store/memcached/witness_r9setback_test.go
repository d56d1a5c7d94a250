package memcached_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// docs/replication.md §2.3, "The other way: how early a repair can end a
// session": R9's nowit clear and a TTL split's re-stamp rewrite whole data
// records (memcached has no CAS that keeps a TTL) with an expiry from R9's
// read (keepExp), so a client touch acknowledged between that read and the
// CAS (a touch keeps the token: the CAS still matches) is set back. The
// bound: the session then expires no earlier than its access before that
// touch plus T, less up to 2 × clockSlack for each copy made onto another
// node since; a later access sets T again.
//
// Each case ages the session (T = 60 s) as if its last access were some
// seconds ago, pauses R9 (process A) between its read and its CAS, has
// another process (B) touch the session through its Store (Touch, or
// GetAndTouch), acknowledged in that window, then lets R9's CAS land.
// Every copy must keep at least the bound (t left by the access before
// the touch, less the seconds since, less 2 × clockSlack per copy made),
// get no more than the touch gave, and be really set back where the case
// says; B's next touch gives both copies T again. SetR9ExpCut (R9 writes
// keepExp less 10 s), the broken variant, must break the lower bound.
func TestR9SetBackBounded(t *testing.T) {
	cases := []r9SetBackCase{
		{
			name: "nowit-clear",
			doc:  "a creation whose witness was not written: both copies nowit, 30 s left, no witness; R9 stores it and clears nowit on both copies with the t of its re-read",
			setup: func(t *testing.T, servers []*mcserver.Server, key string, cands []string) (int64, int) {
				// R8 with the witness's node silent: the copies nowit,
				// nothing on c2. Its access (the creation) 30 s ago; no
				// copy made onto another node since.
				it := rawGet(t, cands[0], key)
				env, payload, err := envelope.Decode(it.value)
				require.NoError(t, err)
				env.NoWit = true
				require.NoError(t, raw(t, cands[2]).Delete(key))
				for _, a := range cands[:2] {
					rawSet(t, a, key, env.Wrap(payload), 30, 1)
				}
				return 30, 0
			},
			data:    [2]int{0, 1},
			atClear: true,
			setBack: [2]bool{true, true},
			wit:     true,
		},
		{
			name: "nowit-failover",
			doc:  "a failover from an empty secondary (c1 flushed): the copies nowit on c0 (30 s left) and c2 (the failover's copy, 28 s), a blank on c1; R9 stores the witness on c1 and clears nowit with the t of its re-read",
			setup: func(t *testing.T, servers []*mcserver.Server, key string, cands []string) (int64, int) {
				// The creation 30 s ago; then c1 lost it (a flush) and a
				// reader failed it over onto c2 (copyExp: 28 s), as
				// noWitBlankThird does. A reader of the code before
				// (SetNoWitFastPath) returns the nowit record without
				// running R9, which the test runs.
				for _, a := range cands[:2] {
					rawTouch(t, a, key, 30)
				}
				ctx := context.Background()
				require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(ctx))
				setup := newStore(t, servers, memcached.WithHooks(memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 2 * time.Second}, func(s *memcached.Store) {
					memcached.SetRepairQueueOff(s)
					memcached.SetNoWitFastPath(s)
				}))
				_, err := setup.Get(ctx, key)
				require.NoError(t, err, "the failover")
				require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "the copies on c0 and c2, c1 empty")
				return 30, 1 // c0's t copied onto c2
			},
			data:    [2]int{0, 2},
			atClear: true,
			setBack: [2]bool{true, true},
			wit:     true,
		},
		{
			name: "split-witness",
			doc:  "a TTL split (c0 40 s, c1 20 s: the last access, 20 s ago, reached c0 only) with the witness in place; R9 CASes both copies (clearNoWit): c0 its own t, c1 c0's less clockSlack",
			setup: func(t *testing.T, servers []*mcserver.Server, key string, cands []string) (int64, int) {
				rawTouch(t, cands[0], key, 40)
				rawTouch(t, cands[1], key, 20)
				return 40, 1 // c0's t copied onto c1 (copyExp)
			},
			data:    [2]int{0, 1},
			atClear: true,
			setBack: [2]bool{true, true},
		},
		{
			name: "split-restamp",
			doc:  "the same split with no witness on c2; R9 re-stamps c0 (an append of nothing: its expiry, the touch's, kept), CASes c1 with c0's t less clockSlack, then stores the witness",
			setup: func(t *testing.T, servers []*mcserver.Server, key string, cands []string) (int64, int) {
				require.NoError(t, raw(t, cands[2]).Delete(key))
				rawTouch(t, cands[0], key, 40)
				rawTouch(t, cands[1], key, 20)
				return 40, 1
			},
			data:    [2]int{0, 1},
			setBack: [2]bool{false, true},
			wit:     true,
		},
	}
	touches := []struct {
		name  string
		touch func(ctx context.Context, s *memcached.Store, key string) error
	}{
		{"Touch", func(ctx context.Context, s *memcached.Store, key string) error { return s.Touch(ctx, key, time.Minute) }},
		{"GetAndTouch", func(ctx context.Context, s *memcached.Store, key string) error {
			_, err := s.GetAndTouch(ctx, key, time.Minute)
			return err
		}},
	}
	for _, c := range cases {
		for _, tc := range touches {
			for _, broken := range []bool{false, true} {
				name := c.name + "/" + tc.name
				if broken {
					name += "/cut"
				}
				t.Run(name, func(t *testing.T) { r9SetBack(t, c, tc.touch, broken) })
			}
		}
	}
}

// r9SetBackCase is a state of a session R9 rewrites whole (see
// TestR9SetBackBounded).
type r9SetBackCase struct {
	name, doc string
	// setup ages the session (Added with T = 60 s) and returns the t its
	// last access left and the copies made onto another node since.
	setup   func(t *testing.T, servers []*mcserver.Server, key string, cands []string) (before int64, made int)
	data    [2]int  // the candidates holding the data copies (P, Q) once set up
	atClear bool    // R9 pauses in clearNoWit (else before its re-stamp of Q)
	setBack [2]bool // the copies R9's CAS rewrites with its read's t
	wit     bool    // R9 stores the witness (the case has none on the third node)
}

// r9SetBack runs case c: touch is B's touch, broken the variant cut.
func r9SetBack(t *testing.T, c r9SetBackCase, touch func(context.Context, *memcached.Store, string) error, broken bool) {
	const clockSlack = 2 // the package's (expiration.go)
	const key = "r9setback"
	servers := startNodes(t, 3)
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
	ctx := context.Background()
	s0 := newStore(t, servers, cfg)
	cands := memcached.WitnessCandidates(s0, key)
	_, err := s0.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, cands, key), "data on c0 and c1, the witness on c2")
	full := int64(memcached.TimeoutExp(60)) // what a client access of T = 60 s gives

	aged := time.Now()
	before, made := c.setup(t, servers, key, cands)
	data := [2]string{cands[c.data[0]], cands[c.data[1]]}
	third := cands[3-c.data[0]-c.data[1]]
	// since is the most memcached's clock can have ticked since the
	// ageing: whole seconds, plus one for its phase.
	since := func() int64 { return int64(time.Since(aged)/time.Second) + 1 }

	paused, release := make(chan struct{}), make(chan struct{})
	var pauseOnce, releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open)
	pause := func() {
		pauseOnce.Do(func() {
			close(paused)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
				t.Errorf("R9 held 10 s between its read and its CAS")
			}
		})
	}
	a := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		memcached.SetRepairQueueOff(s)
		if broken {
			memcached.SetR9ExpCut(s, 10)
		}
		if c.atClear {
			memcached.SetR9ClearHook(s, func(k string) {
				if k == key {
					pause()
				}
			})
			return
		}
		memcached.SetR9RestampHook(s, func(k string, primary, done bool, _ error) {
			if k == key && !primary && !done {
				pause()
			}
		})
	}))
	b := newStore(t, servers, memcached.WithHooks(cfg, memcached.SetRepairQueueOff))

	ended := make(chan struct{})
	go func() {
		defer close(ended)
		memcached.RepairKey(a, key)
	}()
	waitClosed(t, paused, "R9 between its read and its CAS")
	// B reads the session first (a plain read: no touch, no R9: the
	// witness is in place or the record not nowit), so that its touch
	// goes to the configuration's nodes (a touch from the default one
	// would give c2, a data copy after the failover, TW first and its T
	// back later, on a goroutine of its own).
	_, err = b.Get(ctx, key)
	require.NoError(t, err)
	require.NoError(t, touch(ctx, b, key), "B's touch, acknowledged inside R9's window")
	gave := copyTTLs(t, data, key)
	for i, g := range gave {
		require.GreaterOrEqual(t, g, full-since(), "c%d: B's touch gave it T", c.data[i])
	}
	open()
	waitClosed(t, ended, "R9 to end")

	after := copyTTLs(t, data, key)
	bound := before - since() - 2*clockSlack*int64(made)
	for i := range after {
		env, payload, _ := envAt(t, data[i], key)
		require.False(t, env.NoWit, "copy %d: nowit cleared", i)
		require.Equal(t, "v1", payload, "copy %d", i)
		require.LessOrEqual(t, after[i], min(gave[i], full), "c%d: R9 gave no copy more than the touch did, nor more than T", c.data[i])
		if c.setBack[i] {
			require.LessOrEqual(t, after[i], before+1, "c%d set back to R9's read (the window is real)", c.data[i])
			require.Less(t, after[i], gave[i], "c%d set back", c.data[i])
		} else {
			require.GreaterOrEqual(t, after[i], gave[i]-since(), "c%d keeps the touch (R9 re-stamps it by an append of nothing)", c.data[i])
		}
	}
	if c.wit {
		require.Equal(t, uint32(2), rawGet(t, third, key).flags, "R9 stored the witness on the third node")
	}
	var under []string
	for i, ttl := range after {
		if ttl < bound {
			under = append(under, fmt.Sprintf("c%d %d s", c.data[i], ttl))
		}
	}
	t.Logf("%s: the access before the touch left %d s (%d copies made since), the touch gave %v, after R9's CAS %v, the bound %d s", c.doc, before, made, gave, after, bound)
	if broken {
		require.NotEmpty(t, under, "the broken variant (keepExp less 10 s) goes below the bound %d s: %v", bound, after)
		t.Logf("the broken variant: below the bound: %v", under)
	} else {
		require.Empty(t, under, "the session ends no earlier than the access before the touch plus T, less 2 × clockSlack per copy made (%d s)", bound)
	}

	// A later access sets T again on both copies.
	require.NoError(t, touch(ctx, b, key))
	again := copyTTLs(t, data, key)
	for i, ttl := range again {
		require.GreaterOrEqual(t, ttl, full-1, "c%d: the later access gave it T", c.data[i])
	}
}

// copyTTLs returns key's t (seconds left, `mg … t`) on its data copies
// (the addresses of P and Q).
func copyTTLs(t *testing.T, data [2]string, key string) [2]int64 {
	t.Helper()
	var ttls [2]int64
	for i, a := range data {
		it := rawGet(t, a, key)
		require.True(t, it.found, "%s holds the session", a)
		ttls[i] = it.ttl
	}
	return ttls
}
