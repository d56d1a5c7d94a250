package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// want is what the page shows after its burst of 7 exclusive, 7 read-only
// and 6 lock-free calls: all answered, every increment kept, never two
// exclusive calls at once, every lock-free key kept, every read-only write
// refused.
const want = "exclusive=7 readonly=7 lockfree=6 failed=0 counter=7 lockfree_keys=6 max_overlap=1 readonly_refused=7"

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	a, err := newApp(appConfig{Work: 5 * time.Millisecond})
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
	require.Contains(t, string(b), `<pre id="result">`)
}

// chromium returns the path of a Chromium binary, or "".
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

var resultRE = regexp.MustCompile(`(?s)<pre id="result">(.*?)</pre>`)

// TestBrowser loads the page in headless Chromium: the page's JavaScript
// fires its 20 parallel calls with the browser's real cookie handling, and
// the test reads the counts the page wrote into its DOM.
func TestBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		if os.Getenv("SESSIONLOCK_REQUIRE_SERVERS") != "" {
			t.Fatal("SESSIONLOCK_REQUIRE_SERVERS is set but no Chromium was found")
		}
		t.Skip("no Chromium found (install Debian's chromium package: apt-get install -y chromium, or set CHROMIUM); skipping the browser end-to-end test")
	}
	srv := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		// Virtual time does not run while fetches are pending, so the
		// budget only bounds the page's own timers; DOM is dumped when the
		// page is idle.
		"--virtual-time-budget=30000",
		"--dump-dom", srv.URL+"/")
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium failed: %s", stderr.String())
	m := resultRE.FindSubmatch(out)
	require.NotNil(t, m, "no result in the dumped DOM:\n%.2000s", out)
	require.Equal(t, want, html.UnescapeString(string(m[1])), "the page's counts")
	require.Contains(t, string(out), `data-done="true"`)
}

// limitedBuffer keeps the first 16 KiB written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 16<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
