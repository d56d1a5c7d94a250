package envelope

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
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

// requireHeadCorrupt requires that every bit of good's first head bytes
// flipped, and good cut to any length below head, decode to an error
// wrapping ErrCorrupt.
func requireHeadCorrupt(t *testing.T, what string, good []byte, head int) {
	t.Helper()
	for i := range head {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			if _, _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s, byte %d bit %d flipped: %v", what, i, bit, err)
			}
		}
	}
	for n := range head {
		if _, _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s cut to %d: %v", what, n, err)
		}
	}
}

// TestCorrupt flips every bit of an envelope, truncates it, and changes
// version and marks: each is an error wrapping ErrCorrupt; so is a
// version 4 head flipped, cut short or with lifetime 0, and version 5.
func TestCorrupt(t *testing.T) {
	requireHeadCorrupt(t, "version 2", sample().Append(nil), Size)
	bad := sample()
	bad.P, bad.Q = 1, 1
	if _, _, err := Decode(bad.Append(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("P == Q: %v", err)
	}
	bad.P, bad.Q = 3, 1
	if _, _, err := Decode(bad.Append(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("P out of range: %v", err)
	}
	v5 := lifetimed().Wrap(nil)
	v5[0] = 5
	binary.BigEndian.PutUint32(v5[SizeLifetime-4:], crc32.Checksum(v5[:SizeLifetime-4], castagnoli))
	if _, _, err := Decode(v5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 5: %v", err)
	}
	v4 := lifetimed().Wrap([]byte("base"))
	requireHeadCorrupt(t, "version 4", v4, SizeLifetime)
	zero := bytes.Clone(v4) // a version 4 head whose lifetime is 0
	binary.BigEndian.PutUint64(zero[Size-8:], 0)
	binary.BigEndian.PutUint32(zero[SizeLifetime-4:], crc32.Checksum(zero[:SizeLifetime-4], castagnoli))
	if _, _, err := Decode(zero); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 4 with lifetime 0: %v", err)
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
// and what decodes with no trailers encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(sample().Wrap([]byte("x")))
	f.Add(withTrailers(t0(), 3))
	f.Add([]byte{})
	f.Add(make([]byte, Size))
	promised, _ := Promised(sample().Wrap([]byte("x")), 7)
	f.Add(promised)
	f.Add(withTrailers(lifetimed(), 2))
	promised4, _ := Promised(lifetimed().Wrap([]byte("x")), 7)
	f.Add(promised4)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, rest, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		want := e.Wrap(rest)
		if b[0] == VersionPromised || b[0] == VersionLifetime {
			want, _ = Promised(want, PromiseOf(b))
		}
		if n, ok := Trailers(b); ok && n == 0 && !bytes.Equal(want, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// FuzzPromised (the cold review of R11's): for any item that decodes,
// Promised keeps its envelope, payload and trailer count and its bytes
// after the head, and PromiseOf reads the promise back; what Decode
// rejects, Promised rejects.
func FuzzPromised(f *testing.F) {
	f.Add(sample().Wrap([]byte("x")), uint32(3))
	f.Add(withTrailers(t0(), 3), uint32(9))
	p, _ := Promised(withTrailers(t0(), 2), 5)
	f.Add(p, uint32(6))
	f.Add(make([]byte, SizePromised+3), uint32(1))
	f.Add(withTrailers(lifetimed(), 2), uint32(4))
	f.Fuzz(func(t *testing.T, b []byte, e uint32) {
		env, payload, err := Decode(b)
		if err != nil {
			if _, perr := Promised(b, e); perr == nil {
				t.Fatal("Promised accepted what Decode rejects")
			}
			return
		}
		n0, _ := Trailers(b)
		pb, err := Promised(b, e)
		if err != nil {
			t.Fatalf("Promised of a decodable item: %v", err)
		}
		env2, payload2, err := Decode(pb)
		if err != nil || env2 != env || !bytes.Equal(payload, payload2) {
			t.Fatalf("the promised item decodes differently: %v", err)
		}
		if PromiseOf(pb) != e {
			t.Fatalf("PromiseOf = %d, want %d", PromiseOf(pb), e)
		}
		if n1, ok := Trailers(pb); !ok || n1 != n0 {
			t.Fatalf("trailers %d %v, want %d", n1, ok, n0)
		}
		if b[0] != 1 {
			head := headSize(b[0])
			if !bytes.Equal(pb[headSize(pb[0]):], b[head:]) {
				t.Fatal("the bytes after the head are not kept")
			}
		}
	})
}

// t0 is an established record's envelope, the base of trailers.
func t0() Envelope {
	e := sample()
	e.Pending = false
	return e
}

// delta is the i-th test delta (of varying lengths).
func delta(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 3+i) }

// withTrailers is base wrapping "base", then n trailers of delta(i), each
// the next version with nonce 100+i and timeout 60+i.
func withTrailers(base Envelope, n int) []byte {
	b := base.Wrap([]byte("base"))
	e := base
	for i := range n {
		e = e.Next(uint64(100+i), uint32(60+i))
		b = e.AppendTrailer(b, delta(i))
	}
	return b
}

// TestTrailers: a record with trailers decodes to the envelope of the
// last one, which is exactly what a whole write of the same chain of
// changes carries (Next of each), and to the base followed by the deltas;
// Trailers counts them.
func TestTrailers(t *testing.T) {
	base := t0()
	for n := range 5 {
		b := withTrailers(base, n)
		want, payload := base, []byte("base")
		for i := range n {
			want = want.Next(uint64(100+i), uint32(60+i))
			payload = append(payload, delta(i)...)
		}
		got, rest, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || !bytes.Equal(rest, payload) {
			t.Fatalf("%d trailers: got %+v %q, want %+v %q", n, got, rest, want, payload)
		}
		if whole, _, _ := Decode(want.Wrap(payload)); whole != got {
			t.Fatalf("%d trailers: the whole write decodes to %+v, the appends to %+v", n, whole, got)
		}
		if k, ok := Trailers(b); k != n || !ok {
			t.Fatalf("Trailers = %d, %v; want %d, true", k, ok, n)
		}
		if len(b) != Size+4+n*TrailerOverhead+len(payload)-4 {
			t.Fatalf("%d trailers: %d bytes", n, len(b))
		}
	}
	if got := base.Next(7, 9); got.V != base.V+1 || got.Ancestors[0] != base.Nonce || got.Nonce != 7 || got.Timeout != 9 || got.Pending || !got.SameConfig(base) || got.Digest != base.Digest || got.NoWit != base.NoWit {
		t.Fatalf("Next: %+v", got)
	}
}

// TestTrailersCorrupt flips every bit of every trailer byte and truncates
// the record inside a trailer: each is an error wrapping ErrCorrupt; and a
// trailer after a pending record, a base length past the end, or garbage
// after the base are corrupt too.
func TestTrailersCorrupt(t *testing.T) {
	good := withTrailers(t0(), 2)
	start := Size + len("base")
	for i := start; i < len(good); i++ {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			if _, _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d bit %d flipped: %v", i, bit, err)
			}
			if _, ok := Trailers(b); ok {
				t.Fatalf("byte %d bit %d flipped: appendable", i, bit)
			}
		}
	}
	one := len(withTrailers(t0(), 1))
	for n := start + 1; n < len(good); n++ {
		if n == one {
			continue // exactly one trailer: a well-formed record
		}
		if _, _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	pending := sample()
	if _, _, err := Decode(pending.Next(1, 1).AppendTrailer(pending.Wrap(nil), []byte("d"))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a trailer after a pending record: %v", err)
	}
	long := t0().Wrap([]byte("base"))
	long = long[:len(long)-1]
	if _, _, err := Decode(long); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a base length past the end: %v", err)
	}
	if _, _, err := Decode(append(t0().Wrap([]byte("base")), "junk..............."...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage after the base: %v", err)
	}
}

// TestVersion1: a version 1 envelope (no base length) still decodes, its
// payload all the bytes after it, and takes no trailer (Trailers: not ok).
func TestVersion1(t *testing.T) {
	e := sample()
	v2 := e.Wrap([]byte("payload"))
	v1 := append([]byte(nil), v2[:Size-8]...) // the fields up to the timeout
	v1[0] = 1
	v1 = binary.BigEndian.AppendUint32(v1, crc32.Checksum(v1, castagnoli))
	v1 = append(v1, "payload"...)
	got, rest, err := Decode(v1)
	if err != nil || got != e || string(rest) != "payload" {
		t.Fatalf("version 1: %+v %q %v", got, rest, err)
	}
	if _, ok := Trailers(v1); ok {
		t.Fatal("a version 1 record is appendable")
	}
	v1[5] ^= 1
	if _, _, err := Decode(v1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 1 with a bit flipped: %v", err)
	}
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

// TestPromised: a promise rewrites only the head (version 3, the promise
// field, its checksum): the item decodes to the same envelope and payload,
// base and trailers byte-exact, PromiseOf reads the promise back, a second
// promise replaces the first, a trailer may still follow, and a flipped
// bit in the head is corrupt. Items without one carry no promise.
func TestPromised(t *testing.T) {
	e := sample()
	e.Pending = false // a trailer follows only an established record
	whole := e.Wrap([]byte("base"))
	n1 := e.Next(0x1111, 60)
	trailed := n1.AppendTrailer(append([]byte(nil), whole...), []byte("delta"))
	wit := e.Append(nil)
	for _, c := range []struct {
		name string
		b    []byte
	}{{"whole", whole}, {"trailers", trailed}, {"witness", wit}} {
		t.Run(c.name, func(t *testing.T) {
			if PromiseOf(c.b) != 0 {
				t.Fatal("a version 2 item carries a promise")
			}
			wantEnv, wantPayload, err := Decode(c.b)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Promised(c.b, 7)
			if err != nil {
				t.Fatal(err)
			}
			if p[0] != VersionPromised || len(p) != len(c.b)+4 {
				t.Fatalf("version %d, %d bytes (was %d)", p[0], len(p), len(c.b))
			}
			if !bytes.Equal(p[SizePromised:], c.b[Size:]) {
				t.Fatal("the base and trailers were not kept byte-exact")
			}
			if got := PromiseOf(p); got != 7 {
				t.Fatalf("PromiseOf = %d, want 7", got)
			}
			env, payload, err := Decode(p)
			if err != nil || env != wantEnv || !bytes.Equal(payload, wantPayload) {
				t.Fatalf("promised item decodes to %+v %q %v, want %+v %q", env, payload, err, wantEnv, wantPayload)
			}
			again, err := Promised(p, 9)
			if err != nil || PromiseOf(again) != 9 || len(again) != len(p) {
				t.Fatalf("second promise: %d, %v", PromiseOf(again), err)
			}
			if n, ok := Trailers(p); !ok || n != map[string]int{"whole": 0, "trailers": 1, "witness": 0}[c.name] {
				t.Fatalf("Trailers = %d, %v", n, ok)
			}
			bad := append([]byte(nil), p...)
			bad[Size-2] ^= 1 // inside the promise
			if _, _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a flipped promise bit: %v", err)
			}
			if PromiseOf(bad) != 0 {
				t.Fatal("PromiseOf trusted a head whose checksum fails")
			}
		})
	}
	t.Run("trailer after a promise", func(t *testing.T) {
		p, _ := Promised(whole, 3)
		n1 := e.Next(0x2222, 60)
		b := n1.AppendTrailer(p, []byte("d"))
		env, payload, err := Decode(b)
		if err != nil || env != n1 || string(payload) != "based" || PromiseOf(b) != 3 {
			t.Fatalf("%+v %q %v promise %d", env, payload, err, PromiseOf(b))
		}
	})
	t.Run("version 1", func(t *testing.T) {
		v1 := append([]byte(nil), whole[:Size-8]...)
		v1[0] = 1
		v1 = binary.BigEndian.AppendUint32(v1, crc32.Checksum(v1, castagnoli))
		v1 = append(v1, "base"...)
		p, err := Promised(v1, 5)
		if err != nil || PromiseOf(p) != 5 {
			t.Fatalf("%v, promise %d", err, PromiseOf(p))
		}
		env, payload, err := Decode(p)
		if err != nil || env != e || string(payload) != "base" {
			t.Fatalf("%+v %q %v", env, payload, err)
		}
	})
	if _, err := Promised([]byte("junk"), 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Promised of junk: %v", err)
	}
}

// lifetimed is an established record's envelope with a lifetime.
func lifetimed() Envelope {
	e := t0()
	e.Lifetime = 0x0123456789abcdef
	return e
}

// golden2 is sample() established, wrapping "base", as the code before
// lifetimes wrote it (version 2), and golden3 the same promised 5
// (version 3): envelopes with no lifetime are written byte for byte as
// before.
const (
	golden2 = "020200000007020000000100000000000000deadbeefcafe000000000000123400000000000056780000000000000009000000000000000a000000000000000000000000000000000000000000000000000000000000000001020304000004b000000004546d4d0b62617365"
	golden3 = "030200000007020000000100000000000000deadbeefcafe000000000000123400000000000056780000000000000009000000000000000a000000000000000000000000000000000000000000000000000000000000000001020304000004b00000000400000005bc9fecb262617365"
)

// TestLifetimeRoundTrip: an envelope with a lifetime is written as
// version 4 (SizeLifetime bytes, the lifetime at 96, the base length at
// 104, no promise at 108, the checksum at 112) and decodes back; with
// lifetime 0 it is written as the kept version 2 golden, and promised as
// the version 3 one.
func TestLifetimeRoundTrip(t *testing.T) {
	e := lifetimed()
	b := e.Wrap([]byte("base"))
	if b[0] != VersionLifetime || len(b) != SizeLifetime+4 || SizeLifetime != 116 {
		t.Fatalf("version %d, %d bytes", b[0], len(b))
	}
	if binary.BigEndian.Uint64(b[96:]) != e.Lifetime || binary.BigEndian.Uint32(b[104:]) != 4 ||
		binary.BigEndian.Uint32(b[108:]) != 0 || binary.BigEndian.Uint32(b[112:]) != crc32.Checksum(b[:112], castagnoli) {
		t.Fatalf("version 4 layout: % x", b[96:SizeLifetime])
	}
	got, payload, err := Decode(b)
	if err != nil || got != e || string(payload) != "base" {
		t.Fatalf("got %+v %q %v, want %+v", got, payload, err, e)
	}
	if n, ok := Trailers(b); n != 0 || !ok {
		t.Fatalf("Trailers = %d, %v", n, ok)
	}
	e.Lifetime = 0
	if got := hex.EncodeToString(e.Wrap([]byte("base"))); got != golden2 {
		t.Fatalf("lifetime 0 wraps as\n%s\nwant version 2's\n%s", got, golden2)
	}
	p, err := Promised(e.Wrap([]byte("base")), 5)
	if err != nil || hex.EncodeToString(p) != golden3 {
		t.Fatalf("lifetime 0 promised: %x %v, want version 3's golden", p, err)
	}
	for _, g := range []string{golden2, golden3} {
		raw, _ := hex.DecodeString(g)
		if got, _, err := Decode(raw); err != nil || got != e || got.Lifetime != 0 {
			t.Fatalf("golden decodes to %+v %v, want %+v", got, err, e)
		}
	}
}

// TestLifetimePromised: a promise keeps a version 4 item version 4, of the
// same length, decoding to the same envelope (lifetime included), and
// PromiseOf reads it back (a second promise replaces the first); a version
// 2 item still becomes version 3; a flipped lifetime or promise byte is
// corrupt, and PromiseOf does not trust such a head.
func TestLifetimePromised(t *testing.T) {
	for _, b := range [][]byte{lifetimed().Wrap([]byte("base")), withTrailers(lifetimed(), 2)} {
		want, wantPayload, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if PromiseOf(b) != 0 {
			t.Fatal("a version 4 item without a promise carries one")
		}
		p, err := Promised(b, 7)
		if err != nil || p[0] != VersionLifetime || len(p) != len(b) {
			t.Fatalf("promised: version %d, %d bytes (was %d), %v", p[0], len(p), len(b), err)
		}
		if !bytes.Equal(p[SizeLifetime:], b[SizeLifetime:]) || !bytes.Equal(p[:promAt4], b[:promAt4]) {
			t.Fatal("a promise changed more than the promise and the checksum")
		}
		env, payload, err := Decode(p)
		if err != nil || env != want || !bytes.Equal(payload, wantPayload) || PromiseOf(p) != 7 {
			t.Fatalf("promised decodes to %+v %q %v, promise %d", env, payload, err, PromiseOf(p))
		}
		again, err := Promised(p, 9)
		if err != nil || PromiseOf(again) != 9 || len(again) != len(b) {
			t.Fatalf("second promise: %d, %v", PromiseOf(again), err)
		}
		for _, at := range []int{fields, promAt4} {
			bad := bytes.Clone(p)
			bad[at+3] ^= 1
			if _, _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d flipped: %v", at+3, err)
			}
			if PromiseOf(bad) != 0 {
				t.Fatalf("byte %d flipped: PromiseOf trusted the head", at+3)
			}
		}
	}
	p, err := Promised(t0().Wrap([]byte("base")), 7)
	if err != nil || p[0] != VersionPromised || PromiseOf(p) != 7 {
		t.Fatalf("version 2 promised: version %d, promise %d, %v", p[0], PromiseOf(p), err)
	}
}

// TestLifetimeTrailers: a trailer's Next keeps the lifetime, so a version
// 4 record with trailers decodes to the lifetime of its head, and its
// whole write (version 5 past the head: Carries) carries the same
// envelope; Trailers accepts version 4.
func TestLifetimeTrailers(t *testing.T) {
	base := lifetimed()
	if base.Next(1, 2).Lifetime != base.Lifetime || base.Child().Lifetime != base.Lifetime {
		t.Fatal("Next or Child dropped the lifetime")
	}
	for n := range 4 {
		b := withTrailers(base, n)
		got, payload, err := Decode(b)
		if err != nil || got.Lifetime != base.Lifetime {
			t.Fatalf("%d trailers: %+v %v", n, got, err)
		}
		whole := got.Wrap(payload)
		// A trailer is a client write, which carries itself (version
		// 5 when whole); the head alone is the version 4 record.
		if want := byte(VersionCarries); n == 0 && whole[0] != VersionLifetime || n > 0 && whole[0] != want {
			t.Fatalf("%d trailers: the whole write is version %d", n, whole[0])
		}
		if env, _, _ := Decode(whole); env != got {
			t.Fatalf("%d trailers: the whole write decodes to %+v, the appends to %+v", n, env, got)
		}
		if k, ok := Trailers(b); k != n || !ok {
			t.Fatalf("Trailers = %d, %v; want %d, true", k, ok, n)
		}
		if len(b) != SizeLifetime+len(payload)+n*TrailerOverhead {
			t.Fatalf("%d trailers: %d bytes", n, len(b))
		}
	}
}

// TestWitnessNoLifetime: a witness (Append) is written as version 2 of
// Size bytes, with no lifetime, whatever the envelope it is made of.
func TestWitnessNoLifetime(t *testing.T) {
	e := lifetimed()
	w := e.Append(nil)
	if w[0] != Version || len(w) != Size {
		t.Fatalf("witness: version %d, %d bytes", w[0], len(w))
	}
	got, _, err := Decode(w)
	e.Lifetime = 0
	if err != nil || got != e {
		t.Fatalf("witness decodes to %+v %v, want %+v", got, err, e)
	}
}

// TestSameLifetime: only two known, equal lifetimes are the same; only
// two known, different ones are other; a 0 on either side is neither.
func TestSameLifetime(t *testing.T) {
	x, y, zero := Envelope{Lifetime: 5}, Envelope{Lifetime: 6}, Envelope{}
	for _, c := range []struct {
		a, b        Envelope
		same, other bool
	}{{zero, zero, false, false}, {zero, x, false, false}, {x, zero, false, false}, {x, x, true, false}, {x, y, false, true}} {
		if SameLifetime(c.a, c.b) != c.same || OtherLifetime(c.a, c.b) != c.other {
			t.Fatalf("%d/%d: same %v other %v", c.a.Lifetime, c.b.Lifetime, SameLifetime(c.a, c.b), OtherLifetime(c.a, c.b))
		}
	}
}
