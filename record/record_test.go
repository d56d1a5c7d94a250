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
	require.Equal(t, r.LockID+ReviveGap, h.LockID, "lock id advanced past any lost lock")
	require.Greater(t, h.Seq, r.Seq)
	require.Equal(t, r.DataSeq, h.DataSeq, "the data is the same")
	_, err = Revive([]byte("junk"))
	require.True(t, errors.Is(err, session.ErrCorrupt))
}

// FuzzDecodeRecord: decoding arbitrary bytes never panics, and whatever
// decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord().Encode())
	f.Add(sampleV2().Encode())
	empty := Record{Header: Header{Timeout: time.Second}}
	f.Add(empty.Encode())
	f.Add([]byte("SL\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, session.ErrCorrupt) {
				t.Fatalf("error %v does not wrap session.ErrCorrupt", err)
			}
			return
		}
		if got := r.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", got, b)
		}
	})
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
