package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// startServer starts one redis-server for t (skipping when redis-server
// is not installed).
func startServer(t testing.TB, args ...string) *redistest.Server {
	t.Helper()
	return redistest.StartForTest(t, 1, redistest.Config{Args: args})[0]
}

// newStore returns a Store on srv, closed when t ends.
func newStore(t testing.TB, srv *redistest.Server, cfg redis.Config) *redis.Store {
	t.Helper()
	cfg.Addr = srv.Addr()
	s, err := redis.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// flush empties srv.
func flush(t testing.TB, srv *redistest.Server) {
	t.Helper()
	require.NoError(t, srv.FlushAll(context.Background()))
}

// startReplicated starts a master and a replica of it, without the 5 s
// Redis waits by default before a replica's first (diskless) sync, and
// returns once the replica is in sync.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	servers := redistest.StartForTest(t, 2, redistest.Config{Args: []string{"--repl-diskless-sync-delay", "0"}})
	master, replica = servers[0], servers[1]
	ctx := context.Background()
	require.NoError(t, replica.Do(ctx, "REPLICAOF", "127.0.0.1", master.Port()).Err())
	waitUntil(t, 10*time.Second, "the replica to connect", func() bool {
		info, err := master.Do(ctx, "INFO", "replication").Text()
		return err == nil && strings.Contains(info, "state=online")
	})
	return master, replica
}
