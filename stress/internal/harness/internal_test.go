package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/stress/internal/counterlin"
)

const msNs = int64(time.Millisecond)

// TestAnalyzeCountsViolations feeds analyze made-up observations with one
// instance of each violation and checks that each is counted.
func TestAnalyzeCountsViolations(t *testing.T) {
	cfg := Config{Lease: time.Second}.withDefaults()
	o := observations{cfg: cfg, sids: []string{"A", "B", "C", "D"}, timings: map[uint64]timing{}}
	id := uint64(0)
	add := func(browser int, route, sid string, value int, item string, tm *timing) {
		id++
		o.requests = append(o.requests, &request{ID: id, Browser: browser, Route: route, SID: sid, Value: value, Item: item, Proc: 0})
		if tm != nil {
			tm.ID, tm.Route, tm.SID = id, route, sid
			o.timings[id] = *tm
		}
	}
	// Session A: three acknowledged increments but the counter says 2; an
	// appended item and a lock-free key that are missing.
	add(0, RouteIncr, "A", 1, "", &timing{Arrive: 0, Start: 1 * msNs, End: 2 * msNs, Done: 2 * msNs})
	add(0, RouteIncr, "A", 2, "", &timing{Arrive: 0, Start: 3 * msNs, End: 4 * msNs, Done: 4 * msNs})
	add(0, RouteSlow, "A", 3, "", &timing{Arrive: 0, Start: 5 * msNs, End: 6 * msNs, Done: 6 * msNs})
	add(0, RouteAppend, "A", 0, "a9", nil)
	add(0, RouteFree, "A", 0, "f9", nil)
	// Session B: two increments returned the same value (one overwrote the
	// other) and their handlers overlapped; the counter still shows 2
	// because a third, unacknowledged, increment was stored.
	add(1, RouteIncr, "B", 1, "", &timing{Arrive: 0, Start: 10 * msNs, End: 20 * msNs, Done: 20 * msNs})
	add(1, RouteIncr, "B", 1, "", &timing{Arrive: 0, Start: 15 * msNs, End: 25 * msNs, Done: 25 * msNs})
	// Session C is gone at the end.
	add(2, RouteIncr, "C", 1, "", nil)
	// Browser 3 was answered with another session (its own was lost), and
	// one of its requests waited 5 s with nobody holding the lock. The
	// other session's counter is one above what was acknowledged.
	add(3, RouteRead, "D", 0, "", &timing{Arrive: 0, Start: 5000 * msNs, End: 5000 * msNs, Done: 5000 * msNs})
	add(3, RouteIncr, "E", 1, "", nil)
	o.states = map[string]sessionState{
		"A": {Found: true, Counter: 2, List: []string{"a1"}, Free: map[string]bool{"f1": true}},
		"B": {Found: true, Counter: 2},
		"D": {Found: true, Locked: true, LockedAt: 9000 * msNs},
		"E": {Found: true, Counter: 2},
	}
	res := analyze(o)
	require.Equal(t, 2, res.LostIncrements, "session A lost one increment; B's duplicate is one more")
	require.Equal(t, 1, res.LostListItems)
	require.Equal(t, 1, res.LostLockFreeKey)
	require.Equal(t, 4, res.LostUpdates)
	require.Equal(t, 2, res.SessionsLost, "C vanished; browser 3 got another session")
	require.Equal(t, 1, res.ExclusionViolations)
	require.Equal(t, 1, res.StuckSessions)
	require.Equal(t, 1, res.StuckWaits)
	require.Equal(t, 2, res.StuckLocks)
	require.Equal(t, 1, res.UnackedCommits, "E's counter is one above its acknowledged increments")
	// B's two increments from 0, both acknowledged, have no
	// linearization either.
	require.Equal(t, 1, res.CounterNotLinearizable)
	require.ElementsMatch(t, []string{"lost_updates", "stuck_locks", "sessions_lost", "exclusion_violations", "counter_not_linearizable"}, res.Violations())
	require.ElementsMatch(t, []string{
		"counter not linearizable: session B…: no linearization of its 2 counter operations: incr from 0 [0, 0 ms], incr from 0 [0, 0 ms]",
		"locked at the end: session D…: lock taken at 9000 ms by no request of the run",
		"stuck wait: session D…: app 0 read waited from 0 to 5000 ms",
		"two holders: session B…: app 0 incr (handler 10 to 20 ms, status 0) and app 0 incr (handler from 15 ms)",
	}, res.Findings)
}

// TestStuckWaitInFailover: a wait's stretch without a holder that lies
// between a fault and a failover time after it ended is reported apart;
// the same stretch later in the run is a stuck lock.
func TestStuckWaitInFailover(t *testing.T) {
	cfg := Config{Lease: time.Second}.withDefaults()
	for _, tc := range []struct {
		name        string
		waitFrom    int64 // ms
		stuck, fail int
	}{
		{"within the failover", 1000, 0, 1},
		{"past the failover", 10000, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
			o.requests = append(o.requests, &request{ID: 1, Browser: 0, Route: RouteRead, SID: "A"})
			// A 2.5 s wait, longer than a lease, with no holder.
			o.timings[1] = timing{ID: 1, Route: RouteRead, SID: "A", Arrive: tc.waitFrom * msNs, Start: (tc.waitFrom + 2500) * msNs, End: (tc.waitFrom + 2500) * msNs, Done: (tc.waitFrom + 2500) * msNs}
			// A node paused at 500 ms for 1.5 s: failing over until 3.5 s.
			o.events = []Event{{AtMs: 500, Kind: FaultPauseNode, DurationMs: 1500}}
			o.states = map[string]sessionState{"A": {Found: true}}
			res := analyze(o)
			require.Equal(t, tc.stuck, res.StuckWaits)
			require.Equal(t, tc.fail, res.StuckWaitsInFailover)
		})
	}
}

// TestExclusionPausedHolder: a holder paused past its lease is still in
// its handler when the next holder takes over. That is the lease working
// when its lease (from the call of its last successful write of the
// record) ran out before the takeover and its request then failed (the
// commit fenced, 409); it is two holders when the takeover came within
// the lease, when the late holder's request succeeded, or when no write
// of its lock was seen.
func TestExclusionPausedHolder(t *testing.T) {
	cfg := Config{Lease: 1500 * time.Millisecond}.withDefaults()
	for _, tc := range []struct {
		name     string
		stamps   []int64 // ms: the paused holder's writes (lock, renewals)
		takeover int64   // ms: the next holder's handler starts
		status   int     // the paused holder's answer
		want     int
	}{
		{"fenced, taken over after its lease", []int64{100, 600}, 2150, 409, 0},
		{"taken over within its lease", []int64{100, 600}, 2050, 409, 1},
		{"its late commit succeeded", []int64{100, 600}, 2150, 200, 1},
		{"no write of its lock seen", nil, 2150, 409, 1},
		{"a renewal after the takeover does not count", []int64{100, 600, 2200}, 2150, 409, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
			var stamps []int64
			for _, s := range tc.stamps {
				stamps = append(stamps, s*msNs)
			}
			reason := ""
			if tc.status != 200 {
				reason = "status_409"
			}
			// The paused holder: its handler from 110 ms to 3 s (stopped
			// in between); the next one: 10 ms from the takeover.
			o.requests = append(o.requests, &request{ID: 1, Browser: 0, Route: RouteSlow, SID: "A", Status: tc.status, Reason: reason, Value: 1},
				&request{ID: 2, Browser: 0, Route: RouteIncr, SID: "A", Status: 200, Value: 1})
			o.timings[1] = timing{ID: 1, Route: RouteSlow, SID: "A", Arrive: 90 * msNs, Start: 110 * msNs, End: 3000 * msNs, Done: 3010 * msNs, Status: tc.status, Stamps: stamps}
			o.timings[2] = timing{ID: 2, Route: RouteIncr, SID: "A", Arrive: 200 * msNs, Start: tc.takeover * msNs, End: (tc.takeover + 10) * msNs, Done: (tc.takeover + 10) * msNs, Status: 200, Stamps: []int64{tc.takeover * msNs}}
			o.states = map[string]sessionState{"A": {Found: true, Counter: 1}}
			res := analyze(o)
			require.Equal(t, tc.want, res.ExclusionViolations)
			if tc.want > 0 {
				require.Contains(t, res.Findings, "two holders: session A…: app 0 slow (handler 110 to 3000 ms, status "+strconv.Itoa(tc.status)+") and app 0 incr (handler from "+strconv.FormatInt(tc.takeover, 10)+" ms)")
			}
		})
	}
}

// TestAnalyzeCleanRun: consistent observations give no violation, and the
// makespan of a burst is compared with its serialized handlers.
func TestAnalyzeCleanRun(t *testing.T) {
	cfg := Config{}.withDefaults()
	o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
	base := time.Now().UnixNano()
	for i := range 4 {
		id := uint64(i + 1)
		o.requests = append(o.requests, &request{ID: id, Browser: 0, Route: RouteSlow, SID: "A", Value: i + 1, Sent: base, Recv: base + 50*msNs})
		start := base + int64(i)*10*msNs
		o.timings[id] = timing{ID: id, Route: RouteSlow, SID: "A", Arrive: base, Start: start, End: start + 10*msNs, Done: start + 10*msNs}
	}
	o.bursts = []burst{{Browser: 0, Start: base, End: base + 50*msNs, IDs: []uint64{1, 2, 3, 4}}}
	o.states = map[string]sessionState{"A": {Found: true, Counter: 4}}
	res := analyze(o)
	require.True(t, res.OK(), "violations: %v", res.Violations())
	require.Equal(t, 50.0, res.MakespanMs)
	require.Equal(t, 40.0, res.IdealMakespanMs)
	require.InDelta(t, 1.25, res.MakespanRatio, 1e-9)
	require.Equal(t, 30.0, res.WaitMaxMs)
}

func TestLongestGap(t *testing.T) {
	merged := mergeSpans([]span{{10, 20}, {15, 30}, {50, 60}, {70, 80}})
	require.Equal(t, []span{{10, 30}, {50, 60}, {70, 80}}, merged)
	require.Equal(t, int64(20), longestGap(merged, span{0, 100})) // 30..50 and 80..100
	require.Equal(t, int64(0), longestGap(merged, span{12, 28}))  // fully held
	require.Equal(t, int64(10), longestGap(merged, span{0, 25}))  // 0..10
	require.Equal(t, int64(10), longestGap(merged, span{55, 75})) // 60..70
	require.Equal(t, int64(40), longestGap(nil, span{0, 40}))     // nobody held it
}

func TestParseMixAndAt(t *testing.T) {
	m, err := ParseMix(DefaultMix.String())
	require.NoError(t, err)
	require.Equal(t, DefaultMix, m)
	m, err = ParseMix("slow=1")
	require.NoError(t, err)
	require.Equal(t, Mix{Slow: 1}, m)
	for _, bad := range []string{"", "incr", "incr=-1", "incr=x", "nope=1", "incr=0"} {
		_, err := ParseMix(bad)
		require.Error(t, err, bad)
	}
	a, err := ParseAt("50%")
	require.NoError(t, err)
	require.Equal(t, At{Fraction: 0.5}, a)
	require.Equal(t, "50%", a.String())
	a, err = ParseAt("1.5s")
	require.NoError(t, err)
	require.Equal(t, At{After: 1500 * time.Millisecond}, a)
	for _, bad := range []string{"0%", "101%", "-1s", "soon", "0s"} {
		_, err := ParseAt(bad)
		require.Error(t, err, bad)
	}
}

// TestDelayStore: the memory backend's stand-in for the proxy delays every
// operation and keeps its results.
func TestDelayStore(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	s := delayStore{Store: ms, delay: 5 * time.Millisecond}
	ctx := context.Background()
	start := time.Now()
	_, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
	require.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)
	_, err = s.CompareAndSwap(ctx, "k", []byte("w"), e.CAS+1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(cctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, s.Close())
	_, err = ms.Get(ctx, "k")
	require.NoError(t, err, "closing the wrapper leaves the shared store open")
}

// TestFrontRoundRobin: the balancer spreads requests over its servers in
// turn, skips a server taken out, and answers 502 with its marker header
// when the server it picked is unreachable.
func TestFrontRoundRobin(t *testing.T) {
	var addrs []string
	for i := range 3 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, string(rune('a'+i)))
		}))
		defer s.Close()
		addrs = append(addrs, strings.TrimPrefix(s.URL, "http://"))
	}
	f, err := startFront(addrs)
	require.NoError(t, err)
	defer f.Close()
	get := func() string {
		resp, err := http.Get(f.URL())
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	seen := ""
	for range 6 {
		seen += get()
	}
	require.ElementsMatch(t, []rune("aabbcc"), []rune(seen))
	f.markDown(1)
	for range 6 {
		require.NotEqual(t, "b", get())
	}

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	require.NoError(t, dead.Close())
	f2, err := startFront([]string{deadAddr})
	require.NoError(t, err)
	defer f2.Close()
	resp, err := http.Get(f2.URL())
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get(headerProxyError))
}

// TestFlushPlan: -flush-count's instants come from the seed (the same
// seed, the same plan), lie in [10%, 90%] of the run in order, at least
// FlushGap apart, on nodes in range (or the one -flush-node names), and
// different seeds give different plans.
func TestFlushPlan(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		for count := 1; count <= MaxFlushCount; count++ {
			plan := flushPlan(seed, count, 3, -1)
			if len(plan) != count {
				t.Fatalf("seed %d count %d: %d flushes", seed, count, len(plan))
			}
			if !reflect.DeepEqual(plan, flushPlan(seed, count, 3, -1)) {
				t.Fatalf("seed %d: two plans differ", seed)
			}
			for i, f := range plan {
				if f.frac < 0.1 || f.frac > 0.9 || f.node < 0 || f.node >= 3 {
					t.Fatalf("seed %d: flush %d out of range: %+v", seed, i, f)
				}
				if i > 0 && f.frac-plan[i-1].frac < FlushGap-1e-3 {
					t.Fatalf("seed %d: flushes %d and %d only %.4f apart", seed, i-1, i, f.frac-plan[i-1].frac)
				}
			}
		}
		for _, f := range flushPlan(seed, 3, 3, 2) {
			if f.node != 2 {
				t.Fatalf("seed %d: -flush-node 2 ignored: %+v", seed, f)
			}
		}
	}
	if reflect.DeepEqual(flushPlan(1, 3, 3, -1), flushPlan(2, 3, 3, -1)) {
		t.Fatal("seeds 1 and 2 give the same plan")
	}
}

// TestSpacedPlan: -fault-spacing's faults come at D, 2D, ... on the
// nodes in turn from -flush-node (or from the seed's node), every second
// one a restart with -spaced-restart, and replace the seeded flushes.
func TestSpacedPlan(t *testing.T) {
	cfg := Config{FlushCount: 6, FaultSpacing: 8 * time.Second, FlushNode: 1, SpacedRestart: true}
	want := []spacedFault{
		{8 * time.Second, 1, false}, {16 * time.Second, 2, true}, {24 * time.Second, 0, false},
		{32 * time.Second, 1, true}, {40 * time.Second, 2, false}, {48 * time.Second, 0, true},
	}
	if got := spacedPlan(cfg, 3); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	if n := seededFlushes(cfg); n != 0 {
		t.Fatalf("%d seeded flushes beside the spaced ones", n)
	}
	cfg.FlushNode, cfg.Seed = -1, 5
	if got := spacedPlan(cfg, 3); got[0].node != 2 || got[1].node != 0 {
		t.Fatalf("seed 5 on 3 nodes: first nodes %d, %d, want 2, 0", got[0].node, got[1].node)
	}
	cfg.FaultSpacing = 0
	if got := spacedPlan(cfg, 3); got != nil || seededFlushes(cfg) != 6 {
		t.Fatalf("without spacing: spaced %+v, seeded %d", got, seededFlushes(cfg))
	}
}

// TestStampsRecordUnknownWrites: a write of unknown outcome the provider
// may settle as landed (a lock taken with no successful write) gives its
// holder a lease from its call, as a successful write does; a write
// refused for certain gives none. Without it a paused holder whose lock
// was settled so had no lease, and its takeover counted as two holders
// (the CI run of 2026-11-30 03:00 UTC, pause-app).
func TestStampsRecordUnknownWrites(t *testing.T) {
	s := &stamps{}
	at := time.Unix(0, 1000)
	s.add(at, fmt.Errorf("cas: %w", provider.ErrOutcomeUnknown))
	s.add(at.Add(1), fmt.Errorf("cas: %w", provider.ErrCASConflict))
	s.add(at.Add(2), nil)
	require.Equal(t, []int64{1000, 1002}, s.within(0, 1<<62))
}

// TestCounterHistory checks which requests counterHistory puts in a
// session's counter history, and how: a failed increment is an increment
// of unknown outcome unless it surely wrote nothing (a 4xx, or a handler
// that never ran), and from any value when no app server recorded it; a
// history that needs one of them to have applied is linearizable, one
// whose read saw an increment that surely did not apply is not.
func TestCounterHistory(t *testing.T) {
	cfg := Config{Lease: time.Second}.withDefaults()
	o := observations{cfg: cfg, sids: []string{"A"}, timings: map[uint64]timing{}}
	at := func(a, b int64) (int64, int64) { return a * msNs, b * msNs }
	add := func(r request, tm *timing) {
		r.ID = uint64(len(o.requests) + 1)
		r.Browser, r.Proc = 0, 0
		o.requests = append(o.requests, &r)
		if tm != nil {
			tm.ID, tm.Route, tm.SID = r.ID, r.Route, "A"
			o.timings[r.ID] = *tm
		}
	}
	s, e := at(0, 10)
	add(request{Route: RouteIncr, SID: "A", Value: 1, Sent: s, Recv: e}, nil) // 0 -> 1
	s, e = at(20, 30)
	// Timed out after its handler read 1: may have applied.
	add(request{Route: RouteIncr, Reason: "timeout", Sent: s, Recv: e}, &timing{Arrive: s, Start: s, End: e, Done: e, CounterRead: true, Counter: 1})
	s, e = at(40, 50)
	// Fenced (409): wrote nothing.
	add(request{Route: RouteSlow, Reason: "status_409", Status: 409, Sent: s, Recv: e}, &timing{Arrive: s, Start: s, End: e, Done: e, CounterRead: true, Counter: 1})
	s, e = at(60, 70)
	// Its handler never ran: wrote nothing.
	add(request{Route: RouteIncr, Reason: "status_503", Status: 503, Sent: s, Recv: e}, &timing{Arrive: s, Done: e})
	s, e = at(80, 90)
	// No record of it: from any value.
	add(request{Route: RouteIncr, Reason: "conn_reset", Sent: s, Recv: e}, nil)
	s, e = at(100, 110)
	add(request{Route: RouteRead, SID: "A", Value: 3, Sent: s, Recv: e}, nil)
	s, e = at(120, 130)
	add(request{Route: RouteAppend, SID: "A", Value: 3, Sent: s, Recv: e}, nil)
	o.states = map[string]sessionState{"A": {Found: true, Counter: 3}}

	h := counterHistory(o)["A"]
	require.Len(t, h, 5)
	require.Equal(t, counterlin.Op{N: 0, Call: 0, Return: 10 * msNs}, h[0])
	require.Equal(t, counterlin.Op{N: 1, Maybe: true, Call: 20 * msNs, Return: counterlin.Never}, h[1])
	require.Equal(t, counterlin.Op{Maybe: true, AnyN: true, Call: 80 * msNs, Return: counterlin.Never}, h[2])
	require.Equal(t, counterlin.Op{Read: true, N: 3, Call: 100 * msNs, Return: 110 * msNs}, h[3])
	res := analyze(o)
	require.Equal(t, 1, res.CounterHistories)
	require.Equal(t, 2, res.CounterMaybeOps)
	require.Zero(t, res.CounterNotLinearizable, "read 3: both increments of unknown outcome applied")

	// A read of 4 needs the fenced one too: not linearizable.
	o.requests[5].Value = 4
	o.requests[6].Value = 4
	res = analyze(o)
	require.Equal(t, 1, res.CounterNotLinearizable)
	require.Contains(t, res.Violations(), "counter_not_linearizable")
}
