package peers

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOperationsPerRequest asserts what each side asks of the shared
// memcached node per request, from memcached's own stats, so that the
// latency and throughput comparisons compare what they claim to: scs
// makes one get per request that reads and get + set per change; ours
// makes one operation per read-only or lock-free read (a get-and-touch),
// two per exclusive request whose server served the session's previous
// request (lock, then commit or release), three when another server did
// (read, lock, commit or release), and two per lock-free change (read,
// merge).
func TestOperationsPerRequest(t *testing.T) {
	node := startMemcached(t)
	o := newOurs(t, node.Addr(), 1)
	s := newPeer(t, node.Addr())
	id, token := o.create(t), s.create(t)

	want := map[string]struct{ ours, scs ops }{
		"exclusive-incr":      {ops{set: 2}, ops{get: 1, set: 1}},
		"exclusive-read/cold": {ops{get: 1, set: 2}, ops{get: 1}},
		"exclusive-read/warm": {ops{set: 2}, ops{get: 1}},
		"readonly":            {ops{touch: 1}, ops{get: 1}},
		"lockfree-read":       {ops{touch: 1}, ops{get: 1}},
		"lockfree-incr":       {ops{touch: 1, set: 1}, ops{get: 1, set: 1}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			// The previous request of the session was served by our one
			// server (warm), unless it is replaced by a fresh one.
			require.NoError(t, o.do(0, k.path, id))
			for i := range 3 {
				if k.cold {
					o.fresh(t, 0)
				}
				before := countOps(t, node)
				require.NoError(t, o.do(0, k.path, id))
				got := countOps(t, node).minus(before)
				require.Equal(t, want[k.name].ours, got, "ours, request %d", i)

				before = countOps(t, node)
				require.NoError(t, s.do(0, k.path, token))
				got = countOps(t, node).minus(before)
				require.Equal(t, want[k.name].scs, got, "scs, request %d", i)
			}
		})
	}
}

// TestOperationsAlternating: two app servers of ours taking turns on a
// session (a load balancer without affinity): after the first refused
// guesses of each, every exclusive request costs read, lock, commit or
// release (provider.TestWrittenCacheContested), where scs still makes one
// get per read and get + set per change.
func TestOperationsAlternating(t *testing.T) {
	node := startMemcached(t)
	o := newOurs(t, node.Addr(), 2)
	for _, path := range []string{"/read", "/incr"} {
		t.Run(path, func(t *testing.T) {
			id := o.create(t)
			for i := range 10 {
				before := countOps(t, node)
				require.NoError(t, o.do(i%2, path, id))
				got := countOps(t, node).minus(before)
				if i >= 6 { // each server has had two guesses refused
					require.Equal(t, ops{get: 1, set: 2}, got, "request %d", i)
				}
				t.Logf("request %d (server %d): %+v", i, i%2, got)
			}
		})
	}
}
