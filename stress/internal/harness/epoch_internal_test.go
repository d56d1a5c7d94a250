package harness

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestExclusionAcrossRevival: two exclusive handlers of one session that
// ran at once are two holders, unless a revival from the durable tier
// fenced the earlier one (tiered: the cache lost its lock; its lock of an
// older epoch than the later holder's, its request failed), which is
// counted apart (HoldersAcrossRevival), as the simulation's epochHolders
// does. TestTieredSurvivesFlush failed so about once in 36 runs under
// load (a slow handler locked 6 ms before a flush of every node ended,
// fenced, and an incr locked 6 ms after it, from the revival): the
// "fenced across a revival" case is that run's; the code before counted
// it as two holders.
func TestExclusionAcrossRevival(t *testing.T) {
	cfg := Config{Lease: 10 * time.Second}.withDefaults()
	for _, tc := range []struct {
		name           string
		first, second  uint64 // the two holders' lock epochs
		seen           bool   // both epochs recorded
		status         int    // the earlier holder's answer
		want, revivals int
	}{
		{"fenced across a revival", 0, 1, true, 409, 0, 1},
		{"one epoch", 1, 1, true, 409, 1, 0},
		{"the earlier holder's commit succeeded", 0, 1, true, 200, 1, 0},
		{"epochs not seen (locks appended)", 0, 1, false, 409, 1, 0},
		{"the later holder of an older epoch", 1, 0, true, 409, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
			reason := ""
			if tc.status != 200 {
				reason = "status_409"
			}
			o.requests = append(o.requests, &request{ID: 1, Browser: 0, Route: RouteSlow, SID: "A", Status: tc.status, Reason: reason, Value: 1},
				&request{ID: 2, Browser: 0, Route: RouteIncr, SID: "A", Status: 200, Value: 1})
			o.timings[1] = timing{ID: 1, Route: RouteSlow, SID: "A", Arrive: 90 * msNs, Start: 110 * msNs, End: 130 * msNs, Done: 150 * msNs, Status: tc.status,
				Stamps: []int64{100 * msNs}, LockEpoch: tc.first, LockEpochSeen: tc.seen}
			o.timings[2] = timing{ID: 2, Proc: 1, Route: RouteIncr, SID: "A", Arrive: 100 * msNs, Start: 120 * msNs, End: 125 * msNs, Done: 126 * msNs, Status: 200,
				Stamps: []int64{118 * msNs}, LockEpoch: tc.second, LockEpochSeen: tc.seen}
			o.states = map[string]sessionState{"A": {Found: true, Counter: 1}}
			res := analyze(o)
			require.Equal(t, tc.want, res.ExclusionViolations, "exclusion_violations: %v", res.Findings)
			require.Equal(t, tc.revivals, res.HoldersAcrossRevival, "holders_across_revival")
		})
	}
}

// TestLockEpochRecorded: the stamping store records the epoch of the
// first whole record a request writes (its lock's), from the record's
// Seq, and nothing for a write refused.
func TestLockEpochRecorded(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	s := stamped(ms)
	old := record.Record{Header: record.Header{Seq: 7, DataSeq: 3, Timeout: time.Minute}}.Encode()
	revived, err := record.Revive(old)
	require.NoError(t, err)

	e1 := &lockEpoch{}
	ctx := context.WithValue(context.Background(), lockEpochKey{}, e1)
	_, err = s.CompareAndSwap(ctx, "k", revived, 12345, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, seen := e1.get()
	require.False(t, seen, "a write refused records nothing")
	cas, err := s.Add(ctx, "k", old, time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", revived, cas, time.Minute)
	require.NoError(t, err)
	epoch, seen := e1.get()
	require.True(t, seen)
	require.Equal(t, uint64(0), epoch, "the first write's epoch")

	e2 := &lockEpoch{}
	ctx = context.WithValue(context.Background(), lockEpochKey{}, e2)
	cur, err := ms.Get(ctx, "k")
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", revived, cur.CAS, time.Minute)
	require.NoError(t, err)
	epoch, seen = e2.get()
	require.True(t, seen)
	require.Equal(t, uint64(1), epoch, "a revived record's epoch")

	// A request with no lockEpoch in its context records nothing.
	cur, err = ms.Get(ctx, "k")
	require.NoError(t, err)
	_, err = s.CompareAndSwap(context.Background(), "k", old, cur.CAS, time.Minute)
	require.NoError(t, err)
}
