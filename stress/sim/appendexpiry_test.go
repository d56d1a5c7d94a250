package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestOneCopyAppendAtExpiry is TestSimOneCopy's seed 31 made
// deterministic: on one simulated node with a fixed latency per command,
// a key stored with a 1 s TTL gets one lock change appended
// (CompareAndAppend: the append and its touch in one round trip) at an
// instant around the tick of the node's clock that expires it, so that
// for some of the instants swept the clock ticks past the item's expiry
// (which memcached's append keeps) between the append and its touch. An
// append that succeeds must leave its key there: before the fix one
// succeeded with its key already gone (and the provider then held a lock
// on a record that had vanished: "record vanished while lock … was held",
// the session found gone before its own timeout).
func TestOneCopyAppendAtExpiry(t *testing.T) {
	inBubbles(t, appendAtExpiry)
}

// inBubbles runs test in a synctest bubble over each connection mode.
func inBubbles(t *testing.T, test func(*testing.T, memcached.ConnMode)) {
	for name, conns := range map[string]memcached.ConnMode{"pooled": memcached.ConnsPooled, "pipelined": memcached.ConnsPipelined} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { test(t, conns) })
		})
	}
}

func appendAtExpiry(t *testing.T, conns memcached.ConnMode) {
	nw := NewNetwork(1, rand.New(rand.NewPCG(31, 31)))
	defer nw.Shutdown()
	const lat = 4 * time.Millisecond // each command waits lat: the append and its touch run lat apart
	nw.minLat, nw.maxLat = lat, lat
	nd := nw.Node(nw.Addrs()[0])
	st, err := memcached.New(memcached.Config{Nodes: nw.Addrs(), Timeout: time.Minute, DialContext: nw.Dialer("app0"), Conns: conns, RepairEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var ok, gone int
	// The append's call at expiry - lat + off: the append runs at
	// expiry + off, its touch at expiry + off + lat.
	for i, off := range []time.Duration{-3 * lat, -2 * lat, -3 * lat / 2, -lat, -lat / 2, -lat / 4, lat / 2, lat} {
		key := fmt.Sprint("k", i)
		cas, err := st.Add(ctx, key, []byte("v"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The tick that expires it, from the node's clock.
		tab := nd.tab
		tab.mu.Lock()
		var exp int64
		for k, it := range tab.items {
			if strings.HasSuffix(k, key) {
				exp = it.exptime
			}
		}
		tab.mu.Unlock()
		if exp == 0 {
			t.Fatalf("%s: no item", key)
		}
		time.Sleep(time.Until(expiryInstant(tab, exp).Add(off - lat)))
		_, _, err = st.CompareAndAppend(ctx, key, []byte("d"), cas, time.Second)
		switch {
		case errors.Is(err, provider.ErrNotFound):
			gone++
			continue
		case err != nil:
			t.Fatalf("append %s: %v", key, err)
		}
		ok++
		if _, err := st.Get(ctx, key); err != nil {
			t.Errorf("append %s %v before its expiry succeeded, then Get: %v", key, -off, err)
		}
	}
	if ok == 0 || gone == 0 {
		t.Errorf("%d appends succeeded, %d found the key gone: the sweep missed the expiry", ok, gone)
	}
}

// expiryInstant is when tab's clock reaches exp (the tick that expires
// an item of that exptime).
func expiryInstant(tab *table, exp int64) time.Time {
	period := time.Second + tab.clk.drift
	for k := 0; ; k++ {
		if e := time.Duration(k) * period; tab.clk.at(e) >= exp {
			return tab.started.Add(e)
		}
	}
}
