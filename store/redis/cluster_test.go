package redis_test

import (
	"context"
	"fmt"
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
