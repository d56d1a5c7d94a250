package memcached

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestHandleTableGrowsOnDemand: a new table holds no slots (the default
// bound's, made at once, cost every Store about 13 MB and the simulation
// a sixth of its CPU); it grows as handles are put, then reuses its slots
// oldest first, by count and by bytes, as a ring made whole would.
func TestHandleTableGrowsOnDemand(t *testing.T) {
	if got := len(newHandleTable(DefaultHandles, DefaultHandleBytes).slots); got != 0 {
		t.Fatalf("a new table has %d slots made, want 0", got)
	}

	put := func(tb *handleTable, key string, base int) uint64 {
		return tb.put(handle{key: key, base: make([]byte, base), copies: [2]copyToken{{cas: 1}, {cand: 1, cas: 1}}})
	}
	found := func(tb *handleTable, id uint64) bool { _, ok := tb.get(id); return ok }

	// By count: a bound of 3, five handles: the two oldest are gone.
	tb := newHandleTable(3, 1<<20)
	var ids []uint64
	for i := range 5 {
		ids = append(ids, put(tb, fmt.Sprint("k", i), 0))
		if want := min(i+1, 3); len(tb.slots) != want {
			t.Fatalf("after %d puts: %d slots, want %d", i+1, len(tb.slots), want)
		}
	}
	for i, id := range ids {
		if want := i >= 2; found(tb, id) != want {
			t.Errorf("count bound: handle %d found %v, want %v", i, !want, want)
		}
	}

	// By bytes while the ring grows: room for two handles of 100 base
	// bytes; the third evicts the oldest (slot 0), not a newer one.
	tb = newHandleTable(8, 2*(handleOverhead+2+100))
	a, b, c := put(tb, "ka", 100), put(tb, "kb", 100), put(tb, "kc", 100)
	if found(tb, a) || !found(tb, b) || !found(tb, c) {
		t.Errorf("byte bound while growing: found a=%v b=%v c=%v, want false true true", found(tb, a), found(tb, b), found(tb, c))
	}
	if tb.bytes > tb.maxBytes {
		t.Errorf("%d bytes kept, bound %d", tb.bytes, tb.maxBytes)
	}

	// The same copies read again get the same handle.
	if again := put(tb, "kc", 100); again != c {
		t.Errorf("the same copies put again: handle %x, want %x", again, c)
	}
}

// TestHandleTableHeldByBytes: a table whose bytes bound is reached while
// its ring still grows keeps exactly the newest handles that fit and stops
// growing. The code before kept growing its ring to the slot bound, its
// freed slots in front of the live ones, and scanned them from slot 0 on
// every put: with the defaults and 2 KB sessions, after about 29,000
// handles every write of the Store held the table's lock over a scan of
// tens of thousands of slots (BenchmarkLatencyRatios' witness rows slowed
// 2.4 × within one run).
func TestHandleTableHeldByBytes(t *testing.T) {
	const fits = 4 // handles of 100 base bytes the bound holds
	tb := newHandleTable(1000, fits*(handleOverhead+4+100))
	var ids []uint64
	for i := range 500 {
		ids = append(ids, tb.put(handle{key: fmt.Sprintf("k%03d", i), base: make([]byte, 100), copies: [2]copyToken{{cas: 1}, {cand: 1, cas: 1}}}))
		if len(tb.slots) > fits+1 {
			t.Fatalf("after %d puts: %d slots made for %d handles that fit", i+1, len(tb.slots), fits)
		}
		if tb.bytes > tb.maxBytes {
			t.Fatalf("after %d puts: %d bytes kept, bound %d", i+1, tb.bytes, tb.maxBytes)
		}
		for j, id := range ids {
			if _, ok := tb.get(id); ok != (j > i-fits) {
				t.Fatalf("after %d puts: handle %d found %v, want the %d newest", i+1, j, ok, fits)
			}
		}
	}
}

// TestHandleTableKeepsTheNewest puts handles of random sizes into small
// tables and checks after every put that the handles found are the newest
// ones, as many as fit by count and by bytes (at least one slot short of
// the count bound while a ring held by its bytes has not yet grown back),
// and that the newest is always found.
func TestHandleTableKeepsTheNewest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + rng.IntN(12)
		maxBytes := (1 + rng.IntN(8)) * (handleOverhead + 4 + 200)
		tb := newHandleTable(n, maxBytes)
		var ids []uint64
		var sizes []int
		for i := range 60 {
			h := handle{key: fmt.Sprintf("k%03d", i), base: make([]byte, rng.IntN(400)), copies: [2]copyToken{{cas: 1}, {cand: 1, cas: 1}}}
			ids, sizes = append(ids, tb.put(h)), append(sizes, h.size())
			// The newest handles that fit by bytes (the newest always).
			fit, bytes := 0, 0
			for j := i; j >= 0 && fit < n && (fit == 0 || bytes+sizes[j] <= maxBytes); j-- {
				fit, bytes = fit+1, bytes+sizes[j]
			}
			found := 0
			for j := i; j >= 0; j-- {
				if _, ok := tb.get(ids[j]); !ok {
					break
				}
				found++
			}
			for j := range i - found {
				if _, ok := tb.get(ids[j]); ok {
					t.Fatalf("round %d, put %d: handle %d found behind a gap", round, i, j)
				}
			}
			if found == 0 || found > fit || len(tb.slots) > n || found < fit && found < len(tb.slots) && tb.bytes+sizes[i-found] <= maxBytes {
				t.Fatalf("round %d, put %d (bound %d slots, %d bytes): %d newest found, %d fit, %d slots, %d bytes", round, i, n, maxBytes, found, fit, len(tb.slots), tb.bytes)
			}
		}
	}
}

// BenchmarkHandleTablePut puts handles of 2 KB sessions into a table of
// the default bounds: the cost of a put must not grow with b.N (the code
// before scanned the freed slots once the bytes bound was reached).
func BenchmarkHandleTablePut(b *testing.B) {
	tb := newHandleTable(DefaultHandles, DefaultHandleBytes)
	base := make([]byte, 2048)
	for i := 0; b.Loop(); i++ {
		tb.put(handle{key: strconv.Itoa(i), base: base, copies: [2]copyToken{{cas: uint64(i)}, {cand: 1, cas: uint64(i)}}})
	}
}
