package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// ops is the number of memcached operations srv has served, from its
// own stats.
func ops(t testing.TB, srv *mcserver.Server) uint64 {
	return countOps(t, []*mcserver.Server{srv}).total()
}

// TestOperationsPerRequest counts, per request, the sequential round
// trips to each node (on the Store's connections) and the memcached
// operations (commands) the node served (memcached's own stats):
//
//   - read-only: 1 round trip, 1 operation (a get-and-touch);
//   - exclusive, served by a process that did not write the session last
//     (cold): 3 round trips (read, lock, commit or release): the commit
//     starts from the record and token the lock's write returned;
//   - exclusive, served by the process that wrote the session last
//     (warm): 2 round trips (lock, commit or release);
//   - a lock change is appended as a delta, and the append is followed in
//     the same round trip by a touch (memcached's append keeps the item's
//     expiry: I4): up to 5 operations cold and 4 warm for a request that
//     changes nothing, 4 and 3 for a commit, with one copy or two;
//   - with the backup copy, the backup node serves at most one operation
//     per operation of the primary (the same append and touch, or the
//     whole write, sent in parallel: Store.parallel), and no extra round
//     trip.
func TestOperationsPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     int
		wantOps   map[string][2]uint64 // cold, warm
		wantTrips map[string][2]uint64
	}{
		{"OneCopy", 1,
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {5, 4}, "exclusive-changed": {4, 3}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {3, 2}, "exclusive-changed": {3, 2}}},
		{"BackupCopy", 2,
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {5, 4}, "exclusive-changed": {4, 3}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {3, 2}, "exclusive-changed": {3, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := startNodes(t, tc.nodes)
			w := newWire()
			s := newStore(t, servers, memcached.Config{DialContext: w.dial})
			ctx := context.Background()
			newProvider := func() *provider.Provider {
				p, err := provider.New(s, provider.Config{App: "ops"})
				require.NoError(t, err)
				return p
			}
			p := newProvider()
			id, err := session.NewID()
			require.NoError(t, err)
			d := p.CreateNewStoreData(20 * time.Minute)
			require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, d, 0, true))
			key, err := p.Key(id)
			require.NoError(t, err)
			primary, backup := s.Placement(key)
			pSrv := serverAt(t, servers, primary)

			measure := func(p *provider.Provider, do func(context.Context, *provider.Provider, string, int) error, i int) (onP, onB, trips uint64) {
				pb := ops(t, pSrv)
				tb := w.at(primary)
				var bb uint64
				if backup != "" {
					bb = ops(t, serverAt(t, servers, backup))
				}
				require.NoError(t, do(ctx, p, id, i))
				onP = ops(t, pSrv) - pb
				trips = w.at(primary).minus(tb).trips
				if backup != "" {
					onB = ops(t, serverAt(t, servers, backup)) - bb
				}
				return onP, onB, trips
			}
			for _, r := range requestKinds {
				for i := 1; i <= 3; i++ {
					// Cold: another process (a fresh provider) serves it.
					onP, onB, trips := measure(newProvider(), r.run, i)
					require.Equal(t, tc.wantTrips[r.name][0], trips, "%s cold, request %d: round trips to the primary", r.name, i)
					require.LessOrEqual(t, onP, tc.wantOps[r.name][0], "%s cold, request %d: operations on the primary", r.name, i)
					require.GreaterOrEqual(t, onP, trips)
					require.LessOrEqual(t, onB, onP, "%s cold, request %d: operations on the backup", r.name, i)
					// Warm: p serves it twice in a row.
					measure(p, r.run, i)
					onP, onB, trips = measure(p, r.run, i)
					require.Equal(t, tc.wantTrips[r.name][1], trips, "%s warm, request %d: round trips to the primary", r.name, i)
					require.LessOrEqual(t, onP, tc.wantOps[r.name][1], "%s warm, request %d: operations on the primary", r.name, i)
					require.GreaterOrEqual(t, onP, trips)
					require.LessOrEqual(t, onB, onP, "%s warm, request %d: operations on the backup", r.name, i)
				}
			}
			// Two processes taking turns: each one's remembered record is
			// stale, which costs one refused write before the read.
			p2 := newProvider()
			for i := 1; i <= 4; i++ {
				pi := p
				if i%2 == 0 {
					pi = p2
				}
				onP, _, trips := measure(pi, requestKinds[2].run, i)
				require.LessOrEqual(t, trips, uint64(4), "alternating servers, request %d", i)
				t.Logf("alternating servers, exclusive commit %d: %d round trips, %d operations on the primary", i, trips, onP)
			}
		})
	}
}
