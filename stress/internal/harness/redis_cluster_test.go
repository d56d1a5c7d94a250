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
// -kill-master), and asserts what the failover table of docs/backends.md
// claims. Part of the faults stage (SESSIONLOCK_FAULTS=1, -p 1; about
// 30 s).
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
// The same assertions are then run where asynchronous replication is
// sure to lose writes (-stall-replicas: the master's replica is stopped
// and cut off from it for the last second before the kill, so nothing
// the master acknowledges then reaches the replica it is replaced by):
// with WAIT 1 they hold, since no write of that second is acknowledged;
// without WAIT they fail (the negative control: acknowledged updates are
// lost), so they test what WAIT adds and not the luck of a fast loopback
// link (without the stall, runs without WAIT rarely lose anything).
func TestRedisClusterFailover(t *testing.T) {
	if os.Getenv("SESSIONLOCK_FAULTS") == "" {
		t.Skip("set SESSIONLOCK_FAULTS=1 (scripts/test.sh stage redis)")
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

	// held asserts what the table claims with WAIT 1.
	held := func(t *testing.T, res *harness.Result) {
		t.Helper()
		require.Positive(t, res.RequestsFailed, "the killed master's shard fails until its replica takes over")
		require.Zero(t, res.LostUpdates, "an acknowledged update was lost in the failover")
		require.Zero(t, res.SessionsLost, "sessions_lost")
		require.Zero(t, res.ExclusionViolations, "two exclusive handlers of one session ran at once")
	}

	t.Run("wait1", func(t *testing.T) {
		cfg := base
		cfg.RedisWait = 1
		cfg.Duration = 7 * time.Second
		cfg.RedisWaitTimeout = time.Second // the shared CI machine can be slow
		cfg.RestartNode = at("2s")         // restarted once its replica took over
		res := run(t, cfg)
		events(t, res, harness.FaultKillMaster, harness.FaultRestartNode)
		held(t, res)
	})
	stalled := base
	stalled.Duration = 5 * time.Second
	stalled.StallReplicas = time.Second // under the cluster's 2 s node timeout
	t.Run("wait1-stalled", func(t *testing.T) {
		cfg := stalled
		cfg.RedisWait = 1
		cfg.RedisWaitTimeout = time.Second
		res := run(t, cfg)
		events(t, res, harness.FaultStallReplicas, harness.FaultKillMaster)
		held(t, res)
	})
	t.Run("nowait-stalled", func(t *testing.T) {
		// The negative control: the same run without WAIT fails the
		// checks wait1-stalled passes.
		res := run(t, stalled)
		events(t, res, harness.FaultStallReplicas, harness.FaultKillMaster)
		t.Logf("without WAIT: invariants violated: %s", strings.Join(res.Violations(), ", "))
		require.Positive(t, res.LostUpdates,
			"without WAIT no acknowledged update was lost, though the master acknowledged writes its replica never got: the stall did not open the window it is meant to, so wait1-stalled proves nothing")
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
		{harness.Config{Backend: harness.BackendRedis, ManagedCluster: true, StallReplicas: time.Second}, "-stall-replicas"},
		{harness.Config{Backend: harness.BackendRedis, ManagedCluster: true, KillMaster: at, StallReplicas: -1}, "-stall-replicas"},
		{harness.Config{Backend: harness.BackendRedis, Managed: 1, RedisWait: -1}, "-redis-wait"},
		{harness.Config{Backend: harness.BackendRedis, Managed: 1, RedisWaitTimeout: -1}, "-redis-wait"},
		{harness.Config{Backend: harness.BackendMemcached, Managed: 3, RedisWait: 1}, "-redis-wait"},
	} {
		_, err := harness.Run(context.Background(), tc.cfg)
		require.ErrorIs(t, err, harness.ErrConfig)
		require.ErrorContains(t, err, tc.want)
	}
}
