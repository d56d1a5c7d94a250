package envelope

import (
	"bytes"
	"errors"
	"testing"
)

func sample() Envelope {
	return Envelope{E: 7, P: 2, Q: 0, V: 1 << 40, Pending: true, NoWit: true, Nonce: 0xdeadbeefcafe, Ancestors: [Lineage]uint64{0x1234, 0x5678, 9, 10}, Digest: 0x01020304, Timeout: 1200}
}

func TestRoundTrip(t *testing.T) {
	for _, e := range []Envelope{{P: 0, Q: 1}, sample()} {
		b := e.Wrap([]byte("payload"))
		if len(b) != Size+len("payload") {
			t.Fatalf("len %d", len(b))
		}
		got, rest, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != e || string(rest) != "payload" {
			t.Fatalf("got %+v %q, want %+v", got, rest, e)
		}
	}
}

func TestIdentity(t *testing.T) {
	a, b := sample(), sample()
	b.Timeout, b.Digest, b.NoWit, b.Ancestors[0] = 1, 2, false, 3
	if a.ID() != b.ID() {
		t.Fatal("timeout, digest, parent and nowit are not part of the identity")
	}
	b.Nonce++
	if a.ID() == b.ID() {
		t.Fatal("nonce is part of the identity")
	}
	c := sample()
	c.Pending = false
	if a.ID() == c.ID() || !a.SameConfig(c) {
		t.Fatal("pending is part of the identity, not of the configuration")
	}
}

// TestCorrupt flips every bit of an envelope, truncates it, and changes
// version and marks: each is an error wrapping ErrCorrupt.
func TestCorrupt(t *testing.T) {
	good := sample().Append(nil)
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			if _, _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d bit %d flipped: %v", i, bit, err)
			}
		}
	}
	for n := range Size {
		if _, _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	bad := sample()
	bad.P, bad.Q = 1, 1
	if _, _, err := Decode(bad.Append(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("P == Q: %v", err)
	}
	bad.P, bad.Q = 3, 1
	if _, _, err := Decode(bad.Append(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("P out of range: %v", err)
	}
}

func TestDigest(t *testing.T) {
	a := Digest("witness", []string{"a:1", "b:2"})
	if a == Digest("witness", []string{"a:1", "b:3"}) || a == Digest("backup", []string{"a:1", "b:2"}) ||
		a == Digest("witness", []string{"a:1b:2"}) {
		t.Fatal("digest collides on a changed list or mode")
	}
	if a != Digest("witness", []string{"a:1", "b:2"}) {
		t.Fatal("digest not deterministic")
	}
}

// FuzzDecode: any input decodes or fails with ErrCorrupt, never panics,
// and what decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(sample().Wrap([]byte("x")))
	f.Add([]byte{})
	f.Add(make([]byte, Size))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, rest, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(e.Wrap(rest), b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// TestDescends: a chain of children is recognised within Lineage
// versions, exactly; a record of another chain is certainly not a
// descendant; beyond, unknown.
func TestDescends(t *testing.T) {
	root := sample()
	chain := []Envelope{root}
	for i := range Lineage + 2 {
		c := chain[len(chain)-1].Child()
		c.Nonce = uint64(i+1) * 0x9e3779b97f4a7c15
		chain = append(chain, c)
	}
	other := root.Child()
	other.Nonce = 42
	for d := 1; d < len(chain); d++ {
		want, wantOther := Descendant, NotDescendant
		if d > Lineage {
			want = Unknown
		}
		if d-1 > Lineage {
			wantOther = Unknown
		}
		if got := chain[d].Descends(root); got != want {
			t.Fatalf("version +%d: %v, want %v", d, got, want)
		}
		if d >= 2 {
			if got := chain[d].Descends(other); got != wantOther {
				t.Fatalf("version +%d of a sibling's chain: %v, want %v", d, got, wantOther)
			}
		}
	}
	if root.Descends(root) != NotDescendant || root.Descends(chain[1]) != NotDescendant {
		t.Fatal("a record descends from itself or a later one")
	}
}
