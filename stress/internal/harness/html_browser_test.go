package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/browsertest"
)

// The browser tests write their screenshots (and the reports and PDFs they
// took them of) to $REPORT_SHOTS_DIR when it is set: `make report-shots`
// sets it to artifacts/report-shots.
const shotsEnv = "REPORT_SHOTS_DIR"

// withEvents adds fault events to r as if the run had injected them.
func withEvents(r *Result, evs ...Event) {
	r.Events = append(append([]Event(nil), r.Events...), evs...)
	r.timeline.Events = r.Events
}

// injected counts the faults that happened (markers the timeline must
// draw).
func injected(rs ...*Result) int {
	n := 0
	for _, r := range rs {
		for _, e := range r.Events {
			if !e.Missed {
				n++
			}
		}
	}
	return n
}

// reportCase is one report the browser test loads.
type reportCase struct {
	name    string
	results []*Result
	lanes   int    // lanes the timeline must draw
	zoomed  int    // lanes of the zoomed inset of the fast strategy
	verdict string // text the PDF must contain
}

// TestReportsInBrowser runs the browser tests of the reports on one
// headless Chromium.
func TestReportsInBrowser(t *testing.T) {
	b := browsertest.ForTest(t)
	t.Run("catches-errors", func(t *testing.T) { testBrowserCatchesScriptErrors(t, b) })
	t.Run("reports", func(t *testing.T) { testReports(t, b) })
	t.Run("docs-reports", func(t *testing.T) { testDocsReports(t, b) })
}

// testReports loads each kind of report in headless Chromium:
// no script error, no network request, one lane per session drawn (or the
// sampling rule's count), one marker per fault injected, one time axis,
// no horizontal overflow at 1400 and 390 px, and the verdict in the text
// of the PDF it prints.
func testReports(t *testing.T, b *browsertest.Browser) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := func(cfg Config) *Result {
		r, err := Run(ctx, cfg)
		require.NoError(t, err)
		return r
	}

	// A run with every kind of fault event: the harness's own, the kinds
	// other work adds (pauses with durations, partitions), one this
	// package has never heard of, and one that was never reached.
	start := time.Now()
	faults := run(Config{Sessions: 12, Requests: 480, SlowTime: 2 * time.Millisecond})
	d := faults.DurationMs
	withEvents(faults,
		Event{AtMs: d * 0.2, Kind: FaultKillNode, Target: "memcached node 0", What: "killed memcached node 0"},
		Event{AtMs: d * 0.3, Kind: "pause_node", Target: "memcached node 1", DurationMs: d * 0.1, What: "paused memcached node 1 (SIGSTOP)"},
		Event{AtMs: d * 0.45, Kind: "partition", Target: "app 0 | memcached node 2", DurationMs: d * 0.1, What: "partitioned app 0 from node 2"},
		Event{AtMs: d * 0.6, Kind: FaultFlush, Target: "memcached node 1", What: "flushed memcached node 1"},
		Event{AtMs: d * 0.7, Kind: FaultRestartNode, Target: "memcached node 0", What: "restarted memcached node 0, empty"},
		Event{AtMs: d * 0.8, Kind: "kill_master_and_more", Target: "redis master", What: "killed the Redis master (a kind with no label in the reports)"},
		Event{Kind: FaultCrashHolder, Missed: true, What: "crash a lock holder at 50%: not reached, the workload ended first"},
	)
	require.Contains(t, faults.Violations(), "faults_not_reached")

	// Many sessions: 201 of them, more than MaxLanes, with a small
	// request budget per lane: the sampling rule thins lanes and bursts.
	many := run(Config{Sessions: 201, Burst: 2, Requests: 804, TimelineMax: 300, SlowTime: time.Millisecond})
	stride := (201 + MaxLanes - 1) / MaxLanes
	require.NotEmpty(t, many.timeline.Sampling)

	cmp, err := Compare(ctx, Config{Sessions: 2, Burst: 5, Requests: 20, Mix: Mix{Slow: 2, Read: 1, Free: 1}, SlowTime: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Logf("runs took %v", time.Since(start))

	cases := []reportCase{
		{"run", []*Result{faults}, 12, 0, verdict(faults)},
		{"many-sessions", []*Result{many}, (201 + stride - 1) / stride, 0, verdict(many)},
		// Ours takes far less than a third of ASP.NET's time: its lanes
		// are drawn again on their own axis.
		{"compare", []*Result{cmp.Ours, cmp.ASPNET}, 4, 2, "every invariant held in both runs"},
	}
	for _, c := range cases {
		t.Logf("%s: %d lanes, %d fault markers expected", c.name, c.lanes, injected(c.results...))
	}
	dir := os.Getenv(shotsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	page, err := b.NewPage(ctx)
	require.NoError(t, err)
	for _, c := range cases {
		file := filepath.Join(dir, c.name+".html")
		f, err := os.Create(file)
		require.NoError(t, err)
		title := "sessionlock stress report: " + c.name
		if c.name == "run" {
			title += " (a rendering test: its fault events are synthetic, added to a run on the memory backend)"
		}
		require.NoError(t, WriteHTML(f, title, c.results...))
		require.NoError(t, f.Close())
		visible := 0
		for _, r := range c.results {
			visible += min(LanesPerPage, len(r.timeline.Lanes))
		}
		checkReport(ctx, t, page, dir, c.name, file, reportWant{c.lanes, injected(c.results...), visible, c.zoomed, c.verdict})
		t.Logf("%s checked at %v", c.name, time.Since(start))
	}
}

// testDocsReports checks the example reports committed under
// docs/reports (make reports) the same way, taking what they must show
// from their own tables: a marker per numbered fault, the verdict of
// their banner in their PDF.
func testDocsReports(t *testing.T, b *browsertest.Browser) {
	files, err := filepath.Glob("../../docs/reports/*.html")
	require.NoError(t, err)
	if len(files) == 0 {
		t.Skip("no reports under docs/reports")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	page, err := b.NewPage(ctx)
	require.NoError(t, err)
	dir := os.Getenv(shotsEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	for _, file := range files {
		abs, err := filepath.Abs(file)
		require.NoError(t, err)
		name := "docs-" + strings.TrimSuffix(filepath.Base(file), ".html")
		require.NoError(t, page.Navigate(ctx, "file://"+abs))
		var want reportWant
		require.NoError(t, page.Eval(ctx, `({
			Markers: [...document.querySelectorAll("table.faults tr td:first-child")].filter(td => /^F\d+$/.test(td.textContent)).length,
			Verdict: document.querySelector(".verdict-text").textContent})`, &want))
		want.Lanes, want.Visible, want.Zoomed = -1, -1, -1
		checkReport(ctx, t, page, dir, name, abs, want)
	}
}

// reportWant is what a report must show; -1: not checked.
type reportWant struct {
	Lanes, Markers, Visible int
	Zoomed                  int // lanes of the comparison's zoomed inset
	Verdict                 string
}

// checkReport loads a report at 1400 and 390 px and checks it, keeping
// screenshots in dir when REPORT_SHOTS_DIR is set.
func checkReport(ctx context.Context, t *testing.T, page *browsertest.Page, dir, name, file string, want reportWant) {
	t.Helper()
	u := "file://" + file
	for _, width := range []int{1400, 390} {
		require.NoError(t, page.SetViewport(ctx, width, 900))
		require.NoError(t, page.Navigate(ctx, u), name)
		var got struct {
			Lanes, Visible, Markers, Axes, ScrollWidth, InnerWidth int
			Wide, Hidden, Cut, Crowded                             []string
			Verdicts, Zoomed                                       int
		}
		require.NoError(t, page.Eval(ctx, `({
			Lanes: document.querySelectorAll(".timeline .lane").length,
			Visible: [...document.querySelectorAll(".timeline .lane")].filter(e => e.offsetParent !== null).length,
			Markers: document.querySelectorAll(".timeline .fault-marker").length,
			Axes: document.querySelectorAll(".time-axis").length,
			ScrollWidth: document.documentElement.scrollWidth,
			InnerWidth: window.innerWidth,
			Wide: [...document.querySelectorAll("body *")].filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > window.innerWidth + 0.5).slice(0, 5).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)),
			Verdicts: document.querySelectorAll("table.inv td.status").length,
			Zoomed: document.querySelectorAll(".zoom .lane").length,
			Hidden: [...document.querySelectorAll("table.stack td")].filter(td => {
				if (td.textContent.trim() === "") return false; // an empty cell, not shown as a card's line
				const r = td.getBoundingClientRect(), box = td.closest(".scroll").getBoundingClientRect();
				return r.width === 0 || r.left < box.left - 0.5 || r.right > Math.min(box.right, window.innerWidth) + 0.5;
			}).slice(0, 5).map(td => td.closest("table").className + ": " + td.textContent),
			Cut: [...document.querySelectorAll(".tl-label")].filter(l => l.offsetParent !== null && l.scrollWidth > l.clientWidth).slice(0, 5).map(l => l.textContent),
			Crowded: [...document.querySelectorAll(".tl-axis .tl-plot")].flatMap(p => {
				const ts = [...p.querySelectorAll(".tick")].filter(t => getComputedStyle(t).visibility !== "hidden").map(t => t.getBoundingClientRect());
				const bad = [];
				ts.forEach((r, i) => {
					if (i > 0 && r.left < ts[i-1].right + 4) bad.push("overlap at " + Math.round(r.left));
					if (r.left < p.getBoundingClientRect().left - 1 || r.right > window.innerWidth + 0.5) bad.push("clipped at " + Math.round(r.left));
				});
				return bad;
			}).slice(0, 5)})`, &got))
		if os.Getenv(shotsEnv) != "" {
			png, err := page.Screenshot(ctx)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644))
			// One screen at a time, scrolled, easier to look at than the
			// whole page.
			var height float64
			require.NoError(t, page.Eval(ctx, `document.documentElement.scrollHeight`, &height))
			for i, y := 0, 0.0; y < height && i < 12; i, y = i+1, y+850 {
				require.NoError(t, page.Eval(ctx, fmt.Sprintf("window.scrollTo(0, %.0f)", y), nil))
				png, err := page.ScreenshotViewport(ctx)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d-part%d.png", name, width, i+1)), png, 0o644))
			}
		}
		if want.Lanes >= 0 {
			require.Equal(t, want.Lanes, got.Lanes, "%s: lanes", name)
		} else {
			require.Positive(t, got.Lanes, "%s: lanes", name)
		}
		if want.Visible >= 0 {
			require.Equal(t, want.Visible, got.Visible, "%s: lanes on the first page", name)
		}
		require.Equal(t, want.Markers, got.Markers, "%s: fault markers", name)
		require.Equal(t, 1, got.Axes, "%s: one time axis", name)
		require.LessOrEqual(t, got.ScrollWidth, got.InnerWidth, "%s at %d px: horizontal overflow: %v", name, width, got.Wide)
		// Every cell of the wide tables (each invariant's verdict, what
		// each fault did) shows within the screen: stacked as cards on
		// narrow screens, never cut off inside a scroll box.
		require.Positive(t, got.Verdicts, "%s: invariants' verdicts", name)
		if want.Zoomed >= 0 {
			require.Equal(t, want.Zoomed, got.Zoomed, "%s: lanes of the zoomed inset", name)
		}
		require.Empty(t, got.Hidden, "%s at %d px: table cells off screen", name, width)
		// Lane and row labels are whole (short ones on narrow screens),
		// and tick labels neither run together nor get clipped.
		require.Empty(t, got.Cut, "%s at %d px: cut labels", name, width)
		require.Empty(t, got.Crowded, "%s at %d px: tick labels", name, width)
	}
	require.Empty(t, page.Errors(), "%s: script errors", name)
	for _, r := range page.Requests() {
		require.True(t, strings.HasPrefix(r, "file://") || strings.HasPrefix(r, "data:") || r == "about:blank", "%s fetched %s", name, r)
	}
	pdf, err := page.PDF(ctx)
	require.NoError(t, err)
	pdfFile := filepath.Join(dir, name+".pdf")
	require.NoError(t, os.WriteFile(pdfFile, pdf, 0o644))
	require.NotEmpty(t, want.Verdict)
	require.Contains(t, pdfText(t, pdfFile), want.Verdict, "%s: the PDF's text", name)
}

// testBrowserCatchesScriptErrors: the error collection the report tests
// rely on sees an exception thrown by a page's script.
func testBrowserCatchesScriptErrors(t *testing.T, b *browsertest.Browser) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "broken.html")
	require.NoError(t, os.WriteFile(file, []byte(`<!DOCTYPE html><p>x</p><script>undefinedFunction()</script>`), 0o644))
	page, err := b.NewPage(ctx)
	require.NoError(t, err)
	require.NoError(t, page.Navigate(ctx, "file://"+file))
	require.NotEmpty(t, page.Errors())
}

// pdfText returns the text of a PDF, by pdftotext (poppler-utils).
func pdfText(t *testing.T, file string) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		if os.Getenv("SESSIONLOCK_REQUIRE_SERVERS") != "" {
			t.Fatal("SESSIONLOCK_REQUIRE_SERVERS is set but pdftotext (poppler-utils) is missing")
		}
		t.Skip("no pdftotext (apt-get install -y poppler-utils)")
	}
	out, err := exec.Command(bin, "-layout", file, "-").Output()
	require.NoError(t, err)
	// Lines wrap where the page ends: compare with the spaces collapsed.
	return strings.Join(strings.Fields(string(out)), " ")
}
