package memcached_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestConcurrentR9OneGoesThrough: two processes run R9 on one key from
// the same read (two plain readers of a nowit configuration whose third
// node holds a blank: R4.3, review-n4b F2; the readers of a burst after
// a failover). R9 re-stamped both data copies in parallel, so one could
// win P and the other Q and both be refused, read after read: the
// simulation's flush-step seeds saw "6 anomaly reads without an answer"
// a failover time after the fault (restampBoth). It re-stamps P first
// and Q only once P is stored: of two R9s from one read, the one that
// re-stamps P goes through, and the other has changed nothing.
//
// The hooks order the first attempt of each: both read before either
// re-stamps; A re-stamps P first; B re-stamps Q before A does (when B
// sends one at all). SetR9ParallelRestamps, the code before, then has A
// win P and B win Q: neither goes through.
func TestConcurrentR9OneGoesThrough(t *testing.T) {
	for _, before := range []bool{false, true} {
		name := map[bool]string{false: "fix", true: "code-before"}[before]
		t.Run(name, func(t *testing.T) {
			const key = "r9-race"
			servers, cfg, cands := noWitBlankThird(t, key)
			ctx := context.Background()

			// Each hook acts on its event's first occurrence only (the
			// first attempt of each process); later attempts pass.
			var mu sync.Mutex
			seen := map[string]bool{}
			order := map[string]int{}
			errs := map[string]error{}
			first := func(ev string, err error) bool {
				mu.Lock()
				defer mu.Unlock()
				if seen[ev] {
					return false
				}
				seen[ev], errs[ev], order[ev] = true, err, len(order)+1
				return true
			}
			aRead, bRead, aP, bDone := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
			var once [4]sync.Once
			closeOnce := func(i int, ch chan struct{}) { once[i].Do(func() { close(ch) }) }
			wait := func(what string, ch chan struct{}) {
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					t.Errorf("waited 10 s for %s", what)
				}
			}
			event := func(who string, primary, done bool) string {
				return who + map[bool]string{true: "P", false: "Q"}[primary] + map[bool]string{true: " done", false: " sent"}[done]
			}
			reader := func(who string, hook func(ev string, err error)) *memcached.Store {
				return newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
					memcached.SetRepairQueueOff(s)
					if before {
						memcached.SetR9ParallelRestamps(s)
					}
					memcached.SetR9RestampHook(s, func(k string, primary, done bool, err error) {
						if ev := event(who, primary, done); k == key && first(ev, err) {
							hook(ev, err)
						}
					})
				}))
			}
			a := reader("A", func(ev string, err error) {
				switch ev {
				case "AP sent":
					closeOnce(3, aRead)
					wait("B's read", bRead)
				case "AP done":
					closeOnce(1, aP)
				case "AQ sent":
					closeOnce(3, aRead)
					wait("B's re-stamp of Q, or B's R9 to end", bDone)
				}
			})
			b := reader("B", func(ev string, err error) {
				switch ev {
				case "BP sent":
					closeOnce(0, bRead)
					wait("A's re-stamp of P", aP) // A has read: it re-stamped
				case "BP done":
					if err != nil && !before {
						closeOnce(2, bDone) // the fix sends no Q after P refused
					}
				case "BQ sent":
					closeOnce(0, bRead)
					wait("A's read", aRead)
				case "BQ done":
					closeOnce(2, bDone)
				}
			})

			var wg sync.WaitGroup
			var errA, errB error
			wg.Go(func() { _, errA = a.Get(ctx, key) })
			wg.Go(func() { _, errB = b.Get(ctx, key) })
			wg.Wait()
			require.NoError(t, errors.Join(errA, errB), "both reads answer in the end")
			require.Equal(t, uint32(2), kinds(t, cands, key)[1], "the witness stored on c1")

			mu.Lock()
			defer mu.Unlock()
			require.True(t, seen["AP done"] && seen["BP done"], "both re-stamped P: %v", seen)
			require.NoError(t, errs["AP done"], "A re-stamped P first")
			require.Error(t, errs["BP done"], "B's re-stamp of P, after A's, refused")
			if before {
				require.True(t, seen["BQ done"], "the code before: B re-stamped Q in parallel with P")
				require.NoError(t, errs["BQ done"], "the code before: B won Q")
				require.Error(t, errs["AQ done"], "the code before: A's re-stamp of Q refused after B's")
				t.Logf("the code before: A won P, B won Q, neither R9 went through on their first read")
				return
			}
			require.True(t, !seen["BQ sent"] || order["BQ sent"] > order["AQ done"], "B, refused on P, sent no re-stamp of Q in its first attempt: %v", order)
			require.NoError(t, errs["AQ done"], "A's R9 went through")
		})
	}
}

// noWitBlankThird adds key ("v1") on three new nodes, flushes its
// secondary's node and has a reader that returns nowit configurations
// without R9 fail it over: {c0, c2}, nowit, a blank on c1. It returns the
// nodes, the Stores' configuration and key's candidates.
func noWitBlankThird(t *testing.T, key string) ([]*mcserver.Server, memcached.Config, []string) {
	t.Helper()
	servers := startNodes(t, 3)
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
	ctx := context.Background()
	s0 := newStore(t, servers, cfg)
	cands := memcached.WitnessCandidates(s0, key)
	_, err := s0.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, cands, key), "data on c0 and c1, the witness on c2")

	require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(ctx))
	setup := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		memcached.SetRepairQueueOff(s)
		memcached.SetNoWitFastPath(s)
	}))
	got, err := setup.Get(ctx, key)
	require.NoError(t, err, "the failover")
	require.Equal(t, "v1", string(got.Value))
	require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "the new configuration's copies on c0 and c2, c1 empty")
	return servers, cfg, cands
}
