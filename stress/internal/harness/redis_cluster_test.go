package harness_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// TestRedisClusterFailover kills, during traffic, the busiest master of a
// real Redis Cluster (3 masters, one replica each; -managed-cluster
// -kill-master), with and without WAIT 1, and asserts what the failover
// table of docs/backends.md claims. Part of the faults stage
// (SESSIONLOCK_FAULTS=1, -p 1; about 30 s).
//
// With WAIT 1 (-redis-wait 1) every acknowledged write was on the killed
// master's one replica, which the cluster promotes: no acknowledged
// update is lost, no session is lost, and no two exclusive handlers of a
// session run at once. The promoted master has no replica until the
// killed one is restarted (-restart-node, after the promotion) and has
// synced, so its shard's writes fail (outcome unknown) meanwhile; a lock
// taken by such a write is held by nobody until its lease ends, so stuck
// locks are not asserted.
//
// Without WAIT nothing beyond the run completing is claimed: replication
// is asynchronous, and a write acknowledged just before the kill may
// never have reached the replica (a lost update, a lock that vanished
// under its holder: I1, I3 and the others). What the run saw is logged.
func TestRedisClusterFailover(t *testing.T) {
	if os.Getenv("SESSIONLOCK_FAULTS") == "" {
		t.Skip("set SESSIONLOCK_FAULTS=1 (scripts/test.sh stage faults)")
	}
	skipWithoutRedis(t)
	at := func(s string) harness.At {
		a, err := harness.ParseAt(s)
		require.NoError(t, err)
		return a
	}
	base := harness.Config{
		Backend: harness.BackendRedis, ManagedCluster: true,
		Procs: 2, InProcess: true, Sessions: 16, Burst: 6,
		Requests: -1, Duration: 6 * time.Second, Lease: 1500 * time.Millisecond,
		SlowTime: 5 * time.Millisecond, KillMaster: at("1500ms"), Seed: 3,
	}
	events := func(t *testing.T, res *harness.Result, want ...string) {
		t.Helper()
		var kinds []string
		for _, e := range res.Events {
			t.Logf("fault at %.0f ms: %s %s: %s", e.AtMs, e.Kind, e.Target, e.What)
			require.False(t, e.Missed, "fault not reached: %+v", e)
			require.NotEqual(t, harness.FaultError, e.Kind, "fault not injected: %+v", e)
			kinds = append(kinds, e.Kind)
		}
		require.Equal(t, want, kinds)
		require.True(t, strings.HasPrefix(res.Events[0].Target, "redis node "), "target %q", res.Events[0].Target)
		t.Logf("recovery: last failed request %.0f ms after the kill, failures ended before the run: %v", res.RecoveryMs, res.Recovered)
	}

	t.Run("wait1", func(t *testing.T) {
		cfg := base
		cfg.RedisWait = 1
		cfg.Duration = 7 * time.Second
		cfg.RedisWaitTimeout = time.Second // the shared CI machine can be slow
		cfg.RestartNode = at("2s")         // restarted once its replica took over
		res := run(t, cfg)
		events(t, res, harness.FaultKillMaster, harness.FaultRestartNode)
		require.Positive(t, res.RequestsFailed, "the killed master's shard fails until its replica takes over")
		require.Zero(t, res.LostUpdates, "an acknowledged update was lost in the failover")
		require.Zero(t, res.SessionsLost, "sessions_lost")
		require.Zero(t, res.ExclusionViolations, "two exclusive handlers of one session ran at once")
	})
	t.Run("nowait", func(t *testing.T) {
		cfg := base
		cfg.Duration = 5 * time.Second
		res := run(t, cfg)
		events(t, res, harness.FaultKillMaster)
		require.Positive(t, res.RequestsFailed, "the killed master's shard fails until its replica takes over")
		if v := res.Violations(); len(v) > 0 {
			t.Logf("without WAIT (not claimed): invariants violated: %s", strings.Join(v, ", "))
		} else {
			t.Logf("without WAIT this run happened to keep every invariant (not claimed)")
		}
	})
}

func TestRedisClusterConfigErrors(t *testing.T) {
	at := harness.At{After: time.Second}
	for _, tc := range []struct {
		cfg  harness.Config
		want string
	}{
		{harness.Config{Backend: harness.BackendMemcached, ManagedCluster: true}, "-managed-cluster"},
		{harness.Config{Backend: harness.BackendRedis, ManagedCluster: true, Managed: 3}, "-managed-cluster"},
		{harness.Config{Backend: harness.BackendRedis, ManagedCluster: true, Nodes: []string{"127.0.0.1:1"}}, "-managed-cluster"},
		{harness.Config{Backend: harness.BackendRedis, ManagedCluster: true, Latency: time.Millisecond}, "-latency"},
		{harness.Config{Backend: harness.BackendRedis, Managed: 1, KillMaster: at}, "-kill-master needs"},
		{harness.Config{Backend: harness.BackendRedis, Managed: 1, RedisWait: -1}, "-redis-wait"},
		{harness.Config{Backend: harness.BackendRedis, Managed: 1, RedisWaitTimeout: -1}, "-redis-wait"},
		{harness.Config{Backend: harness.BackendMemcached, Managed: 3, RedisWait: 1}, "-redis-wait"},
	} {
		_, err := harness.Run(context.Background(), tc.cfg)
		require.ErrorIs(t, err, harness.ErrConfig)
		require.ErrorContains(t, err, tc.want)
	}
}
