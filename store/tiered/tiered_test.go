package tiered

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
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

// scriptedDurable answers settle's two questions as scripted.
type scriptedDurable struct {
	Durable
	undoErr  error
	claim    ClaimState
	claimErr error
	undos    int
}

func (d *scriptedDurable) CompareAndSwap(context.Context, string, []byte, uint64, time.Duration) (uint64, error) {
	d.undos++
	return 2, d.undoErr
}

func (d *scriptedDurable) ClaimOf(context.Context, string, uint64) (ClaimState, error) {
	return d.claim, d.claimErr
}

// settle's decision (docs/replication.md §15): a write it cannot prove
// unapplied is never reported as a conflict (which the provider turns into
// ErrLockLost, "nothing written").
func TestSettle(t *testing.T) {
	casErr := fmt.Errorf("tiered: %w", provider.ErrCASConflict)
	for _, tc := range []struct {
		name    string
		undo    bool
		d       scriptedDurable
		want    error // nil: committed
		wantOne error // a second error the answer must also wrap
	}{
		{name: "undone", undo: true, want: provider.ErrCASConflict},
		{name: "undo conflicts, claimed", undo: true, d: scriptedDurable{undoErr: provider.ErrCASConflict, claim: Claimed}},
		{name: "undo finds no row, claimed", undo: true, d: scriptedDurable{undoErr: provider.ErrNotFound, claim: Claimed}},
		{name: "undo conflicts, overwritten unclaimed", undo: true, d: scriptedDurable{undoErr: provider.ErrCASConflict, claim: NotClaimed}, want: provider.ErrCASConflict},
		{name: "undo conflicts, cannot tell", undo: true, d: scriptedDurable{undoErr: provider.ErrCASConflict, claim: ClaimUnknown}, want: provider.ErrOutcomeUnknown},
		{name: "undo fails", undo: true, d: scriptedDurable{undoErr: provider.ErrUnavailable, claim: NotClaimed}, want: provider.ErrOutcomeUnknown, wantOne: provider.ErrUnavailable},
		{name: "undo conflicts, asking fails", undo: true, d: scriptedDurable{undoErr: provider.ErrCASConflict, claimErr: provider.ErrUnavailable}, want: provider.ErrOutcomeUnknown, wantOne: provider.ErrUnavailable},
		{name: "revived since, claimed", d: scriptedDurable{claim: Claimed}},
		{name: "revived since, not claimed", d: scriptedDurable{claim: NotClaimed}, want: provider.ErrCASConflict},
		{name: "revived since, cannot tell", d: scriptedDurable{claim: ClaimUnknown}, want: provider.ErrOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Cache: memstore.New(memstore.Config{}), Durable: &tc.d})
			require.NoError(t, err)
			var undo []byte
			if tc.undo {
				undo = []byte("live record")
			}
			_, err = s.settle(context.Background(), "k", undo, 1, time.Minute, casErr)
			if tc.want == nil {
				require.NoError(t, err)
				require.EqualValues(t, 1, s.Stats().Adopted)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
			if tc.wantOne != nil {
				require.ErrorIs(t, err, tc.wantOne)
			}
			if errors.Is(tc.want, provider.ErrOutcomeUnknown) {
				require.NotErrorIs(t, err, provider.ErrCASConflict)
				require.EqualValues(t, 1, s.Stats().UnknownOutcomes)
			}
			require.Equal(t, map[bool]int{true: 1, false: 0}[tc.undo], tc.d.undos)
		})
	}
}
