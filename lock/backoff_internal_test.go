package lock

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pausesOf runs one Wait whose try fails with the given stamps, one per try,
// then acquires, and returns the pauses Wait chose between the tries.
func pausesOf(t *testing.T, cfg Config, stamps []uint64) []time.Duration {
	t.Helper()
	w := NewWaiter(cfg)
	var (
		mu     sync.Mutex
		pauses []time.Duration
	)
	w.pauseHook = func(d time.Duration) {
		mu.Lock()
		pauses = append(pauses, d)
		mu.Unlock()
	}
	i := 0
	try := func(context.Context) (Attempt, error) {
		if i == len(stamps) {
			return Attempt{Acquired: true}, nil
		}
		i++
		return Attempt{Stamp: stamps[i-1]}, nil
	}
	require.NoError(t, w.Wait(context.Background(), "k", try, nil))
	mu.Lock()
	defer mu.Unlock()
	return pauses
}

func TestBackoffDoublesToCapWithFullJitter(t *testing.T) {
	cfg := Config{PollStart: time.Microsecond, PollCap: 32 * time.Microsecond, StaleAfter: time.Minute}
	// Eight tries see stamp 1, then five see stamp 2.
	stamps := []uint64{1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2}
	pauses := pausesOf(t, cfg, stamps)
	require.Len(t, pauses, len(stamps))
	limits := []time.Duration{1, 2, 4, 8, 16, 32, 32, 32, 1, 2, 4, 8, 16}
	for i, d := range pauses {
		limit := limits[i] * time.Microsecond
		require.GreaterOrEqual(t, d, time.Duration(0), "pause %d", i)
		require.Less(t, d, limit, "pause %d: %v, limit %v", i, d, limit)
	}
	// Full jitter: the capped pauses are spread over [0, cap), not all
	// equal (the chance that three draws from 32000 values agree is nil).
	require.False(t, pauses[5] == pauses[6] && pauses[6] == pauses[7], "no jitter: %v", pauses[5:8])
}

func TestASPNETPausesAreFixed(t *testing.T) {
	cfg := Config{Strategy: ASPNET, ASPNETPoll: 50 * time.Microsecond, PollStart: time.Microsecond, StaleAfter: time.Minute}
	pauses := pausesOf(t, cfg, []uint64{1, 1, 1, 2, 3})
	require.Equal(t, []time.Duration{50 * time.Microsecond, 50 * time.Microsecond, 50 * time.Microsecond,
		50 * time.Microsecond, 50 * time.Microsecond}, pauses)
}

func TestKeysFreedAfterUse(t *testing.T) {
	w := NewWaiter(Config{})
	try := func(context.Context) (Attempt, error) { return Attempt{Acquired: true}, nil }
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, w.Wait(context.Background(), k, try, nil))
		w.Hold(k)
	}
	require.Len(t, w.keys, 3)
	for _, k := range []string{"a", "b", "c"} {
		w.Release(k)
	}
	require.Empty(t, w.keys)
}
