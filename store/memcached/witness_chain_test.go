package memcached

import (
	"testing"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestInChain: inChain's three answers for a write x (version 3, parent
// b) against records of a later epoch that do not name the write they
// carry (version 4 and below: §17's rules do not apply): a failover built on b at version 2
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
		if got := inChain(c.rec, x, chainRules{}); got != c.want {
			t.Errorf("%s: inChain = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestInChainCarries (§17): the same chains written with Carries (a
// decision carries its base's write, a client write itself, a slot names
// the write its record carried). A decision made of x, and the writes on
// it, are built on x (before: unknown); a decision made of x's sibling s
// (the same payload, another nonce), and its writes, are not (before:
// unknown); the writes on a decision of the parent are not (M2's negative
// slot rule: the parent slot now names b itself, so without the rule
// they are unknown, where the code before §17 found them not built on x
// by the decision's nonce in the parent slot).
func TestInChainCarries(t *testing.T) {
	b := envelope.Envelope{V: 1, Nonce: 0xa, Carries: 0xa}.Next(0xb, 60)
	x := b.Next(0x1, 60)
	s := b.Next(0x2, 60) // x's sibling
	fail := func(base envelope.Envelope, nonce uint64) envelope.Envelope {
		f := base.Decision(nonce)
		f.E = 1
		return f
	}
	fb := fail(b, 0xf0)
	w3 := fb.Next(0x30, 60)
	w4 := w3.Next(0x40, 60)
	fx := fail(x, 0xf1)
	ffx := fail(fx, 0xf5) // a decision of the decision
	ffx.E = 2
	v4 := fx.Next(0x41, 60)
	fs := fail(s, 0xf3)
	vs := fs.Next(0x43, 60)
	fy := fail(x.Next(0x42, 60), 0xf2)
	all, noNeg := chainRules{}, chainRules{noNegSlot: true}
	for _, c := range []struct {
		name  string
		rec   envelope.Envelope
		rules chainRules
		want  envelope.Descent
	}{
		{"failover on the parent", fb, all, envelope.NotDescendant},
		{"its write at x's version", w3, all, envelope.NotDescendant},
		{"its next write", w4, all, envelope.NotDescendant},
		{"its next write, no negative slot rule", w4, noNeg, envelope.Unknown},
		{"failover on x", fx, all, envelope.Descendant},
		{"failover on the failover on x", ffx, all, envelope.Descendant},
		{"write on the failover on x", v4, all, envelope.Descendant},
		{"failover on x, the code before", fx, chainRules{off: true}, envelope.Unknown},
		{"failover on x's sibling", fs, all, envelope.NotDescendant},
		{"write on it", vs, all, envelope.NotDescendant},
		{"write on it, no negative slot rule", vs, noNeg, envelope.Unknown},
		{"failover on x's child", fy, all, envelope.Descendant},
	} {
		if got := inChain(c.rec, x, c.rules); got != c.want {
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
