package tieredtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// newMemcached returns a memcached store over servers, quick to notice a
// restarted node is back.
func newMemcached(t testing.TB, servers []*mcserver.Server) *memcached.Store {
	t.Helper()
	mc, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers), HealthCheckInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	return mc
}

func flushAll(t testing.TB, servers []*mcserver.Server) {
	t.Helper()
	for _, srv := range servers {
		require.NoError(t, srv.FlushAll(context.Background()))
	}
}

func TestConformanceMemcached(t *testing.T) {
	dsn := pg.NewDatabase(t)
	servers := mcserver.StartForTest(t, 2, mcserver.Config{})
	providertest.Run(t, providertest.Options{
		NewStore: func(t *testing.T) provider.Store {
			flushAll(t, servers)
			// The checks are not about timeouts: a generous one keeps a
			// loaded machine's stall (CI saw an i/o timeout at 500 ms,
			// load average 20 on 2 cores) from failing them.
			mc, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers), HealthCheckInterval: 10 * time.Millisecond, Timeout: 5 * time.Second})
			require.NoError(t, err)
			s, err := tiered.New(tiered.Config{Cache: mc, Durable: newDurable(t, dsn)})
			require.NoError(t, err)
			return s
		},
	})
}

// A flush loses no acknowledged increment and applies no refused one; no
// request is unavailable, so the count is exact.
func TestMemcachedFlushedDuringIncrements(t *testing.T) {
	servers := mcserver.StartForTest(t, 2, mcserver.Config{})
	s, _ := newTiered(t, pg.NewDatabase(t), newMemcached(t, servers), tiered.Config{})
	hammer(t, s, func() { flushAll(t, servers) })
}

// A restart empty: requests in flight while the node is down fail as
// unavailable (a commit among them may or may not have happened); none
// acknowledged is lost, and none stays stuck.
func TestMemcachedRestartedDuringIncrements(t *testing.T) {
	servers := mcserver.StartForTest(t, 1, mcserver.Config{})
	s, _ := newTiered(t, pg.NewDatabase(t), newMemcached(t, servers), tiered.Config{})
	hammer(t, s, func() {
		require.NoError(t, servers[0].Restart(context.Background()))
	})
}
