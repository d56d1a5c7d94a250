package peers

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/record"
)

// TestOperationsPerRequest asserts what each side asks of the shared
// memcached node per request, from memcached's own stats, so that the
// latency and throughput comparisons compare what they claim to: scs
// makes one get per request that reads and get + set per change; ours
// makes one operation per read-only or lock-free read (a get-and-touch),
// two round trips per exclusive request whose server served the
// session's previous request (lock, then commit or release), three when
// another server did (read, lock, commit or release), and two per
// lock-free change (read, merge).
//
// On one copy (this node) a lock or a release that changes nothing is a
// small delta appended to the record (`ms <key> <n> MA C<cas> c`, counted
// in cmd_set) with a get-and-touch pipelined behind it in the same round
// trip (`mg <key> c T<exp>`, counted in cmd_touch), because memcached's
// append keeps the item's old expiry (docs/protocol.md, Deltas). So each
// appended lock change is two memcached commands in one round trip; a
// commit is one whole `ms`, which sets the expiry itself. The store's own
// TestOperationsPerRequest (store/memcached) asserts the round trips.
// The kinds run in order on one session: an increment's commit drops its
// deltas, and the eight exclusive reads after it append 16, the most a
// record carries, so none here meets the compacting whole write
// (record.MaxDeltas).
func TestOperationsPerRequest(t *testing.T) {
	node := startMemcached(t)
	o := newOurs(t, node.Addr(), 1)
	s := newPeer(t, node.Addr())
	id, token := o.create(t), s.create(t)

	want := map[string]struct{ ours, scs ops }{
		"exclusive-incr":      {ops{set: 2, touch: 1}, ops{get: 1, set: 1}}, // lock appended + touch, commit whole
		"exclusive-read/cold": {ops{get: 1, set: 2, touch: 2}, ops{get: 1}}, // read, then lock and release appended, each + touch
		"exclusive-read/warm": {ops{set: 2, touch: 2}, ops{get: 1}},         // lock and release appended, each + touch
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
// get per read and get + set per change. Each appended lock change adds
// a touch in its round trip (TestOperationsPerRequest): a read appends
// lock and release, an increment appends its lock and commits whole. A
// refused guess appends nothing, so the reads' record reaches
// record.MaxDeltas after MaxDeltas/2 reads, and the next read's lock is
// the compacting whole write: one touch fewer.
func TestOperationsAlternating(t *testing.T) {
	node := startMemcached(t)
	o := newOurs(t, node.Addr(), 2)
	for _, c := range []struct {
		path string
		want ops
	}{
		{"/read", ops{get: 1, set: 2, touch: 2}},
		{"/incr", ops{get: 1, set: 2, touch: 1}},
	} {
		path := c.path
		t.Run(path, func(t *testing.T) {
			id := o.create(t)
			for i := range 10 {
				before := countOps(t, node)
				require.NoError(t, o.do(i%2, path, id))
				got := countOps(t, node).minus(before)
				if i >= 6 { // each server has had two guesses refused
					want := c.want
					if path == "/read" && i == record.MaxDeltas/2 {
						want.touch-- // the lock finds MaxDeltas: written whole
					}
					require.Equal(t, want, got, "request %d", i)
				}
				t.Logf("request %d (server %d): %+v", i, i%2, got)
			}
		})
	}
}
