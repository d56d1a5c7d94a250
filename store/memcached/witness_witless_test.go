package memcached_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/stretchr/testify/require"
)

// TestWitlessListIdleWhileWitnessNodeDown: sessions created while a node
// is dead are made without their witness (R8's failed-candidate case) and
// listed for R9, their witness due on the dead node. While it stays down
// the background loop does not read their data copies at every tick: R9
// cannot store there. The code before did, two reads a key four times a
// second without end (the growth audit: 24,000 gets a second to the live
// nodes with 60,000 such sessions, the probe of the dead node and the
// repair queue waiting behind each pass). Once the node is back, the
// witnesses are stored and the list empties.
func TestWitlessListIdleWhileWitnessNodeDown(t *testing.T) {
	const sessions = 40
	for _, before := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[before], func(t *testing.T) {
			servers := mcserver.StartForTest(t, 3, mcserver.Config{})
			var ticks atomic.Int64
			s := newStore(t, servers, memcached.WithHooks(memcached.Config{
				Backup:        memcached.BackupWitness,
				FailoverAfter: 300 * time.Millisecond,
			}, func(s *memcached.Store) {
				memcached.SetAfterTick(s, func() { ticks.Add(1) })
				if before {
					memcached.SetWitlessVisitFailed(s)
				}
			}))
			ctx := context.Background()
			dead := servers[2]
			dead.Kill()
			for i := range sessions {
				key := "witless" + strconv.Itoa(i)
				testwait.Until(t, 10*time.Second, "Add without the dead candidate", func() bool {
					_, err := s.Add(ctx, key, []byte("v"), time.Minute)
					return err == nil
				})
			}
			listed := memcached.WitlessKeys(s)
			require.Equal(t, sessions, listed, "every session created while a candidate is dead is listed for R9")
			require.True(t, memcached.NodeFailed(s, dead.Addr()))

			live := servers[:2]
			from, start := countOps(t, live), ticks.Load()
			testwait.Until(t, 10*time.Second, "four ticks of the witness loop", func() bool { return ticks.Load() >= start+4 })
			reads := countOps(t, live).get - from.get
			if before {
				require.GreaterOrEqual(t, reads, uint64(4*listed), "the code before reads every listed key's data copies at every tick")
				return
			}
			require.Less(t, reads, uint64(listed), "%d keys listed, their witness node down: %d reads of the live nodes in four ticks", listed, reads)
			require.Equal(t, listed, memcached.WitlessKeys(s), "nothing leaves the list while its witness node is down")

			require.NoError(t, dead.Restart(ctx))
			testwait.Until(t, 20*time.Second, "the witnesses stored once the node is back", func() bool { return memcached.WitlessKeys(s) == 0 })
		})
	}
}

// TestLongPassProbesAndRepairs: a tick's pass over the witness loop's
// lists can take long (one visit is an anomaly read, its decisions and
// R9: with many keys listed, seconds). Meanwhile the loop still probes
// the failed nodes at their period, so a node's return is seen as soon as
// with no pass under way, and still works the repair queue (past
// repairQueueLen keys it drops them). Here each listed key's visit is held
// by the test: while the pass is held at its second visit, the dead node
// is back and cleared, and a key queued meanwhile was served. The code
// before (SetLongPassBlind) does neither until the pass ends.
func TestLongPassProbesAndRepairs(t *testing.T) {
	for _, before := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[before], func(t *testing.T) {
			servers := mcserver.StartForTest(t, 3, mcserver.Config{})
			const queued = "queued-for-r9"
			var (
				served  atomic.Bool // the queued key was visited
				visits  = make(chan string)
				release = make(chan struct{})
				done    = make(chan struct{}) // the test ended: visits no longer held
			)
			s := newStore(t, servers, memcached.WithHooks(memcached.Config{
				Backup:        memcached.BackupWitness,
				FailoverAfter: 300 * time.Millisecond,
			}, func(s *memcached.Store) {
				// Every listed key is visited, its witness node down or
				// not: the pass is long while the node is down.
				memcached.SetWitlessVisitFailed(s)
				memcached.SetLoopVisit(s, func(key string) {
					if key == queued {
						served.Store(true)
						return
					}
					select {
					case visits <- key:
					case <-done:
						return
					}
					select {
					case <-release:
					case <-done:
					}
				})
				if before {
					memcached.SetLongPassBlind(s)
				}
			}))
			t.Cleanup(func() { close(done) }) // before the Store's Close (cleanups run last first)
			ctx := context.Background()
			dead := servers[2]
			dead.Kill()
			for i := range 3 {
				key := "longpass" + strconv.Itoa(i)
				testwait.Until(t, 10*time.Second, "Add without the dead candidate", func() bool {
					_, err := s.Add(ctx, key, []byte("v"), time.Minute)
					return err == nil
				})
			}
			require.Equal(t, 3, memcached.WitlessKeys(s))
			require.True(t, memcached.NodeFailed(s, dead.Addr()))

			// The first visit of a pass: held while the node comes back
			// and a key is queued, past the probe's period.
			waitVisit(t, visits)
			held := time.Now()
			require.NoError(t, dead.Restart(ctx))
			memcached.Enqueue(s, queued)
			testwait.Until(t, 5*time.Second, "a probe period since the pass began", func() bool {
				return time.Since(held) > 2*300*time.Millisecond
			})
			release <- struct{}{}

			// The pass is held again at its second visit.
			waitVisit(t, visits)
			failed, wasServed := memcached.NodeFailed(s, dead.Addr()), served.Load()
			release <- struct{}{}
			if before {
				require.True(t, failed, "the code before probes only after the pass")
				require.False(t, wasServed, "the code before works the queue only after the pass")
				return
			}
			require.False(t, failed, "the node is back and probed during the pass")
			require.True(t, wasServed, "the queued key is served during the pass")
		})
	}
}

// waitVisit waits for the witness loop to hold a visit on visits.
func waitVisit(t *testing.T, visits <-chan string) {
	t.Helper()
	select {
	case <-visits:
	case <-time.After(10 * time.Second):
		t.Fatal("no visit of a listed key within 10s")
	}
}
