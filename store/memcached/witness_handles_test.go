package memcached

import (
	"fmt"
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
