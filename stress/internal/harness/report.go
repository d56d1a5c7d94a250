package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// figure is one line of a run's summary: the terminal prints them as a
// table, and the HTML report shows every one of them.
type figure struct {
	Name, Value string
	Bad         bool // a violated invariant
}

// figures returns a run's summary lines, in the order the terminal prints
// them.
func figures(r *Result) []figure {
	var f []figure
	p := func(name, format string, args ...any) {
		f = append(f, figure{Name: name, Value: fmt.Sprintf(format, args...)})
	}
	p("run", "backend %s, %d app server(s), %d sessions x bursts of %d, %d conns/browser, wait %s, lease %.0f ms, seed %d",
		r.Backend, r.Procs, r.Sessions, r.Burst, r.Conns, r.Mode, r.LeaseMs, r.Seed)
	p("mix", "%s", r.Mix)
	p("requests", "%s", requestsLine(r))
	if len(r.FailedByReason) > 0 {
		p("failed by reason", "%s", formatReasons(r.FailedByReason))
	}
	p("throughput", "%.0f req/s over %.2f s", r.ThroughputRPS, r.DurationMs/1000)
	p("lock wait", "p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.WaitP50Ms, r.WaitP99Ms, r.WaitMaxMs)
	p("lock hold", "p50 %.2f ms, p99 %.2f ms", r.HoldP50Ms, r.HoldP99Ms)
	p("latency", "p50 %.2f ms, p99 %.2f ms (browser side)", r.LatencyP50Ms, r.LatencyP99Ms)
	p("burst makespan", "%s", burstLine(r))
	p("bursts summed", "%s", makespanSumLine(r))
	if len(r.TakeoversMs) > 0 {
		p("crash takeover", "max %.0f ms over %d session(s)", r.TakeoverMs, len(r.TakeoversMs))
	}
	for _, e := range r.Events {
		p("fault", "%s", e.describe())
		f[len(f)-1].Bad = e.Missed && !r.UnreachedFaultsAllowed
	}
	bad := func(cond bool) { f[len(f)-1].Bad = cond }
	p("lost_updates", "%d (increments %d, list items %d, lock-free keys %d)", r.LostUpdates, r.LostIncrements, r.LostListItems, r.LostLockFreeKey)
	bad(r.LostUpdates > 0)
	p("stuck_locks", "%d (sessions locked at the end %d, waits > %.0f ms with no holder %d; %d more within a failover time of a fault; %d locked at the end by a failed request, for the next one to take over)", r.StuckLocks, r.StuckSessions, r.StuckWaitMs, r.StuckWaits, r.StuckWaitsInFailover, r.LockedAfterFailure)
	bad(r.StuckLocks > 0)
	p("failed_after_failover", "%s", failoverLine(r))
	bad(r.FailoverChecked && r.FailedAfterFailover > 0)
	if !r.FailoverChecked {
		// Where the store promises failover, each is a finding below.
		for _, x := range r.FailedAfterFailoverFirst {
			p("failed after failover", "%s", x.describe())
		}
	}
	p("sessions_lost", "%d", r.SessionsLost)
	bad(r.SessionsLost > 0)
	p("sessions_unavailable", "%d (sessions still unavailable when read back at the end: their final values unchecked)", r.SessionsUnavailable)
	bad(r.SessionsUnavailable > 0)
	p("exclusion_violations", "%d", r.ExclusionViolations)
	bad(r.ExclusionViolations > 0)
	p("counter_not_linearizable", "%d: %s", r.CounterNotLinearizable, counterLine(r))
	bad(r.CounterNotLinearizable > 0 || r.CounterUnchecked > 0)
	if r.ExpiryProbes > 0 {
		p("expired_session_revived", "%d: %s", r.ExpiredRevived, expiryLine(r))
		bad(r.ExpiredRevived > 0 || r.ExpiryUnchecked > 0)
		p("expired_session_unavailable", "%d (read-backs of an expired session answered with a server error)", r.ExpiredUnavailable)
		bad(r.ExpiredUnavailable > 0)
	}
	if r.SpacedFaults > 0 {
		p("repair_window_exceeded", "%d: %s", r.RepairWindowExceeded, spacedLine(r))
		bad(r.RepairWindowExceeded > 0)
	}
	p("fenced_writes_rejected", "%d", r.FencedWritesRejected)
	if r.HoldersAcrossRevival > 0 {
		p("holders_across_revival", "%d (a revival from the durable tier fenced a holder of the lost cache's lock while a new one ran: by design)", r.HoldersAcrossRevival)
	}
	p("unacked_commits", "%d", r.UnackedCommits)
	for _, x := range r.Findings {
		p("finding", "%s", x)
		bad(true)
	}
	return f
}

// routeNames returns the run's routes, sorted.
func routeNames(r *Result) []string {
	names := make([]string, 0, len(r.Routes))
	for name := range r.Routes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// verdict is the run's verdict line, as the terminal and the HTML report
// say it.
func verdict(r *Result) string {
	if v := r.Violations(); len(v) > 0 {
		return "FAIL: invariants violated: " + strings.Join(v, ", ")
	}
	return "PASS: every invariant held"
}

// aloneNote explains the route table's "alone ms" column.
const aloneNote = "alone ms: one request of the route with nothing else running, median of 3"

// WriteSummary writes a run's summary table.
func WriteSummary(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range figures(r) {
		fmt.Fprintf(tw, "%s\t%s\n", f.Name, f.Value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route (mode)\trequests\tok\twait p50 ms\twait p99 ms\tlatency p50 ms\tlatency p99 ms\talone ms\t")
	for _, name := range routeNames(r) {
		s := r.Routes[name]
		fmt.Fprintf(tw, "%s (%s)\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, routeMode(name), s.Requests, s.OK, s.WaitP50Ms, s.WaitP99Ms, s.LatencyP50Ms, s.LatencyP99Ms, s.SingleMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "  (%s)\n", aloneNote)
	_, err := fmt.Fprintln(w, verdict(r))
	if err == nil && unreachedFails(r) {
		_, err = fmt.Fprintln(w, "  ("+unreachedHint+")")
	}
	return err
}

// WriteComparison writes both runs of a comparison and their ratios.
func WriteComparison(w io.Writer, c *Comparison) error {
	for _, r := range []*Result{c.Ours, c.ASPNET} {
		if _, err := fmt.Fprintf(w, "== wait strategy %s ==\n", r.Mode); err != nil {
			return err
		}
		if err := WriteSummary(w, r); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "== comparison\tours\taspnet\taspnet / ours\t")
	fmt.Fprintf(tw, "p50 wait ms\t%.2f\t%.2f\t%.1f x\t\n", c.Ours.WaitP50Ms, c.ASPNET.WaitP50Ms, c.Ratios.WaitP50)
	fmt.Fprintf(tw, "p99 wait ms\t%.2f\t%.2f\t%.1f x\t\n", c.Ours.WaitP99Ms, c.ASPNET.WaitP99Ms, c.Ratios.WaitP99)
	fmt.Fprintf(tw, "summed burst makespan ms\t%.1f\t%.1f\t%.1f x\t\n", c.Ours.MakespanMs, c.ASPNET.MakespanMs, c.Ratios.Makespan)
	fmt.Fprintf(tw, "throughput req/s\t%.0f\t%.0f\t%.2f x\t\n", c.Ours.ThroughputRPS, c.ASPNET.ThroughputRPS, ratio(c.ASPNET.ThroughputRPS, c.Ours.ThroughputRPS))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range c.sentences() {
		if _, err := fmt.Fprintln(w, s); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes v (a *Result or a *Comparison) as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// requestsLine says how many requests the run sent, against its target.
func requestsLine(r *Result) string {
	target := "no request bound"
	if r.RequestsTarget > 0 {
		target = fmt.Sprintf("target %d", r.RequestsTarget)
	}
	return fmt.Sprintf("%d workload (%s) + %d setup (first page loads, probes) = %d total; %d ok, %d failed",
		r.RequestsWorkload, target, r.RequestsSetup, r.RequestsTotal, r.RequestsOK, r.RequestsFailed)
}

// burstLine describes one burst's makespan: first request sent to last
// answer.
func burstLine(r *Result) string {
	s := fmt.Sprintf("mean %.2f ms from a burst's first request sent to its last answer", r.BurstMakespanMs)
	if r.SingleRequestMs > 0 {
		s += fmt.Sprintf(" = %.2f x one request alone (%.2f ms)", r.BurstVsSingle, r.SingleRequestMs)
	}
	return s
}

// makespanSumLine describes the summed makespan of the measured bursts,
// against the least they needed.
func makespanSumLine(r *Result) string {
	return fmt.Sprintf("%.1f ms over %d bursts (they overlap: not wall time) = %.2f x the least they needed (%.1f ms)",
		r.MakespanMs, r.BurstsMeasured, r.MakespanRatio, r.IdealMakespanMs)
}

// sentences says the comparison's ratios in words.
func (c *Comparison) sentences() []string {
	o, a := c.Ours, c.ASPNET
	out := []string{
		fmt.Sprintf("With its fixed 500 ms polling, ASP.NET's median lock wait was %s ours (%s vs %s), and its p99 lock wait %s ours (%s vs %s).",
			relative(a.WaitP50Ms, o.WaitP50Ms, "longer than", "shorter than"), formatMs(a.WaitP50Ms), formatMs(o.WaitP50Ms),
			relative(a.WaitP99Ms, o.WaitP99Ms, "longer than", "shorter than"), formatMs(a.WaitP99Ms), formatMs(o.WaitP99Ms)),
		fmt.Sprintf("ASP.NET's bursts, first request to last answer and summed, took %s ours (%s vs %s); ASP.NET's throughput was %s ours (%.0f vs %.0f requests per second).",
			relative(a.MakespanMs, o.MakespanMs, "longer than", "shorter than"), formatMs(a.MakespanMs), formatMs(o.MakespanMs),
			relative(a.ThroughputRPS, o.ThroughputRPS, "higher than", "lower than"), a.ThroughputRPS, o.ThroughputRPS),
	}
	if n := min(o.RequestsWorkload, a.RequestsWorkload); n < smallSample {
		out = append(out, fmt.Sprintf("A small sample: %d requests per strategy (under %d), so p99 is about the largest value and throughput over so short a run is not a stable figure; run with more -requests for figures to rely on.", n, smallSample))
	}
	return out
}

// smallSample is the number of requests under which the comparison warns
// that its percentiles and rates are not stable.
const smallSample = 100

// relative says how x compares with y in words: "2.5x longer than",
// "2.5x shorter than" (more, less), "about the same as".
func relative(x, y float64, more, less string) string {
	switch {
	case x <= 0 || y <= 0:
		return "(no ratio: a figure is 0) against"
	case x/y >= 1.05:
		return fmt.Sprintf("%.1fx %s", x/y, more)
	case y/x >= 1.05:
		return fmt.Sprintf("%.1fx %s", y/x, less)
	}
	return "about the same as"
}

// unreachedHint tells what to do about a fault that was never reached.
const unreachedHint = "a fault was never reached: give the workload more requests or time, or pass -allow-unreached-faults"

// unreachedFails reports whether an unreached fault fails r.
func unreachedFails(r *Result) bool {
	return len(r.UnreachedFaults()) > 0 && !r.UnreachedFaultsAllowed
}

// failoverLine says how many requests failed after the failover time, and
// whether the run's store promises none does.
func failoverLine(r *Result) string {
	if !slices.ContainsFunc(r.Events, func(e Event) bool { return !e.Missed && e.Kind != FaultError }) {
		return "0 (no fault injected)"
	}
	s := fmt.Sprintf("%d of %d (requests sent more than %.1f s after a fault ended, or after a node fault began while it lasted, that failed with a 5xx", r.FailedAfterFailover, r.RequestsAfterFailover, FailoverTime.Seconds())
	if !r.FailoverChecked {
		s += "; not an invariant of this store"
	}
	return s + onUnavailableNote(r) + ")"
}

// onUnavailableNote says how many requests failed after the failover
// time on sessions unavailable at the end (counted apart), or nothing.
func onUnavailableNote(r *Result) string {
	if r.FailedOnUnavailable == 0 {
		return ""
	}
	return fmt.Sprintf("; %d more on sessions unavailable at the end, counted in sessions_unavailable", r.FailedOnUnavailable)
}

// counterLine says what the counter check did: its verdict, the histories
// and operations it checked, and its time.
func counterLine(r *Result) string {
	return fmt.Sprintf("%s; %d session histories, %d operations (longest %d, %d of unknown outcome), checked in %.0f ms",
		r.CounterVerdict(), r.CounterHistories, r.CounterOps, r.CounterOpsMax, r.CounterMaybeOps, r.CounterCheckMs)
}

// expiryLine says what the expiry probes did.
func expiryLine(r *Result) string {
	s := fmt.Sprintf("read-backs of %d probe sessions (own timeout %.0f ms, idle past it while the faults happened) that found the old session, of %d (waited %.0f ms for the expiry)",
		r.ExpiryProbes, r.ExpiryTimeoutMs, r.ExpiryReads, r.ExpiryWaitMs)
	if r.ExpiryUnchecked > 0 {
		s += fmt.Sprintf("; %d failed: unchecked", r.ExpiryUnchecked)
	}
	if r.ExpiryReplaced > 0 {
		s += fmt.Sprintf("; %d probe sessions found gone while written, each more than their timeout after the last write was sent (up to %.0f ms): they may have expired", r.ExpiryReplaced, r.ExpiryReplacedGapMaxMs)
	}
	if r.ExpirySkewS != 0 {
		s += fmt.Sprintf("; expiry skew %+ds on node %d: %d items moved (%d expired at once) in %d rounds (%d busy)",
			r.ExpirySkewS, r.ExpirySkewNode, r.ExpirySkewShifted, r.ExpirySkewLapsed, r.ExpirySkewRounds, r.ExpirySkewBusy)
		if r.ExpirySkewWindowReads > 0 {
			s += fmt.Sprintf("; read in its window: %d probe sessions, %d with a single data copy left, %d found, %d failed", r.ExpirySkewWindowReads, r.ExpirySkewLone, r.ExpirySkewWindowFound, r.ExpirySkewWindowErrors)
		}
	}
	return s
}
