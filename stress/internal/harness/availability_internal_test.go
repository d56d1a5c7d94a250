package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestFailedAfterFailover: a request that failed with a server error
// although sent more than a failover time after a fault ended, within no
// other fault's window, is counted; one sent before any fault, within a
// fault's window, fenced (409) or failed without an answer from the store
// (a timeout) is not. It is a violation, with a finding each, when the
// store promises failover (the witness scheme), reported otherwise.
func TestFailedAfterFailover(t *testing.T) {
	const start = int64(1_000_000) * msNs
	for _, tc := range []struct {
		backend, backup string
		violation       bool
	}{
		{BackendMemcached, "witness", true},
		{BackendMemcached, "on", false},
		// tiered's cache decides every lock: its witness scheme's
		// promise is tiered's (TestRealFaults/tiered/...).
		{BackendTiered, "witness", true},
		{BackendTiered, "on", false},
	} {
		t.Run(tc.backend+"/"+tc.backup, func(t *testing.T) {
			cfg := Config{Backend: tc.backend, Backup: tc.backup, Lease: time.Second}.withDefaults()
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}, start: start}
			// A node restarted at 1000 ms, down 100 ms: failing over until
			// 2600 ms; a node paused at 5000 ms for 1 s: until 7500 ms.
			o.events = []Event{
				{AtMs: 1000, DurationMs: 100, Kind: FaultRestartNode, Target: "memcached node 0"},
				{AtMs: 5000, DurationMs: 1000, Kind: FaultPauseNode, Target: "memcached node 1"},
				{AtMs: 4000, Kind: FaultKillNode, Missed: true},
			}
			id := uint64(0)
			add := func(sentMs int64, status int, reason string) {
				id++
				if reason == "" && status/100 != 2 {
					reason = "status_" + strconv.Itoa(status)
				}
				o.requests = append(o.requests, &request{ID: id, Browser: 0, Route: RouteRead, SID: "A", Proc: 1,
					Sent: start + sentMs*msNs, Recv: start + (sentMs+5)*msNs, Status: status, Reason: reason})
			}
			add(500, 500, "")       // before any fault
			add(1200, 503, "")      // within the restart's failover
			add(2590, 500, "")      // just within it
			add(2700, 503, "")      // after it: counted
			add(3000, 409, "")      // fenced: not a server error
			add(3100, 500, "")      // counted
			add(3200, 0, "timeout") // no answer: not counted here
			add(3300, 200, "")      // fine
			add(4500, 500, "")      // the missed kill is no fault: counted
			add(6000, 503, "")      // within the pause's failover
			add(7600, 503, "")      // after it: counted
			o.states = map[string]sessionState{"A": {Found: true}}
			res := analyze(o)
			require.Equal(t, 4, res.FailedAfterFailover)
			require.Equal(t, 7, res.RequestsAfterFailover, "sent after a failover time and within no window")
			require.Equal(t, tc.violation, res.FailoverChecked)
			if tc.violation {
				require.Contains(t, res.Violations(), "failed_after_failover")
				require.Equal(t, []string{
					"failed after the failover time: app 1 read, session A…, sent at 2700 ms (1700 ms after the last fault, restart_node on memcached node 0 at 1000 ms for 100 ms), answered at 2705 ms, status 503",
					"failed after the failover time: app 1 read, session A…, sent at 3100 ms (2100 ms after the last fault, restart_node on memcached node 0 at 1000 ms for 100 ms), answered at 3105 ms, status 500",
					"failed after the failover time: app 1 read, session A…, sent at 4500 ms (3500 ms after the last fault, restart_node on memcached node 0 at 1000 ms for 100 ms), answered at 4505 ms, status 500",
					"failed after the failover time: app 1 read, session A…, sent at 7600 ms (2600 ms after the last fault, pause_node on memcached node 1 at 5000 ms for 1000 ms), answered at 7605 ms, status 503",
				}, res.Findings)
			} else {
				require.NotContains(t, res.Violations(), "failed_after_failover")
				require.Empty(t, res.Findings)
			}
			var sum strings.Builder
			require.NoError(t, WriteSummary(&sum, res))
			require.Contains(t, sum.String(), "failed_after_failover")
			require.Contains(t, sum.String(), "4 of 7 (requests sent more than 1.5 s after a fault ended")
			var html strings.Builder
			writeInvariants(&html, res)
			require.Contains(t, html.String(), "failed_after_failover")
			require.Contains(t, html.String(), "of 7 sent then")
			b, err := json.Marshal(res)
			require.NoError(t, err)
			require.Contains(t, string(b), `"failed_after_failover":4`)
		})
	}
}

// TestNoFaultNoFailoverCount: with no fault, failures are not counted as
// failures after a failover time.
func TestNoFaultNoFailoverCount(t *testing.T) {
	cfg := Config{Backend: BackendMemcached, Backup: "witness"}.withDefaults()
	o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
	o.requests = []*request{{ID: 1, Route: RouteRead, SID: "A", Sent: 5 * msNs, Status: 503, Reason: "status_503"}}
	o.states = map[string]sessionState{"A": {Found: true}}
	res := analyze(o)
	require.Zero(t, res.FailedAfterFailover)
	require.Zero(t, res.RequestsAfterFailover)
	require.False(t, res.FailoverChecked)
	require.Empty(t, res.Violations())
}

// TestLockedAtEnd: a session locked at the end is stuck when the request
// that took the lock succeeded (its release was lost) or no request of
// the run took it; when the taker failed (its lock's write had no known
// outcome, or its commit could not be made) and no later request came,
// the next one takes it over within a lease: reported, not stuck
// (restart-node's stuck lock: a commit that failed ErrUnavailable at the
// end of its browser's requests).
func TestLockedAtEnd(t *testing.T) {
	cfg := Config{Lease: 1500 * time.Millisecond}.withDefaults()
	for _, tc := range []struct {
		name     string
		lockedAt int64 // ms
		status   int   // the taker's answer
		ran      bool  // its handler ran
		stuck    int
		finding  string
	}{
		{"taker failed in its commit", 105, 500, true, 0, ""},
		{"taker's lock write unknown, handler never ran", 150, 500, false, 0, ""},
		{"taker's answer unknown (no status)", 105, 0, true, 0, ""},
		{"taker told fenced (409), lock kept: a wrong answer", 105, 409, true, 1, "locked at the end: session A…: lock taken at 105 ms by app 2 slow, which failed with a definite answer (status 409): it said nothing was kept"},
		{"taker succeeded: lost release", 105, 200, true, 1, "locked at the end: session A…: lock taken at 105 ms by app 2 slow, which succeeded (status 200): its release was lost"},
		{"no request took it", 900, 500, true, 1, "locked at the end: session A…: lock taken at 900 ms by no request of the run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
			reason := ""
			if tc.status != 200 {
				reason = "status_" + strconv.Itoa(tc.status)
			}
			o.requests = []*request{{ID: 1, Browser: 0, Route: RouteSlow, SID: "A", Proc: 2, Value: 1, Status: tc.status, Reason: reason, Sent: 90 * msNs, Recv: 400 * msNs}}
			tm := timing{ID: 1, Proc: 2, Route: RouteSlow, SID: "A", Arrive: 100 * msNs, Done: 390 * msNs, Status: tc.status}
			if tc.ran {
				tm.Start, tm.End = 110*msNs, 130*msNs
			}
			o.timings[1] = tm
			o.states = map[string]sessionState{"A": {Found: true, Locked: true, LockedAt: tc.lockedAt * msNs, Counter: 1}}
			res := analyze(o)
			require.Equal(t, tc.stuck, res.StuckSessions)
			require.Equal(t, 1-tc.stuck, res.LockedAfterFailure)
			if tc.finding != "" {
				require.Equal(t, []string{tc.finding}, res.Findings)
				require.Contains(t, res.Violations(), "stuck_locks")
			} else {
				require.Empty(t, res.Findings)
			}
		})
	}
}

// TestLockedAtEndTakerUnclear: when two exclusive requests could have
// taken the lock found at the end, it counts as stuck (the check cannot
// tell it was a failed request's), naming both.
func TestLockedAtEndTakerUnclear(t *testing.T) {
	cfg := Config{Lease: 1500 * time.Millisecond}.withDefaults()
	o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
	for id := uint64(1); id <= 2; id++ {
		o.requests = append(o.requests, &request{ID: id, Browser: 0, Route: RouteIncr, SID: "A", Proc: 0, Status: 500, Reason: "status_500", Sent: 90 * msNs, Recv: 400 * msNs})
		o.timings[id] = timing{ID: id, Route: RouteIncr, SID: "A", Arrive: 100 * msNs, Done: 390 * msNs, Status: 500}
	}
	o.states = map[string]sessionState{"A": {Found: true, Locked: true, LockedAt: 200 * msNs}}
	res := analyze(o)
	require.Equal(t, 1, res.StuckSessions)
	require.Zero(t, res.LockedAfterFailure)
	require.Equal(t, []string{"locked at the end: session A…: lock taken at 200 ms by one of 2 requests"}, res.Findings)
}

// TestRunPastFailover: with Config.RunPastFailover the workload goes on
// past its budget until that long after a failover time after the last
// fault injected ended (missed faults and errors do not count).
func TestRunPastFailover(t *testing.T) {
	r := &runner{cfg: Config{RunPastFailover: time.Second}, start: time.Now().Add(-10 * time.Second)}
	require.False(t, r.unsettled(), "no fault")
	r.events = []Event{{AtMs: 5000, DurationMs: 1500, Kind: FaultPauseNode}, {AtMs: 9000, Kind: FaultKillNode, Missed: true}, {AtMs: 9500, Kind: FaultError}}
	require.False(t, r.unsettled(), "the pause ended 3.5 s ago: 1.5 s failover + 1 s past")
	r.events = append(r.events, Event{AtMs: 8000, DurationMs: 200, Kind: FaultRestartNode})
	require.True(t, r.unsettled(), "the restart ended 1.8 s ago")

	w := &workload{cfg: Config{Requests: 2}}
	w.remaining.Store(2)
	require.Equal(t, 2, w.take(3))
	require.Zero(t, w.take(3), "budget spent, nothing unsettled")
	w.more = r.unsettled
	require.Equal(t, 3, w.take(3), "budget spent, a fault unsettled")
}

// TestFailedDuringLongNodeFault (issue 13's availability: once a node has
// been down or unreachable for the failover time, no request fails): a
// node paused, or cut off from an app server, longer than a failover
// time excuses the requests sent within a failover time of its start and
// of its end, not those sent in between, which are counted.
func TestFailedDuringLongNodeFault(t *testing.T) {
	const start = int64(1_000_000) * msNs
	for _, kind := range []string{FaultPauseNode, FaultPartition} {
		t.Run(kind, func(t *testing.T) {
			cfg := Config{Backend: BackendMemcached, Backup: "witness", Lease: time.Second}.withDefaults()
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}, start: start}
			// The node out from 1000 to 5000 ms: failing over until
			// 2500 ms, and again from 5000 to 6500 ms once it is back.
			o.events = []Event{{AtMs: 1000, DurationMs: 4000, Kind: kind, Target: "memcached node 1"}}
			id := uint64(0)
			add := func(sentMs int64, status int) {
				id++
				o.requests = append(o.requests, &request{ID: id, Browser: 0, Route: RouteRead, SID: "A", Proc: 1,
					Sent: start + sentMs*msNs, Recv: start + (sentMs+5)*msNs, Status: status, Reason: "status_" + strconv.Itoa(status)})
			}
			add(1400, 503) // failing over: excused
			add(3000, 503) // the node out for longer than a failover time: counted
			add(4900, 200) // fine
			add(5500, 503) // its resumption's failover time: excused
			add(6600, 500) // after it: counted
			o.states = map[string]sessionState{"A": {Found: true}}
			res := analyze(o)
			require.Equal(t, 2, res.FailedAfterFailover)
			require.Equal(t, 3, res.RequestsAfterFailover)
			require.Equal(t, []string{
				"failed after the failover time: app 1 read, session A…, sent at 3000 ms (2000 ms after the last fault, " + kind + " on memcached node 1 at 1000 ms for 4000 ms), answered at 3005 ms, status 503",
				"failed after the failover time: app 1 read, session A…, sent at 6600 ms (5600 ms after the last fault, " + kind + " on memcached node 1 at 1000 ms for 4000 ms), answered at 6605 ms, status 500",
			}, res.Findings)
		})
	}
}

// TestFailedInFlightAtNextFault: a request sent a failover time after a
// fault and still in flight when the next fault began may be ended by
// that fault (as one in flight when the first fault began is not
// judged): not counted; one answered before it began is (the spaced
// run of TestRealFaults: a commit sent 14 ms before a restart, failed
// 500 by it). sentOnly, the check before, counts both.
func TestFailedInFlightAtNextFault(t *testing.T) {
	const start = int64(1_000_000) * msNs
	for _, before := range []bool{false, true} {
		cfg := Config{Backend: BackendMemcached, Backup: "witness", Lease: time.Second}.withDefaults()
		o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}, start: start, sentOnly: before}
		// A flush at 2500 ms, a restart at 5045 ms (down 15 ms).
		o.events = []Event{
			{AtMs: 2500, Kind: FaultFlush, Target: "memcached node 0"},
			{AtMs: 5045, DurationMs: 15, Kind: FaultRestartNode, Target: "memcached node 1"},
		}
		add := func(id uint64, sentMs, recvMs int64) {
			o.requests = append(o.requests, &request{ID: id, Browser: 0, Route: RouteSlow, SID: "A", Proc: 2,
				Sent: start + sentMs*msNs, Recv: start + recvMs*msNs, Status: 500, Reason: "status_500"})
		}
		add(1, 5031, 5108) // in flight when the restart began
		add(2, 4500, 4600) // answered before it
		o.states = map[string]sessionState{"A": {Found: true}}
		res := analyze(o)
		want := 1
		if before {
			want = 2
		}
		require.Equal(t, want, res.FailedAfterFailover, "sentOnly %v", before)
		require.Equal(t, want, res.RequestsAfterFailover, "sentOnly %v", before)
	}
}

// unknownCommits is a store whose writes, once armed, report an unknown
// outcome (as the memcached store's undo refused by a node did), naming
// the key, which holds the session id: the middleware must shorten it.
type unknownCommits struct {
	provider.Store
	armed *atomic.Bool
}

func (s unknownCommits) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if s.armed.Load() {
		return 0, fmt.Errorf("test store: undoing the secondary of %s: %w", key, provider.ErrOutcomeUnknown)
	}
	return s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

// TestFailedRequestKeepsItsError: a request answered 500 after a failover
// time keeps its answer's body and the store error its app server's
// middleware logged for it (the session id shortened), and the run's
// finding, summary, HTML and JSON show them with its session, times and
// the last fault before it (the flush-seeded failure of 2026-12-01,
// whose error was recorded nowhere).
func TestFailedRequestKeepsItsError(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	var armed atomic.Bool
	a, err := newApp(appConfig{Proc: 1, Lease: time.Second, Wait: "adaptive"}, unknownCommits{Store: ms, armed: &armed}, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(a.mux)
	defer srv.Close()
	cfg := Config{Backend: BackendMemcached, Backup: "witness", Lease: time.Second}.withDefaults()
	b := newBrowser(0, cfg)
	ctx := context.Background()
	first := b.send(ctx, srv.URL, RouteInit, 1, -1)
	require.True(t, first.ok(), first.Reason)
	armed.Store(true)
	r := b.send(ctx, srv.URL, RouteIncr, 2, -1)
	require.Equal(t, http.StatusInternalServerError, r.Status)
	require.Equal(t, "session not loaded: the store's outcome is unknown (the session may stay locked for up to a lease)", r.Text)

	tm := map[uint64]timing{}
	for _, x := range a.timings {
		tm[x.ID] = x
	}
	// The lock's write (the provider's CAS) failed so: the middleware
	// logged it as it loaded the session.
	require.Contains(t, tm[2].Err, "loading session: test store: undoing the secondary of ")
	require.Contains(t, tm[2].Err, sidTag(first.SID)+"…")
	require.NotContains(t, tm[2].Err, first.SID, "a whole session id")

	// A flush 2500 ms before the request was sent: its failover time is
	// over, the request is counted.
	start := r.Sent - 3000*msNs
	o := observations{cfg: cfg, sids: []string{first.SID}, timings: tm, start: start,
		requests: []*request{r}, states: map[string]sessionState{first.SID: {Found: true}},
		events: []Event{{AtMs: 500, Kind: FaultFlush, Target: "memcached node 2"}}}
	res := analyze(o)
	require.Equal(t, 1, res.FailedAfterFailover)
	require.Len(t, res.FailedAfterFailoverFirst, 1)
	f := res.FailedAfterFailoverFirst[0]
	require.Equal(t, sidTag(first.SID)+"…", f.Session)
	require.Equal(t, 3000.0, f.SentMs)
	require.Equal(t, 2500.0, f.AfterFaultMs)
	require.Equal(t, "flush on memcached node 2 at 500 ms", f.Fault)
	want := fmt.Sprintf(`failed after the failover time: app 1 incr, session %s…, sent at 3000 ms (2500 ms after the last fault, flush on memcached node 2 at 500 ms), answered at %.0f ms, status 500: "session not loaded: the store's outcome is unknown (the session may stay locked for up to a lease)"; server: %q`,
		sidTag(first.SID), f.RecvMs, tm[2].Err)
	require.Equal(t, []string{want}, res.Findings)

	var sum strings.Builder
	require.NoError(t, WriteSummary(&sum, res))
	require.Contains(t, sum.String(), "test store: undoing the secondary of sl:"+sidTag(first.SID)+"…")
	var page strings.Builder
	require.NoError(t, WriteHTML(&page, "run", res))
	require.Contains(t, page.String(), "test store: undoing the secondary of sl:"+sidTag(first.SID)+"…")
	j, err := json.Marshal(res)
	require.NoError(t, err)
	require.Contains(t, string(j), `"failed_after_failover_first":[{"proc":1,"route":"incr","session":"`+sidTag(first.SID))
	require.Contains(t, string(j), `"err":"loading session: test store: undoing the secondary of `)
	for _, out := range []string{sum.String(), page.String(), string(j)} {
		require.NotContains(t, out, first.SID, "a whole session id")
	}

	// Where the store promises no failover, the summary lists it too.
	cfg.Backup = "on"
	o.cfg = cfg
	res = analyze(o)
	require.Empty(t, res.Findings)
	sum.Reset()
	require.NoError(t, WriteSummary(&sum, res))
	require.Contains(t, sum.String(), "failed after failover")
	require.Contains(t, sum.String(), "test store: undoing the secondary of sl:"+sidTag(first.SID)+"…")
}

// slowRestartNode is a managed node whose Restart blocks until released.
type slowRestartNode struct {
	managedNode
	restarting, release chan struct{}
}

func (n *slowRestartNode) Addr() string { return "127.0.0.1:1" }

func (n *slowRestartNode) Restart(ctx context.Context) error {
	close(n.restarting)
	select {
	case <-n.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestRunPastFailoverDuringRestart: a restart's event is recorded once
// the node listens again, with its duration; while it restarts the
// workload must not end (unsettled), or a run whose budget is spent
// during a slow restart has no request after the failover time (a
// restart-node run under load: the restart took 1.1 s, the budget ran
// out at 1.67 s, the restart's event came at 1.74 s). lateFaults is the
// code before.
func TestRunPastFailoverDuringRestart(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "before"}[late], func(t *testing.T) {
			n := &slowRestartNode{restarting: make(chan struct{}), release: make(chan struct{})}
			r := &runner{cfg: Config{RestartNode: At{After: time.Nanosecond}, RunPastFailover: time.Second},
				be: &backend{nodes: []managedNode{n}}, start: time.Now(), lateFaults: late}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.injectFaults(ctx)
			}()
			select {
			case <-n.restarting:
			case <-ctx.Done():
				t.Fatal("the restart was not injected")
			}
			unsettled := r.unsettled()
			close(n.release)
			<-done
			require.Len(t, r.events, 1)
			require.Equal(t, FaultRestartNode, r.events[0].Kind)
			require.True(t, r.unsettled(), "the restart just ended")
			if late {
				require.False(t, unsettled, "before: a restart under way is not seen")
				return
			}
			require.True(t, unsettled, "a restart under way: the workload goes on")
		})
	}
}
