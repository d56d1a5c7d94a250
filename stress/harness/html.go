package harness

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
)

// WriteHTML writes a self-contained HTML report of one or more runs (two
// for a comparison): a summary, a timeline with one lane per request
// grouped by session, and latency histograms. It uses inline SVG and CSS
// only, so it opens in a browser without network.
func WriteHTML(w io.Writer, title string, results ...*Result) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString(`</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:17px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.bad{color:#b00;font-weight:bold}.good{color:#080;font-weight:bold}
.legend span{display:inline-block;margin-right:16px}.sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px}
svg{display:block;margin:8px 0}
.note{color:#666}
</style></head><body>
<h1>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n")
	if len(results) == 2 {
		writeRatioTable(&b, results[0], results[1])
	}
	for _, r := range results {
		writeRun(&b, r)
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRatioTable(b *strings.Builder, ours, theirs *Result) {
	c := compare(ours, theirs)
	b.WriteString("<h2>Comparison: ASP.NET strategy / ours</h2><table><tr><th>figure</th><th>ours</th><th>aspnet</th><th>ratio</th></tr>")
	row := func(name string, o, t, r float64) {
		fmt.Fprintf(b, "<tr><td>%s</td><td>%.2f ms</td><td>%.2f ms</td><td>%.1f x</td></tr>", name, o, t, r)
	}
	row("p50 wait", ours.WaitP50Ms, theirs.WaitP50Ms, c.Ratios.WaitP50)
	row("p99 wait", ours.WaitP99Ms, theirs.WaitP99Ms, c.Ratios.WaitP99)
	row("makespan", ours.MakespanMs, theirs.MakespanMs, c.Ratios.Makespan)
	b.WriteString("</table>\n")
}

func writeRun(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "<h2>Run: backend %s, wait %s, %d app server(s)</h2>\n", html.EscapeString(r.Backend), html.EscapeString(r.Mode), r.Procs)
	verdict := `<span class="good">all invariants held</span>`
	if v := r.Violations(); len(v) > 0 {
		verdict = `<span class="bad">violated: ` + html.EscapeString(strings.Join(v, ", ")) + `</span>`
	}
	fmt.Fprintf(b, "<p>%d sessions, bursts of %d, %d connections per browser, mix %s, lease %.0f ms, seed %d: %s</p>\n",
		r.Sessions, r.Burst, r.Conns, html.EscapeString(r.Mix), r.LeaseMs, r.Seed, verdict)

	b.WriteString("<table><tr><th>figure</th><th>value</th></tr>")
	kv := func(k, v string, bad bool) {
		cls := ""
		if bad {
			cls = ` class="bad"`
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td%s>%s</td></tr>", html.EscapeString(k), cls, html.EscapeString(v))
	}
	kv("requests (ok / failed)", fmt.Sprintf("%d (%d / %d)", r.RequestsTotal, r.RequestsOK, r.RequestsFailed), false)
	if len(r.FailedByReason) > 0 {
		kv("failed by reason", formatReasons(r.FailedByReason), false)
	}
	kv("lost_updates", fmt.Sprint(r.LostUpdates), r.LostUpdates > 0)
	kv("stuck_locks (sessions + waits)", fmt.Sprintf("%d (%d + %d)", r.StuckLocks, r.StuckSessions, r.StuckWaits), r.StuckLocks > 0)
	kv("sessions_lost", fmt.Sprint(r.SessionsLost), r.SessionsLost > 0)
	kv("exclusion_violations", fmt.Sprint(r.ExclusionViolations), r.ExclusionViolations > 0)
	kv("fenced_writes_rejected", fmt.Sprint(r.FencedWritesRejected), false)
	kv("lock wait p50 / p99 / max", fmt.Sprintf("%.2f / %.2f / %.2f ms", r.WaitP50Ms, r.WaitP99Ms, r.WaitMaxMs), false)
	kv("latency p50 / p99", fmt.Sprintf("%.2f / %.2f ms", r.LatencyP50Ms, r.LatencyP99Ms), false)
	kv("makespan / ideal", fmt.Sprintf("%.1f / %.1f ms = %.2f x (%d bursts)", r.MakespanMs, r.IdealMakespanMs, r.MakespanRatio, r.BurstsMeasured), false)
	kv("throughput", fmt.Sprintf("%.0f req/s over %.2f s", r.ThroughputRPS, r.DurationMs/1000), false)
	if len(r.TakeoversMs) > 0 {
		kv("crash takeover (max)", fmt.Sprintf("%.0f ms", r.TakeoverMs), false)
	}
	b.WriteString("</table>\n")

	tl := r.timeline
	b.WriteString("<h3>Timeline</h3>\n")
	b.WriteString(`<p class="legend"><span><i class="sw" style="background:#f0a030"></i>waiting for the session</span>` +
		`<span><i class="sw" style="background:#d03030"></i>holding the lock (exclusive handler, commit, release)</span>` +
		`<span><i class="sw" style="background:#3070d0"></i>running without the lock (read-only, lock-free)</span>` +
		`<span><i class="sw" style="background:#bbb"></i>client side: sent to answer</span>` +
		`<span><i class="sw" style="background:#000"></i>failed</span></p>`)
	if tl.Omitted > 0 {
		fmt.Fprintf(b, "<p class=\"note\">%d requests of later sessions are not drawn (-timeline-max).</p>\n", tl.Omitted)
	}
	writeTimeline(b, tl)
	b.WriteString("<h3>Histograms</h3>\n")
	writeHistogram(b, "lock wait (exclusive and read-only requests)", tl.Waits, "#f0a030")
	writeHistogram(b, "lock hold (exclusive requests)", tl.Holds, "#d03030")
	writeHistogram(b, "latency seen by the browsers", tl.Latencies, "#3070d0")
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

func writeTimeline(b *strings.Builder, tl timeline) {
	const width, left, right = 1100.0, 70.0, 10.0
	if len(tl.Lanes) == 0 || tl.End <= tl.Start {
		b.WriteString("<p>No requests.</p>\n")
		return
	}
	laneH := 6.0
	if len(tl.Lanes) > 400 {
		laneH = 3
	}
	top := 20.0
	height := top + laneH*float64(len(tl.Lanes)) + 10
	span := float64(tl.End - tl.Start)
	plot := width - left - right
	x := func(t int64) float64 { return left + float64(t-tl.Start)/span*plot }
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="10">`, width, height)
	// Session groups.
	prev, groupStart, shade := -1, 0, false
	flush := func(end int) {
		if prev < 0 {
			return
		}
		y := top + laneH*float64(groupStart)
		h := laneH * float64(end-groupStart)
		if shade {
			fmt.Fprintf(b, `<rect x="0" y="%.1f" width="%.0f" height="%.1f" fill="#f6f6f6"/>`, y, width, h)
		}
		fmt.Fprintf(b, `<text x="2" y="%.1f">session %d</text>`, y+min(h, 10), prev)
	}
	for i, l := range tl.Lanes {
		if l.Browser != prev {
			flush(i)
			prev, groupStart, shade = l.Browser, i, !shade
		}
	}
	flush(len(tl.Lanes))
	// Time axis, over the session groups' shading.
	for i := 0; i <= 10; i++ {
		t := tl.Start + int64(float64(i)/10*span)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`, x(t), top, x(t), height)
		fmt.Fprintf(b, `<text x="%.1f" y="12" text-anchor="middle">%.0f ms</text>`, x(t), ms(t-tl.Start))
	}
	for i, l := range tl.Lanes {
		y := top + laneH*float64(i)
		mid := y + laneH/2
		title := fmt.Sprintf("request %d, session %d, %s", l.ID, l.Browser, l.Route)
		if l.Proc >= 0 {
			title += fmt.Sprintf(", app %d", l.Proc)
		}
		if l.Start > 0 {
			title += fmt.Sprintf(", waited %.2f ms, handler+commit %.2f ms", ms(l.Start-l.Arrive), ms(l.Done-l.Start))
		}
		if !l.OK {
			title += ", failed: " + l.Reason
		}
		fmt.Fprintf(b, `<g><title>%s</title>`, html.EscapeString(title))
		if l.Recv > l.Sent {
			color := "#bbb"
			if !l.OK {
				color = "#000"
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`, x(l.Sent), mid, x(l.Recv), mid, color)
		}
		if l.Arrive > 0 && l.Start > l.Arrive {
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.2f" height="%.1f" fill="#f0a030"/>`, x(l.Arrive), y, math.Max(x(l.Start)-x(l.Arrive), 0.5), laneH*0.9)
		}
		if l.Start > 0 && l.Done >= l.Start {
			color := "#3070d0"
			if l.Exclusive {
				color = "#d03030"
			}
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.2f" height="%.1f" fill="%s"/>`, x(l.Start), y, math.Max(x(l.Done)-x(l.Start), 0.5), laneH*0.9, color)
		}
		b.WriteString("</g>")
	}
	for _, e := range tl.Events {
		t := tl.Workload + int64(e.AtMs*1e6)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#080" stroke-width="2"><title>%s</title></line>`,
			x(t), top, x(t), height, html.EscapeString(e.What))
	}
	b.WriteString("</svg>\n")
}

// writeHistogram draws xs (ms) in logarithmic buckets, two per doubling.
func writeHistogram(b *strings.Builder, name string, xs []float64, color string) {
	fmt.Fprintf(b, "<p>%s: %d values</p>\n", html.EscapeString(name), len(xs))
	if len(xs) == 0 {
		return
	}
	const lo = 0.01 // ms: the first bucket holds everything below
	bucket := func(v float64) int {
		if v <= lo {
			return 0
		}
		return 1 + int(math.Floor(2*math.Log2(v/lo)))
	}
	counts := map[int]int{}
	maxB, maxC := 0, 0
	for _, v := range xs {
		k := bucket(v)
		counts[k]++
		maxB = max(maxB, k)
		maxC = max(maxC, counts[k])
	}
	const barW, h, bottom = 14.0, 120.0, 40.0
	width := 40 + barW*float64(maxB+1)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="9">`, math.Max(width, 200), h+bottom)
	for k := 0; k <= maxB; k++ {
		c := counts[k]
		bh := 0.0
		if c > 0 {
			// Square-root scale keeps small buckets visible next to big ones.
			bh = math.Max(1, math.Sqrt(float64(c)/float64(maxC))*h)
		}
		x := 40 + barW*float64(k)
		upper := lo * math.Pow(2, float64(k)/2)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%d requests up to %s</title></rect>`,
			x, h-bh, barW-2, bh, color, c, formatMs(upper))
		if k%2 == 0 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" transform="rotate(60 %.1f %.0f)">%s</text>`, x, h+10, x, h+10, formatMs(upper))
		}
	}
	fmt.Fprintf(b, `<text x="0" y="10">%d</text><line x1="38" y1="0" x2="38" y2="%.0f" stroke="#999"/>`, maxC, h)
	b.WriteString("</svg>\n")
}

func formatMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.3gs", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.3gms", v)
	}
	return fmt.Sprintf("%.3gµs", v*1000)
}
