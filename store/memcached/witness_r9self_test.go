package memcached_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestRepairLeavesKeyToResolvingCall: the repair client of a process
// visits a key while a call of that same process is resolving it (the
// call's R4.3 runs R9 on a nowit configuration whose third node holds a
// blank, review-n4b F2; the visit's anomaly read sees the same). Deciding
// at once, the visit re-stamped P before the call did, so the call's R9
// was refused; the call's completions in turn refused the visit's R9 on
// Q, read after read, and the call hit the cap: the simulation's expiry
// seed 11238 ended "6 anomaly reads without an answer" with no fault
// (about 1 replay in 3,000). The repair client now puts off the
// decisions such a call makes too (a bounded number of visits in a row,
// witness_putoff_test.go), and visits the key again a Timeout later.
//
// The visit is run (RepairKey) from the call's R9, just before its
// re-stamp of P. SetRepairRacesCalls, the code before: the visit's R9
// goes through first and the call's re-stamp of P is refused (a refused
// decision: the call backs off and reads again).
func TestRepairLeavesKeyToResolvingCall(t *testing.T) {
	for _, before := range []bool{false, true} {
		name := map[bool]string{false: "fix", true: "code-before"}[before]
		t.Run(name, func(t *testing.T) {
			const key = "r9-self"
			servers, cfg, cands := noWitBlankThird(t, key)
			ctx := context.Background()

			var (
				mu        sync.Mutex
				visiting  bool  // the visit run from the hook is under way
				visited   bool  // it has run
				callP     error // the call's re-stamp of P
				callPDone bool
				refusals  int
			)
			loopVisit := make(chan struct{}, 16)
			var r *memcached.Store
			r = newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if before {
					memcached.SetRepairRacesCalls(s)
				}
				memcached.SetR9RestampHook(s, func(k string, primary, done bool, err error) {
					if k != key || !primary {
						return
					}
					mu.Lock()
					switch {
					case visiting:
						mu.Unlock()
						return
					case !done && !visited:
						visiting, visited = true, true
						mu.Unlock()
						memcached.RepairKey(r, key) // the repair client's visit
						mu.Lock()
						visiting = false
					case done && visited && !callPDone:
						callP, callPDone = err, true
					}
					mu.Unlock()
				})
				memcached.SetBackoffHook(s, func(k string, n int, d time.Duration) {
					if k == key {
						mu.Lock()
						refusals++
						mu.Unlock()
					}
				})
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						select { // only the visit put off queues key
						case loopVisit <- struct{}{}:
						default:
						}
					}
				})
			}))

			got, err := r.Get(ctx, key)
			require.NoError(t, err, "the call returns the session")
			require.Equal(t, "v1", string(got.Value))
			require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "the witness stored on c1")

			mu.Lock()
			ran, pDone, pErr, refused := visited, callPDone, callP, refusals
			mu.Unlock()
			require.True(t, ran && pDone, "the visit ran from the call's R9, and the call re-stamped P after it")
			if before {
				require.Error(t, pErr, "the code before: the visit re-stamped P first, the call's re-stamp refused")
				require.Equal(t, 1, refused, "the code before: the call's R9 refused, one back-off")
				t.Logf("the code before: the repair client's visit refused its own process's call")
				return
			}
			require.NoError(t, pErr, "the visit wrote nothing: the call's R9 went through")
			require.Zero(t, refused, "no decision of the call refused")
			select {
			case <-loopVisit:
			case <-time.After(5 * time.Second):
				t.Error("the visit put off was not made again after the call ended")
			}
		})
	}
}
