package record

import (
	"bytes"
	"errors"
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
}
