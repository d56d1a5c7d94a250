package tiered

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sentBefore takes a change it remembered once, for its key and bytes
// only, within keepSent; past its bound it takes every change until
// keepSent has passed, then remembers again.
func TestSentBefore(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var m sentBefore
	m.remember("k", []byte("a"), t0)
	require.False(t, m.take("k", []byte("b"), t0), "other bytes")
	require.False(t, m.take("j", []byte("a"), t0), "another key")
	require.True(t, m.take("k", []byte("a"), t0.Add(keepSent-time.Nanosecond)))
	require.False(t, m.take("k", []byte("a"), t0), "taken once")
	require.Zero(t, m.n)

	m.remember("k", []byte("a"), t0)
	require.False(t, m.take("k", []byte("a"), t0.Add(keepSent)), "kept keepSent")

	require.Equal(t, 1, m.n, "an expired change is kept until swept")
	for i := range maxSent - 1 {
		m.remember("key"+strconv.Itoa(i), []byte("v"), t0)
	}
	require.Equal(t, maxSent, m.n)
	t1 := t0.Add(time.Second)
	m.remember("one more", []byte("v"), t1)
	require.Equal(t, maxSent, m.n, "past its bound nothing more is remembered")
	require.True(t, m.take("never sent", []byte("x"), t1), "past its bound, any change is taken for sent again")
	require.True(t, m.take("never sent", []byte("x"), t1.Add(keepSent-time.Nanosecond)))

	t2 := t1.Add(keepSent)
	require.False(t, m.take("never sent", []byte("x"), t2), "keepSent after the bound, remembered changes only")
	m.remember("k", []byte("a"), t2)
	require.Equal(t, 1, m.n, "the expired changes swept")
	require.True(t, m.take("k", []byte("a"), t2))
}

// A change reported unknown while the bound's fallback is on is not
// remembered: the fallback lasts keepSent from it, so its send again just
// after the first window's end is still taken (cold review rvtwin M1).
func TestSentBeforeFallbackExtended(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var m sentBefore
	for i := range maxSent + 1 {
		m.remember("key"+strconv.Itoa(i), []byte("v"), t0) // the last sets the fallback
	}
	late := t0.Add(keepSent - time.Millisecond)
	m.remember("mine", []byte("x"), late) // not remembered
	require.True(t, m.take("mine", []byte("x"), t0.Add(keepSent+time.Millisecond)), "sent again 2 ms after its unknown outcome")
	require.False(t, m.take("other", []byte("x"), late.Add(keepSent)), "keepSent after the last change not remembered, the fallback ends")
}
