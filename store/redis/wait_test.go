package redis_test

import (
	"context"
	"strings"
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
	servers := redistest.StartForTest(t, 2, redistest.Config{})
	master, replica := servers[0], servers[1]
	ctx := context.Background()
	require.NoError(t, replica.Do(ctx, "REPLICAOF", "127.0.0.1", master.Port()).Err())
	waitUntil(t, 10*time.Second, "the replica to connect", func() bool {
		info, err := master.Do(ctx, "INFO", "replication").Text()
		return err == nil && strings.Contains(info, "state=online")
	})
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
	s, err := redis.New(redis.Config{ClusterAddrs: c.Addrs(), WaitReplicas: 1, WaitTimeout: 3 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
		tok, err := s.Add(ctx, key, []byte("v"), time.Minute)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, key, []byte("v2"), tok, time.Minute)
		require.NoError(t, err)
	}
	var waits, scripts uint64
	for _, srv := range c.Servers {
		st, err := srv.CommandStats(ctx)
		require.NoError(t, err)
		waits += st["wait"]
		scripts += st["evalsha"] + st["eval"]
	}
	require.Equal(t, scripts+6, waits, "one WAIT per write sent (each Add, each script call)")
}
