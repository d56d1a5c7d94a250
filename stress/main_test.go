package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

func TestMain(m *testing.M) {
	if harness.IsChild() {
		os.Exit(harness.ServeChild())
	}
	os.Exit(m.Run())
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr, false)
	return code, stdout.String(), stderr.String()
}

// TestRunWritesReports runs a short workload on the embedded store and
// checks the summary, the JSON fields the issue lists and the HTML report.
func TestRunWritesReports(t *testing.T) {
	dir := t.TempDir()
	jsonFile, htmlFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	code, stdout, stderr := runCmd(t, "-sessions", "4", "-requests", "200", "-slow", "1ms", "-json", jsonFile, "-html", htmlFile)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.Contains(t, stdout, "PASS: every invariant held")
	require.Contains(t, stdout, "lost_updates")
	require.NotContains(t, stdout, "\r", "no progress line when stdout is not a terminal")

	var fields map[string]any
	b, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &fields))
	for _, k := range []string{"backend", "mode", "procs", "sessions", "requests_total", "requests_ok", "requests_failed",
		"lost_updates", "stuck_locks", "sessions_lost", "fenced_writes_rejected", "wait_p50_ms", "wait_p99_ms", "wait_max_ms",
		"makespan_ms", "ideal_makespan_ms", "throughput_rps"} {
		require.Contains(t, fields, k)
	}
	require.Equal(t, "memory", fields["backend"])
	require.Equal(t, "adaptive", fields["mode"])
	require.EqualValues(t, 4+3*5+200, fields["requests_total"])
	require.EqualValues(t, 0, fields["lost_updates"])

	h, err := os.ReadFile(htmlFile)
	require.NoError(t, err)
	page := string(h)
	require.Contains(t, page, "<svg")
	require.Contains(t, page, "session 3", "the timeline groups lanes by session")
	require.Contains(t, page, "lock wait")
	require.Contains(t, page, "PASS: every invariant held")
	// Self-contained: no scripts, stylesheets or images to fetch.
	for _, ref := range []string{"<script src", "<link", "<img", "src=", "url(", "https:", "@import"} {
		require.NotContains(t, page, ref)
	}
	require.Equal(t, strings.Count(page, "http://"), strings.Count(page, `xmlns="http://www.w3.org/2000/svg"`),
		"the only URLs are the SVG namespace")
}

// TestCompare runs a tiny workload with both strategies and writes their
// comparison.
func TestCompare(t *testing.T) {
	jsonFile := filepath.Join(t.TempDir(), "c.json")
	code, stdout, stderr := runCmd(t, "-compare", "-sessions", "1", "-burst", "4", "-requests", "8", "-mix", "slow=1", "-slow", "50ms", "-json", jsonFile)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.Contains(t, stdout, "wait strategy adaptive")
	require.Contains(t, stdout, "wait strategy aspnet")
	require.Contains(t, stdout, "aspnet / ours")
	var c struct {
		Ours   map[string]any     `json:"ours"`
		ASPNET map[string]any     `json:"aspnet"`
		Ratios map[string]float64 `json:"ratios"`
	}
	b, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &c))
	require.Equal(t, "adaptive", c.Ours["mode"])
	require.Equal(t, "aspnet", c.ASPNET["mode"])
	for _, k := range []string{"wait_p50", "wait_p99", "makespan"} {
		require.Contains(t, c.Ratios, k)
	}
	// ASP.NET's waiters sleep 500 ms between tries: bursts of four 50 ms
	// exclusive requests take longer with it than with ours.
	require.Greater(t, c.Ratios["makespan"], 1.0)
}

// TestBadUsage: bad flags and impossible setups exit with status 2 and a
// clear message, before any run.
func TestBadUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-procs", "2"}, "memory is not shared"},
		{[]string{"-mix", "incr=1,bogus=2"}, "unknown route"},
		{[]string{"-wait", "spin"}, "unknown strategy"},
		{[]string{"-kill-node", "soon", "-backend", "memcached", "-managed", "1"}, "-kill-node"},
		{[]string{"-backend", "memcached"}, "-managed N"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-compare", "-wait", "aspnet"}, "-compare"},
		{[]string{"-backend", "memcached", "-managed", "3", "-flush-count", "9"}, "-flush-count 9"},
		{[]string{"-backend", "memcached", "-managed", "3", "-flush-count", "2", "-flush", "50%"}, "neither -flush"},
		{[]string{"-backend", "memcached", "-managed", "3", "-backup", "twice"}, "unknown -backup"},
		{[]string{"-backup", "witness"}, "-backup is for the memcached and tiered backends"},
		{[]string{"-backend", "memcached", "-managed", "3", "-fault-spacing", "8s"}, "-fault-spacing 8s: a positive duration, with -flush-count"},
		{[]string{"-backend", "memcached", "-managed", "3", "-flush-count", "2", "-spaced-restart"}, "-spaced-restart needs -fault-spacing"},
		{[]string{"-backend", "memcached", "-managed", "3", "-flush-count", "101", "-fault-spacing", "8s"}, "-flush-count 101"},
		{[]string{"-repair-every", "3s"}, "-repair-every is for the memcached and tiered backends"},
		{[]string{"-idle-sessions", "-1"}, "-idle-sessions must not be negative"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := runCmd(t, c.args...)
			require.Equal(t, exitError, code)
			require.Contains(t, stderr, c.want)
		})
	}
	code, _, _ := runCmd(t, "-h")
	require.Equal(t, exitOK, code)
}

// TestUnreachedFaultExitCode: a fault the workload ended before fails the
// run (exit 1, "pass": false in the JSON), unless -allow-unreached-faults.
func TestUnreachedFaultExitCode(t *testing.T) {
	if _, err := exec.LookPath("memcached"); err != nil {
		if os.Getenv("SESSIONLOCK_REQUIRE_SERVERS") != "" {
			t.Fatal("SESSIONLOCK_REQUIRE_SERVERS is set but memcached is missing")
		}
		t.Skip("no memcached")
	}
	jsonFile := filepath.Join(t.TempDir(), "r.json")
	args := []string{"-backend", "memcached", "-managed", "1", "-sessions", "2", "-requests", "40", "-restart-node", "1h", "-json", jsonFile}
	code, stdout, stderr := runCmd(t, args...)
	require.Equal(t, exitViolation, code, "stdout: %s\nstderr: %s", stdout, stderr)
	require.Contains(t, stdout, "FAIL: invariants violated: faults_not_reached")
	var v struct {
		Pass     bool     `json:"pass"`
		Violated []string `json:"violated_invariants"`
	}
	b, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &v))
	require.False(t, v.Pass)
	require.Equal(t, []string{"faults_not_reached"}, v.Violated)

	code, stdout, stderr = runCmd(t, append(args, "-allow-unreached-faults")...)
	require.Equal(t, exitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
	require.Contains(t, stdout, "NOT REACHED")
	require.Contains(t, stdout, "PASS: every invariant held")
}
