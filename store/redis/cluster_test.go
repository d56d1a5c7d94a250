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
				// Refused connections, CLUSTERDOWN, MOVED to the dead
				// node: the shard is unavailable, nothing else.
				require.ErrorIs(t, err, provider.ErrUnavailable)
				return false
			}
			require.Equal(t, tok, e.CAS, "the failover kept the acknowledged token")
		}
		return true
	})
	t.Logf("failover: every session readable %v after the kill", time.Since(start).Round(time.Millisecond))
	// Another process's client, which may first load a slot map from a
	// node that has not yet heard of the promotion.
	after, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()[1:]})
	require.NoError(t, err)
	defer after.Close()
	waitUntil(t, 30*time.Second, "a new client to read the failover sessions", func() bool {
		for _, key := range f.keys {
			if _, err := after.Get(ctx, key); err != nil {
				require.ErrorIs(t, err, provider.ErrUnavailable)
				return false
			}
		}
		return true
	})
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

// TestClusterSlotMigration moves the hash slot of two keys from one
// master to another while the Store uses them, as redis-cli --cluster
// reshard does (CLUSTER SETSLOT IMPORTING and MIGRATING, MIGRATE, then
// SETSLOT NODE): halfway, one key is on each master and the old one
// answers ASK for the moved key; at the end, MOVED for both. Reads and
// writes go on throughout, from the tokens they returned, with and without
// WAIT: the cluster client follows ASK and MOVED for plain commands, the
// Store follows them for a write sent with its WAIT (a write refused
// with ASK or MOVED was not executed, so it is sent on).
func TestClusterSlotMigration(t *testing.T) {
	t.Parallel() // mostly waits: cluster start
	c := redistest.StartClusterForTest(t, 3, 1, redistest.Config{})
	ctx := context.Background()
	plain, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()})
	require.NoError(t, err)
	defer plain.Close()
	waiting, err := redis.New(redis.Config{ClusterAddrs: c.Addrs(), WaitReplicas: 1, WaitTimeout: 3 * time.Second})
	require.NoError(t, err)
	defer waiting.Close()
	keys := []string{"{moved}a", "{moved}b"} // one slot
	tokens := map[string]uint64{}
	for _, key := range keys {
		tokens[key], err = plain.Add(ctx, key, []byte("v0"), time.Hour)
		require.NoError(t, err)
	}
	// Every store and key, in turn: read the last token, swap from it.
	step := 0
	use := func(what string) {
		t.Helper()
		for _, s := range []*redis.Store{plain, waiting} {
			for _, key := range keys {
				step++
				e, err := s.Get(ctx, key)
				require.NoError(t, err, "%s: get %s", what, key)
				require.Equal(t, tokens[key], e.CAS, "%s: %s", what, key)
				tokens[key], err = s.CompareAndSwap(ctx, key, fmt.Appendf(nil, "v%d", step), e.CAS, time.Hour)
				require.NoError(t, err, "%s: compare-and-swap %s", what, key)
			}
		}
	}
	use("before")

	slot, err := c.Servers[0].Do(ctx, "CLUSTER", "KEYSLOT", keys[0]).Int64()
	require.NoError(t, err)
	var src, dst *redistest.Server
	for _, srv := range c.Servers {
		role, err := srv.Do(ctx, "ROLE").Slice()
		require.NoError(t, err)
		if role[0] != "master" {
			continue
		}
		if srv.Do(ctx, "EXISTS", keys[0]).Err() == nil { // the others answer MOVED
			src = srv
		} else if dst == nil {
			dst = srv
		}
	}
	require.NotNil(t, src)
	require.NotNil(t, dst)
	id := func(srv *redistest.Server) string {
		id, err := srv.Do(ctx, "CLUSTER", "MYID").Text()
		require.NoError(t, err)
		return id
	}
	migrate := func(key string) {
		require.NoError(t, src.Do(ctx, "MIGRATE", "127.0.0.1", dst.Port(), "", 0, 5000, "KEYS", key).Err())
	}
	require.NoError(t, dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", id(src)).Err())
	require.NoError(t, src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", id(dst)).Err())
	migrate(keys[0])
	require.ErrorContains(t, src.Do(ctx, "GET", keys[0]).Err(), "ASK", "the moved key is asked for on its new master")
	use("halfway")

	migrate(keys[1])
	for _, srv := range c.Servers {
		role, err := srv.Do(ctx, "ROLE").Slice()
		require.NoError(t, err)
		if role[0] == "master" {
			require.NoError(t, srv.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", id(dst)).Err())
		}
	}
	require.ErrorContains(t, src.Do(ctx, "GET", keys[1]).Err(), "MOVED")
	use("after")
	for _, key := range keys {
		n, err := dst.Do(ctx, "EXISTS", key).Int64()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "%s is on its new master", key)
	}
}
