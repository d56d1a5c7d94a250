package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// TestClusterConformance runs the conformance suite on a real Redis
// Cluster of 3 masters with one replica each.
func TestClusterConformance(t *testing.T) {
	t.Parallel() // mostly waits: a hung server, replication, cluster start
	c := redistest.StartClusterForTest(t, 3, 1, redistest.Config{})
	n := 0
	providertest.Run(t, providertest.Options{NewStore: func(t *testing.T) provider.Store {
		n++
		s, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()[:1], KeyPrefix: fmt.Sprintf("conf%d:", n)})
		require.NoError(t, err)
		return s
	}})
}

// TestClusterSpreadsKeys: sessions land on every master, each key whole
// on one, and a script loaded on one master is loaded on the others when
// they first need it.
func TestClusterSpreadsKeys(t *testing.T) {
	t.Parallel() // mostly waits: a hung server, replication, cluster start
	c := redistest.StartClusterForTest(t, 3, 1, redistest.Config{})
	s, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	for i := range 60 {
		key := fmt.Sprintf("session-%d", i)
		tok, err := s.Add(ctx, key, []byte("v"), time.Minute)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, key, []byte("v2"), tok, time.Minute)
		require.NoError(t, err)
	}
	masters := 0
	for _, srv := range c.Servers {
		role, err := srv.Do(ctx, "ROLE").Slice()
		require.NoError(t, err)
		if role[0] != "master" {
			continue
		}
		masters++
		n, err := srv.Do(ctx, "DBSIZE").Int64()
		require.NoError(t, err)
		require.Positive(t, n, "master %s holds no session", srv.Addr())
	}
	require.Equal(t, 3, masters)
}

// TestClusterMasterFailover kills a master of a cluster whose writes were
// acknowledged with WAIT 1: its replica takes over (found by the client
// through MOVED and slot reloads), every acknowledged write is there with
// its token, I2, I3, I6 and I7 hold through providers of another process
// (failoverSessions), and compare-and-swap goes on from those tokens. Its
// checks fail without WAIT when the replica lags:
// TestStalledReplicaFailover is the negative control.
func TestClusterMasterFailover(t *testing.T) {
	t.Parallel() // mostly waits: cluster start, failure detection
	c := redistest.StartClusterForTest(t, 3, 1, redistest.Config{})
	s, err := redis.New(redis.Config{ClusterAddrs: c.Addrs(), WaitReplicas: 1, WaitTimeout: 3 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	tokens := map[string]uint64{}
	for i := range 30 {
		key := fmt.Sprintf("session-%d", i)
		tok, err := s.Add(ctx, key, []byte("v"), time.Hour)
		require.NoError(t, err)
		tokens[key] = tok
	}
	victim := c.Servers[0]
	role, err := victim.Do(ctx, "ROLE").Slice()
	require.NoError(t, err)
	require.Equal(t, "master", role[0])
	// Sessions of the victim's slots (it answers MOVED for the others)
	// whose last acknowledged writes I2, I3, I6 and I7 need.
	f := prepareFailover(t, s, func(key string) bool { return victim.Do(ctx, "EXISTS", key).Err() == nil })
	f.act(t, s)
	victim.Kill()
	start := time.Now()
	waitUntil(t, 90*time.Second, "every acknowledged session to be readable after the failover", func() bool {
		for key, tok := range tokens {
			e, err := s.Get(ctx, key)
			if err != nil {
				require.NotErrorIs(t, err, provider.ErrNotFound, "an acknowledged write was lost")
				return false
			}
			require.Equal(t, tok, e.CAS, "the failover kept the acknowledged token")
		}
		return true
	})
	t.Logf("failover: every session readable %v after the kill", time.Since(start).Round(time.Millisecond))
	after, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()[1:]})
	require.NoError(t, err)
	defer after.Close()
	require.Empty(t, f.violations(t, after), "the failover table's WaitReplicas 1 column (docs/backends.md)")
	// Writes go on from the same tokens. The promoted master has no
	// replica left, so with WAIT 1 its writes are applied but reported as
	// of unknown outcome (each after the whole WaitTimeout: the writes run
	// at once); the other shards acknowledge as before.
	errs := make(map[string]error, len(tokens))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for key, tok := range tokens {
		wg.Go(func() {
			_, err := s.CompareAndSwap(ctx, key, []byte("after"), tok, time.Hour)
			mu.Lock()
			errs[key] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	var acked, unknown int
	for key, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.ErrorContains(t, err, "acknowledged by 0 of 1 replicas")
			unknown++
		} else {
			acked++
		}
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "after", string(e.Value))
	}
	require.Positive(t, acked)
	require.Positive(t, unknown)
}
