package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteSummary writes a run's summary table.
func WriteSummary(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("run\tbackend %s, %d app server(s), %d sessions x bursts of %d, %d conns/browser, wait %s, lease %.0f ms, seed %d",
		r.Backend, r.Procs, r.Sessions, r.Burst, r.Conns, r.Mode, r.LeaseMs, r.Seed)
	p("mix\t%s", r.Mix)
	p("requests\t%d total, %d ok, %d failed", r.RequestsTotal, r.RequestsOK, r.RequestsFailed)
	if len(r.FailedByReason) > 0 {
		p("failed by reason\t%s", formatReasons(r.FailedByReason))
	}
	p("throughput\t%.0f req/s over %.2f s", r.ThroughputRPS, r.DurationMs/1000)
	p("lock wait\tp50 %.2f ms, p99 %.2f ms, max %.2f ms", r.WaitP50Ms, r.WaitP99Ms, r.WaitMaxMs)
	p("lock hold\tp50 %.2f ms, p99 %.2f ms", r.HoldP50Ms, r.HoldP99Ms)
	p("latency\tp50 %.2f ms, p99 %.2f ms (browser side)", r.LatencyP50Ms, r.LatencyP99Ms)
	p("makespan\t%.1f ms over %d bursts = %.2f x ideal (%.1f ms)", r.MakespanMs, r.BurstsMeasured, r.MakespanRatio, r.IdealMakespanMs)
	if r.SingleRequestMs > 0 {
		p("burst\tmean makespan %.2f ms = %.2f x a single request (%.2f ms)", r.BurstMakespanMs, r.BurstVsSingle, r.SingleRequestMs)
	} else {
		p("burst\tmean makespan %.2f ms", r.BurstMakespanMs)
	}
	if len(r.TakeoversMs) > 0 {
		p("crash takeover\tmax %.0f ms over %d session(s)", r.TakeoverMs, len(r.TakeoversMs))
	}
	for _, e := range r.Events {
		p("fault\tat %.0f ms: %s", e.AtMs, e.What)
	}
	p("lost_updates\t%d (increments %d, list items %d, lock-free keys %d)", r.LostUpdates, r.LostIncrements, r.LostListItems, r.LostLockFreeKey)
	p("stuck_locks\t%d (sessions locked at the end %d, waits > %.0f ms with no holder %d)", r.StuckLocks, r.StuckSessions, r.StuckWaitMs, r.StuckWaits)
	p("sessions_lost\t%d", r.SessionsLost)
	p("exclusion_violations\t%d", r.ExclusionViolations)
	p("fenced_writes_rejected\t%d", r.FencedWritesRejected)
	p("unacked_commits\t%d", r.UnackedCommits)
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\trequests\tok\twait p50 ms\twait p99 ms\tlatency p50 ms\tlatency p99 ms\tsingle ms\t")
	names := make([]string, 0, len(r.Routes))
	for name := range r.Routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := r.Routes[name]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, s.Requests, s.OK, s.WaitP50Ms, s.WaitP99Ms, s.LatencyP50Ms, s.LatencyP99Ms, s.SingleMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v := r.Violations(); len(v) > 0 {
		_, err := fmt.Fprintf(w, "FAIL: invariants violated: %s\n", strings.Join(v, ", "))
		return err
	}
	_, err := fmt.Fprintln(w, "PASS: every invariant held")
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
	fmt.Fprintf(tw, "makespan ms\t%.1f\t%.1f\t%.1f x\t\n", c.Ours.MakespanMs, c.ASPNET.MakespanMs, c.Ratios.Makespan)
	return tw.Flush()
}

// WriteJSON writes v (a *Result or a *Comparison) as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
