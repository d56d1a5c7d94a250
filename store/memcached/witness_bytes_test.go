package memcached_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestWitnessBytesPerRequest is TestBytesPerRequest's count for the
// witness scheme (three nodes, Config.Backup = BackupWitness): the bytes a
// request moves to each data copy's node (sent and received on the Store's
// connections to it, command lines and replies included), for a session of
// 2 KB of values, as a multiple of the session's size (its whole stored
// item, envelope included), against issue 12's targets per copy: an
// exclusive request that changes nothing at most 1.5 x (every request that
// does not compact, and the mean over a run of requests that compacts),
// one that commits at most 2.5 x. Lock and release are appended to both
// copies as trailers (witness_append.go). WholeWrites is the Store as it
// was before (CompareAndAppend declined in the witness scheme:
// memcached.SetWitnessWholeWrites), which must miss the targets, so the
// test is shown to catch it. The witness node's bytes are logged.
//
//	go test -count=1 -run TestWitnessBytesPerRequest -v ./store/memcached
func TestWitnessBytesPerRequest(t *testing.T) {
	servers := startNodes(t, 3)
	for _, old := range []bool{false, true} {
		name := map[bool]string{false: "Appends", true: "WholeWrites"}[old]
		t.Run(name, func(t *testing.T) {
			flush(t, servers)
			missed := witnessBytesPerRequest(t, servers, old)
			if old {
				require.NotEmpty(t, missed, "whole writes met every target: the test cannot tell them apart")
				t.Logf("whole writes miss %d targets, as expected, for example: %s", len(missed), missed[0])
				return
			}
			require.Empty(t, missed)
		})
	}
}

func witnessBytesPerRequest(t *testing.T, servers []*mcserver.Server, old bool) (missed []string) {
	w := newWire()
	newWitnessStore := func() *memcached.Store {
		before := map[string]uint64{}
		for _, srv := range servers {
			before[srv.Addr()] = w.at(srv.Addr()).recv
		}
		s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, DialContext: w.dial})
		// The node statistics the eviction check reads (2 KB a node,
		// first when the Store starts) are not the requests': wait for
		// the first, and no more while the requests are counted.
		memcached.SetEvictionCheck(s, time.Hour)
		testwait.Until(t, 10*time.Second, "the eviction check's first statistics", func() bool {
			for _, srv := range servers {
				if w.at(srv.Addr()).recv-before[srv.Addr()] < 1000 {
					return false
				}
			}
			return true
		})
		if old {
			memcached.SetWitnessWholeWrites(s)
		}
		return s
	}
	s := newWitnessStore()
	ctx := context.Background()
	newProvider := func(s *memcached.Store) *provider.Provider {
		p, err := provider.New(s, provider.Config{})
		require.NoError(t, err)
		return p
	}
	p := newProvider(s)
	id := newBenchSession(t, p)
	key, err := p.Key(id)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(s, key)
	copies := cands[:2] // the home configuration: data on c0 and c1
	names := map[string]string{cands[0]: "P", cands[1]: "Q", cands[2]: "W"}
	stored := func() []byte { return rawGet(t, cands[0], key).value }
	size := float64(len(stored()))
	deltas := func() int {
		_, payload, err := envelope.Decode(stored())
		require.NoError(t, err)
		r, err := rec.Decode(payload)
		require.NoError(t, err)
		return r.Deltas
	}
	check := func(ok bool, format string, args ...any) {
		if !ok {
			missed = append(missed, fmt.Sprintf(format, args...))
		}
	}
	run := func(p *provider.Provider, k, i int) (moved map[string]float64, compacted bool) {
		d := deltas()
		trailers, _ := envelope.Trailers(stored())
		moved = w.moved(cands, func() { require.NoError(t, requestKinds[k].run(ctx, p, id, i)) })
		// A commit whose lock finds the trailers at their bound writes
		// the lock whole too (compacting), as an unchanged request does.
		return moved, k == 1 && deltas() < d+2 || k == 2 && trailers >= memcached.MaxTrailers
	}
	t.Logf("session: %d bytes stored whole on each data copy (%d bytes of values)", int(size), sessionBytes)
	logged := func(what string, moved map[string]float64) {
		t.Logf("%s: P %.0f B = %.2f x, Q %.0f B = %.2f x (W %.0f B)", what,
			moved[cands[0]], moved[cands[0]]/size, moved[cands[1]], moved[cands[1]]/size, moved[cands[2]])
	}

	// Changes nothing, cold (a fresh provider each time) and warm, over
	// runs that compact.
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		sum := map[string]float64{}
		var compactions float64
		if warm {
			run(p, 1, 0)
		}
		n := rec.MaxDeltas + 2
		for i := range n {
			rp := p
			if !warm {
				rp = newProvider(s)
			}
			moved, compacted := run(rp, 1, i)
			if compacted {
				compactions++
			}
			for _, addr := range copies {
				sum[addr] += moved[addr]
				if !compacted {
					check(moved[addr] <= 1.5*size, "exclusive, changes nothing, %s, request %d, %s: %.2f x > 1.5 x", name, i, names[addr], moved[addr]/size)
				}
			}
			logged(fmt.Sprintf("exclusive, changes nothing, %s, request %d (compacts: %v)", name, i, compacted), moved)
		}
		check(compactions > 0 && compactions < float64(n), "exclusive, changes nothing, %s: %v of %d requests compact", name, compactions, n)
		for _, addr := range copies {
			mean := sum[addr] / float64(n)
			t.Logf("exclusive, changes nothing, %s, %s: mean over %d requests (%.0f compacting) %.2f x", name, names[addr], n, compactions, mean/size)
			check(mean <= 1.5*size, "exclusive, changes nothing, %s, %s: mean %.2f x > 1.5 x", name, names[addr], mean/size)
		}
	}

	// Commits, cold and warm; read-only; and the two kinds of exclusive
	// request served by two processes (two Stores) in turn.
	p2 := newProvider(newWitnessStore())
	for _, tc := range byteCases {
		if tc.warm {
			run(p, tc.kind, 0)
		}
		for i := range 4 {
			rp := p
			switch {
			case tc.other && i%2 == 0:
				rp = p2
			case !tc.warm && !tc.other:
				rp = newProvider(s)
			}
			moved, compacted := run(rp, tc.kind, i)
			for _, addr := range copies {
				if compacted {
					continue // as counted in the means above
				}
				check(moved[addr] <= tc.limit*size, "%s, request %d, %s: %.2f x > %.1f x", tc.name, i, names[addr], moved[addr]/size, tc.limit)
			}
			logged(fmt.Sprintf("%s, request %d (compacts: %v)", tc.name, i, compacted), moved)
		}
	}
	return missed
}
