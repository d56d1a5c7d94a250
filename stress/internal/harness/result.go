package harness

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Result is what one run measured. Its JSON form is the -json output.
type Result struct {
	// The run's settings: Mode is the waiting strategy (adaptive or
	// aspnet), Procs the number of app servers.
	Backend string `json:"backend"`
	// Backup is the memcached store's replication mode (Config.Backup).
	Backup   string  `json:"backup,omitempty"`
	Mode     string  `json:"mode"`
	Procs    int     `json:"procs"`
	Sessions int     `json:"sessions"`
	Burst    int     `json:"burst"`
	Conns    int     `json:"conns"`
	Seed     uint64  `json:"seed"`
	Mix      string  `json:"mix"`
	LeaseMs  float64 `json:"lease_ms"`

	// Requests sent (first page loads, single-request probes and the
	// workload), answered with 2xx, and failed, by reason:
	// status_NNN, timeout, conn_refused, conn_reset, app_unreachable (the
	// round-robin could not reach its app server), ...
	RequestsTotal  int            `json:"requests_total"`
	RequestsOK     int            `json:"requests_ok"`
	RequestsFailed int            `json:"requests_failed"`
	FailedByReason map[string]int `json:"requests_failed_by_reason"`
	// RequestsTarget is the workload's request budget (-requests; negative:
	// none), RequestsWorkload the requests sent once the workload started
	// (bursts, and a crashed holder's requests), which the budget bounds;
	// RequestsSetup the first page loads and single-request probes before
	// it.
	RequestsTarget   int `json:"requests_target"`
	RequestsWorkload int `json:"requests_workload"`
	RequestsSetup    int `json:"requests_setup"`

	// LostUpdates counts acknowledged writes missing from the final
	// sessions: increments (counter below the acknowledged count, or two
	// acknowledged increments that returned the same value), list items
	// and lock-free keys.
	LostUpdates int `json:"lost_updates"`
	// LostUpdates by kind.
	LostIncrements  int `json:"lost_increments"`
	LostListItems   int `json:"lost_list_items"`
	LostLockFreeKey int `json:"lost_lockfree_keys"`
	// StuckLocks is StuckSessions + StuckWaits.
	StuckLocks int `json:"stuck_locks"`
	// StuckSessions: sessions still locked once every request finished,
	// by a request that succeeded (a lost release) or by none.
	StuckSessions int `json:"stuck_sessions"`
	// StuckWaits: requests whose wait included a stretch longer than
	// StuckWaitMs during which no request held their session's lock.
	StuckWaits  int     `json:"stuck_waits"`
	StuckWaitMs float64 `json:"stuck_wait_threshold_ms"`
	// StuckWaitsInFailover: waits that would be StuckWaits but whose
	// stretch without a holder lies within a failover time
	// (FailoverTime) of a fault: from the fault to the failover time
	// after it ended (for a node out longer than that, within a failover
	// time of its start or its end), a store may still be failing over
	// (docs/replication.md section 9), so these are reported, not
	// counted as stuck.
	StuckWaitsInFailover int `json:"stuck_waits_in_failover,omitempty"`
	// LockedAfterFailure: sessions locked at the end by a request that
	// failed (a lock whose write or release had no known outcome, or
	// could not be made, e.g. at a fault) with no later request of the
	// session to take it over: the next one would within a lease, so
	// these are reported, not counted as stuck (a wait for such a lock
	// longer than StuckWaitMs is a StuckWait).
	LockedAfterFailure int `json:"locked_after_failure,omitempty"`
	// FailedAfterFailover: requests that failed with a server error (5xx)
	// although sent more than a failover time (FailoverTime) after a
	// fault ended, or after a node fault began while it lasts, and within
	// no fault's window: issue 13's
	// availability (docs/replication.md section 9) says every one must
	// succeed. A violation when FailoverChecked: the run's store promises
	// it (memcached's witness scheme, alone or as tiered's cache);
	// otherwise only reported.
	// RequestsAfterFailover counts the requests sent in that time, those
	// the check looked at (none: it checked nothing).
	FailedAfterFailover   int  `json:"failed_after_failover"`
	RequestsAfterFailover int  `json:"requests_after_failover"`
	FailoverChecked       bool `json:"failover_checked,omitempty"`
	// FailedAfterFailoverFirst: the first few of FailedAfterFailover
	// (up to 5), with the error each was answered with.
	FailedAfterFailoverFirst []FailedRequest `json:"failed_after_failover_first,omitempty"`
	// FailedOnUnavailable: requests that would be FailedAfterFailover
	// but were for a session still unavailable at the end (counted in
	// SessionsUnavailable, a violation of its own), so reported apart.
	FailedOnUnavailable int `json:"failed_after_failover_on_unavailable,omitempty"`
	// SessionsLost: browsers whose session vanished or was replaced.
	SessionsLost int `json:"sessions_lost"`
	// SessionsUnavailable: sessions whose read-back at the end still
	// failed with provider.ErrUnavailable after its retries (the end of
	// a double fault may leave a session so: docs/replication.md section
	// 8). Their final values are unknown, so LostUpdates and
	// SessionsLost leave them out (a browser answered with another
	// session still counts as lost), and their requests' failures after
	// the failover time are FailedOnUnavailable, not
	// FailedAfterFailover; whether they ended locked is unknown, but
	// their requests' stuck waits and two holders are still counted. A
	// violation: a run with no double fault must leave every session
	// readable.
	SessionsUnavailable int `json:"sessions_unavailable"`
	// ExclusionViolations: pairs of exclusive handlers of one session
	// that ran at the same time.
	ExclusionViolations int `json:"exclusion_violations"`
	// HoldersAcrossRevival: pairs of exclusive handlers of one session
	// that ran at the same time because a revival from the durable tier
	// (tiered: the cache lost the record) unlocked the session and fenced
	// the earlier holder: its lock was of an older epoch (record.Epoch)
	// than the later one's, and its request failed (its commit refused).
	// By design (store/tiered's package documentation), not a violation;
	// the simulation's epochHolders counts them so.
	HoldersAcrossRevival int `json:"holders_across_revival,omitempty"`
	// CounterNotLinearizable: sessions whose counter history has no
	// linearization (issue 13: counter reads are linearizable), checked
	// with porcupine (stress/internal/counterlin): the acknowledged
	// increments (from the value returned less one), the acknowledged
	// reads (read and append) of the value returned, and the failed
	// increments that may have applied (no answer or a 5xx, the handler
	// having run or unknown: ErrOutcomeUnknown among them), which may
	// take effect at any time after they were sent (checkCounters). A
	// violation. CounterHistories counts the sessions checked,
	// CounterOps their operations (CounterOpsMax in the longest,
	// CounterMaybeOps of unknown outcome); CounterCheckMs is the
	// checker's time (CounterCheckMaxMs on one history).
	CounterNotLinearizable int     `json:"counter_not_linearizable"`
	CounterHistories       int     `json:"counter_histories"`
	CounterOps             int     `json:"counter_ops"`
	CounterOpsMax          int     `json:"counter_ops_max"`
	CounterMaybeOps        int     `json:"counter_maybe_ops"`
	CounterCheckMs         float64 `json:"counter_check_ms"`
	CounterCheckMaxMs      float64 `json:"counter_check_max_ms"`
	// CounterUnchecked: histories porcupine did not decide within its
	// bound (counterCheckTimeout): unchecked, not passed (Violations
	// does not count them, CounterVerdict says so, and
	// TestRealFaults fails on one).
	CounterUnchecked int `json:"counter_unchecked,omitempty"`
	// ExpiredRevived: with ExpiryProbes, sessions left idle past their
	// own short timeout (ExpiryTimeoutMs) while the run's faults
	// happened that a read-back through an app server, once every copy
	// must have expired, found with their old values (issue 13: an
	// expired session never comes back from a copy that outlived the
	// others). A violation. ExpiryProbes counts the probes' sessions,
	// ExpiryReads the read-backs (each session through every live app
	// server), ExpiryUnchecked those that failed (nothing known),
	// ExpiryWaitMs how long the run waited for the expiry after its
	// workload.
	ExpiredRevived int `json:"expired_session_revived"`
	// ExpiredUnavailable: read-backs of those sessions that an app
	// server answered with a server error (5xx: the store could not
	// decide whether the expired session exists), after the faults
	// healed and the failover time passed: issue 13's availability for a
	// browser coming back with an expired session's cookie. A violation
	// (expired_session_unavailable).
	ExpiredUnavailable int     `json:"expired_session_unavailable,omitempty"`
	ExpiryProbes       int     `json:"expiry_probes,omitempty"`
	ExpiryReads        int     `json:"expiry_reads,omitempty"`
	ExpiryUnchecked    int     `json:"expiry_unchecked,omitempty"`
	ExpiryTimeoutMs    float64 `json:"expiry_timeout_ms,omitempty"`
	ExpiryWaitMs       float64 `json:"expiry_wait_ms,omitempty"`
	// ExpiryReplaced: probes' sessions found gone while the probe still
	// wrote them, more than their timeout after the last write was sent
	// (a request held up by a fault: they may have expired; not a
	// violation; ExpiryReplacedGapMaxMs is the longest such gap, from
	// the last write's sending to the answer that found it gone). One
	// found gone sooner is lost, counted in SessionsLost.
	ExpiryReplaced         int     `json:"expiry_replaced,omitempty"`
	ExpiryReplacedGapMaxMs float64 `json:"expiry_replaced_gap_max_ms,omitempty"`
	// ExpirySkew*: with Config.ExpirySkew, the skew (ExpirySkewS, whole
	// seconds, signed) and the node it moved; its rounds (each a listing
	// of the node's items), the rounds the crawler was busy, the items
	// whose expiry it moved and, of them, those it expired at once. With
	// expiry probes on the memcached backend, each probe's session is
	// read in the skew's window (between the skewed node's copies' expiry
	// and the others'): ExpirySkewWindowReads such reads, of which
	// ExpirySkewLone found a single data copy on the nodes (the state
	// the window is for), ExpirySkewWindowFound found the session and
	// ExpirySkewWindowErrors failed (neither found nor not found). One
	// that found the session gone within its own timeout is counted in
	// SessionsLost.
	ExpirySkewS            int64 `json:"expiry_skew_s,omitempty"`
	ExpirySkewNode         int   `json:"expiry_skew_node,omitempty"`
	ExpirySkewRounds       int64 `json:"expiry_skew_rounds,omitempty"`
	ExpirySkewBusy         int64 `json:"expiry_skew_busy,omitempty"`
	ExpirySkewShifted      int64 `json:"expiry_skew_shifted,omitempty"`
	ExpirySkewLapsed       int64 `json:"expiry_skew_lapsed,omitempty"`
	ExpirySkewWindowReads  int   `json:"expiry_skew_window_reads,omitempty"`
	ExpirySkewLone         int   `json:"expiry_skew_lone,omitempty"`
	ExpirySkewWindowFound  int   `json:"expiry_skew_window_found,omitempty"`
	ExpirySkewWindowErrors int   `json:"expiry_skew_window_errors,omitempty"`
	// IdleSessions is Config.IdleSessions.
	IdleSessions int `json:"idle_sessions,omitempty"`
	// Spaced faults (Config.FaultSpacing): SpacedFaults faults
	// FaultSpacingMs apart (SpacedKinds says which), with the repair scan
	// every RepairEveryMs. The idle sessions' records were read right
	// after each fault (IdleChecksAfter times; IdleBrokenAfter sessions
	// not whole then, summed, and at least IdleBrokenAfterMin after each
	// fault) and right before each later one
	// (IdleChecksBefore times; RepairWindowExceeded sessions not whole
	// then, summed: the previous fault's damage not repaired within the
	// spacing, repair_window_exceeded).
	SpacedFaults         int     `json:"spaced_faults,omitempty"`
	FaultSpacingMs       float64 `json:"fault_spacing_ms,omitempty"`
	SpacedKinds          string  `json:"spaced_kinds,omitempty"`
	RepairEveryMs        float64 `json:"repair_every_ms,omitempty"`
	IdleChecksAfter      int     `json:"idle_checks_after,omitempty"`
	IdleBrokenAfter      int     `json:"idle_broken_after,omitempty"`
	IdleBrokenAfterMin   int     `json:"idle_broken_after_min,omitempty"`
	IdleChecksBefore     int     `json:"idle_checks_before,omitempty"`
	RepairWindowExceeded int     `json:"repair_window_exceeded,omitempty"`
	// FencedWritesRejected: commits refused because their lock had been
	// taken over (the fence working, not a violation).
	FencedWritesRejected int64 `json:"fenced_writes_rejected"`
	// UnackedCommits: increments stored although their request failed
	// (e.g. the answer was lost with a node). Not a violation.
	UnackedCommits int `json:"unacked_commits"`

	// Lock wait: from the request's arrival at the app server to its
	// handler's start (exclusive and read-only requests), measured by the
	// app server. Lock hold: from the handler's start to the end of its
	// release (exclusive requests). Latency: as the browsers saw it.
	WaitP50Ms    float64 `json:"wait_p50_ms"`
	WaitP99Ms    float64 `json:"wait_p99_ms"`
	WaitMaxMs    float64 `json:"wait_max_ms"`
	HoldP50Ms    float64 `json:"hold_p50_ms"`
	HoldP99Ms    float64 `json:"hold_p99_ms"`
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`

	// A burst's makespan is the time from its first request sent to its
	// last answer. MakespanMs is the SUM of the makespans of the bursts
	// whose requests all succeeded (bursts of different browsers run at
	// the same time, so it exceeds the run's wall time); IdealMakespanMs
	// sums what each burst needed at least: its exclusive handlers' time
	// serialized, or its longest handler if longer.
	MakespanMs      float64 `json:"makespan_ms"`
	IdealMakespanMs float64 `json:"ideal_makespan_ms"`
	MakespanRatio   float64 `json:"makespan_ratio"`
	BurstsMeasured  int     `json:"bursts_measured"`
	// BurstMakespanMs is the mean makespan of one burst. When the mix has
	// one route, SingleRequestMs is the median time of one request of it
	// with nothing else running, and BurstVsSingle compares the two.
	BurstMakespanMs float64 `json:"burst_makespan_ms"`
	SingleRequestMs float64 `json:"single_request_ms,omitempty"`
	BurstVsSingle   float64 `json:"burst_vs_single,omitempty"`

	// DurationMs is the workload's wall time; ThroughputRPS its requests
	// (bursts only) per second.
	DurationMs    float64 `json:"duration_ms"`
	ThroughputRPS float64 `json:"throughput_rps"`

	// TakeoverMs: with -crash-holder, the time from the crash to the next
	// request that took each crashed holder's session (the longest).
	TakeoverMs  float64   `json:"takeover_ms,omitempty"`
	TakeoversMs []float64 `json:"takeovers_ms,omitempty"`
	// RecoveryMs: with -kill-node or -kill-master, the time from the kill
	// to the answer of the last workload request that failed after it (0
	// when none failed). Recovered: the failures ended, a request sent a
	// second or more after that answer succeeded; false when requests
	// failed until the run ended.
	RecoveryMs float64 `json:"recovery_ms,omitempty"`
	Recovered  bool    `json:"recovered,omitempty"`

	// Findings say where the lock checks found a violation (at most 20):
	// the session (the start of its id) and the requests, in ms from the
	// workload's start.
	Findings []string `json:"findings,omitempty"`

	// Routes has per-route figures; Events the faults injected.
	Routes map[string]RouteStats `json:"routes"`
	Events []Event               `json:"events,omitempty"`

	// UnreachedFaultsAllowed: a fault configured but never reached (an
	// Event with Missed set) does not fail the run
	// (Config.AllowUnreachedFaults).
	UnreachedFaultsAllowed bool `json:"unreached_faults_allowed,omitempty"`

	timeline timeline // for the HTML report
}

// FailedRequest is one request that failed, as a report shows it: times
// in ms from the workload's start, the session by the start of its id
// only.
type FailedRequest struct {
	Proc    int     `json:"proc"`
	Route   string  `json:"route"`
	Session string  `json:"session,omitempty"`
	Status  int     `json:"status"`
	SentMs  float64 `json:"sent_ms"`
	RecvMs  float64 `json:"recv_ms"`
	// Fault is the last fault injected before it was sent (its kind,
	// target and time), AfterFaultMs how long before the send that fault
	// began; Fault is empty when none was.
	Fault        string  `json:"fault,omitempty"`
	AfterFaultMs float64 `json:"after_fault_ms,omitempty"`
	// Text is the answer's body (request.Text), Err the errors its app
	// server's session middleware logged for it (timing.Err): the store's
	// error behind a 500.
	Text string `json:"text,omitempty"`
	Err  string `json:"err,omitempty"`
}

// describe says f in one line.
func (f FailedRequest) describe() string {
	s := fmt.Sprintf("app %d %s", f.Proc, f.Route)
	if f.Session != "" {
		s += ", session " + f.Session
	}
	s += fmt.Sprintf(", sent at %.0f ms", f.SentMs)
	if f.Fault != "" {
		s += fmt.Sprintf(" (%.0f ms after the last fault, %s)", f.AfterFaultMs, f.Fault)
	}
	s += fmt.Sprintf(", answered at %.0f ms, status %d", f.RecvMs, f.Status)
	if f.Text != "" {
		s += fmt.Sprintf(": %q", f.Text)
	}
	if f.Err != "" {
		s += fmt.Sprintf("; server: %q", f.Err)
	}
	return s
}

// RouteStats are per-route figures.
type RouteStats struct {
	// Requests sent and answered with 2xx; waits and latencies as in
	// Result; SingleMs: one request of the route with nothing else
	// running (median of three).
	Requests     int     `json:"requests"`
	OK           int     `json:"ok"`
	WaitP50Ms    float64 `json:"wait_p50_ms"`
	WaitP99Ms    float64 `json:"wait_p99_ms"`
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	SingleMs     float64 `json:"single_ms,omitempty"`
}

// Event is a fault injected during the run (or one that was configured
// but never reached).
type Event struct {
	// AtMs is the time since the workload started.
	AtMs float64 `json:"at_ms"`
	// Kind is the fault's kind, one of the Fault* constants; reports
	// colour and label markers by it.
	Kind string `json:"kind"`
	// Target names what the fault hit ("memcached node 1", "app 2"),
	// empty when it hit no single thing.
	Target string `json:"target,omitempty"`
	// DurationMs is how long the fault lasted, for faults with a duration
	// (pauses, partitions); 0 for instant ones.
	DurationMs float64 `json:"duration_ms,omitempty"`
	// Missed is set when the fault was configured but the workload ended
	// before its moment came: nothing was injected.
	Missed bool `json:"missed,omitempty"`
	// What happened, in words.
	What string `json:"what"`
}

// The kinds of faults the harness injects (Event.Kind).
const (
	FaultKillNode    = "kill_node"
	FaultRestartNode = "restart_node"
	FaultFlush       = "flush"
	FaultCrashHolder = "crash_holder"
	FaultPauseNode   = "pause_node"  // a managed memcached node SIGSTOPped, then SIGCONTed
	FaultPartition   = "partition"   // a node unreachable from one app process
	FaultPauseApp    = "pause_app"   // an app process SIGSTOPped past its lease
	FaultError       = "fault_error" // injecting a fault failed
)

// Violations returns the names of the invariants the run violated. A fault
// that was configured but never reached counts as "faults_not_reached"
// (the run did not test what it was asked to), unless
// UnreachedFaultsAllowed.
func (r *Result) Violations() []string {
	var v []string
	for _, c := range []struct {
		broken bool
		name   string
	}{
		{r.LostUpdates > 0, "lost_updates"},
		{r.StuckLocks > 0, "stuck_locks"},
		{r.SessionsLost > 0, "sessions_lost"},
		{r.SessionsUnavailable > 0, "sessions_unavailable"},
		{r.FailoverChecked && r.FailedAfterFailover > 0, "failed_after_failover"},
		{r.ExclusionViolations > 0, "exclusion_violations"},
		{r.CounterNotLinearizable > 0, "counter_not_linearizable"},
		{r.ExpiredRevived > 0, "expired_session_revived"},
		{r.ExpiredUnavailable > 0, "expired_session_unavailable"},
		{r.RepairWindowExceeded > 0, "repair_window_exceeded"},
	} {
		if c.broken {
			v = append(v, c.name)
		}
	}
	if len(r.UnreachedFaults()) > 0 && !r.UnreachedFaultsAllowed {
		v = append(v, "faults_not_reached")
	}
	return v
}

// CounterVerdict says what the counter check found, in words: "not
// linearizable" when a history broke it, "unchecked" when one was not
// decided in time (nothing then is known of it: not a pass), else
// "linearizable" ("no history" when there was none).
func (r *Result) CounterVerdict() string {
	switch {
	case r.CounterNotLinearizable > 0:
		return fmt.Sprintf("not linearizable (%d of %d sessions)", r.CounterNotLinearizable, r.CounterHistories)
	case r.CounterUnchecked > 0:
		return fmt.Sprintf("unchecked (%d of %d sessions not decided within %v)", r.CounterUnchecked, r.CounterHistories, counterCheckTimeout)
	case r.CounterHistories == 0:
		return "no history"
	}
	return "linearizable"
}

// UnreachedFaults returns the faults that were configured but never
// reached.
func (r *Result) UnreachedFaults() []Event {
	var out []Event
	for _, e := range r.Events {
		if e.Missed {
			out = append(out, e)
		}
	}
	return out
}

// MarshalJSON adds the verdict to the JSON form: "pass" and
// "violated_invariants" (the names Violations returns, [] when none).
func (r *Result) MarshalJSON() ([]byte, error) {
	type plain Result
	v := r.Violations()
	if v == nil {
		v = []string{}
	}
	return json.Marshal(struct {
		Pass     bool     `json:"pass"`
		Violated []string `json:"violated_invariants"`
		*plain
	}{r.OK(), v, (*plain)(r)})
}

// MarshalJSON adds "pass" (both runs passed) and "violated_invariants"
// (each run's, prefixed with its strategy) to the comparison's JSON form.
func (c *Comparison) MarshalJSON() ([]byte, error) {
	type plain Comparison
	v := []string{}
	for _, r := range []*Result{c.Ours, c.ASPNET} {
		for _, name := range r.Violations() {
			v = append(v, r.Mode+": "+name)
		}
	}
	return json.Marshal(struct {
		Pass     bool     `json:"pass"`
		Violated []string `json:"violated_invariants"`
		*plain
	}{c.OK(), v, (*plain)(c)})
}

// OK reports whether every invariant held.
func (r *Result) OK() bool { return len(r.Violations()) == 0 }

// Comparison is the result of -compare: the same workload with our
// waiting strategy and with ASP.NET's.
type Comparison struct {
	// Ours ran with lock.Adaptive, ASPNET with lock.ASPNET.
	Ours   *Result `json:"ours"`
	ASPNET *Result `json:"aspnet"`
	// Ratios are ASP.NET's figure divided by ours: how many times better
	// ours is.
	Ratios Ratios `json:"ratios"`
}

// Ratios compare ASP.NET's strategy to ours: how many times better ours
// is.
type Ratios struct {
	// Theirs / ours of the p50 wait, the p99 wait and the summed burst
	// makespan.
	WaitP50  float64 `json:"wait_p50"`
	WaitP99  float64 `json:"wait_p99"`
	Makespan float64 `json:"makespan"`
	// Ours / theirs of the throughput.
	Throughput float64 `json:"throughput"`
}

// OK reports whether both runs kept every invariant.
func (c *Comparison) OK() bool { return c.Ours.OK() && c.ASPNET.OK() }

// ratio returns theirs / ours, or 0 when ours is 0 (no ratio to give).
func ratio(theirs, ours float64) float64 {
	if ours <= 0 {
		return 0
	}
	return theirs / ours
}

// compare builds the comparison of two runs.
func compare(ours, aspnet *Result) *Comparison {
	return &Comparison{Ours: ours, ASPNET: aspnet, Ratios: Ratios{
		WaitP50:    ratio(aspnet.WaitP50Ms, ours.WaitP50Ms),
		WaitP99:    ratio(aspnet.WaitP99Ms, ours.WaitP99Ms),
		Makespan:   ratio(aspnet.MakespanMs, ours.MakespanMs),
		Throughput: ratio(ours.ThroughputRPS, aspnet.ThroughputRPS),
	}}
}

// percentile returns the p-th percentile (nearest rank) of xs; 0 for none.
// xs is sorted in place.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	rank = max(1, min(rank, len(xs)))
	return xs[rank-1]
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }
