package memcached

import (
	"testing"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestInChain: inChain's three answers for a write x (version 3, parent
// b) against records of a later epoch: a failover built on b at version 2
// and its writes (never x); a failover built on x and its writes (unknown:
// the failover's nonce hides its base in the slot of x's version); a
// failover built on x's child and its writes (the slot of x's version
// holds x's nonce: built on it).
func TestInChain(t *testing.T) {
	var b envelope.Envelope
	b.V, b.Nonce = 2, 0xb
	x := b.Child()
	x.Nonce = 0x1
	fail := func(base envelope.Envelope, nonce uint64) envelope.Envelope {
		f := base
		f.E, f.Nonce = 1, nonce
		return f
	}
	write := func(p envelope.Envelope, nonce uint64) envelope.Envelope {
		c := p.Child()
		c.Nonce = nonce
		return c
	}
	fb := fail(b, 0xf0)   // failover at version 2, built on b
	w3 := write(fb, 0x30) // its write at version 3 (x's version)
	w4 := write(w3, 0x40)
	fx := fail(x, 0xf1) // failover at version 3, built on x
	v4 := write(fx, 0x41)
	y := write(x, 0x42) // x's child, then a failover built on it
	fy := fail(y, 0xf2)
	v5 := write(fy, 0x51)
	for _, c := range []struct {
		name string
		rec  envelope.Envelope
		want envelope.Descent
	}{
		{"failover on the parent", fb, envelope.NotDescendant},
		{"its write at x's version", w3, envelope.NotDescendant},
		{"its next write", w4, envelope.NotDescendant},
		{"failover on x", fx, envelope.Unknown},
		{"write on the failover on x", v4, envelope.Unknown},
		{"failover on x's child", fy, envelope.Descendant},
		{"write on it", v5, envelope.Descendant},
	} {
		if got := inChain(c.rec, x); got != c.want {
			t.Errorf("%s: inChain = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSplitsBoundedOneAtATime (review 5's m6): the writes in flight a
// process remembers are bounded by maxSplits, and a new key past the
// bound forgets one other key, not all of them (a forgotten split is
// answered with its parent once more: liveness only).
func TestSplitsBoundedOneAtATime(t *testing.T) {
	w := &witness{splits: make(map[string]envelope.Identity)}
	id := func(i int) envelope.Identity { return envelope.Identity{Nonce: uint64(i) + 1} }
	key := func(i int) string {
		return "k" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
	}
	for i := range maxSplits + 10 {
		if !w.firstSight(key(i), id(i)) {
			t.Fatalf("key %d: not a first sight", i)
		}
		if len(w.splits) > maxSplits {
			t.Fatalf("%d splits remembered, bound %d", len(w.splits), maxSplits)
		}
	}
	if len(w.splits) != maxSplits {
		t.Fatalf("%d splits remembered after %d keys, want the bound %d", len(w.splits), maxSplits+10, maxSplits)
	}
	last := maxSplits + 9
	if w.firstSight(key(last), id(last)) {
		t.Fatal("the newest split forgotten")
	}
}
