package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// ops is the number of memcached operations srv has served, from its
// own stats.
func ops(t testing.TB, srv *mcserver.Server) uint64 {
	return countOps(t, []*mcserver.Server{srv}).total()
}

// settled waits until srv has served no operation for 50 ms: the witness
// scheme's touches that calls do not wait for have landed.
func settled(t testing.TB, srv *mcserver.Server) {
	t.Helper()
	last, since := ops(t, srv), time.Now()
	testwait.Until(t, 5*time.Second, "no operation on the node for 50 ms", func() bool {
		if n := ops(t, srv); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= 50*time.Millisecond
	})
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
//   - with the witness scheme (BackupWitness, 3 nodes), lock changes are
//     appended to both data copies with their touch in the same round
//     trip, as with one copy (the release's handle is the lock's write,
//     younger than pipelineFresh), sent in parallel, and
//     the witness's node is touched once per write and per read that sets
//     the TTL, exactly: read-only 1, exclusive 2 (cold or warm).
func TestOperationsPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     int
		mode      memcached.BackupMode
		wantOps   map[string][2]uint64 // cold, warm
		wantTrips map[string][2]uint64
		// wantWitness: with BackupWitness, the operations on the
		// witness's node, exactly (cold, warm).
		wantWitness map[string][2]uint64
		// afterCold: the operations on the witness's node of a warm
		// request that follows a cold one (a refused guess, a read, and
		// the request: the witness is touched by each write).
		afterCold map[string]uint64
	}{
		{"OneCopy", 1, memcached.BackupOff,
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {5, 4}, "exclusive-changed": {4, 3}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {3, 2}, "exclusive-changed": {3, 2}}, nil, nil},
		{"BackupCopy", 2, memcached.BackupOn,
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {5, 4}, "exclusive-changed": {4, 3}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {3, 2}, "exclusive-changed": {3, 2}}, nil, nil},
		// Lock changes appended with their touch in the same round trip
		// when the handle is fresh and a read's or a locked record's
		// write (witness_append.go, pipelineFresh); the warm request's
		// lock starts from the provider's guess (its own write of an
		// unlocked record), whose touch waits for the append: one round
		// trip more than one copy's warm request. The witness is touched
		// by each write and by a read that sets the TTL (GetAndTouch),
		// not by the exclusive request's plain read (Get).
		{"Witness", 3, memcached.BackupWitness,
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {5, 5}, "exclusive-changed": {4, 4}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {3, 3}, "exclusive-changed": {3, 3}},
			map[string][2]uint64{"read-only": {1, 1}, "exclusive-unchanged": {2, 2}, "exclusive-changed": {2, 2}},
			map[string]uint64{"read-only": 1, "exclusive-unchanged": 3, "exclusive-changed": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := startNodes(t, tc.nodes)
			w := newWire()
			s := newStore(t, servers, memcached.Config{Backup: tc.mode, DialContext: w.dial})
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
			// The first read after the creation may complete it (the
			// witness scheme): counted from the second.
			_, err = p.GetItem(ctx, id)
			require.NoError(t, err)
			key, err := p.Key(id)
			require.NoError(t, err)
			// The primary, the backup copy's node (the secondary's with
			// the witness scheme) and the witness's node.
			primary, backup := s.Placement(key)
			var witness string
			if tc.mode == memcached.BackupWitness {
				cs := memcached.WitnessCandidates(s, key)
				primary, backup, witness = cs[0], cs[1], cs[2]
			}
			pSrv := serverAt(t, servers, primary)
			if witness != "" {
				settled(t, serverAt(t, servers, witness))
			}

			// measure serves one request and counts; with the witness
			// scheme it first waits until the witness's node has served
			// at least wantW operations (its touch is not waited for by
			// the call).
			measure := func(p *provider.Provider, do func(context.Context, *provider.Provider, string, int) error, i int, wantW uint64) (onP, onB, onW, trips uint64) {
				pb := ops(t, pSrv)
				tb := w.at(primary)
				var bb, wb uint64
				if backup != "" {
					bb = ops(t, serverAt(t, servers, backup))
				}
				var wd wireCount
				if witness != "" {
					wb, wd = ops(t, serverAt(t, servers, witness)), w.at(witness)
				}
				require.NoError(t, do(ctx, p, id, i))
				if witness != "" {
					// A connection's first command reads the node's
					// incarnation: the connection's, not the request's
					// (a touch still holding its connection when the
					// next call starts makes that one dial another).
					// Counted in signed numbers: a detached touch's dial
					// is counted before its hello reaches the node's
					// stats, and the unsigned difference wrapped round,
					// ending the wait at once (a clean-clone run's "expected
					// 2, actual 0xffffffffffffffff").
					testwait.Until(t, 5*time.Second, "the witness's operations", func() bool {
						n := int64(ops(t, serverAt(t, servers, witness))) - int64(wb) - int64(w.at(witness).minus(wd).dials)
						onW = uint64(max(n, 0))
						return n >= int64(wantW)
					})
				}
				onP = ops(t, pSrv) - pb
				d := w.at(primary).minus(tb)
				// A new connection's first round trip reads the node's
				// incarnation (witness scheme): the connection's, not the
				// request's (see TestWitnessRoundTrips).
				trips = d.trips - d.dials
				if backup != "" {
					onB = ops(t, serverAt(t, servers, backup)) - bb
				}
				return onP, onB, onW, trips
			}
			for _, r := range requestKinds {
				for i := 1; i <= 3; i++ {
					// Cold: another process (a fresh provider) serves it.
					onP, onB, onW, trips := measure(newProvider(), r.run, i, tc.wantWitness[r.name][0])
					require.Equal(t, tc.wantTrips[r.name][0], trips, "%s cold, request %d: round trips to the primary", r.name, i)
					require.LessOrEqual(t, onP, tc.wantOps[r.name][0], "%s cold, request %d: operations on the primary", r.name, i)
					require.GreaterOrEqual(t, onP, trips)
					require.LessOrEqual(t, onB, onP, "%s cold, request %d: operations on the backup", r.name, i)
					require.Equal(t, tc.wantWitness[r.name][0], onW, "%s cold, request %d: operations on the witness", r.name, i)
					// Warm: p serves it twice in a row.
					measure(p, r.run, i, tc.afterCold[r.name])
					onP, onB, onW, trips = measure(p, r.run, i, tc.wantWitness[r.name][1])
					require.Equal(t, tc.wantTrips[r.name][1], trips, "%s warm, request %d: round trips to the primary", r.name, i)
					require.LessOrEqual(t, onP, tc.wantOps[r.name][1], "%s warm, request %d: operations on the primary", r.name, i)
					require.GreaterOrEqual(t, onP, trips)
					require.LessOrEqual(t, onB, onP, "%s warm, request %d: operations on the backup", r.name, i)
					require.Equal(t, tc.wantWitness[r.name][1], onW, "%s warm, request %d: operations on the witness", r.name, i)
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
				onP, _, _, trips := measure(pi, requestKinds[2].run, i, 0)
				require.LessOrEqual(t, trips, uint64(4), "alternating servers, request %d", i)
				t.Logf("alternating servers, exclusive commit %d: %d round trips, %d operations on the primary", i, trips, onP)
			}
		})
	}
}
