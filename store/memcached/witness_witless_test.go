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
