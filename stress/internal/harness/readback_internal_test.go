package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// failingGet fails every Get of one key with err: the read-back's view of
// a session the store cannot serve.
type failingGet struct {
	provider.Store
	key string
	err error
}

func (s failingGet) Get(ctx context.Context, key string) (provider.Entry, error) {
	if key == s.key {
		return provider.Entry{}, s.err
	}
	return s.Store.Get(ctx, key)
}

// TestReadBackUnavailable: a session still unavailable when read back at
// the end (the end of a double fault: TestRealFaults/flush-seeded) is
// counted as sessions_unavailable and left out of the checks that need
// its final value; the run keeps its verdict on everything else: another
// session's lost update, and two holders of the unavailable session
// itself, and another session's failure after the failover time (the
// unavailable session's own failures are counted apart). The broken variant failUnavailable (the read-back before) fails
// the whole run instead, with no verdict; and an error other than
// ErrUnavailable still fails the run.
func TestReadBackUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{Backend: BackendMemcached, Managed: 3, Lease: time.Second}.withDefaults()
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	pcfg, err := appConfig{Lease: cfg.Lease, Wait: cfg.Wait.String()}.providerConfig()
	require.NoError(t, err)
	p, err := provider.New(ms, pcfg)
	require.NoError(t, err)
	// Both sessions hold counter 1.
	var sids []string
	for range 2 {
		sid, err := session.NewID()
		require.NoError(t, err)
		data := p.CreateNewStoreData(0)
		require.NoError(t, data.Values.Set(keyCounter, 1))
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, sid, data, 0, true))
		sids = append(sids, sid)
	}
	a, b := sids[0], sids[1]
	keyB, err := p.Key(b)
	require.NoError(t, err)

	o := observations{cfg: cfg, sids: sids, timings: map[uint64]timing{}}
	add := func(browser int, sid string, value int, tm timing) {
		id := uint64(len(o.requests) + 1)
		o.requests = append(o.requests, &request{ID: id, Browser: browser, Route: RouteIncr, SID: sid, Value: value})
		tm.ID, tm.Route, tm.SID = id, RouteIncr, sid
		o.timings[id] = tm
	}
	// Session a: two acknowledged increments, counter 1: one lost.
	add(0, a, 1, timing{Arrive: 0, Start: 1 * msNs, End: 2 * msNs, Done: 2 * msNs})
	add(0, a, 2, timing{Arrive: 0, Start: 3 * msNs, End: 4 * msNs, Done: 4 * msNs})
	// Session b: two acknowledged increments (its counter says 1, which
	// the read-back cannot see) whose handlers overlapped: two holders.
	add(1, b, 1, timing{Arrive: 0, Start: 10 * msNs, End: 20 * msNs, Done: 20 * msNs})
	add(1, b, 2, timing{Arrive: 0, Start: 15 * msNs, End: 25 * msNs, Done: 25 * msNs})
	// A flush at 100 ms (failing over until 1600 ms); at 2000 ms a read
	// of each session fails 503: a's is a failover that did not happen,
	// b's its unavailability.
	o.events = []Event{{AtMs: 100, Kind: FaultFlush, Target: "memcached node 0"}}
	for browser, sid := range sids {
		o.requests = append(o.requests, &request{ID: uint64(len(o.requests) + 1), Browser: browser, Route: RouteRead, SID: sid,
			Sent: 2000 * msNs, Recv: 2001 * msNs, Status: 503, Reason: "status_503", Proc: 2})
	}

	reader := func(err error) *runner {
		return &runner{cfg: cfg, be: &backend{mem: failingGet{Store: ms, key: keyB, err: fmt.Errorf("store: %w", err)}}}
	}

	t.Run("judged", func(t *testing.T) {
		states, err := reader(provider.ErrUnavailable).readSessions(ctx, o)
		require.NoError(t, err, "a session unavailable at the end does not fail the run")
		require.Equal(t, sessionState{Unavailable: true}, states[b])
		require.True(t, states[a].Found)
		o := o
		o.states = states
		res := analyze(o)
		require.Equal(t, 1, res.LostUpdates, "a's lost increment is still found")
		require.Equal(t, 1, res.SessionsUnavailable)
		require.Zero(t, res.SessionsLost, "b is unavailable, not lost")
		require.Equal(t, 1, res.ExclusionViolations, "b's two holders are still found")
		require.Equal(t, 1, res.FailedAfterFailover, "a's failure after the failover time is still found")
		require.Equal(t, 1, res.FailedOnUnavailable, "b's is its unavailability")
		require.ElementsMatch(t, []string{"lost_updates", "sessions_unavailable", "exclusion_violations", "failed_after_failover"}, res.Violations())
		require.Contains(t, res.Findings, "unavailable at the end: session "+sidTag(b)+
			"…: its read-back still failed ErrUnavailable after its retries; its acknowledged writes (2 increments, 0 list items, 0 lock-free keys) unchecked")
		var sum, html strings.Builder
		require.NoError(t, WriteSummary(&sum, res))
		require.Regexp(t, `(?m)^sessions_unavailable +1 \(sessions still unavailable`, sum.String())
		require.Contains(t, sum.String(), "1 of 2 (requests sent more than 1.5 s after a fault ended, or after a node fault began while it lasted, that failed with a 5xx; 1 more on sessions unavailable at the end, counted in sessions_unavailable)")
		require.Contains(t, sum.String(), "FAIL: invariants violated: lost_updates, sessions_unavailable, failed_after_failover, exclusion_violations")
		writeInvariants(&html, res)
		require.Contains(t, html.String(), `<td class="name">sessions_unavailable</td><td data-label="count">1</td>`)
	})

	t.Run("broken variant: no verdict", func(t *testing.T) {
		r := reader(provider.ErrUnavailable)
		r.failUnavailable = true
		_, err := r.readSessions(ctx, o)
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.ErrorContains(t, err, "harness: read session "+sidTag(b)+"… back:")
	})

	t.Run("another error fails the run", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := reader(boom).readSessions(ctx, o)
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, "harness: read session "+sidTag(b)+"… back:")
	})
}
