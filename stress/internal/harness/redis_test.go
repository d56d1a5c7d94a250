package harness_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/redis/redistest"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

func skipWithoutRedis(t *testing.T) {
	t.Helper()
	srv, err := redistest.Start(context.Background(), redistest.Config{})
	if errors.Is(err, redistest.ErrNoBinary) {
		if os.Getenv(redistest.EnvRequire) != "" {
			t.Fatalf("%s is set but %v", redistest.EnvRequire, err)
		}
		t.Skip(redistest.SkipMessage)
	}
	require.NoError(t, err)
	srv.Stop()
}

// TestRedisRun runs two app servers on a managed redis-server: every
// request succeeds and every invariant holds.
func TestRedisRun(t *testing.T) {
	skipWithoutRedis(t)
	res := run(t, harness.Config{
		Backend: harness.BackendRedis, Managed: 1,
		Procs: 2, InProcess: true, Sessions: 10, Burst: 8, Requests: 1000,
		SlowTime: time.Millisecond,
	})
	requireClean(t, res)
	require.Equal(t, res.RequestsTotal, res.RequestsOK, "failed: %v", res.FailedByReason)
}

// TestRedisRunOnNodes runs the harness on a redis-server it did not
// start (-backend redis -nodes host:port): every invariant holds and the
// sessions are on that server. (Requests may fail on a loaded machine: a
// store operation past the store's 500 ms timeout is a 500 or 503; the
// invariants hold all the same.)
func TestRedisRunOnNodes(t *testing.T) {
	skipWithoutRedis(t)
	srv := redistest.StartForTest(t, 1, redistest.Config{})[0]
	res := run(t, harness.Config{
		Backend: harness.BackendRedis, Nodes: []string{srv.Addr()},
		Procs: 2, InProcess: true, Sessions: 10, Burst: 8, Requests: 500,
		SlowTime: time.Millisecond,
	})
	requireClean(t, res)
	require.Positive(t, res.RequestsOK)
	n, err := srv.Do(context.Background(), "DBSIZE").Int64()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(10), "the sessions are on the given server")
}

// TestRedisKilledAndRestarted kills the one redis-server mid-run and
// restarts it empty: requests fail while it is down and every session is
// lost with it (a single server without persistence), but nothing is
// acknowledged and then lost, no lock stays stuck and no two requests
// hold a session at once.
func TestRedisKilledAndRestarted(t *testing.T) {
	skipWithoutRedis(t)
	kill, err := harness.ParseAt("30%")
	require.NoError(t, err)
	restart, err := harness.ParseAt("50%")
	require.NoError(t, err)
	res := run(t, harness.Config{
		Backend: harness.BackendRedis, Managed: 1,
		Procs: 2, InProcess: true, Sessions: 10, Burst: 8, Requests: 1500,
		SlowTime: time.Millisecond, KillNode: kill, RestartNode: restart,
	})
	require.Len(t, res.Events, 2)
	require.Contains(t, res.Events[0].What, "killed")
	require.Contains(t, res.Events[1].What, "restarted")
	require.Zero(t, res.LostUpdates, "lost_updates")
	require.Zero(t, res.StuckLocks, "stuck_locks")
	require.Zero(t, res.ExclusionViolations, "exclusion_violations")
	require.Positive(t, res.RequestsFailed, "requests fail while the server is down")
	require.Equal(t, 10, res.SessionsLost, "the restarted server is empty")
}

func TestRedisConfigErrors(t *testing.T) {
	for _, cfg := range []harness.Config{
		{Backend: harness.BackendRedis},
		{Backend: harness.BackendRedis, Managed: 3},
		{Backend: harness.BackendRedis, Managed: 1, Nodes: []string{"127.0.0.1:6379"}},
	} {
		_, err := harness.Run(context.Background(), cfg)
		require.ErrorIs(t, err, harness.ErrConfig)
		require.ErrorContains(t, err, "backend redis needs one server")
	}
}
