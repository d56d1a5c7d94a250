package tiered

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// The tests of the Store over a real durable tier (PostgreSQL, memcached)
// are in store/sqlstore/internal/tieredtest, in the sqlstore module. These
// test the pure logic.

// nopDurable stands for a durable tier where New only checks it is set.
type nopDurable struct{ Durable }

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{})
	require.Error(t, err)
	_, err = New(Config{Cache: memstore.New(memstore.Config{})})
	require.Error(t, err, "no durable tier")
	for _, below := range []float64{-0.1, 1.5} {
		_, err = New(Config{Cache: memstore.New(memstore.Config{}), Durable: nopDurable{}, RefreshBelow: below})
		require.Error(t, err, "RefreshBelow %v", below)
	}
	s, err := New(Config{Cache: memstore.New(memstore.Config{}), Durable: nopDurable{}})
	require.NoError(t, err)
	require.Equal(t, 0.5, s.refreshBelow, "the documented default")
}

func TestMemo(t *testing.T) {
	m := newMemo(2)
	h := record.Header{Seq: 7, DataSeq: 3}
	m.seen("a", 11, h)
	got, ok := m.header("a", 11)
	require.True(t, ok)
	require.Equal(t, h, got)
	_, ok = m.header("a", 12)
	require.False(t, ok, "another token")
	_, ok = m.header("a", 0)
	require.False(t, ok, "token 0 is unknown")

	now := time.Now()
	m.durable("a", 3, now.Add(time.Minute))
	until, ok := m.durableUntil("a", 3)
	require.True(t, ok)
	require.Equal(t, now.Add(time.Minute), until)
	_, ok = m.durableUntil("a", 4)
	require.False(t, ok, "another DataSeq")

	require.Equal(t, 1, m.refused("a", 11, 9))
	require.Equal(t, 2, m.refused("a", 11, 9))
	require.Equal(t, 1, m.refused("a", 11, 10), "another kept Seq starts over")

	// Bounded: two generations of at most 2 keys.
	m.seen("b", 1, h)
	m.seen("c", 1, h) // a and b become the old generation
	m.seen("d", 1, h)
	_, ok = m.last("a")
	require.True(t, ok, "still in the old generation")
	m.seen("e", 1, h) // c and d become the old generation
	_, ok = m.last("a")
	require.False(t, ok, "the oldest key is forgotten")
	_, ok = m.last("d")
	require.True(t, ok)
	m.forget("d")
	_, ok = m.last("d")
	require.False(t, ok)
}
