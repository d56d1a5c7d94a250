package memcached_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestBytesPerRequest counts the bytes a request moves on the wire to each
// copy of its session (sent and received on the Store's connections to
// that copy's node, memcached's command lines and replies included), for a
// session of 2 KB of values, against the targets of docs/performance.md,
// as a multiple of the session's size (its whole stored record), per copy:
//
//   - an exclusive request that changes nothing: at most 1.5 x, cold or
//     warm (lock and release are appended as deltas, record.DeltaLen
//     bytes each, to each copy); the cold request that finds
//     record.MaxDeltas deltas and writes the lock whole (compacting the
//     record) moves more, and is checked over a whole cycle of requests:
//     their mean stays under 1.5 x;
//   - an exclusive request that commits: at most 2.5 x (the lock is a
//     delta, the commit the whole record);
//   - read-only: at most 1.5 x (the record with its deltas).
//
// "Cold" is a fresh provider on the same Store (another request handler
// whose provider did not write the session last); the Store itself wrote
// both copies last, so it appends to the backup copy too. OneCopy is one
// node; BackupCopy two nodes with the default backup copy, counted on the
// primary's node and on the backup's. OldWholeBackupWrites is BackupCopy on
// the Store as it was before backup appends (8efee5d: keys with a backup
// copy written whole, memcached.SetBackupWholeWrites), which must miss the
// targets, so the test is shown to catch it. Witness is three nodes with
// the witness scheme (memcached.BackupWitness), counted on both data copies
// and on the witness's node: its writes are whole (no deltas), so it misses
// the issue-12 targets above (logged, not asserted); asserted instead: each
// data copy moves at most 1.1 x the stored record per round trip (the read
// or the whole write of each) and the witness's node at most 0.1 x per
// round trip (its touches, about 170 bytes each with their replies).
//
// Run with -v for the figures (docs/performance.md, Bytes per request):
//
//	go test -count=1 -run TestBytesPerRequest -v ./store/memcached
func TestBytesPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes int
		mode  memcached.BackupMode
		old   bool
	}{
		{"OneCopy", 1, memcached.BackupOff, false},
		{"BackupCopy", 2, memcached.BackupOn, false},
		{"OldWholeBackupWrites", 2, memcached.BackupOn, true},
		{"Witness", 3, memcached.BackupWitness, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missed, wmissed := bytesPerRequest(t, tc.nodes, tc.mode, tc.old)
			if tc.mode == memcached.BackupWitness {
				t.Logf("the witness scheme misses %d of the one-copy targets (whole writes)", len(missed))
				require.Empty(t, wmissed)
				return
			}
			if tc.old {
				require.NotEmpty(t, missed, "whole backup writes met every target: the test cannot tell them apart")
				t.Logf("whole backup writes miss %d targets, as expected, for example: %s", len(missed), missed[0])
				return
			}
			require.Empty(t, missed)
		})
	}
}

// bytesPerRequest measures the requests of TestBytesPerRequest on nodes
// nodes with mode (with old: memcached.SetBackupWholeWrites) and returns
// the targets missed, and with BackupWitness the witness scheme's bounds
// missed (wmissed).
func bytesPerRequest(t *testing.T, nodes int, mode memcached.BackupMode, old bool) (missed, wmissed []string) {
	servers := startNodes(t, nodes)
	w := newWire()
	s := newStore(t, servers, memcached.Config{Backup: mode, DialContext: w.dial})
	if old {
		memcached.SetBackupWholeWrites(s)
	}
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
	primary, backup := s.Placement(key)
	witness := ""
	if mode == memcached.BackupWitness {
		cs := memcached.WitnessCandidates(s, key)
		primary, backup, witness = cs[0], cs[1], cs[2]
	}
	copies := []string{primary}
	names := map[string]string{primary: "primary"}
	if backup != "" {
		copies = append(copies, backup)
		names[backup] = "backup"
	}
	if witness != "" {
		copies = append(copies, witness)
		names[witness] = "witness"
	}
	stored := func() []byte {
		it, err := raw(t, primary).Get(key)
		require.NoError(t, err)
		return it.Value
	}
	size := float64(len(stored()))
	deltas := func() int {
		if witness != "" {
			return 0 // an envelope around the record; written whole
		}
		r, err := rec.Decode(stored())
		require.NoError(t, err)
		return r.Deltas
	}
	check := func(ok bool, format string, args ...any) {
		if !ok {
			missed = append(missed, fmt.Sprintf(format, args...))
		}
	}
	// wcheck checks the witness scheme's bounds on what request kind k,
	// cold or warm, moved to each node: 1.1 x per round trip on a data
	// copy, 0.1 x per round trip on the witness's node.
	wcheck := func(moved map[string]float64, k int, cold bool, what string) {
		if witness == "" {
			return
		}
		trips := 1.0
		if k > 0 {
			trips = 2
			if cold {
				trips = 3
			}
		}
		for _, addr := range copies {
			limit := 1.1 * trips * size
			if addr == witness {
				limit = 0.1 * trips * size
			}
			if moved[addr] > limit {
				wmissed = append(wmissed, fmt.Sprintf("%s, %s: %.0f bytes = %.2f x > %.2f x", what, names[addr], moved[addr], moved[addr]/size, limit/size))
			}
		}
	}
	// run serves request kind k (requestKinds) with p and returns the
	// bytes it moved to each copy, and whether it compacted the record
	// (wrote the lock or release whole though the data did not change).
	run := func(p *provider.Provider, k, i int) (moved map[string]float64, compacted bool) {
		before := map[string]wireCount{}
		for _, addr := range copies {
			before[addr] = w.at(addr)
		}
		d := deltas()
		require.NoError(t, requestKinds[k].run(ctx, p, id, i))
		if witness != "" {
			settled(t, serverAt(t, servers, witness)) // its touches are not waited for
		}
		moved = map[string]float64{}
		for _, addr := range copies {
			moved[addr] = float64(w.at(addr).minus(before[addr]).bytes())
		}
		return moved, k == 1 && deltas() < d+2
	}
	t.Logf("session: %d bytes stored whole (%d bytes of values); a delta is %d bytes", int(size), sessionBytes, rec.DeltaLen)

	// Changes nothing, cold (a fresh provider each time) and warm: two
	// whole cycles of compaction.
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		sum, most := map[string]float64{}, map[string]float64{}
		var compactions float64
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
			wcheck(moved, 1, !warm, fmt.Sprintf("exclusive, changes nothing, %s, request %d", name, i))
			if compacted {
				compactions++
			}
			for _, addr := range copies {
				sum[addr] += moved[addr]
				if compacted {
					t.Logf("exclusive, changes nothing, %s, request %d, %s: %.0f bytes = %.2f x, compacting the record", name, i, names[addr], moved[addr], moved[addr]/size)
					continue
				}
				most[addr] = max(most[addr], moved[addr])
				check(moved[addr] <= 1.5*size, "exclusive, changes nothing, %s, request %d, %s copy: %.0f bytes = %.2f x > 1.5 x", name, i, names[addr], moved[addr], moved[addr]/size)
			}
		}
		check(compactions > 0, "%d requests in a row compact the record", n)
		for _, addr := range copies {
			mean := sum[addr] / float64(n)
			if compactions == float64(n) {
				t.Logf("exclusive, changes nothing, %s, %s: every request wrote whole; mean over %d requests %.2f x", name, names[addr], n, mean/size)
			} else {
				t.Logf("exclusive, changes nothing, %s, %s: at most %.0f bytes = %.2f x; mean over %d requests with %.0f compactions %.2f x", name, names[addr], most[addr], most[addr]/size, n, compactions, mean/size)
			}
			check(mean <= 1.5*size, "exclusive, changes nothing, %s, %s copy: mean %.2f x > 1.5 x", name, names[addr], mean/size)
		}
	}

	// Another process: a second Store on the same nodes (another app
	// server), the two serving the session's requests in turn, so each
	// request's Store did not write the session last.
	before := map[string]wireCount{}
	for _, addr := range copies {
		before[addr] = w.at(addr)
	}
	s2 := newStore(t, servers, memcached.Config{Backup: mode, DialContext: w.dial})
	if witness != "" {
		// s2's first eviction check reads every node's stats as it
		// starts (about 2 KB each): not a request's bytes.
		var last uint64
		since := time.Now()
		testwait.Until(t, 5*time.Second, "the second Store's first eviction check", func() bool {
			var recv uint64
			for _, addr := range copies {
				d := w.at(addr).minus(before[addr]).recv
				if d < 1000 {
					return false
				}
				recv += d
			}
			if recv != last {
				last, since = recv, time.Now()
			}
			return time.Since(since) >= 50*time.Millisecond
		})
	}
	if old {
		memcached.SetBackupWholeWrites(s2)
	}
	p2, err := provider.New(s2, provider.Config{})
	require.NoError(t, err)
	turns := func(i int) *provider.Provider {
		if i%2 == 0 {
			return p2
		}
		return p
	}

	// Commits, cold and warm; read-only; each kind of exclusive request
	// served by the two processes in turn.
	for _, tc := range byteCases {
		most := map[string]float64{}
		if tc.warm {
			run(p, tc.kind, 0)
		}
		for i := range 4 {
			rp := p
			switch {
			case tc.other:
				rp = turns(i)
			case !tc.warm:
				rp = newProvider()
			}
			moved, _ := run(rp, tc.kind, i)
			if !tc.other {
				wcheck(moved, tc.kind, !tc.warm, fmt.Sprintf("%s, request %d", tc.name, i))
			}
			for _, addr := range copies {
				most[addr] = max(most[addr], moved[addr])
				check(moved[addr] <= tc.limit*size, "%s, request %d, %s copy: %.0f bytes = %.2f x > %.1f x", tc.name, i, names[addr], moved[addr], moved[addr]/size, tc.limit)
			}
		}
		for _, addr := range copies {
			t.Logf("%s, %s: at most %.0f bytes = %.2f x", tc.name, names[addr], most[addr], most[addr]/size)
		}
	}
	return missed, wmissed
}

// byteCase is a request counted by the bytes-per-request tests after their
// unchanged exclusive requests: requestKinds[kind], served warm (the
// process that wrote last) or cold, or by two processes in turn (other),
// whose bytes per copy must stay within limit × the stored record.
type byteCase struct {
	name  string
	kind  int
	warm  bool
	limit float64
	other bool
}

// byteCases are those requests, for one copy, two and the witness scheme.
var byteCases = []byteCase{
	{"exclusive, commits, cold", 2, false, 2.5, false},
	{"exclusive, commits, warm", 2, true, 2.5, false},
	{"read-only, cold", 0, false, 1.5, false},
	{"read-only, warm", 0, true, 1.5, false},
	// Last: p's provider, refused in turns, stops guessing for a while.
	{"exclusive, changes nothing, other process", 1, false, 1.5, true},
	{"exclusive, commits, other process", 2, false, 2.5, true},
}
