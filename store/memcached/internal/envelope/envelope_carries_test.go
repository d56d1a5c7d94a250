package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// carrying is lifetimed() as a decision's record: it carries the write
// 0x77 under its own nonce.
func carrying() Envelope {
	e := lifetimed()
	e.Carries = 0x77
	return e
}

// TestCarriesRoundTrip: an envelope with Carries is written as version 5
// (SizeCarries = 124 bytes: the lifetime at 96, Carries at 104, the base
// length at 112, no promise at 116, the checksum at 120) and decodes
// back, lifetime 0 included; every head bit flipped and every cut is
// corrupt, and so is a version 5 head whose Carries is 0.
func TestCarriesRoundTrip(t *testing.T) {
	for _, life := range []uint64{0x0123456789abcdef, 0} {
		e := carrying()
		e.Lifetime = life
		b := e.Wrap([]byte("base"))
		if b[0] != VersionCarries || len(b) != SizeCarries+4 || SizeCarries != 124 {
			t.Fatalf("version %d, %d bytes", b[0], len(b))
		}
		if binary.BigEndian.Uint64(b[96:]) != life || binary.BigEndian.Uint64(b[104:]) != 0x77 || binary.BigEndian.Uint32(b[112:]) != 4 ||
			binary.BigEndian.Uint32(b[116:]) != 0 || binary.BigEndian.Uint32(b[120:]) != crc32.Checksum(b[:120], castagnoli) {
			t.Fatalf("version 5 layout: % x", b[96:SizeCarries])
		}
		got, payload, err := Decode(b)
		if err != nil || got != e || string(payload) != "base" || got.Carried() != 0x77 {
			t.Fatalf("got %+v %q %v, want %+v", got, payload, err, e)
		}
		if n, ok := Trailers(b); n != 0 || !ok || !CarriesHead(b) {
			t.Fatalf("Trailers = %d, %v; CarriesHead %v", n, ok, CarriesHead(b))
		}
		requireHeadCorrupt(t, "version 5", b, SizeCarries)
	}
	zero := carrying().Wrap([]byte("base"))
	binary.BigEndian.PutUint64(zero[carriesAt:], 0)
	binary.BigEndian.PutUint32(zero[SizeCarries-4:], crc32.Checksum(zero[:SizeCarries-4], castagnoli))
	if _, _, err := Decode(zero); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 5 with Carries 0: %v", err)
	}
}

// TestCarriedOlder: records of versions 2 to 4 decode to Carries 0 and
// Carried is their nonce (what they meant before); Wrap of an envelope
// without Carries writes them as before (not version 5), and a witness
// is version 2 whatever it is made of.
func TestCarriedOlder(t *testing.T) {
	for _, e := range []Envelope{t0(), lifetimed()} {
		b := e.Wrap([]byte("base"))
		if b[0] == VersionCarries || CarriesHead(b) {
			t.Fatalf("no Carries written as version %d", b[0])
		}
		got, _, err := Decode(b)
		if err != nil || got.Carries != 0 || got.Carried() != e.Nonce {
			t.Fatalf("%+v %v: Carried %x, want the nonce %x", got, err, got.Carried(), e.Nonce)
		}
	}
	w := carrying().Append(nil)
	if got, _, err := Decode(w); w[0] != Version || len(w) != Size || err != nil || got.Carries != 0 || got.Lifetime != 0 {
		t.Fatalf("witness: version %d, %d bytes, %+v %v", w[0], len(w), got, err)
	}
}

// TestCarriesNotInherited (rvcarry M3): a client write made of a decision
// (Next, a trailer's decoding) carries itself, its parent slot the write
// the decision carried; Child clears Carries; Decision keeps the write
// its base carries (a decision of a decision too) under its new nonce.
func TestCarriesNotInherited(t *testing.T) {
	d := carrying()
	n := d.Next(0x99, 60)
	if n.Carries != 0x99 || n.Carried() != 0x99 || n.Ancestors[0] != 0x77 {
		t.Fatalf("Next of a decision: Carries %x, parent slot %x; want 99, 77", n.Carries, n.Ancestors[0])
	}
	if c := d.Child(); c.Carries != 0 || c.Ancestors[0] != 0x77 {
		t.Fatalf("Child: Carries %x, parent slot %x", c.Carries, c.Ancestors[0])
	}
	b := withTrailers(d, 2)
	got, _, err := Decode(b)
	if err != nil || got.Nonce != 101 || got.Carries != 101 || got.Ancestors[0] != 100 || got.Ancestors[1] != 0x77 {
		t.Fatalf("two trailers after a decision: %+v %v", got, err)
	}
	if whole := got.Wrap([]byte("x")); whole[0] != VersionCarries {
		t.Fatalf("a trailer's record whole: version %d", whole[0])
	}
	// A client write whose Carries was never set (an older record):
	// its decision carries the write by its nonce, not itself.
	w := t0()
	f := w.Decision(0x55)
	if f.Nonce != 0x55 || f.Carries != w.Nonce || f.Carried() != w.Nonce {
		t.Fatalf("decision of an older write: %+v", f)
	}
	if f2 := f.Decision(0x66); f2.Carries != w.Nonce || f2.Nonce != 0x66 {
		t.Fatalf("decision of a decision: %+v", f2)
	}
	if n := f.Next(0x88, 1); n.Ancestors[0] != w.Nonce {
		t.Fatalf("a write on the decision names %x as parent, want the write it carried %x", n.Ancestors[0], w.Nonce)
	}
}

// TestCarriesDescends: an ancestor slot is compared with the ancestor's
// Carried: a client write built on a decision descends from the write
// the decision carried.
func TestCarriesDescends(t *testing.T) {
	w := t0().Next(0x10, 60)
	f := w.Decision(0x20)
	n := f.Next(0x30, 60)
	if n.Descends(w) != Descendant || n.Descends(f) != Descendant {
		t.Fatal("a write on a decision does not descend from the write it carried")
	}
	o := t0().Next(0x11, 60) // a sibling of w
	if n.Descends(o) != NotDescendant {
		t.Fatal("a write on a decision of w descends from w's sibling")
	}
}

// TestCarriesPromised: a promise keeps a version 5 item version 5, of the
// same length, its lifetime and Carries kept (trailers too), and
// PromiseOf reads it; flipped Carries or promise bytes are corrupt.
func TestCarriesPromised(t *testing.T) {
	for _, b := range [][]byte{carrying().Wrap([]byte("base")), withTrailers(carrying(), 2)} {
		want, wantPayload, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Promised(b, 7)
		if err != nil || p[0] != VersionCarries || len(p) != len(b) || PromiseOf(p) != 7 {
			t.Fatalf("promised: version %d, %d bytes (was %d), promise %d, %v", p[0], len(p), len(b), PromiseOf(p), err)
		}
		if !bytes.Equal(p[SizeCarries:], b[SizeCarries:]) || !bytes.Equal(p[:promAt5], b[:promAt5]) {
			t.Fatal("a promise changed more than the promise and the checksum")
		}
		env, payload, err := Decode(p)
		if err != nil || env != want || !bytes.Equal(payload, wantPayload) {
			t.Fatalf("promised decodes to %+v %q %v", env, payload, err)
		}
		for _, at := range []int{carriesAt, promAt5} {
			bad := bytes.Clone(p)
			bad[at+3] ^= 1
			if _, _, err := Decode(bad); !errors.Is(err, ErrCorrupt) || PromiseOf(bad) != 0 {
				t.Fatalf("byte %d flipped: %v, PromiseOf %d", at+3, err, PromiseOf(bad))
			}
		}
	}
}
