package memcached_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestBytesPerRequest counts the bytes a request moves on the wire to its
// one copy (sent and received on the Store's connections, memcached's
// command lines and replies included), for a session of 2 KB of values,
// against the targets of docs/performance.md, as a multiple of the
// session's size (its whole stored record):
//
//   - an exclusive request that changes nothing: at most 1.5 x, cold or
//     warm (lock and release are appended as deltas, record.DeltaLen
//     bytes each); the cold request that finds record.MaxDeltas deltas
//     and writes the lock whole (compacting the record) moves more, and
//     is checked over a whole cycle of requests: their mean stays under
//     1.5 x;
//   - an exclusive request that commits: at most 2.5 x (the lock is a
//     delta, the commit the whole record);
//   - read-only: at most 1.5 x (the record with its deltas).
//
// Run with -v for the figures (docs/performance.md, Bytes per request):
//
//	go test -run TestBytesPerRequest -v ./store/memcached
func TestBytesPerRequest(t *testing.T) {
	servers := startNodes(t, 1)
	w := newWire()
	s := newStore(t, servers, memcached.Config{DialContext: w.dial})
	ctx := context.Background()
	newProvider := func() *provider.Provider {
		p, err := provider.New(s, provider.Config{})
		require.NoError(t, err)
		return p
	}
	p := newProvider()
	id := newBenchSession(t, p)
	key, err := p.Key(id)
	require.NoError(t, err)
	addr := servers[0].Addr()
	stored := func() []byte {
		it, err := raw(t, addr).Get(key)
		require.NoError(t, err)
		return it.Value
	}
	size := float64(len(stored()))
	deltas := func() int {
		r, err := rec.Decode(stored())
		require.NoError(t, err)
		return r.Deltas
	}
	// run serves request kind k (requestKinds) with p and returns the
	// bytes it moved, and whether it compacted the record (wrote the lock
	// or release whole though the data did not change).
	run := func(p *provider.Provider, k, i int) (moved float64, compacted bool) {
		before, d := w.at(addr), deltas()
		require.NoError(t, requestKinds[k].run(ctx, p, id, i))
		moved = float64(w.at(addr).minus(before).bytes())
		return moved, k == 1 && deltas() < d+2
	}
	t.Logf("session: %d bytes stored whole (%d bytes of values); a delta is %d bytes", int(size), sessionBytes, rec.DeltaLen)

	// Changes nothing, cold (a fresh process each time) and warm: two
	// whole cycles of compaction.
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		var sum, most, compactions float64
		if warm {
			run(p, 1, 0) // p wrote last: its next request is warm
		}
		n := rec.MaxDeltas + 2
		for i := range n {
			rp := p
			if !warm {
				rp = newProvider()
			}
			moved, compacted := run(rp, 1, i)
			sum += moved
			if compacted {
				compactions++
				t.Logf("exclusive, changes nothing, %s, request %d: %.0f bytes = %.2f x, compacting the record", name, i, moved, moved/size)
				continue
			}
			most = max(most, moved)
			require.LessOrEqual(t, moved, 1.5*size, "exclusive, changes nothing, %s, request %d", name, i)
		}
		require.NotZero(t, compactions, "%d requests in a row compact the record", n)
		t.Logf("exclusive, changes nothing, %s: at most %.0f bytes = %.2f x; mean over %d requests with %.0f compactions %.2f x", name, most, most/size, n, compactions, sum/float64(n)/size)
		require.LessOrEqual(t, sum/float64(n), 1.5*size, "exclusive, changes nothing, %s: mean", name)
	}

	// Commits, cold and warm; read-only.
	for _, tc := range []struct {
		name  string
		kind  int
		warm  bool
		limit float64
	}{
		{"exclusive, commits, cold", 2, false, 2.5},
		{"exclusive, commits, warm", 2, true, 2.5},
		{"read-only, cold", 0, false, 1.5},
		{"read-only, warm", 0, true, 1.5},
	} {
		var most float64
		if tc.warm {
			run(p, tc.kind, 0)
		}
		for i := range 4 {
			rp := p
			if !tc.warm {
				rp = newProvider()
			}
			moved, _ := run(rp, tc.kind, i)
			most = max(most, moved)
			require.LessOrEqual(t, moved, tc.limit*size, "%s, request %d", tc.name, i)
		}
		t.Logf("%s: at most %.0f bytes = %.2f x", tc.name, most, most/size)
	}
}
