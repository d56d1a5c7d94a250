package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/browsertest"
)

// want is what the page shows after its burst of 7 exclusive, 7 read-only
// and 6 lock-free calls: all answered, every increment kept, never two
// exclusive calls at once, every lock-free key kept, every read-only write
// refused. The page shows them as checks in words; this line is its
// result's data-summary.
const want = "exclusive=7 readonly=7 lockfree=6 failed=0 counter=7 lockfree_keys=6 max_overlap=1 readonly_refused=7"

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	// Handlers long enough that the exclusive calls' chain shows in the
	// waterfall (the example's default is 20 ms too).
	a, err := newApp(appConfig{Work: 20 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(a) // listens on 127.0.0.1
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return srv
}

// TestBurst plays the page's script with Go's HTTP client.
func TestBurst(t *testing.T) {
	srv := newServer(t)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar}
	do := func(method, path string) (int, map[string]any) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		require.NoError(t, err)
		res, err := c.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var v map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&v))
		return res.StatusCode, v
	}
	code, _ := do("POST", "/api/reset")
	require.Equal(t, http.StatusOK, code)

	var wg sync.WaitGroup
	codes := make([]int, 20)
	refused := make([]bool, 20)
	for i := range 20 {
		wg.Go(func() {
			switch i % 3 {
			case 0:
				codes[i], _ = do("POST", "/api/exclusive")
			case 1:
				var v map[string]any
				codes[i], v = do("GET", "/api/readonly")
				refused[i] = v["write_refused"] == true
			case 2:
				codes[i], _ = do("POST", fmt.Sprintf("/api/lockfree/%d", i))
			}
		})
	}
	wg.Wait()
	for i, code := range codes {
		require.Equal(t, http.StatusOK, code, "call %d", i)
		if i%3 == 1 {
			require.True(t, refused[i], "read-only call %d could write", i)
		}
	}
	_, sum := do("GET", "/api/summary")
	require.Equal(t, map[string]any{"counter": 7.0, "lockfree_keys": 6.0, "max_overlap": 1.0}, sum)

	res, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Empty(t, res.Header.Values("Set-Cookie"), "the page itself is served with sessions Off")
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Contains(t, string(b), `<p id="result"`)
}

// TestBrowser loads the page in headless Chromium: the page's JavaScript
// fires its 20 parallel calls with the browser's real cookie handling and
// draws their waterfall from the server's times. No script error; every
// call answered; the waterfall has a row per call, and its exclusive calls
// never overlap; no horizontal overflow at 1400 and 390 px.
func TestBrowser(t *testing.T) {
	b := browsertest.ForTest(t)
	srv := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	page, err := b.NewPage(ctx)
	require.NoError(t, err)
	shots := os.Getenv("REPORT_SHOTS_DIR")
	for _, width := range []int{1400, 390} {
		require.NoError(t, page.SetViewport(ctx, width, 900))
		require.NoError(t, page.Navigate(ctx, srv.URL+"/"))
		require.NoError(t, page.WaitFor(ctx, `document.body.dataset.done === "true"`))
		var got struct {
			Result, Verdict string
			Checks, Failed  int
			LockFreeWaits   int
			Holds           [][2]float64
			OffScreen, Cut  []string
			Crowded         []string
			Rows            int
			ScrollWidth     int
			InnerWidth      int
			Calls           []struct {
				Kind                  string
				Arrived, Started, End float64
			}
		}
		require.NoError(t, page.Eval(ctx, `({
			Result: document.getElementById("result").dataset.summary,
			Verdict: document.getElementById("result").textContent,
			Checks: document.querySelectorAll("#checks li.ok").length,
			Failed: document.querySelectorAll("#checks li.bad").length,
			LockFreeWaits: document.querySelectorAll("#waterfall .wf-row.lockfree .seg.wait").length,
			Holds: [...document.querySelectorAll("#waterfall .holder .seg.hold")].map(s => [s.getBoundingClientRect().left, s.getBoundingClientRect().right]),
			Cut: [...document.querySelectorAll("#waterfall .label")].filter(l => l.scrollWidth > l.clientWidth).map(l => l.textContent),
			Crowded: (() => { const ts = [...document.querySelectorAll("#waterfall .tick")].map(t => t.getBoundingClientRect()); return ts.flatMap((r, i) => (i > 0 && r.left < ts[i-1].right + 4) || r.right > window.innerWidth + 0.5 ? ["tick " + i] : []); })(),
			OffScreen: [...document.querySelectorAll("#calls td")].filter(td => { const r = td.getBoundingClientRect(); return r.width === 0 || r.left < 0 || r.right > window.innerWidth + 0.5; }).slice(0, 5).map(td => td.textContent),
			Rows: document.querySelectorAll("#waterfall .wf-row").length,
			ScrollWidth: document.documentElement.scrollWidth,
			InnerWidth: window.innerWidth,
			Calls: (window.calls || []).map(c => ({Kind: c.kind, Arrived: c.arrived, Started: c.started, End: c.ended}))})`, &got))
		require.Equal(t, want, got.Result, "the page's counts")
		// The counts as checks in words, all held.
		require.Equal(t, "PASS: every check held.", got.Verdict)
		require.Equal(t, 5, got.Checks, "checks that held")
		require.Zero(t, got.Failed, "checks that failed")
		// Lock-free calls take no lock: the time before their handler is
		// drawn as loading, never as a wait for the lock.
		require.Zero(t, got.LockFreeWaits, "lock-free calls drawn as waiting for the lock")
		// The lock holder's row: one bar per exclusive call, back to back,
		// never on top of each other.
		require.Len(t, got.Holds, 7, "the lock holder's bars")
		for i := 1; i < len(got.Holds); i++ {
			require.GreaterOrEqual(t, got.Holds[i][0], got.Holds[i-1][1]-1, "the lock holder's bars %d and %d overlap", i-1, i)
		}
		// Every figure of the answers shows on the screen, also at 390 px;
		// whole row labels; tick labels that neither run together nor get
		// clipped.
		require.Empty(t, got.OffScreen, "answer cells off screen at %d px", width)
		require.Empty(t, got.Cut, "cut labels at %d px", width)
		require.Empty(t, got.Crowded, "crowded tick labels at %d px", width)
		require.Equal(t, 20, got.Rows, "one waterfall row per call")
		require.Len(t, got.Calls, 20)
		var excl [][2]float64
		for _, c := range got.Calls {
			require.LessOrEqual(t, c.Arrived, c.Started)
			require.LessOrEqual(t, c.Started, c.End)
			if c.Kind == "exclusive" {
				excl = append(excl, [2]float64{c.Started, c.End})
			}
		}
		sort.Slice(excl, func(i, j int) bool { return excl[i][0] < excl[j][0] })
		for i := 1; i < len(excl); i++ {
			require.GreaterOrEqual(t, excl[i][0], excl[i-1][1], "exclusive calls %v and %v overlap", excl[i-1], excl[i])
		}
		require.LessOrEqual(t, got.ScrollWidth, got.InnerWidth, "horizontal overflow at %d px", width)
		if shots != "" {
			png, err := page.Screenshot(ctx)
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(shots, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(shots, fmt.Sprintf("ajaxburst-%d.png", width)), png, 0o644))
			// One screen at a time too, easier to look at on narrow screens.
			var height float64
			require.NoError(t, page.Eval(ctx, `document.documentElement.scrollHeight`, &height))
			for i, y := 0, 0.0; y < height && i < 6; i, y = i+1, y+850 {
				require.NoError(t, page.Eval(ctx, fmt.Sprintf("window.scrollTo(0, %.0f)", y), nil))
				png, err := page.ScreenshotViewport(ctx)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(shots, fmt.Sprintf("ajaxburst-%d-part%d.png", width, i+1)), png, 0o644))
			}
		}
	}
	require.Empty(t, page.Errors(), "script errors")
}
