package provider

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func sampleRecord() record {
	v := session.NewValues(nil)
	_ = v.Set("a", 1)
	b, _ := v.Encode(0)
	return record{RecordHeader: RecordHeader{
		Seq: 7, DataSeq: 3, LockID: 5, Locked: true, Actions: session.InitializeItem,
		LockedAt: time.Unix(0, 1234), Timeout: 2 * time.Minute,
	}, values: b}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	got, err := decodeRecord(r.encode())
	require.NoError(t, err)
	require.Equal(t, r.RecordHeader, got.RecordHeader)
	require.Equal(t, r.values, got.values)
	h, err := ParseRecordHeader(r.encode())
	require.NoError(t, err)
	require.Equal(t, uint64(7), h.Seq)
}

func TestRecordCorruption(t *testing.T) {
	good := sampleRecord().encode()
	// Every single-byte change and every truncation is detected.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		_, err := decodeRecord(b)
		require.ErrorIs(t, err, ErrCorrupt, "flipped byte %d", i)
	}
	for n := 0; n < len(good); n++ {
		_, err := decodeRecord(good[:n])
		require.ErrorIs(t, err, ErrCorrupt, "truncated to %d", n)
	}
	_, err := decodeRecord(append(bytes.Clone(good), 0))
	require.ErrorIs(t, err, ErrCorrupt, "trailing byte")
}

func TestReviveRecord(t *testing.T) {
	r := sampleRecord()
	b, err := ReviveRecord(r.encode())
	require.NoError(t, err)
	h, err := ParseRecordHeader(b)
	require.NoError(t, err)
	require.False(t, h.Locked, "a revived record is unlocked")
	require.Equal(t, r.LockID+ReviveLockIDGap, h.LockID, "lock id advanced past any lost lock")
	require.Greater(t, h.Seq, r.Seq)
	require.Equal(t, r.DataSeq, h.DataSeq, "the data is the same")
	_, err = ReviveRecord([]byte("junk"))
	require.True(t, errors.Is(err, ErrCorrupt))
}

// FuzzDecodeRecord: decoding arbitrary bytes never panics, and whatever
// decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord().encode())
	empty := record{RecordHeader: RecordHeader{Timeout: time.Second}}
	f.Add(empty.encode())
	f.Add([]byte("SL\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := r.encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", got, b)
		}
	})
}
