package harness

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// timing is an app server's record of one request, in Unix ns of its wall
// clock (the app servers share the harness's machine and clock).
type timing struct {
	ID    uint64 `json:"id"`
	Proc  int    `json:"proc"`
	Route string `json:"route"`
	SID   string `json:"sid,omitempty"`
	// Arrive: the request reached the app server, before the session
	// middleware. Start and End bracket the handler's work (zero when it
	// never ran), before its commit. Done: the middleware returned, the
	// commit and the release included.
	Arrive int64 `json:"arrive"`
	Start  int64 `json:"start,omitempty"`
	End    int64 `json:"end,omitempty"`
	Done   int64 `json:"done"`
	Status int   `json:"status"`
	// Stamps (exclusive requests): when the app server called each of the
	// request's own writes of the session's record, from Arrive to End,
	// that succeeded or whose outcome is unknown: the writes made with the
	// request's context (stamps), its lock's and its lease renewals'.
	// Another request's write meanwhile (a lock-free one of the same app
	// server) is not among them: it renews no lease.
	Stamps []int64 `json:"stamps,omitempty"`
	// LockEpoch (exclusive requests, when LockEpochSeen): the epoch
	// (record.Epoch) of the first whole record the request wrote, its
	// lock's (lockEpoch).
	LockEpoch     uint64 `json:"lock_epoch,omitempty"`
	LockEpochSeen bool   `json:"lock_epoch_seen,omitempty"`
	// Counter is the session's counter as the handler read it (the value
	// an increment went from), when CounterRead: what a request of
	// unknown outcome may have added one to (checkCounters).
	Counter     int  `json:"counter,omitempty"`
	CounterRead bool `json:"counter_read,omitempty"`
	// Err: the errors the session middleware logged for the request
	// (errNotes), e.g. the store's error behind its 500; empty when none.
	Err string `json:"err,omitempty"`
}

func (t timing) ran() bool { return t.Start > 0 && t.End >= t.Start }

// sessionState is a session as the checks read it from the store after the
// run.
type sessionState struct {
	Found bool
	// Unavailable: the read-back still met provider.ErrUnavailable after
	// its retries (the end of a double fault); nothing else is known.
	Unavailable bool `json:",omitempty"`
	Locked      bool
	// LockedAt is when the lock was taken (Unix ns, the holder's clock:
	// the read's time less LockedError.LockAge); 0 when not locked.
	LockedAt int64
	Counter  int
	List     []string
	Free     map[string]bool
}

// crash describes an app process killed while holding locks.
type crash struct {
	At   int64    // Unix ns
	Proc int      // the killed app server
	SIDs []string // sessions it held
}

// observations are everything a run collected, for analyze.
type observations struct {
	cfg      Config
	requests []*request
	bursts   []burst
	sids     []string // each browser's session, by browser index
	timings  map[uint64]timing
	states   map[string]sessionState
	fenced   int64
	single   map[string]float64
	crash    *crash
	events   []Event
	start    int64 // workload start and end, Unix ns
	end      int64

	// sentOnly (tests only) is checkFailover before spaced faults, kept
	// as a broken variant: a request was judged by its sending alone,
	// so one sent a failover time after a fault and still in flight when
	// the next fault began counted as failing after the failover.
	sentOnly bool
}

// FailoverTime is how long after a fault a store may still be failing
// over: the memcached store's failover time with its defaults, which the
// harness's stores use (docs/replication.md section 9: FailoverAfter 1 s
// + Timeout 500 ms).
const FailoverTime = memcached.DefaultFailoverAfter + memcached.DefaultTimeout

// stuckWaitThreshold is how long a request may wait while no request holds
// its session before the wait counts as a stuck lock: one lease (or lock
// timeout) for the holder to be declared gone, plus one poll for a waiter to
// notice, plus scheduling slack.
func stuckWaitThreshold(cfg Config) time.Duration {
	stale := cfg.Lease
	if stale < 0 {
		stale = 110 * time.Second // the provider's default LockTimeout
	}
	poll := cfg.PollCap
	if poll <= 0 {
		poll = lock.DefaultPollCap
	}
	if cfg.Wait == lock.ASPNET {
		poll = lock.DefaultASPNETPoll
	}
	return stale + poll + max(100*time.Millisecond, stale/10)
}

// analyze turns observations into a Result.
func analyze(o observations) *Result {
	cfg := o.cfg
	res := &Result{
		Backend:              cfg.Backend,
		Backup:               cfg.Backup,
		Mode:                 cfg.Wait.String(),
		Procs:                cfg.Procs,
		Sessions:             cfg.Sessions,
		Burst:                cfg.Burst,
		Conns:                cfg.Conns,
		Seed:                 cfg.Seed,
		Mix:                  cfg.Mix.String(),
		LeaseMs:              ms(int64(cfg.Lease)),
		FailedByReason:       map[string]int{},
		Routes:               map[string]RouteStats{},
		Events:               o.events,
		FencedWritesRejected: o.fenced,
		RequestsTarget:       cfg.Requests,

		UnreachedFaultsAllowed: cfg.AllowUnreachedFaults,
	}
	sort.Slice(o.requests, func(i, j int) bool { return o.requests[i].ID < o.requests[j].ID })

	// Requests.
	res.RequestsTotal = len(o.requests)
	routeWait := map[string][]float64{}
	routeLat := map[string][]float64{}
	var waits, holds, lats []float64
	for _, r := range o.requests {
		if r.Sent >= o.start {
			res.RequestsWorkload++
		} else {
			res.RequestsSetup++
		}
		rs := res.Routes[r.Route]
		rs.Requests++
		if r.ok() {
			res.RequestsOK++
			rs.OK++
			lat := ms(r.Recv - r.Sent)
			lats = append(lats, lat)
			routeLat[r.Route] = append(routeLat[r.Route], lat)
		} else {
			res.RequestsFailed++
			res.FailedByReason[r.Reason]++
		}
		res.Routes[r.Route] = rs
		t, ok := o.timings[r.ID]
		if !ok || !t.ran() {
			continue
		}
		ri := routes[r.Route]
		if ri.exclusive || ri.readOnly {
			w := ms(t.Start - t.Arrive)
			waits = append(waits, w)
			routeWait[r.Route] = append(routeWait[r.Route], w)
		}
		if ri.exclusive {
			holds = append(holds, ms(t.Done-t.Start))
		}
	}
	res.WaitMaxMs = maxOf(waits)
	res.WaitP50Ms = percentile(waits, 50)
	res.WaitP99Ms = percentile(waits, 99)
	res.HoldP50Ms = percentile(holds, 50)
	res.HoldP99Ms = percentile(holds, 99)
	res.LatencyP50Ms = percentile(lats, 50)
	res.LatencyP99Ms = percentile(lats, 99)
	for route, rs := range res.Routes {
		rs.WaitP50Ms = percentile(routeWait[route], 50)
		rs.WaitP99Ms = percentile(routeWait[route], 99)
		rs.LatencyP50Ms = percentile(routeLat[route], 50)
		rs.LatencyP99Ms = percentile(routeLat[route], 99)
		rs.SingleMs = o.single[route]
		res.Routes[route] = rs
	}

	checkSessions(o, res)
	checkCounters(o, res)
	checkLocks(o, res)
	checkFailover(o, res)
	measureBursts(o, res)

	res.DurationMs = ms(o.end - o.start)
	if o.end > o.start {
		workload := 0
		for _, r := range o.requests {
			if r.Burst >= 0 {
				workload++
			}
		}
		res.ThroughputRPS = float64(workload) / (float64(o.end-o.start) / 1e9)
	}
	if o.crash != nil {
		for _, sid := range o.crash.SIDs {
			first := int64(0)
			for _, t := range o.timings {
				if t.SID == sid && routes[t.Route].exclusive && t.Start > o.crash.At && (first == 0 || t.Start < first) {
					first = t.Start
				}
			}
			if first > 0 {
				d := ms(first - o.crash.At)
				res.TakeoversMs = append(res.TakeoversMs, d)
				res.TakeoverMs = max(res.TakeoverMs, d)
			}
		}
	}
	res.RecoveryMs, res.Recovered = recovery(o)
	res.timeline = buildTimeline(o, cfg.TimelineMax)
	return res
}

// checkSessions compares every session's final state with what the
// browsers were told: lost updates and lost sessions. A session whose
// read-back stayed unavailable is left out of both (its final value is
// unknown) and counted as SessionsUnavailable, with a finding.
func checkSessions(o observations, res *Result) {
	type acked struct {
		increments int
		values     map[int]int // value returned -> times
		items      []string
		keys       []string
	}
	bySID := map[string]*acked{}
	lostBrowser := make([]bool, len(o.sids))
	for _, r := range o.requests {
		if !r.ok() {
			continue
		}
		if sid := o.sids[r.Browser]; sid != "" && r.Route != RouteInit && (r.SID != sid || r.New) {
			lostBrowser[r.Browser] = true // the server answered with another session
		}
		a := bySID[r.SID]
		if a == nil {
			a = &acked{values: map[int]int{}}
			bySID[r.SID] = a
		}
		switch {
		case routes[r.Route].increment:
			a.increments++
			a.values[r.Value]++
		case r.Route == RouteAppend:
			a.items = append(a.items, r.Item)
		case r.Route == RouteFree:
			a.keys = append(a.keys, r.Item)
		}
	}
	for sid, a := range bySID {
		st := o.states[sid]
		if st.Unavailable {
			// Its final value is unknown: neither its writes nor its
			// loss can be judged (counted below).
			continue
		}
		if !st.Found {
			for b, bsid := range o.sids {
				if bsid == sid {
					lostBrowser[b] = true
				}
			}
			continue
		}
		dups := 0
		for _, n := range a.values {
			dups += n - 1
		}
		lost := max(a.increments-st.Counter, dups, 0)
		res.LostIncrements += lost
		res.UnackedCommits += max(st.Counter-a.increments, 0)
		have := make(map[string]bool, len(st.List))
		for _, it := range st.List {
			have[it] = true
		}
		for _, it := range a.items {
			if !have[it] {
				res.LostListItems++
			}
		}
		for _, k := range a.keys {
			if !st.Free[k] {
				res.LostLockFreeKey++
			}
		}
	}
	res.LostUpdates = res.LostIncrements + res.LostListItems + res.LostLockFreeKey
	for _, lost := range lostBrowser {
		if lost {
			res.SessionsLost++
		}
	}
	var unavailable []string
	for sid, st := range o.states {
		if st.Unavailable {
			unavailable = append(unavailable, sid)
		}
	}
	sort.Strings(unavailable)
	res.SessionsUnavailable = len(unavailable)
	for _, sid := range unavailable {
		a := bySID[sid]
		if a == nil {
			a = &acked{}
		}
		res.finding("unavailable at the end: session %s…: its read-back still failed ErrUnavailable after its retries; its acknowledged writes (%d increments, %d list items, %d lock-free keys) unchecked",
			sidTag(sid), a.increments, len(a.items), len(a.keys))
	}
}

// promisesFailover reports whether the run's store promises that every
// request sent a failover time after a single fault succeeds (issue 13's
// availability: memcached's witness scheme, docs/replication.md section
// 9), alone or as tiered's cache (its durable tier is not faulted by the
// harness; the cache decides every lock).
func promisesFailover(cfg Config) bool {
	if cfg.Backend != BackendMemcached && cfg.Backend != BackendTiered {
		return false
	}
	mode, err := backupMode(cfg.Backup)
	nodes := max(cfg.Managed, len(cfg.Nodes))
	// The default is the witness scheme with three or more nodes
	// (memcached.BackupDefault, as memcached.New resolves it).
	return err == nil && (mode == memcached.BackupWitness || mode == memcached.BackupDefault && nodes >= 3)
}

// faultWindows returns, per fault injected, the spans in which a request
// sent may fail, in Unix ns: from its start to a failover time after its
// end; for a node paused or cut off longer than a failover time, only a
// failover time after its start and after its end (issue 13: once a node
// has been down or unreachable for the failover time, no request fails;
// its resumption, whose late commands then run, is a fault event too).
func faultWindows(o observations) []span {
	var out []span
	for _, e := range o.events {
		if e.Missed || e.Kind == FaultError {
			continue
		}
		from := o.start + int64(e.AtMs*float64(time.Millisecond))
		dur := int64(e.DurationMs * float64(time.Millisecond))
		if (e.Kind == FaultPauseNode || e.Kind == FaultPartition) && dur > int64(FailoverTime) {
			out = append(out, span{from, from + int64(FailoverTime)}, span{from + dur, from + dur + int64(FailoverTime)})
			continue
		}
		out = append(out, span{from, from + dur + int64(FailoverTime)})
	}
	return out
}

// checkFailover counts the requests sent after a fault and within no
// fault's window (faultWindows: up to a failover time after a fault
// ended, or for a node out longer than that, within a failover time of
// its start or end) and not in flight when a fault began (as one sent
// before the first fault is not judged: the fault may end it)
// (RequestsAfterFailover), and those of them that failed with a server
// error (5xx: FailedAfterFailover).
// They are a violation when the store promises failover
// (promisesFailover), with a finding each. A failure on a session still
// unavailable at the end (SessionsUnavailable, its own violation) is
// counted apart (FailedOnUnavailable): the session's unavailability,
// not a failover that did not happen.
func checkFailover(o observations, res *Result) {
	windows := faultWindows(o)
	if len(windows) == 0 {
		return
	}
	first := slices.MinFunc(windows, func(a, b span) int { return cmp.Compare(a.from, b.from) }).from
	var begins []int64 // each fault's beginning
	for _, e := range o.events {
		if !e.Missed && e.Kind != FaultError {
			begins = append(begins, o.start+int64(e.AtMs*float64(time.Millisecond)))
		}
	}
	res.FailoverChecked = promisesFailover(o.cfg)
	for _, r := range o.requests {
		if r.Sent < first || slices.ContainsFunc(windows, func(w span) bool { return r.Sent >= w.from && r.Sent < w.to }) {
			continue
		}
		if !o.sentOnly && slices.ContainsFunc(begins, func(b int64) bool { return r.Sent < b && b < r.Recv }) {
			continue
		}
		res.RequestsAfterFailover++
		if r.ok() || r.Status/100 != 5 {
			continue
		}
		if o.states[sessionOf(o, r)].Unavailable {
			res.FailedOnUnavailable++
			continue
		}
		res.FailedAfterFailover++
		f := failedRequest(o, r)
		if len(res.FailedAfterFailoverFirst) < maxFailedShown {
			res.FailedAfterFailoverFirst = append(res.FailedAfterFailoverFirst, f)
		}
		if res.FailoverChecked {
			res.finding("failed after the failover time: %s", f.describe())
		}
	}
}

// maxFailedShown bounds Result.FailedAfterFailoverFirst.
const maxFailedShown = 5

// failedRequest describes request r, which failed: when, against the
// faults, and the error its answer and its app server gave.
func failedRequest(o observations, r *request) FailedRequest {
	f := FailedRequest{Proc: r.Proc, Route: r.Route, Status: r.Status, SentMs: ms(r.Sent - o.start), RecvMs: ms(r.Recv - o.start), Text: r.Text}
	if sid := sessionOf(o, r); sid != "" {
		f.Session = sidTag(sid) + "…"
	}
	if t, ok := o.timings[r.ID]; ok {
		f.Err = t.Err
	}
	var last *Event
	for i, e := range o.events {
		if !e.Missed && e.Kind != FaultError && e.AtMs <= f.SentMs && (last == nil || e.AtMs >= last.AtMs) {
			last = &o.events[i]
		}
	}
	if last != nil {
		f.AfterFaultMs = f.SentMs - last.AtMs
		f.Fault = fmt.Sprintf("%s on %s at %.0f ms", last.Kind, cmp.Or(last.Target, "-"), last.AtMs)
		if last.DurationMs > 0 {
			f.Fault += fmt.Sprintf(" for %.0f ms", last.DurationMs)
		}
	}
	return f
}

// sessionOf returns the session request r was for: the one its app
// server saw (its timing), else its browser's.
func sessionOf(o observations, r *request) string {
	if t, ok := o.timings[r.ID]; ok && t.SID != "" {
		return t.SID
	}
	return o.sids[r.Browser]
}

// span is an interval of Unix ns.
type span struct{ from, to int64 }

// checkLocks counts stuck sessions, stuck waits and overlapping exclusive
// handlers.
func checkLocks(o observations, res *Result) {
	for sid, st := range o.states {
		if !st.Found || !st.Locked {
			continue
		}
		// A lock left by a request that failed (its lock's write or its
		// release had no known outcome, or could not be made) is the
		// lease's to break: the next request of the session takes it over
		// within a lease, and a wait longer than that is a stuck wait
		// below. It is stuck at the end only when no later request came
		// to break it. Only a failure whose outcome the server could not
		// know excuses it (no answer, or a 5xx: the store's unknown
		// outcome or unavailability); a definite answer (a 4xx such as
		// 409, "fenced: nothing written") that left its lock behind is a
		// wrong answer. A lock whose taker succeeded, or that no request
		// took, is a lost release.
		r, n := lockTaker(o, sid, st.LockedAt)
		switch {
		case n == 1 && !r.ok() && (r.Status == 0 || r.Status >= 500):
			res.LockedAfterFailure++
		case n == 1 && !r.ok():
			res.StuckSessions++
			res.finding("locked at the end: session %s…: lock taken at %.0f ms by app %d %s, which failed with a definite answer (status %d): it said nothing was kept",
				sidTag(sid), ms(st.LockedAt-o.start), r.Proc, r.Route, r.Status)
		case n == 1:
			res.StuckSessions++
			res.finding("locked at the end: session %s…: lock taken at %.0f ms by app %d %s, which succeeded (status %d): its release was lost",
				sidTag(sid), ms(st.LockedAt-o.start), r.Proc, r.Route, r.Status)
		case n == 0:
			res.StuckSessions++
			res.finding("locked at the end: session %s…: lock taken at %.0f ms by no request of the run", sidTag(sid), ms(st.LockedAt-o.start))
		default:
			res.StuckSessions++
			res.finding("locked at the end: session %s…: lock taken at %.0f ms by one of %d requests", sidTag(sid), ms(st.LockedAt-o.start), n)
		}
	}
	threshold := stuckWaitThreshold(o.cfg)
	res.StuckWaitMs = ms(int64(threshold))

	// Per session: the intervals during which some request may have held
	// its lock, and the waits.
	holds := map[string][]span{}
	waits := map[string][]handlerRun{} // a wait: Arrive to Start
	runs := map[string][]handlerRun{}
	for _, r := range o.requests {
		ri := routes[r.Route]
		t, ok := o.timings[r.ID]
		sid := sessionOf(o, r)
		if sid == "" {
			continue
		}
		switch {
		case ok && t.ran():
			if ri.exclusive {
				holds[sid] = append(holds[sid], span{t.Start, t.Done})
				runs[sid] = append(runs[sid], handlerRun{span: span{t.Start, t.End}, stamps: t.Stamps,
					acked: r.ok() || t.Status/100 == 2, proc: t.Proc, route: r.Route, status: t.Status,
					epoch: t.LockEpoch, epochSeen: t.LockEpochSeen})
			}
			if ri.exclusive || ri.readOnly {
				waits[sid] = append(waits[sid], handlerRun{span: span{t.Arrive, t.Start}, proc: t.Proc, route: r.Route})
			}
		case ri.exclusive:
			// No record from the app server (it crashed, or the request
			// failed before its handler ran): it may have held the lock
			// from the moment it was sent until it ended.
			to := r.Recv
			if o.crash != nil && r.Proc < 0 && o.crash.At > r.Sent {
				to = max(to, o.crash.At)
			}
			holds[sid] = append(holds[sid], span{r.Sent, to})
		}
	}
	// Within a fault's window (faultWindows) a store may still be
	// failing over: a wait's stretch without a holder there is reported
	// apart (StuckWaitsInFailover).
	failover := faultWindows(o)
	for sid, ws := range waits {
		merged := mergeSpans(holds[sid])
		excused := mergeSpans(append(slices.Clone(holds[sid]), failover...))
		for _, w := range ws {
			// The longest stretch of the wait during which no request
			// held the lock (a request's own hold begins when its wait
			// ends).
			if time.Duration(longestGap(merged, w.span)) > threshold {
				if time.Duration(longestGap(excused, w.span)) > threshold {
					res.StuckWaits++
					res.finding("stuck wait: session %s…: app %d %s waited from %.0f to %.0f ms", sidTag(sid), w.proc, w.route, ms(w.from-o.start), ms(w.to-o.start))
				} else {
					res.StuckWaitsInFailover++
				}
			}
		}
	}
	res.StuckLocks = res.StuckSessions + res.StuckWaits
	for sid, rs := range runs {
		sort.Slice(rs, func(i, j int) bool { return rs[i].from < rs[j].from })
		var running []handlerRun // earlier handlers, pruned to those not ended
		for _, b := range rs {
			running = slices.DeleteFunc(running, func(a handlerRun) bool { return a.to <= b.from })
			// b began while an earlier handler a had not ended: two
			// holders, unless a's lease had surely run out, or a
			// revival fenced a (fencedByRevival).
			held := slices.DeleteFunc(slices.Clone(running), func(a handlerRun) bool { return a.leaseEndedBy(b.from, o.cfg.Lease) })
			if i := slices.IndexFunc(held, func(a handlerRun) bool { return !a.fencedByRevival(b) }); i >= 0 {
				res.ExclusionViolations++
				a := held[i]
				res.finding("two holders: session %s…: app %d %s (handler %.0f to %.0f ms, status %d) and app %d %s (handler from %.0f ms)",
					sidTag(sid), a.proc, a.route, ms(a.from-o.start), ms(a.to-o.start), a.status, b.proc, b.route, ms(b.from-o.start))
			} else if len(held) > 0 {
				res.HoldersAcrossRevival++
			}
			running = append(running, b)
		}
	}
}

// lockSlack is how far from a request's window lockTaker still finds the
// lock's time: LockedAt is estimated from the lock's age as read.
const lockSlack = 50 * time.Millisecond

// lockTaker returns how many exclusive requests of session sid could
// have taken the lock taken at lockedAt (Unix ns), and one of them: the
// lock is taken between a request's arrival and its handler's start (its
// arrival and its end when the handler never ran; its sending and its
// answer with no record from an app server).
func lockTaker(o observations, sid string, lockedAt int64) (r *request, n int) {
	slack := int64(lockSlack)
	for _, q := range o.requests {
		if !routes[q.Route].exclusive {
			continue
		}
		qt, ok := o.timings[q.ID]
		if sessionOf(o, q) != sid {
			continue
		}
		from, to := q.Sent, q.Recv
		switch {
		case ok && qt.ran():
			from, to = qt.Arrive, qt.Start
		case ok:
			from, to = qt.Arrive, qt.Done
		}
		if lockedAt >= from-slack && lockedAt <= to+slack {
			r = q
			n++
		}
	}
	return r, n
}

// handlerRun is an exclusive handler's run (Start to End), with the
// calls of its request's own writes of the session (timing.Stamps); or a
// wait (Arrive to Start).
type handlerRun struct {
	span
	stamps []int64
	acked  bool // its request succeeded (client or app server side)
	proc   int
	route  string
	status int // the app server's answer
	// epoch: its lock's record.Epoch, if epochSeen (timing.LockEpoch).
	epoch     uint64
	epochSeen bool
}

// maxFindings bounds Result.Findings.
const maxFindings = 20

// finding adds one line to res.Findings, up to maxFindings.
func (res *Result) finding(format string, args ...any) {
	if len(res.Findings) < maxFindings {
		res.Findings = append(res.Findings, fmt.Sprintf(format, args...))
	}
}

// sidTag is the start of a session id, for findings (never a whole id).
func sidTag(sid string) string { return sid[:min(len(sid), 6)] }

// fencedByRevival reports whether r's lock was lost to a revival from
// the durable tier before b took its own: r's lock is of an older epoch
// than b's (a revival starts a new one and fences every holder of a lock
// of the lost cache: store/tiered's package documentation) and r's
// request failed (its commit refused). Two holders across a revival are
// the revival working, as the simulation's epochHolders counts them; two
// of one epoch, or with an epoch not seen (a lock appended), still are
// two holders.
func (r handlerRun) fencedByRevival(b handlerRun) bool {
	return !r.acked && r.epochSeen && b.epochSeen && r.epoch < b.epoch
}

// leaseEndedBy reports whether the run's lease had surely ended at t: a
// holder paused past its lease (SIGSTOP) is still in its handler when
// the next holder takes over, which is the lease working, not two
// holders, if its lease ran out before (a lease from the call of its
// request's last own write of the record, the lock's or a renewal's,
// successful or of unknown outcome, as the simulation's twoHolders counts
// it; another request's write renews no lease, whatever its app server)
// and its request then failed (its commit fenced: I3). With no such
// write seen, or no leases, it never ended.
func (r handlerRun) leaseEndedBy(t int64, lease time.Duration) bool {
	if lease <= 0 || r.acked {
		return false
	}
	last := int64(0)
	for _, s := range r.stamps {
		if s < t {
			last = max(last, s)
		}
	}
	return last > 0 && last+int64(lease) <= t
}

// mergeSpans returns the union of spans as sorted, disjoint spans.
func mergeSpans(spans []span) []span {
	s := append([]span(nil), spans...)
	sort.Slice(s, func(i, j int) bool { return s[i].from < s[j].from })
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && x.from <= out[n-1].to {
			out[n-1].to = max(out[n-1].to, x.to)
			continue
		}
		out = append(out, x)
	}
	return out
}

// longestGap returns the longest part of w that no merged span covers.
func longestGap(merged []span, w span) int64 {
	longest := int64(0)
	at := w.from
	i := sort.Search(len(merged), func(i int) bool { return merged[i].to > w.from })
	for ; i < len(merged) && merged[i].from < w.to; i++ {
		longest = max(longest, merged[i].from-at)
		at = max(at, merged[i].to)
	}
	return max(longest, w.to-at)
}

// measureBursts sums the makespans of the bursts whose requests all
// succeeded, and what they needed at least.
func measureBursts(o observations, res *Result) {
	byID := make(map[uint64]*request, len(o.requests))
	for _, r := range o.requests {
		byID[r.ID] = r
	}
	var sumMake, sumIdeal int64
	n := 0
outer:
	for _, b := range o.bursts {
		if b.End <= b.Start {
			continue
		}
		var excl, longest int64
		for _, id := range b.IDs {
			r := byID[id]
			t, ok := o.timings[id]
			if r == nil || !r.ok() || !ok || !t.ran() {
				continue outer
			}
			h := t.End - t.Start
			if routes[r.Route].exclusive {
				excl += h
			}
			longest = max(longest, h)
		}
		sumMake += b.End - b.Start
		sumIdeal += max(excl, longest)
		n++
	}
	res.BurstsMeasured = n
	res.MakespanMs = ms(sumMake)
	res.IdealMakespanMs = ms(sumIdeal)
	if sumIdeal > 0 {
		res.MakespanRatio = float64(sumMake) / float64(sumIdeal)
	}
	if n > 0 {
		res.BurstMakespanMs = ms(sumMake) / float64(n)
	}
	// With a one-route mix, a burst compares with one request of it.
	var only []string
	for _, route := range []string{RouteIncr, RouteAppend, RouteRead, RouteFree, RouteSlow} {
		if mixWeight(o.cfg.Mix, route) > 0 {
			only = append(only, route)
		}
	}
	if len(only) == 1 {
		res.SingleRequestMs = o.single[only[0]]
	}
	if res.SingleRequestMs > 0 {
		res.BurstVsSingle = res.BurstMakespanMs / res.SingleRequestMs
	}
}
