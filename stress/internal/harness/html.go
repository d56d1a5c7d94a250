package harness

import (
	_ "embed"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// The report's stylesheet and script, inlined into every report: a report
// is one file that opens without network.
var (
	//go:embed report.css
	reportCSS string
	//go:embed report.js
	reportJS string
)

// WriteHTML writes a self-contained HTML report: of one run, or of a
// comparison when given two (ours, then ASP.NET's). It leads with the
// verdict and the invariants, then the faults, the key figures, a timeline
// with one lane per session (see timeline for the sampling rule), the
// distributions, the per-route table and every figure the terminal
// prints. Its CSS and JavaScript are inline and its charts inline SVG, so
// it opens without network and prints to PDF with the verdict as text.
func WriteHTML(w io.Writer, title string, results ...*Result) error {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</title>\n<style>\n")
	b.WriteString(reportCSS)
	b.WriteString("</style></head><body>\n")
	switch len(results) {
	case 0:
		b.WriteString("<p>No runs.</p>\n")
	case 2:
		writeComparisonPage(&b, title, compare(results[0], results[1]))
	default:
		for _, r := range results {
			writeRunPage(&b, title, r)
		}
	}
	b.WriteString("<script>\n")
	b.WriteString(reportJS)
	b.WriteString("</script>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// esc escapes text for HTML.
func esc(s string) string { return html.EscapeString(s) }

// writeVerdict writes the banner: the verdict first, as text.
func writeVerdict(b *strings.Builder, title string, pass bool, text, sub string) {
	cls := "pass"
	if !pass {
		cls = "fail"
	}
	fmt.Fprintf(b, "<header class=\"verdict %s\"><h1 class=\"verdict-text\">%s</h1><p class=\"title\">%s</p>", cls, esc(text), esc(title))
	if sub != "" {
		fmt.Fprintf(b, "<p class=\"sub\">%s</p>", esc(sub))
	}
	b.WriteString("</header>\n")
}

func writeRunPage(b *strings.Builder, title string, r *Result) {
	writeVerdict(b, title, r.OK(), verdict(r), runLine(r))
	b.WriteString("<main>\n<div class=\"cols\">\n<section><h2>Invariants</h2>\n")
	writeInvariants(b, r)
	b.WriteString("</section>\n<section><h2>Faults</h2>\n")
	writeFaults(b, r)
	b.WriteString("</section>\n</div>\n<section><h2>Key figures</h2>\n")
	writeCards(b, r)
	b.WriteString("</section>\n")
	writeTimeline(b, []*Result{r}, nil)
	writeDetail(b, r)
	b.WriteString("<section><h2>Distributions</h2><div class=\"charts\">\n")
	tl := r.timeline
	writeCDF(b, "Lock wait (exclusive and read-only requests)", []series{{"this run", "#e08a00", tl.Waits}})
	writeCDF(b, "Lock hold (exclusive requests)", []series{{"this run", "#c0392b", tl.Holds}})
	writeCDF(b, "Latency seen by the browsers", []series{{"this run", "#1f77b4", tl.Latencies}})
	b.WriteString("</div></section>\n<section><h2>Routes</h2>\n")
	writeRoutes(b, r)
	b.WriteString("</section>\n<section><h2>Every figure the terminal prints</h2>\n")
	writeFigures(b, r)
	b.WriteString("</section>\n")
	writeGlossary(b)
	b.WriteString("</main>\n")
}

func writeComparisonPage(b *strings.Builder, title string, c *Comparison) {
	text := "PASS: every invariant held in both runs"
	if !c.OK() {
		var parts []string
		for _, r := range []*Result{c.Ours, c.ASPNET} {
			if v := r.Violations(); len(v) > 0 {
				parts = append(parts, r.Mode+": "+strings.Join(v, ", "))
			}
		}
		text = "FAIL: invariants violated: " + strings.Join(parts, "; ")
	}
	writeVerdict(b, title, c.OK(), text, "Ours (adaptive waiting) against ASP.NET (fixed 500 ms polls), on the same workload: "+workloadLine(c.Ours))
	b.WriteString("<main>\n<section><h2>In words</h2>\n")
	for _, s := range c.sentences() {
		fmt.Fprintf(b, "<p class=\"words\">%s</p>\n", esc(s))
	}
	b.WriteString("</section>\n<section><h2>Side by side</h2><div class=\"charts\">\n")
	o, a := c.Ours, c.ASPNET
	oursName, aspName := "ours (adaptive)", "ASP.NET (500 ms polls)"
	pair := func(name, unit string, ov, av float64, better string) {
		writeBars(b, name, unit, better, []barValue{{oursName, oursColor, ov}, {aspName, aspnetColor, av}})
	}
	pair("p50 lock wait", "ms", o.WaitP50Ms, a.WaitP50Ms, "lower is better")
	pair("p99 lock wait", "ms", o.WaitP99Ms, a.WaitP99Ms, "lower is better")
	pair("summed burst makespan", "ms", o.MakespanMs, a.MakespanMs, "lower is better")
	pair("throughput", "req/s", o.ThroughputRPS, a.ThroughputRPS, "higher is better")
	writeCDF(b, "Lock wait, both strategies", []series{{oursName, oursColor, o.timeline.Waits}, {aspName, aspnetColor, a.timeline.Waits}})
	writeCDF(b, "Latency seen by the browsers, both strategies", []series{{oursName, oursColor, o.timeline.Latencies}, {aspName, aspnetColor, a.timeline.Latencies}})
	b.WriteString("</div></section>\n")
	writeTimeline(b, []*Result{o, a}, []string{oursName, aspName})
	writeZoom(b, o, a, oursName)
	b.WriteString("<div class=\"cols\">\n")
	for i, r := range []*Result{o, a} {
		fmt.Fprintf(b, "<section><h2>%s</h2><p class=\"verdict-line %s\">%s</p>\n<h3>Invariants</h3>\n", esc([]string{oursName, aspName}[i]), passClass(r.OK()), esc(verdict(r)))
		writeInvariants(b, r)
		b.WriteString("<h3>Faults</h3>\n")
		writeFaults(b, r)
		b.WriteString("<h3>Routes</h3>\n")
		writeRoutes(b, r)
		b.WriteString("<h3>Every figure the terminal prints</h3>\n")
		writeFigures(b, r)
		b.WriteString("</section>\n")
	}
	b.WriteString("</div>\n")
	writeGlossary(b)
	b.WriteString("</main>\n")
}

const (
	oursColor   = "#1f77b4"
	aspnetColor = "#d62728"
)

func passClass(ok bool) string {
	if ok {
		return "good"
	}
	return "bad"
}

// runLine is a run's settings in one line.
func runLine(r *Result) string {
	return workloadLine(r) + ", wait " + r.Mode
}

// workloadLine is a run's settings but its waiting strategy, in one line.
func workloadLine(r *Result) string {
	return fmt.Sprintf("backend %s, %d app server(s), %d sessions x bursts of %d, %d conns/browser, lease %.0f ms, mix %s, seed %d",
		r.Backend, r.Procs, r.Sessions, r.Burst, r.Conns, r.LeaseMs, r.Mix, r.Seed)
}

// glossary explains the reports' terms once.
var glossary = [][2]string{
	{"lock wait", "from a request's arrival at the app server to its handler's start, for exclusive and read-only requests."},
	{"lock hold", "an exclusive handler's run, its commit and the lock's release."},
	{"alone", "how long one request of the route took with nothing else running (measured before the workload)."},
	{"burst makespan", "from a burst's first request sent to its last answer."},
	{"bursts summed, x the least they needed", "the bursts' makespans added up, against the sum of each request's alone time: 19x means the requests spent about 95% of that time queued (in the browser, for the lock, for the server)."},
	{"stuck_locks' wait limit", "one lease (the time after which a dead holder's lock is broken) + one poll interval of the strategy (50 ms ours, 500 ms ASP.NET's) + a tenth of the lease for scheduling: so it differs between the strategies. A stretch without a holder from a fault until 1.5 s (the memcached store's failover time) after it ended (for a node paused or cut off longer than that, within 1.5 s of its start or its end) is counted apart, not as stuck."},
	{"sessions_unavailable", "sessions whose read of the final state after the run still failed unavailable after its retries (about a second): the end of a double fault may leave a session so. Their final values are unknown, so lost_updates and sessions_lost leave them out, and their requests that failed after the failover time are counted apart from failed_after_failover; their requests' waits and holders, and every other session, are still judged. A violation: a single fault must leave every session readable."},
	{"counter_not_linearizable", "each session's counter history checked with porcupine: acknowledged increments (from the value returned less one), acknowledged reads (read, append) of the value returned, and failed increments that may have applied (no answer or a 5xx after their handler ran, or no record of them) as increments that may take effect at any time after they were sent; 4xx answers (409: fenced) and requests whose handler never ran wrote nothing and are left out. A history porcupine cannot decide within its bound is unchecked, not passed."},
	{"expired_session_revived", "with -expiry-probes: sessions of a short own timeout written until a point of the run's first half, then left idle across the faults, read back through every app server once every copy must have expired (the store's expiry bound after their last request and after the last fault ended): each must be answered with a new session, never its own."},
	{"unacked_commits", "increments stored although their request failed: the answer was lost, not the write; not a violation."},
	{"fenced_writes_rejected", "commits refused because the lock had been taken over meanwhile: the fence working; not a violation."},
	{"holders_across_revival", "pairs of exclusive handlers of one session that ran at once because a revival from the durable tier (tiered: the cache lost the record) unlocked the session and fenced the earlier holder (its lock of an older epoch, its commit refused): by design; not a violation."},
	{"percentages of faults (-kill-node 40%)", "a share of the requests: 40% = after 40% of the target requests were sent."},
	{"zero values at the left edge", "log-scale charts cannot draw 0: zero values are drawn at the left edge."},
}

// writeGlossary writes the glossary.
func writeGlossary(b *strings.Builder) {
	b.WriteString("<section class=\"glossary\"><h2>Terms</h2><dl>\n")
	for _, g := range glossary {
		fmt.Fprintf(b, "<dt>%s</dt> <dd>%s</dd>\n", esc(g[0]), esc(g[1]))
	}
	b.WriteString("</dl></section>\n")
}

// writeInvariants writes the invariants table: each with its count, what
// it counts, and whether it held.
func writeInvariants(b *strings.Builder, r *Result) {
	b.WriteString("<div class=\"scroll\"><table class=\"inv stack\"><tr><th>invariant</th><th>count</th><th>what it counts</th><th>verdict</th></tr>\n")
	row := func(name string, n int, what string, bad bool, status string) {
		if status == "" {
			status = "held"
			if bad {
				status = "VIOLATED"
			}
		}
		fmt.Fprintf(b, "<tr class=\"%s\"><td class=\"name\">%s</td><td data-label=\"count\">%d</td><td data-label=\"what it counts\">%s</td><td class=\"status key\">%s</td></tr>\n",
			passClass(!bad), esc(name), n, esc(what), esc(status))
	}
	var status string
	row("lost_updates", r.LostUpdates, fmt.Sprintf("acknowledged writes missing at the end: increments %d, list items %d, lock-free keys %d", r.LostIncrements, r.LostListItems, r.LostLockFreeKey), r.LostUpdates > 0, "")
	row("stuck_locks", r.StuckLocks, fmt.Sprintf("sessions locked at the end %d, waits longer than %.0f ms with no holder %d (%d more within a failover time of a fault; %d sessions locked at the end by a request that failed, for the next one to take over)", r.StuckSessions, r.StuckWaitMs, r.StuckWaits, r.StuckWaitsInFailover, r.LockedAfterFailure), r.StuckLocks > 0, "")
	status = ""
	if !r.FailoverChecked {
		status = "not promised by this store"
	}
	row("failed_after_failover", r.FailedAfterFailover, fmt.Sprintf("requests sent more than %.1f s (the failover time) after a fault ended, or after a node fault began while it lasted, that failed with a server error (5xx), of %d sent then%s", FailoverTime.Seconds(), r.RequestsAfterFailover, onUnavailableNote(r)),
		r.FailoverChecked && r.FailedAfterFailover > 0, status)
	row("sessions_lost", r.SessionsLost, "browsers whose session vanished or was replaced", r.SessionsLost > 0, "")
	row("sessions_unavailable", r.SessionsUnavailable, "sessions the store still answered unavailable when read back at the end (their final values unchecked)", r.SessionsUnavailable > 0, "")
	row("exclusion_violations", r.ExclusionViolations, "pairs of exclusive handlers of one session that ran at once", r.ExclusionViolations > 0, "")
	status = ""
	if r.CounterNotLinearizable == 0 && r.CounterUnchecked > 0 {
		status = "UNCHECKED"
	}
	row("counter_not_linearizable", r.CounterNotLinearizable, "sessions whose counter history (acknowledged increments and reads, increments of unknown outcome as maybe) has no linearization: "+counterLine(r),
		r.CounterNotLinearizable > 0 || r.CounterUnchecked > 0, status)
	if r.ExpiryProbes > 0 {
		status = ""
		if r.ExpiredRevived == 0 && r.ExpiryUnchecked > 0 {
			status = "UNCHECKED"
		}
		row("expired_session_revived", r.ExpiredRevived, expiryLine(r), r.ExpiredRevived > 0 || r.ExpiryUnchecked > 0, status)
		row("expired_session_unavailable", r.ExpiredUnavailable, "read-backs of an expired probe session that an app server answered with a server error (5xx), after the faults healed", r.ExpiredUnavailable > 0, "")
	}
	if r.SpacedFaults > 0 {
		status = ""
		if r.IdleChecksBefore == 0 {
			status = "UNCHECKED"
		}
		row("repair_window_exceeded", r.RepairWindowExceeded, "idle sessions (touched by no request) not whole on the nodes right before a spaced fault: the previous fault's damage not repaired within the spacing: "+spacedLine(r), r.RepairWindowExceeded > 0, status)
	}
	missed := len(r.UnreachedFaults())
	status = ""
	if missed > 0 && r.UnreachedFaultsAllowed {
		status = "allowed (-allow-unreached-faults)"
	}
	row("faults_not_reached", missed, fmt.Sprintf("configured faults the workload ended before (of %d fault events)", len(r.Events)), unreachedFails(r), status)
	b.WriteString("</table></div>\n")
	if unreachedFails(r) {
		fmt.Fprintf(b, "<p class=\"bad\">%s.</p>\n", esc(unreachedHint))
	}
	fmt.Fprintf(b, "<p class=\"note\">Not violations: %d commits refused by the fence (a lock taken over, the fence working); %d increments stored although their request failed (the answer was lost, not the write); %d pairs of exclusive handlers that ran at once across a revival from the durable tier (the cache lost the lock: its holder fenced, by design).</p>\n",
		r.FencedWritesRejected, r.UnackedCommits, r.HoldersAcrossRevival)
}

// writeFaults writes the fault legend and table: every event, numbered as
// its marker in the timeline.
func writeFaults(b *strings.Builder, r *Result) {
	if len(r.Events) == 0 {
		b.WriteString("<p class=\"note\">No faults were configured for this run.</p>\n")
		return
	}
	writeFaultLegend(b, r.Events)
	b.WriteString("<div class=\"scroll\"><table class=\"faults stack\"><tr><th>#</th><th>fault</th><th>at (since workload start)</th><th>lasted</th><th>target</th><th>what happened</th></tr>\n")
	n := 0
	restarts, nums := restartOf(r.Events), faultNumbers(r.Events)
	for i, e := range r.Events {
		st := styleOf(e.Kind)
		num, at, lasted := "", "not reached", "instant"
		if j, ok := restarts[i]; ok {
			lasted = fmt.Sprintf("down until F%d (%s)", nums[j], formatMs(r.Events[j].AtMs-e.AtMs))
		}
		cls := ""
		if e.Missed {
			if !r.UnreachedFaultsAllowed {
				cls = " class=\"bad\""
			}
		} else {
			n++
			num = "F" + strconv.Itoa(n)
			at = formatMs(e.AtMs)
		}
		if e.DurationMs > 0 {
			lasted = formatMs(e.DurationMs)
		} else if e.Missed {
			lasted = ""
		}
		fmt.Fprintf(b, "<tr%s><td class=\"name\">%s</td><td class=\"name\">%s%s</td><td data-label=\"at\">%s</td><td data-label=\"lasted\">%s</td><td data-label=\"target\">%s</td><td class=\"what key\" data-label=\"what happened\">%s</td></tr>\n",
			cls, num, st.swatch(), esc(st.Label), at, lasted, esc(e.Target), esc(e.What))
	}
	b.WriteString("</table></div>\n")
}

// writeFaultLegend writes one legend entry per fault kind among events.
func writeFaultLegend(b *strings.Builder, events []Event) {
	seen := map[string]bool{}
	b.WriteString("<p class=\"legend faults-legend\">")
	for _, e := range events {
		if seen[e.Kind] {
			continue
		}
		seen[e.Kind] = true
		st := styleOf(e.Kind)
		fmt.Fprintf(b, "<span class=\"fault-kind\" data-kind=\"%s\">%sfault: %s</span>", esc(e.Kind), st.swatch(), esc(st.Label))
	}
	if len(restartOf(events)) > 0 {
		b.WriteString("<span><i class=\"sw\" style=\"background:repeating-linear-gradient(135deg,rgba(0,0,0,.25) 0 3px,transparent 3px 6px)\"></i>node down: from its kill to its restart</span>")
	}
	b.WriteString("</p>\n")
}

// writeCards writes the key figures as cards.
func writeCards(b *strings.Builder, r *Result) {
	b.WriteString("<div class=\"cards\">\n")
	card := func(name, value, note string) {
		fmt.Fprintf(b, "<div class=\"card\"><div class=\"k\">%s</div><div class=\"v\">%s</div><div class=\"n\">%s</div></div>\n", esc(name), esc(value), esc(note))
	}
	card("throughput", fmt.Sprintf("%.0f req/s", r.ThroughputRPS), fmt.Sprintf("over %.2f s of workload", r.DurationMs/1000))
	card("requests", fmt.Sprintf("%d", r.RequestsWorkload), fmt.Sprintf("workload (target %d) + %d setup; %d failed", r.RequestsTarget, r.RequestsSetup, r.RequestsFailed))
	card("lock wait p50 / p99", fmt.Sprintf("%s / %s", formatMs(r.WaitP50Ms), formatMs(r.WaitP99Ms)), "max "+formatMs(r.WaitMaxMs))
	card("lock hold p50 / p99", fmt.Sprintf("%s / %s", formatMs(r.HoldP50Ms), formatMs(r.HoldP99Ms)), "exclusive handler, commit and release")
	card("latency p50 / p99", fmt.Sprintf("%s / %s", formatMs(r.LatencyP50Ms), formatMs(r.LatencyP99Ms)), fmt.Sprintf("as the browsers saw it, including their wait for one of their %d connections", r.Conns))
	note := "first request sent to last answer"
	if r.SingleRequestMs > 0 {
		note = fmt.Sprintf("%.2f x one request alone (%s)", r.BurstVsSingle, formatMs(r.SingleRequestMs))
	}
	card("burst makespan (mean)", formatMs(r.BurstMakespanMs), note)
	card("bursts summed", formatMs(r.MakespanMs), fmt.Sprintf("%d bursts = %.2f x the least they needed", r.BurstsMeasured, r.MakespanRatio))
	if len(r.TakeoversMs) > 0 {
		card("crash takeover", formatMs(r.TakeoverMs), fmt.Sprintf("longest of %d session(s)", len(r.TakeoversMs)))
	}
	b.WriteString("</div>\n")
	if len(r.FailedByReason) > 0 {
		fmt.Fprintf(b, "<p>Failed requests by reason: %s</p>\n", esc(formatReasons(r.FailedByReason)))
	}
}

// writeRoutes writes the per-route table.
func writeRoutes(b *strings.Builder, r *Result) {
	b.WriteString("<div class=\"scroll\"><table class=\"routes num stack\"><tr><th>route</th><th>mode</th><th>requests</th><th>ok</th><th>wait p50</th><th>wait p99</th><th>latency p50</th><th>latency p99</th><th>alone</th></tr>\n")
	for _, name := range routeNames(r) {
		s := r.Routes[name]
		fmt.Fprintf(b, "<tr><td class=\"name\"><i class=\"sw\" style=\"background:%s\"></i>%s</td><td class=\"key\">%s</td><td data-label=\"requests\">%d</td><td data-label=\"ok\">%d</td><td data-label=\"wait p50\">%s</td><td data-label=\"wait p99\">%s</td><td data-label=\"latency p50\">%s</td><td data-label=\"latency p99\">%s</td><td data-label=\"alone\">%s</td></tr>\n",
			routeColor(name), esc(name), routeMode(name), s.Requests, s.OK, formatMs(s.WaitP50Ms), formatMs(s.WaitP99Ms), formatMs(s.LatencyP50Ms), formatMs(s.LatencyP99Ms), formatMs(s.SingleMs))
	}
	fmt.Fprintf(b, "</table></div><p class=\"note\">%s. Wait: from the request's arrival at the app server to its handler's start.</p>\n", esc(aloneNote))
}

// writeFigures writes every line the terminal prints for r.
func writeFigures(b *strings.Builder, r *Result) {
	b.WriteString("<div class=\"scroll\"><table class=\"figures stack\">\n")
	for _, f := range figures(r) {
		fmt.Fprintf(b, "<tr class=\"%s\"><td class=\"name\">%s</td><td class=\"key\">%s</td></tr>\n", map[bool]string{true: "bad", false: ""}[f.Bad], esc(f.Name), esc(f.Value))
	}
	fmt.Fprintf(b, "<tr class=\"%s\"><td class=\"name\">verdict</td><td class=\"key status\">%s</td></tr>\n</table></div>\n", passClass(r.OK()), esc(verdict(r)))
}

// gapColor is the colour of a request's time between its arrival and its
// handler's start: a wait for the session for exclusive and read-only
// routes, only loading the session for lock-free ones.
func gapColor(route string) string {
	if ri, ok := routes[route]; ok && !ri.exclusive && !ri.readOnly {
		return loadColor
	}
	return waitColor
}

// Colours of the timeline.
const (
	loadColor   = "#d9d2c0"
	waitColor   = "#f5c242"
	clientColor = "#b8b8b8"
	failColor   = "#111111"
)

// routeColor is a route's colour in the timeline and tables: exclusive
// routes warm, read-only blue, lock-free green.
func routeColor(route string) string {
	switch route {
	case RouteIncr:
		return "#d62728"
	case RouteAppend:
		return "#a0522d"
	case RouteSlow:
		return "#9467bd"
	case RouteHold:
		return "#e377c2"
	case RouteInit:
		return "#7f7f7f"
	case RouteRead:
		return "#1f77b4"
	case RouteFree:
		return "#2ca02c"
	}
	return "#555555"
}

// niceStep returns a round step (1, 2 or 5 times a power of ten) that cuts
// span into about n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel formats a round time in ms.
func tickLabel(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + " ms"
}

// laneRowPx is the height of one row of a lane, in CSS pixels.
const laneRowPx = 6

// vbWidth is the width of a lane's SVG viewBox: time maps to 0..vbWidth.
const vbWidth = 10000

// writeTimeline writes one timeline for runs, all on one time axis
// (milliseconds since each run's workload started), one group of lanes
// per run, named by groups when there are several.
func writeTimeline(b *strings.Builder, runs []*Result, groups []string) {
	writeTimelineAs(b, runs, groups, false)
}

// timelineSpanMs is how long r's timeline lasts: to its last answer or
// the end of its last fault.
func timelineSpanMs(r *Result) float64 {
	span := ms(r.timeline.End - r.timeline.Workload)
	for _, e := range r.timeline.Events {
		if !e.Missed {
			span = max(span, e.AtMs+e.DurationMs) // every marker on the axis
		}
	}
	return span
}

// writeZoom writes, when a comparison's fast run takes under a third of
// the shared axis, that run again on its own time axis, so that it is
// not a sliver.
func writeZoom(b *strings.Builder, fast, slow *Result, name string) {
	if f, s := timelineSpanMs(fast), timelineSpanMs(slow); f <= 0 || f >= s/3 {
		return
	}
	writeTimelineAs(b, []*Result{fast}, []string{name}, true)
}

// writeTimelineAs writes the timeline, or with zoom the zoomed inset of
// a comparison: no legend, an axis and lanes of its own, not counted as
// the page's timeline.
func writeTimelineAs(b *strings.Builder, runs []*Result, groups []string, zoom bool) {
	spanMs := 0.0
	lanes := 0
	for _, r := range runs {
		spanMs = max(spanMs, timelineSpanMs(r))
		lanes += len(r.timeline.Lanes)
	}
	if zoom {
		fmt.Fprintf(b, "<section class=\"zoom\" data-lanes=\"%d\"><h2>%s, zoomed to its own time axis</h2>\n", lanes, esc(groups[0]))
	} else {
		fmt.Fprintf(b, "<section class=\"timeline\" data-lanes=\"%d\"><h2>Timeline: one lane per session</h2>\n", lanes)
	}
	if spanMs <= 0 || lanes == 0 {
		b.WriteString("<p>No requests.</p></section>\n")
		return
	}
	step := niceStep(spanMs, 8)
	spanMs = math.Ceil(spanMs/step) * step // the axis ends on a tick
	pct := func(v float64) string { return strconv.FormatFloat(100*v/spanMs, 'f', 3, 64) + "%" }

	if zoom {
		fmt.Fprintf(b, "<p class=\"note\">The same lanes as above, with the axis ending at %s instead of the slower strategy's end; same colours.</p>\n", formatMs(spanMs))
	} else {
		writeTimelineKey(b, runs, groups)
	}
	b.WriteString("<div class=\"tl\">\n")
	axis := "time-axis"
	if zoom {
		axis = "zoom-axis"
	}
	writeAxis(b, axis, "since workload start", spanMs, step)
	for gi, r := range runs {
		tl := r.timeline
		pages := (len(tl.Lanes) + LanesPerPage - 1) / LanesPerPage
		fmt.Fprintf(b, "<div class=\"tl-run\" data-pages=\"%d\" data-stride=\"%d\" data-mode=\"%s\">\n", pages, max(tl.Stride, 1), esc(r.Mode))
		if len(groups) > gi {
			fmt.Fprintf(b, "<div class=\"tl-group\">%s: %.2f s of workload</div>\n", esc(groups[gi]), r.DurationMs/1000)
		}
		writeFaultStrip(b, tl.Events, pct, spanMs)
		b.WriteString("<div class=\"tl-lanes\"><div class=\"tl-over\">")
		for v := step; v < spanMs-step/2; v += step {
			fmt.Fprintf(b, "<i class=\"grid\" style=\"left:%s\"></i>", pct(v))
		}
		for i, j := range restartOf(tl.Events) {
			e := tl.Events[i]
			fmt.Fprintf(b, "<div class=\"down-span\" style=\"left:%s;width:%s\" title=\"%s down from %s to %s\"></div>",
				pct(e.AtMs), pct(tl.Events[j].AtMs-e.AtMs), esc(e.Target), formatMs(e.AtMs), formatMs(tl.Events[j].AtMs))
		}
		n := 0
		for _, e := range tl.Events {
			if e.Missed {
				continue
			}
			n++
			st := styleOf(e.Kind)
			style := fmt.Sprintf("left:%s;--c:%s;border-left-style:%s", pct(e.AtMs), st.Color, st.Line)
			if e.DurationMs > 0 {
				style += ";width:" + pct(e.DurationMs)
			}
			fmt.Fprintf(b, "<div class=\"fault-marker\" data-kind=\"%s\" data-n=\"F%d\" style=\"%s\" title=\"F%d %s\"></div>",
				esc(e.Kind), n, style, n, esc(e.describe()))
		}
		b.WriteString("</div>\n")
		for i, l := range tl.Lanes {
			writeLane(b, l, i/LanesPerPage, tl.Workload, spanMs)
		}
		b.WriteString("</div></div>\n")
	}
	b.WriteString("</div></section>\n")
}

// writeTimelineKey writes the timeline's legend (routes with their
// modes, the phases, faults) and its notes.
func writeTimelineKey(b *strings.Builder, runs []*Result, groups []string) {
	b.WriteString("<p class=\"legend\">")
	seen := map[string]bool{}
	var names []string
	var events []Event
	for _, r := range runs {
		for _, name := range routeNames(r) {
			if !seen[name] && name != RouteInit {
				seen[name] = true
				names = append(names, name)
			}
		}
		events = append(events, r.Events...)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(b, "<span class=\"route-key\"><i class=\"sw\" style=\"background:%s\"></i>%s: %s handler</span>", routeColor(name), esc(name), routeMode(name))
	}
	fmt.Fprintf(b, "<span><i class=\"sw\" style=\"background:%s\"></i>waiting for the session (exclusive: its lock; read-only: a writer's commit)</span>", waitColor)
	fmt.Fprintf(b, "<span><i class=\"sw\" style=\"background:%s\"></i>before a lock-free handler: loading the session, no lock, no wait</span>", loadColor)
	fmt.Fprintf(b, "<span><i class=\"sw thin\" style=\"background:%s\"></i>in flight: sent to answer (browser side)</span>", clientColor)
	fmt.Fprintf(b, "<span><i class=\"sw\" style=\"background:%s\"></i>failed request</span>", failColor)
	b.WriteString("</p>\n")
	if len(events) > 0 {
		writeFaultLegend(b, events)
	}
	b.WriteString("<p class=\"note\">Each lane is one session (browser); its requests are stacked in rows so that none overlaps another in its row. A handler's bar starts when it got the session and ends after its commit and release; exclusive bars of one session never overlap (read-only and lock-free ones take no lock and may overlap anything). Most of a request's time in flight is usually spent queued in the browser, which sends at most a few requests per server at once.")
	paged := false
	for _, r := range runs {
		paged = paged || len(r.timeline.Lanes) > LanesPerPage
	}
	if paged {
		fmt.Fprintf(b, " %d lanes per page; printing shows every page.", LanesPerPage)
	}
	b.WriteString("</p>\n")
	for i, r := range runs {
		if s := r.timeline.Sampling; s != "" {
			name := r.Mode
			if i < len(groups) {
				name = groups[i]
			}
			fmt.Fprintf(b, "<p class=\"note sampling\">What is drawn (%s): %s</p>\n", esc(name), esc(s))
		}
	}

}

// restartOf returns, for each kill among events, the index of the restart
// of the same target that ended it, if any: the node was down in between.
func restartOf(events []Event) map[int]int {
	m := map[int]int{}
	for i, e := range events {
		if e.Missed || e.Kind != FaultKillNode || e.Target == "" {
			continue
		}
		for j := i + 1; j < len(events); j++ {
			f := events[j]
			if !f.Missed && f.Kind == FaultRestartNode && f.Target == e.Target && f.AtMs >= e.AtMs {
				m[i] = j
				break
			}
			if !f.Missed && f.Kind == FaultKillNode && f.Target == e.Target {
				break
			}
		}
	}
	return m
}

// faultNumbers numbers the events that happened F1..Fn, by index.
func faultNumbers(events []Event) map[int]int {
	m := map[int]int{}
	for i, e := range events {
		if !e.Missed {
			m[i] = len(m) + 1
		}
	}
	return m
}

// writeFaultStrip writes the strip above a run's lanes that holds its
// faults' chips, F1..Fn at their times: in rows, so that no chip hides
// another or a lane's bars.
func writeFaultStrip(b *strings.Builder, events []Event, pct func(float64) string, spanMs float64) {
	// A chip is about 26 px wide; the plot is at least about 290 px wide
	// (390 px screens): in shares of the span, a chip takes chipMs.
	chipMs := spanMs * 30 / 290
	var rowEnd []float64
	var chips strings.Builder
	n := 0
	for _, e := range events {
		if e.Missed {
			continue
		}
		n++
		row := -1
		for i, end := range rowEnd {
			if end <= e.AtMs {
				row = i
				break
			}
		}
		if row < 0 {
			rowEnd = append(rowEnd, 0)
			row = len(rowEnd) - 1
		}
		rowEnd[row] = e.AtMs + chipMs
		st := styleOf(e.Kind)
		cls := "fault-chip"
		if e.AtMs > spanMs-chipMs {
			cls += " flip"
		}
		fmt.Fprintf(&chips, "<span class=\"%s\" style=\"left:%s;top:%dpx;border-bottom:2px %s %s\" title=\"%s\">F%d</span>",
			cls, pct(e.AtMs), 2+row*18, st.Line, st.Color, esc(e.describe()), n)
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(b, "<div class=\"tl-faults\" style=\"height:%dpx\"><div class=\"tl-label\">faults</div><div class=\"tl-plot\">%s</div></div>\n", 4+len(rowEnd)*18, chips.String())
}

// writeAxis writes a sticky time axis of spanMs with round ticks every
// step ms; cls names it (time-axis: the timeline's one axis).
func writeAxis(b *strings.Builder, cls, label string, spanMs, step float64) {
	fmt.Fprintf(b, "<div class=\"tl-axis %s\"><div class=\"tl-label\">%s</div><div class=\"tl-plot\">", cls, esc(label))
	for i, v := 0, 0.0; v <= spanMs+step/2; i, v = i+1, v+step {
		tick := "tick"
		switch {
		case v == 0:
			tick += " first"
		case v+step > spanMs+step/2:
			tick += " last"
		case i%2 == 1:
			tick += " odd" // hidden on narrow screens
		}
		fmt.Fprintf(b, "<span class=\"%s\" style=\"left:%s%%\">%s</span>", tick, strconv.FormatFloat(100*v/spanMs, 'f', 3, 64), tickLabel(v))
	}
	b.WriteString("</div></div>\n")
}

// writeLane writes one session's lane: its requests packed into rows.
func writeLane(b *strings.Builder, l sessionLane, page int, origin int64, spanMs float64) {
	// Pack by the browser-side interval, first fit; at most 16 rows.
	var ends []int64
	rows := make([]int, len(l.Bars))
	for i, br := range l.Bars {
		row := -1
		for j, e := range ends {
			if e <= br.Sent {
				row = j
				break
			}
		}
		if row < 0 {
			if len(ends) < 16 {
				ends = append(ends, 0)
				row = len(ends) - 1
			} else {
				row = 0
				for j := range ends {
					if ends[j] < ends[row] {
						row = j
					}
				}
			}
		}
		ends[row] = max(ends[row], br.Recv, br.Sent+1)
		rows[i] = row
	}
	nrows := max(1, len(ends))
	h := nrows * laneRowPx
	x := func(t int64) int64 {
		return int64(math.Round(float64(t-origin) / 1e6 / spanMs * vbWidth))
	}
	paths := map[string]*[]byte{}
	var order []string
	rect := func(color string, t0, t1 int64, y, hh int) {
		p := paths[color]
		if p == nil {
			p = new([]byte)
			paths[color] = p
			order = append(order, color)
		}
		x0, x1 := x(t0), x(t1)
		w := max(x1-x0, 4) // at least half a pixel or so
		*p = fmt.Appendf(*p, "M%d %dh%dv%dh-%dz", x0, y, w, hh, w)
	}
	for i, br := range l.Bars {
		y := rows[i] * laneRowPx
		if br.Recv > br.Sent {
			c := clientColor
			if !br.OK {
				c = failColor
			}
			rect(c, br.Sent, br.Recv, y+2, 1)
		}
		if br.Arrive > 0 && br.Start > br.Arrive {
			rect(gapColor(br.Route), br.Arrive, br.Start, y, laneRowPx-1)
		}
		if br.Start > 0 && br.Done >= br.Start {
			c := routeColor(br.Route)
			if !br.OK {
				c = failColor
			}
			rect(c, br.Start, br.Done, y, laneRowPx-1)
		}
	}
	fmt.Fprintf(b, "<div class=\"lane\" data-page=\"%d\" data-session=\"%d\"><div class=\"tl-label\" title=\"%d of %d requests drawn\"><span class=\"wide\">session </span><span class=\"narrow\">s</span>%d</div>"+
		"<svg class=\"lane-svg\" viewBox=\"0 0 %d %d\" preserveAspectRatio=\"none\" height=\"%d\" role=\"img\" aria-label=\"session %d: %d requests\">",
		page, l.Browser, l.Drawn, len(l.Bars), l.Browser, vbWidth, h, h, l.Browser, len(l.Bars))
	for _, c := range order {
		fmt.Fprintf(b, "<path fill=\"%s\" d=\"%s\"/>", c, *paths[c])
	}
	b.WriteString("</svg></div>\n")
}

// detailBursts and detailSessions bound the "first bursts in detail" view.
const (
	detailSessions = 3
	detailBursts   = 2
)

// writeDetail draws the first bursts of the first sessions with one row
// per request, on a zoomed axis, so that one can see exclusive handlers
// queue and the others overlap.
func writeDetail(b *strings.Builder, r *Result) {
	var bars []bar
	var sess, sessOf []int
	for _, l := range r.timeline.Lanes {
		if len(sess) == detailSessions {
			break
		}
		sess = append(sess, l.Browser)
		for _, br := range l.Bars {
			if br.Burst >= 0 && br.Burst < detailBursts {
				bars = append(bars, br)
				sessOf = append(sessOf, l.Browser)
			}
		}
	}
	if len(bars) == 0 {
		return
	}
	from, to := bars[0].Sent, bars[0].Recv
	for _, br := range bars {
		from, to = min(from, br.Sent), max(to, br.Recv)
	}
	spanMs := ms(to - from)
	if spanMs <= 0 {
		return
	}
	step := niceStep(spanMs, 6)
	spanMs = math.Ceil(spanMs/step) * step
	bursts := 0
	for _, br := range bars {
		bursts = max(bursts, br.Burst+1)
	}
	what := "first burst"
	if bursts > 1 {
		what = fmt.Sprintf("first %d bursts", bursts)
	}
	fmt.Fprintf(b, "<section class=\"detail\"><h2>The %s of sessions %s, in detail</h2>\n", what, esc(joinInts(sess)))
	b.WriteString("<p class=\"note\">One row per request (labelled session·burst route), from the first of these requests sent. Yellow: waiting for the session; beige: a lock-free request loading the session (no wait); coloured: the handler, its commit and release; grey line: in flight as the browser saw it. Hover a bar for its figures.</p>\n")
	b.WriteString("<div class=\"tl\">\n")
	writeAxis(b, "detail-axis", "since first sent", spanMs, step)
	b.WriteString("<div class=\"tl-lanes\">")
	xv := func(t int64) float64 { return float64(t-from) / 1e6 / spanMs * 1000 }
	prevSession := -1
	for i, br := range bars {
		session := sessOf[i]
		cls := "drow"
		if session != prevSession {
			cls += " first-of-session"
			prevSession = session
		}
		title := fmt.Sprintf("request %d, session %d, burst %d, %s (%s)", br.ID, session, br.Burst+1, br.Route, routeMode(br.Route))
		if br.Start > 0 {
			title += fmt.Sprintf(": waited %.2f ms, handler+commit %.2f ms", ms(br.Start-br.Arrive), ms(br.Done-br.Start))
		}
		title += fmt.Sprintf(", %.2f ms in flight", ms(br.Recv-br.Sent))
		if !br.OK {
			title += ", failed: " + br.Reason
		}
		fmt.Fprintf(b, "<div class=\"%s\"><div class=\"tl-label\">s%d·b%d %s</div><svg viewBox=\"0 0 1000 10\" preserveAspectRatio=\"none\" height=\"10\"><title>%s</title>", cls, session, br.Burst+1, esc(br.Route), esc(title))
		c := clientColor
		if !br.OK {
			c = failColor
		}
		fmt.Fprintf(b, "<rect x=\"%.2f\" y=\"4\" width=\"%.2f\" height=\"2\" fill=\"%s\"/>", xv(br.Sent), max(xv(br.Recv)-xv(br.Sent), 0.3), c)
		if br.Arrive > 0 && br.Start > br.Arrive {
			fmt.Fprintf(b, "<rect x=\"%.2f\" y=\"1\" width=\"%.2f\" height=\"8\" fill=\"%s\"/>", xv(br.Arrive), max(xv(br.Start)-xv(br.Arrive), 0.3), gapColor(br.Route))
		}
		if br.Start > 0 && br.Done >= br.Start {
			// The stroke, the same width on any screen, keeps a
			// microsecond handler visible (about 3 px at least).
			c := routeColor(br.Route)
			fmt.Fprintf(b, "<rect x=\"%.2f\" y=\"1.5\" width=\"%.2f\" height=\"7\" fill=\"%s\" stroke=\"%s\" stroke-width=\"3\" vector-effect=\"non-scaling-stroke\"/>", xv(br.Start), max(xv(br.Done)-xv(br.Start), 0.1), c, c)
		}
		b.WriteString("</svg></div>\n")
	}
	b.WriteString("</div></div></section>\n")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// series is one line of a CDF chart.
type series struct {
	Name, Color string
	Values      []float64 // ms
}

// writeCDF draws the cumulative distributions of ss on a logarithmic time
// axis: the share of values at or below each time, with their p50 and
// p99 marked.
func writeCDF(b *strings.Builder, title string, ss []series) {
	const w, left, right, bottom, lineH = 460.0, 60.0, 30.0, 44.0, 17.0
	top := 12 + lineH*float64(len(ss)) // the legend, one line a series
	h := top + 200 + bottom
	lo, hi := math.Inf(1), 0.0
	n := 0
	for _, s := range ss {
		for _, v := range s.Values {
			if v > 0 {
				lo = min(lo, v)
			}
			hi = max(hi, v)
			n++
		}
	}
	fmt.Fprintf(b, "<figure class=\"chart cdf\"><figcaption>%s</figcaption>", esc(title))
	if n == 0 || hi <= 0 {
		b.WriteString("<p class=\"note\">No values.</p></figure>\n")
		return
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	pw, ph := w-left-right, h-top-bottom
	xv := func(v float64) float64 {
		v = min(max(v, lo), hi)
		return left + math.Log10(v/lo)/math.Log10(hi/lo)*pw
	}
	yv := func(f float64) float64 { return top + (1-f)*ph }
	fmt.Fprintf(b, "<svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%s\" font-size=\"12\">", w, h, esc(title))
	for f := 0.0; f <= 1.0001; f += 0.25 {
		fmt.Fprintf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" class=\"gl\"/><text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" dy=\"4\">%.0f%%</text>", left, w-right, yv(f), yv(f), left-6, yv(f), f*100)
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" class=\"gl\"/><text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>", xv(d), xv(d), top, top+ph, xv(d), top+ph+16, formatMs(d))
	}
	fmt.Fprintf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" class=\"axis-title\">time, log scale (zero values at the left edge)</text>", left+pw/2, top+ph+34)
	fmt.Fprintf(b, "<text x=\"12\" y=\"%.0f\" transform=\"rotate(-90 12 %.0f)\" text-anchor=\"middle\" class=\"axis-title\">share at or below</text>", top+ph/2, top+ph/2)
	for i, s := range ss {
		xs := append([]float64(nil), s.Values...)
		sort.Float64s(xs)
		if len(xs) == 0 {
			continue
		}
		var d strings.Builder
		pts := min(len(xs), 400)
		fmt.Fprintf(&d, "M%.1f %.1f", xv(xs[0]), yv(0))
		for k := 1; k <= pts; k++ {
			idx := k*len(xs)/pts - 1
			f := float64(idx+1) / float64(len(xs))
			fmt.Fprintf(&d, "H%.1fV%.1f", xv(xs[idx]), yv(f))
		}
		fmt.Fprintf(b, "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>", d.String(), s.Color)
		p50, p99 := percentile(xs, 50), percentile(xs, 99)
		for _, pv := range []struct {
			v, f float64
		}{{p50, 0.5}, {p99, 0.99}} {
			fmt.Fprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", xv(pv.v), yv(pv.f), s.Color)
		}
		ly := 12 + lineH*float64(i)
		lx := left
		fmt.Fprintf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"4\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s: p50 %s, p99 %s (%d values)</text>",
			lx, ly-4, s.Color, lx+16, ly, esc(s.Name), formatMs(p50), formatMs(p99), len(xs))
	}
	b.WriteString("</svg></figure>\n")
}

// barValue is one bar of a bar chart.
type barValue struct {
	Name, Color string
	Value       float64
}

// writeBars draws a small horizontal bar chart with the values written.
func writeBars(b *strings.Builder, title, unit, note string, bars []barValue) {
	const w, left, right, rowH = 440.0, 178.0, 84.0, 34.0
	h := 20 + rowH*float64(len(bars))
	top := 0.0
	for _, v := range bars {
		top = max(top, v.Value)
	}
	fmt.Fprintf(b, "<figure class=\"chart bars\"><figcaption>%s (%s)</figcaption><svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%s\" font-size=\"13\">", esc(title), esc(note), w, h, esc(title))
	for i, v := range bars {
		y := 8 + rowH*float64(i)
		bw := 0.0
		if top > 0 {
			bw = v.Value / top * (w - left - right)
		}
		fmt.Fprintf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s</text><rect x=\"%.0f\" y=\"%.0f\" width=\"%.1f\" height=\"22\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.0f\">%s</text>",
			left-8, y+16, esc(v.Name), left, y, max(bw, 1), v.Color, left+bw+6, y+16, esc(formatValue(v.Value, unit)))
	}
	b.WriteString("</svg></figure>\n")
}

func formatValue(v float64, unit string) string {
	if unit == "ms" {
		return formatMs(v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func formatReasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// formatMs formats a time in ms with a unit that suits it.
func formatMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.3g\u00a0s", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.3g\u00a0ms", v)
	case v <= 0:
		return "0\u00a0ms"
	}
	return fmt.Sprintf("%.3g\u00a0µs", v*1000)
}
