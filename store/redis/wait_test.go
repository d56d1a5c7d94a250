package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// TestWaitReplicas: with WaitReplicas 1 every write is followed by WAIT
// in the same round trip; a write no replica acknowledged is applied on
// the master but reported as of unknown outcome.
func TestWaitReplicas(t *testing.T) {
	t.Parallel() // mostly waits: a hung server, replication, cluster start
	master, replica := startReplicated(t)
	ctx := context.Background()
	s := newStore(t, master, redis.Config{WaitReplicas: 1, WaitTimeout: 2 * time.Second})
	before, err := master.CommandStats(ctx)
	require.NoError(t, err)
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	tok, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.NoError(t, err)
	after, err := master.CommandStats(ctx)
	require.NoError(t, err)
	require.Equal(t, after["evalsha"]+after["eval"]-before["evalsha"]-before["eval"]+1, after["wait"]-before["wait"],
		"one WAIT per write sent (the Add, each script call)")
	r := newStore(t, replica, redis.Config{})
	e, err := r.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tok, e.CAS, "acknowledged means on the replica")

	replica.Kill()
	_, err = s.CompareAndSwap(ctx, "k", []byte("v3"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.ErrorContains(t, err, "acknowledged by 0 of 1 replicas within 2s")
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v3", string(e.Value), "applied on the master")
	// A write that did not happen is reported as such, WAIT or not.
	_, err = s.CompareAndSwap(ctx, "k", []byte("v4"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
}

func TestClusterWaitReplicas(t *testing.T) {
	t.Parallel() // mostly waits: a hung server, replication, cluster start
	c := redistest.StartClusterForTest(t, 3, 1, redistest.Config{})
	s, err := redis.New(redis.Config{ClusterAddrs: c.Addrs(), WaitReplicas: 1, WaitTimeout: 3 * time.Second, AppendDeltas: true})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
		tok, err := s.Add(ctx, key, []byte("v"), time.Minute)
		require.NoError(t, err)
		tok, err = s.CompareAndSwap(ctx, key, []byte("v2"), tok, time.Minute)
		require.NoError(t, err)
		// An append lands on the key's master too, under its token.
		tok, _, err = s.CompareAndAppend(ctx, key, []byte("+"+key), tok, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "v2+"+key, string(e.Value))
		require.Equal(t, tok, e.CAS)
	}
	var waits, scripts uint64
	for _, srv := range c.Servers {
		st, err := srv.CommandStats(ctx)
		require.NoError(t, err)
		waits += st["wait"]
		scripts += st["evalsha"] + st["eval"]
	}
	require.Equal(t, scripts+6, waits, "one WAIT per write sent (each Add, each script call: compare-and-swap, append)")
}

// TestStalledReplicaFailover is the store's negative control for WAIT: a
// write the master executes while its replica is cut off (stopped with
// SIGSTOP, its link closed by CLIENT KILL TYPE replica, so it cannot
// fetch what it missed) is gone once the replica is promoted. Without
// WaitReplicas that write was acknowledged, so the checks
// TestClusterMasterFailover makes with WAIT 1 fail: every acknowledged
// write survives, and I2, I3, I6 and I7 (failoverSessions, whose acts are
// made during the stall) hold. With WaitReplicas 1 the same write is
// reported as of unknown outcome, never acknowledged.
func TestStalledReplicaFailover(t *testing.T) {
	t.Parallel() // mostly waits: replication, WAIT's timeout
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait%d", wait), func(t *testing.T) {
			t.Parallel()
			master, replica := startReplicated(t)
			ctx := context.Background()
			// A long WaitTimeout: the shared machine can be slow to replicate.
			s := newStore(t, master, redis.Config{WaitReplicas: wait, WaitTimeout: 2 * time.Second})
			before, err := s.Add(ctx, "before", []byte("v"), time.Minute)
			require.NoError(t, err)
			f := prepareFailover(t, s, func(string) bool { return true })
			acked, err := master.Do(ctx, "WAIT", 1, 10_000).Int64()
			require.NoError(t, err)
			require.Equal(t, int64(1), acked, "the replica has every write so far")

			require.NoError(t, replica.Pause())
			cut, err := master.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Int64()
			require.NoError(t, err)
			require.Equal(t, int64(1), cut, "replication links closed")
			_, during := s.Add(ctx, "during", []byte("v"), time.Minute)
			if wait == 0 {
				f.act(t, s) // acknowledged, never replicated
			}
			master.Kill()
			require.NoError(t, replica.Resume())
			require.NoError(t, replica.Do(ctx, "REPLICAOF", "NO", "ONE").Err()) // the failover

			promoted := newStore(t, replica, redis.Config{})
			e, err := promoted.Get(ctx, "before")
			require.NoError(t, err)
			require.Equal(t, before, e.CAS, "the write replicated before the stall survived")
			_, err = promoted.Get(ctx, "during")
			require.ErrorIs(t, err, provider.ErrNotFound, "the write made during the stall never reached the replica")
			if wait == 0 {
				require.NoError(t, during, "without WAIT the lost write was acknowledged (the negative control)")
				v := f.violations(t, promoted)
				t.Logf("without WAIT, after the failover: %q", v)
				require.Len(t, v, 4, "each of I2, I3, I6, I7 violated: the checks TestClusterMasterFailover makes can fail")
			} else {
				require.ErrorIs(t, during, provider.ErrOutcomeUnknown, "with WAIT 1 the lost write was not acknowledged")
			}
		})
	}
}
