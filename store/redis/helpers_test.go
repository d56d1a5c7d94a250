package redis_test

import (
	"context"
	"testing"

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
