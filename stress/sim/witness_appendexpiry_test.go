package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestWitnessAppendAtExpiry is TestOneCopyAppendAtExpiry in the witness
// scheme (review-oc31 F2), with a real expiry rather than the store
// tests' delete: three simulated nodes with their own clocks and a fixed
// latency per command; a key created with a 1 s TTL gets one lock change
// appended (CompareAndAppend with the Add's handle: the touch once the
// append is stored, a round trip later; or with a Get's just before: the
// touch in the append's round trip) at instants swept around the tick
// of each data node's clock that expires the key there, so that a data
// copy expires between its append and its touch (memcached's append keeps
// the expiry), on one node or on both. An append acknowledged must leave
// two live data copies (D1: none lapses with no fault) and a session a
// Get finds; not found and a conflict (the primary's copy gone: the
// secondary undone) are allowed. Before the fix an append was
// acknowledged with one live data copy, or with none.
func TestWitnessAppendAtExpiry(t *testing.T) {
	inBubbles(t, witnessAppendAtExpiry)
}

func witnessAppendAtExpiry(t *testing.T, conns memcached.ConnMode) {
	nw := NewNetwork(3, rand.New(rand.NewPCG(31, 3)))
	defer nw.Shutdown()
	const lat = 4 * time.Millisecond // each command waits lat
	nw.minLat, nw.maxLat = lat, lat
	st, err := memcached.New(memcached.Config{Nodes: nw.Addrs(), Backup: memcached.BackupWitness, Timeout: time.Minute,
		DialContext: nw.Dialer("app0"), Conns: conns, RepairEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	outcomes := map[string]int{}
	offs := []time.Duration{-4 * lat, -3 * lat, -5 * lat / 2, -2 * lat, -3 * lat / 2, -lat, -lat / 2, 0, lat}
	// Keys 0 to 2n-1: the Add's handle (the touch a round trip after the
	// append); 2n to 4n-1: a Get's just before (the touch in the append's
	// round trip).
	n := len(offs)
	for i := range 4 * n {
		key := fmt.Sprint("k", i)
		cas, err := st.Add(ctx, key, []byte("v"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The data copies' expiry ticks, by their nodes' clocks: the
		// sweep is around the first one's, then the second's.
		var expiries []time.Time
		var before []string
		for _, a := range nw.Addrs() {
			if it := dataItem(nw.Node(a), key); it != nil {
				expiries = append(expiries, expiryInstant(nw.Node(a).tab, it.exptime))
				before = append(before, a)
			}
		}
		if len(expiries) != 2 {
			t.Fatalf("%s: %d data copies after its Add", key, len(expiries))
		}
		if expiries[1].Before(expiries[0]) {
			expiries[0], expiries[1] = expiries[1], expiries[0]
		}
		off, which, read := offs[i%n], i/n%2, i >= 2*n
		at := expiries[which].Add(off - lat)
		if read {
			time.Sleep(time.Until(at.Add(-3 * lat)))
			e, err := st.Get(ctx, key)
			if errors.Is(err, provider.ErrNotFound) {
				// The first data copy expired already (the sweep
				// around the second's): the session with it.
				outcomes["gone at the read"]++
				continue
			}
			if err != nil {
				t.Fatalf("%s: Get before the append: %v", key, err)
			}
			cas = e.CAS
		}
		time.Sleep(time.Until(at))
		_, _, err = st.CompareAndAppend(ctx, key, []byte("d"), cas, time.Second)
		switch {
		case errors.Is(err, provider.ErrNotFound):
			outcomes[fmt.Sprintf("not found (read %v)", read)]++
			continue
		case errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrOutcomeUnknown):
			outcomes[fmt.Sprintf("conflict (read %v)", read)]++
			continue
		case err != nil:
			t.Errorf("append %s at %v from the expiry of data copy %d (read %v): %v", key, off, which, read, err)
			continue
		}
		var live []string
		for _, a := range nw.Addrs() {
			if it := dataItem(nw.Node(a), key); it != nil {
				live = append(live, a)
			}
		}
		if fmt.Sprint(live) != fmt.Sprint(before) {
			// The secondary's copy gone by its touch: the write
			// failover moved it onto the witness node.
			outcomes[fmt.Sprintf("failed over (read %v)", read)]++
		} else {
			outcomes[fmt.Sprintf("stored (read %v)", read)]++
		}
		if len(live) != 2 {
			t.Errorf("append %s at %v from the expiry of data copy %d (read %v) acknowledged with %d live data copies, want 2", key, off, which, read, len(live))
		}
		if _, err := st.Get(ctx, key); err != nil {
			t.Errorf("append %s at %v from the expiry of data copy %d (read %v) acknowledged, then Get: %v", key, off, which, read, err)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	for _, read := range []bool{false, true} {
		r := fmt.Sprintf(" (read %v)", read)
		if outcomes["stored"+r] == 0 || outcomes["not found"+r]+outcomes["conflict"+r]+outcomes["failed over"+r] == 0 {
			t.Errorf("outcomes %v: the sweep missed the expiries", outcomes)
		}
	}
}

// dataItem returns key's live data item (client flags 1) on nd, or nil.
func dataItem(nd *Node, key string) *item {
	tab := nd.tab
	tab.mu.Lock()
	defer tab.mu.Unlock()
	now := tab.clk.at(time.Since(tab.started))
	for k, it := range tab.items {
		if strings.HasSuffix(k, key) && it.flags == 1 && !it.stale && (it.exptime == 0 || it.exptime > now) {
			return it
		}
	}
	return nil
}
