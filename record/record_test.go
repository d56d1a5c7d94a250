package record

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func sampleRecord() Record {
	v := session.NewValues(nil)
	_ = v.Set("a", 1)
	b, _ := v.Encode(0)
	return Record{Header: Header{
		Seq: 7, DataSeq: 3, LockID: 5, Locked: true, Actions: session.InitializeItem,
		LockedAt: time.Unix(0, 1234), Timeout: 2 * time.Minute,
	}, Values: b}
}

// sampleV2 is sampleRecord with a creation time: a version 2 record.
func sampleV2() Record {
	r := sampleRecord()
	r.Created = time.Unix(1_700_000_000, 123)
	return r
}

// goldenV1 is sampleRecord as the version 1 encoder (before version 2
// existed) wrote it: records already stored must keep decoding.
const goldenV1 = "534c01010100000000000000070000000000000003000000000000000500000000000004d20000001bf08eb00000000006010101610131ba6965f5"

// TestRecordV1StillDecodes: a record written before format version 2
// decodes to the same header (no creation time) and re-encodes to the
// same bytes: a record without a creation time is still written as
// version 1.
func TestRecordV1StillDecodes(t *testing.T) {
	b, err := hex.DecodeString(goldenV1)
	require.NoError(t, err)
	r, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, sampleRecord().Header, r.Header)
	require.True(t, r.Created.IsZero(), "a version 1 record has no creation time")
	require.Equal(t, sampleRecord().Values, r.Values)
	require.Equal(t, b, r.Encode(), "re-encoded byte for byte")
	require.Equal(t, b, sampleRecord().Encode())
}

// TestRecordV2: a record with a creation time is version 2, round-trips,
// keeps Seq at SeqOffset, and detects every corruption; a creation time
// that cannot be stored is written as unknown (version 1).
func TestRecordV2(t *testing.T) {
	r := sampleV2()
	b := r.Encode()
	require.Equal(t, PrefixV2, string(b[:len(PrefixV2)]))
	require.Len(t, b, HeaderLenV2+len(r.Values)+TrailerLen)
	got, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, r.Header, got.Header)
	require.Equal(t, r.Values, got.Values)
	require.Equal(t, r.Seq, binary.BigEndian.Uint64(b[SeqOffset:SeqOffset+SeqLen]))
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		_, err := Decode(c)
		require.ErrorIs(t, err, session.ErrCorrupt, "flipped byte %d", i)
	}
	for n := 0; n < len(b); n++ {
		_, err := Decode(b[:n])
		require.ErrorIs(t, err, session.ErrCorrupt, "truncated to %d", n)
	}
	// A version 2 record must carry a creation time: one with none would
	// not encode back to itself.
	zero := bytes.Clone(b)
	clear(zero[offCreated : offCreated+8])
	binary.BigEndian.PutUint32(zero[len(zero)-TrailerLen:], crc32.Checksum(zero[:len(zero)-TrailerLen], castagnoli))
	_, err = Decode(zero)
	require.ErrorIs(t, err, session.ErrCorrupt)
	// Version 3 is unknown.
	v3 := bytes.Clone(b)
	v3[offVersion] = 3
	binary.BigEndian.PutUint32(v3[len(v3)-TrailerLen:], crc32.Checksum(v3[:len(v3)-TrailerLen], castagnoli))
	_, err = Decode(v3)
	require.ErrorIs(t, err, session.ErrCorrupt)
	require.Contains(t, err.Error(), "version 3")
	for _, c := range []time.Time{time.Unix(0, 0), time.Unix(-5, 0), {}} {
		old := sampleRecord()
		old.Created = c
		require.Equal(t, Prefix, string(old.Encode()[:len(Prefix)]), "creation time %v is stored as unknown", c)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	got, err := Decode(r.Encode())
	require.NoError(t, err)
	require.Equal(t, r.Header, got.Header)
	require.Equal(t, r.Values, got.Values)
	h, err := Parse(r.Encode())
	require.NoError(t, err)
	require.Equal(t, uint64(7), h.Seq)
}

func TestRecordCorruption(t *testing.T) {
	good := sampleRecord().Encode()
	// Every single-byte change and every truncation is detected.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		_, err := Decode(b)
		require.ErrorIs(t, err, session.ErrCorrupt, "flipped byte %d", i)
	}
	for n := 0; n < len(good); n++ {
		_, err := Decode(good[:n])
		require.ErrorIs(t, err, session.ErrCorrupt, "truncated to %d", n)
	}
	_, err := Decode(append(bytes.Clone(good), 0))
	require.ErrorIs(t, err, session.ErrCorrupt, "trailing byte")
}

func TestRevive(t *testing.T) {
	r := sampleRecord()
	b, err := Revive(r.Encode())
	require.NoError(t, err)
	h, err := Parse(b)
	require.NoError(t, err)
	require.False(t, h.Locked, "a revived record is unlocked")
	require.Equal(t, r.LockID+LockReviveGap, h.LockID, "lock id advanced past any lost lock")
	require.Greater(t, h.Seq, r.Seq)
	require.Equal(t, r.DataSeq, h.DataSeq, "the data is the same")
	_, err = Revive([]byte("junk"))
	require.True(t, errors.Is(err, session.ErrCorrupt))
}

// FuzzDecodeRecord: decoding arbitrary bytes (whole records and records
// followed by deltas) never panics and fails only with session.ErrCorrupt;
// a whole record encodes back to the same bytes; a record with deltas
// encodes to a whole record that decodes to the same header and values,
// and its deltas, made again with Delta and appended to its base, give
// back the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord().Encode())
	f.Add(sampleV2().Encode())
	empty := Record{Header: Header{Timeout: time.Second}}
	f.Add(empty.Encode())
	f.Add([]byte("SL\x01"))
	f.Add([]byte{})
	f.Add(withDeltas(sampleRecord(), 1))
	f.Add(withDeltas(sampleV2(), 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, session.ErrCorrupt) {
				t.Fatalf("error %v does not wrap session.ErrCorrupt", err)
			}
			return
		}
		whole := r.Encode()
		if r.Deltas == 0 {
			if !bytes.Equal(whole, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", whole, b)
			}
			return
		}
		w, err := Decode(whole)
		if err != nil || w.Deltas != 0 || w.Header != r.Header || !bytes.Equal(w.Values, r.Values) {
			t.Fatalf("the whole record %x decodes to %+v, %v; want %+v", whole, w, err, r)
		}
		// Rebuild: the base, then each delta as Delta makes it.
		base := len(b) - r.Deltas*DeltaLen
		cur, err := Decode(b[:base])
		if err != nil {
			t.Fatalf("the base of a record that decodes does not: %v", err)
		}
		got := bytes.Clone(b[:base])
		for i := range r.Deltas {
			next, err := Decode(b[:base+(i+1)*DeltaLen])
			if err != nil {
				t.Fatalf("prefix with %d deltas: %v", i+1, err)
			}
			d, ok := Delta(&cur, &next)
			if !ok && cur.Deltas < MaxDeltas {
				t.Fatalf("delta %d that decodes is refused by Delta", i+1)
			}
			if !ok {
				d = b[base+i*DeltaLen : base+(i+1)*DeltaLen] // past MaxDeltas: Decode reads more than Delta makes
			}
			got = append(got, d...)
			cur = next
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("rebuilt record differs:\n%x\n%x", got, b)
		}
	})
}

// withDeltas returns r's stored form followed by n deltas, alternately
// locking (a new lock id) and releasing it.
func withDeltas(r Record, n int) []byte {
	b := r.Encode()
	cur, _ := Decode(b)
	for range n {
		next := cur
		next.Seq++
		if next.Locked {
			next.Locked = false
		} else {
			next.Locked = true
			next.LockID++
			next.LockedAt = next.LockedAt.Add(time.Second)
			next.Actions = 0
		}
		d, ok := Delta(&cur, &next)
		if !ok {
			panic("withDeltas: delta refused")
		}
		b = append(b, d...)
		cur, _ = Decode(b)
	}
	return b
}

func TestSplitJoin(t *testing.T) {
	b := sampleRecord().Encode()
	frame, values, ok := Split(b)
	require.True(t, ok)
	require.Len(t, frame, FrameLen)
	require.Equal(t, sampleRecord().Values, values)
	joined, err := Join(frame, values)
	require.NoError(t, err)
	require.Equal(t, b, joined)
	_, _, ok = Split([]byte("SL\x01 not a record at all, too short"))
	require.False(t, ok)
	_, err = Join(frame[:10], values)
	require.ErrorIs(t, err, session.ErrCorrupt)

	// Version 2: a longer frame, the same values.
	b2 := sampleV2().Encode()
	frame2, values2, ok := Split(b2)
	require.True(t, ok)
	require.Len(t, frame2, FrameLenV2)
	require.Equal(t, values, values2)
	joined, err = Join(frame2, values2)
	require.NoError(t, err)
	require.Equal(t, b2, joined)
	// A frame whose length does not match its version is refused.
	_, err = Join(frame2[:FrameLen], values)
	require.ErrorIs(t, err, session.ErrCorrupt)
	_, err = Join(append(bytes.Clone(frame), 0, 0, 0, 0, 0, 0, 0, 0), values)
	require.ErrorIs(t, err, session.ErrCorrupt)
	// A header-only write that adds a creation time (Couchbase's
	// sub-document layout) joins a version 2 frame with the values stored
	// under a version 1 frame: that decodes.
	up, err := Join(frame2, values)
	require.NoError(t, err)
	_, err = Decode(up)
	require.NoError(t, err)
}

// TestSeqBytesOrder: the big-endian Seq bytes at SeqOffset order records
// as their Seq does (what the SQL store's ordered upsert relies on).
func TestSeqBytesOrder(t *testing.T) {
	lo, hi := sampleRecord(), sampleRecord()
	lo.Seq, hi.Seq = 255, 256
	a, b := lo.Encode(), hi.Encode()
	require.Less(t, string(a[SeqOffset:SeqOffset+SeqLen]), string(b[SeqOffset:SeqOffset+SeqLen]))
	require.Equal(t, Prefix, string(a[:len(Prefix)]))
}

func TestDataChangedAndSameData(t *testing.T) {
	r := sampleRecord()
	locked := r
	locked.Locked = false
	locked.Seq++
	require.False(t, DataChanged(r.Header, locked.Header), "a lock-only change")
	require.True(t, SameData(r.Encode(), locked.Encode()))
	changed := locked
	changed.DataSeq++
	require.True(t, DataChanged(r.Header, changed.Header))
	require.False(t, SameData(r.Encode(), changed.Encode()))
	other := r
	other.Values = []byte("x")
	require.False(t, SameData(r.Encode(), other.Encode()), "same header, other values")
	require.Equal(t, Epoch(r.Seq)+1, Epoch(r.Seq+ReviveGap))
	// A creation time added (a version 1 record upgraded) must reach a
	// durable copy.
	created := r
	created.Created = time.Unix(1_700_000_000, 0)
	require.True(t, DataChanged(r.Header, created.Header))
	require.False(t, SameData(r.Encode(), created.Encode()))
	// Revive keeps it.
	b, err := Revive(created.Encode())
	require.NoError(t, err)
	h, err := Parse(b)
	require.NoError(t, err)
	require.True(t, h.Created.Equal(created.Created))
}

// goldenDelta is sampleRecord followed by one delta releasing its lock
// (Seq 8): the delta format must not change under records already stored.
const goldenDelta = goldenV1 + "d10000" + "0000000000000008" + "0000000000000005" + "00000000000004d2" + "b784debb"

// TestDeltas: lock changes appended as deltas decode, in order, to the
// record they describe, sharing the base's values; the delta count is
// reported; what decodes from base and deltas encodes whole.
func TestDeltas(t *testing.T) {
	base := sampleV2()
	base.Locked = false
	b := base.Encode()
	cur, err := Decode(b)
	require.NoError(t, err)
	steps := []func(r *Record){
		func(r *Record) { r.Locked, r.LockID, r.LockedAt, r.Actions = true, r.LockID+1, time.Unix(0, 99), 0 }, // lock
		func(r *Record) {},                                     // renew
		func(r *Record) { r.Locked = false },                   // release
		func(r *Record) { r.Actions = session.InitializeItem }, // flags handed over
	}
	for i, step := range steps {
		next := cur
		step(&next)
		next.Seq++
		d, ok := Delta(&cur, &next)
		require.True(t, ok, "step %d", i)
		require.Len(t, d, DeltaLen)
		b = append(b, d...)
		got, err := Decode(b)
		require.NoError(t, err, "step %d", i)
		require.Equal(t, next.Header, got.Header, "step %d", i)
		require.Equal(t, i+1, got.Deltas)
		require.Equal(t, base.Values, got.Values)
		require.Same(t, &b[HeaderLenV2], &got.Values[0], "values share the stored bytes")
		h, err := Parse(b)
		require.NoError(t, err)
		require.Equal(t, next.Seq, h.Seq)
		whole, err := Decode(got.Encode())
		require.NoError(t, err)
		require.Equal(t, got.Header, whole.Header)
		require.Zero(t, whole.Deltas)
		require.True(t, SameData(b, got.Encode()))
		cur = got
	}
	// Revive folds the deltas into a whole record.
	rv, err := Revive(b)
	require.NoError(t, err)
	r, err := Decode(rv)
	require.NoError(t, err)
	require.Zero(t, r.Deltas)
	require.Equal(t, cur.Seq+ReviveGap, r.Seq)
}

// TestDeltaGolden: the delta format, byte for byte.
func TestDeltaGolden(t *testing.T) {
	b := sampleRecord().Encode()
	cur, err := Decode(b)
	require.NoError(t, err)
	next := cur
	next.Locked = false
	next.Actions = 0
	next.Seq++
	d, ok := Delta(&cur, &next)
	require.True(t, ok)
	require.Equal(t, goldenDelta, hex.EncodeToString(append(b, d...)))
	gb, _ := hex.DecodeString(goldenDelta)
	got, err := Decode(gb)
	require.NoError(t, err)
	require.Equal(t, next.Header, got.Header)
}

// TestDeltaRefused: a delta carries only lock changes, one Seq at a time,
// up to MaxDeltas; anything else must be written whole.
func TestDeltaRefused(t *testing.T) {
	cur, err := Decode(sampleV2().Encode())
	require.NoError(t, err)
	ok := func(f func(n *Record)) bool {
		next := cur
		next.Seq++
		f(&next)
		_, ok := Delta(&cur, &next)
		return ok
	}
	require.True(t, ok(func(n *Record) {}))
	require.False(t, ok(func(n *Record) { n.Values = []byte("other") }), "values")
	require.False(t, ok(func(n *Record) { n.DataSeq++ }), "DataSeq")
	require.False(t, ok(func(n *Record) { n.Timeout++ }), "timeout")
	require.False(t, ok(func(n *Record) { n.Created = n.Created.Add(time.Second) }), "creation time")
	require.False(t, ok(func(n *Record) { n.Removed = true }), "removal")
	require.False(t, ok(func(n *Record) { n.Seq++ }), "Seq gap")
	require.False(t, ok(func(n *Record) { n.LockID-- }), "lock id going back")
	_, refused := Delta(nil, &cur)
	require.False(t, refused)
	full, err := Decode(withDeltas(sampleV2(), MaxDeltas))
	require.NoError(t, err)
	require.Equal(t, MaxDeltas, full.Deltas)
	next := full
	next.Seq++
	_, refused = Delta(&full, &next)
	require.False(t, refused, "past MaxDeltas the record is written whole")
	// A removed base takes no deltas.
	tomb := sampleV2()
	tomb.Removed, tomb.Locked = true, false
	tcur, err := Decode(tomb.Encode())
	require.NoError(t, err)
	tnext := tcur
	tnext.Seq++
	_, refused = Delta(&tcur, &tnext)
	require.False(t, refused)
}

// TestDeltaCorruption: every flipped byte of a record with deltas, every
// truncation that is not at a frame boundary, a delta out of order and a
// delta after a tombstone are corrupt. A reader before deltas existed
// (decodeWhole, the Decode of that version) rejects a record with deltas
// rather than misreading it.
func TestDeltaCorruption(t *testing.T) {
	good := withDeltas(sampleV2(), 3)
	base := len(good) - 3*DeltaLen
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		_, err := Decode(b)
		require.ErrorIs(t, err, session.ErrCorrupt, "flipped byte %d", i)
	}
	for n := 0; n < len(good); n++ {
		_, err := Decode(good[:n])
		if n >= base && (n-base)%DeltaLen == 0 {
			require.NoError(t, err, "whole frames")
			continue
		}
		require.ErrorIs(t, err, session.ErrCorrupt, "truncated to %d", n)
	}
	_, err := decodeWhole(good)
	require.ErrorIs(t, err, session.ErrCorrupt, "the reader before deltas")
	require.Contains(t, err.Error(), "does not match its values length")
	// Deltas swapped: Seq out of order.
	sw := bytes.Clone(good)
	copy(sw[base:], good[base+DeltaLen:base+2*DeltaLen])
	copy(sw[base+DeltaLen:], good[base:base+DeltaLen])
	_, err = Decode(sw)
	require.ErrorIs(t, err, session.ErrCorrupt)
	// A delta after a tombstone.
	tomb := sampleV2()
	tomb.Removed, tomb.Locked = true, false
	tb := tomb.Encode()
	cur, _ := Decode(tb)
	next := cur
	next.Seq++
	next.Removed = false
	dd, ok := Delta(&Record{Header: Header{Seq: cur.Seq, LockID: cur.LockID, DataSeq: cur.DataSeq, Timeout: cur.Timeout, Created: cur.Created}, Values: cur.Values}, &next)
	require.True(t, ok)
	_, err = Decode(append(bytes.Clone(tb), dd...))
	require.ErrorIs(t, err, session.ErrCorrupt)
	require.Contains(t, err.Error(), "removed")
	// Split (Couchbase's layout) does not take a record with deltas.
	_, _, ok = Split(good)
	require.False(t, ok)
}

// FuzzDeltas: any sequence of lock changes (lock with a lock id jump,
// release, renewal, action flags), appended as deltas and compacted past
// MaxDeltas as the provider does, decodes after every step to exactly the
// record it describes.
func FuzzDeltas(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x40, 1})
	f.Add(bytes.Repeat([]byte{0, 1}, MaxDeltas+3))
	f.Fuzz(func(t *testing.T, ops []byte) {
		base := sampleV2()
		b := base.Encode()
		cur, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for i, op := range ops {
			next := cur
			next.Seq++
			switch op % 4 {
			case 0:
				next.Locked = true
				next.LockID += 1 + uint64(op>>2)
				next.LockedAt = time.Unix(0, int64(i)*int64(op))
			case 1:
				next.Locked = false
			case 2: // renewal: Seq only
			case 3:
				next.Actions = session.ActionFlags(op >> 2)
			}
			d, ok := Delta(&cur, &next)
			if cur.Deltas >= MaxDeltas {
				if ok {
					t.Fatalf("step %d: a delta past MaxDeltas", i)
				}
				b = next.Encode() // compaction
			} else {
				if !ok {
					t.Fatalf("step %d: a lock change refused", i)
				}
				b = append(b, d...)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if got.Header != next.Header || !bytes.Equal(got.Values, base.Values) {
				t.Fatalf("step %d: decoded %+v, want %+v", i, got.Header, next.Header)
			}
			cur = got
		}
	})
}
