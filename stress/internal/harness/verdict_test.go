package harness

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUnreachedFaultFails: a fault the workload never reached fails the
// run, unless allowed, and the JSON carries the verdict.
func TestUnreachedFaultFails(t *testing.T) {
	r := &Result{Events: []Event{
		{AtMs: 5, Kind: FaultRestartNode, What: "restarted"},
		{Kind: FaultKillNode, Missed: true, What: "kill memcached node at 2s: not reached"},
	}}
	require.Equal(t, []string{"faults_not_reached"}, r.Violations())
	require.False(t, r.OK())
	var j struct {
		Pass     bool     `json:"pass"`
		Violated []string `json:"violated_invariants"`
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &j))
	require.False(t, j.Pass)
	require.Equal(t, []string{"faults_not_reached"}, j.Violated)

	r.UnreachedFaultsAllowed = true
	require.True(t, r.OK())
	b, err = json.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &j))
	require.True(t, j.Pass)
	require.Empty(t, j.Violated)
	require.Contains(t, string(b), `"violated_invariants":[]`)

	var sb strings.Builder
	r.UnreachedFaultsAllowed = false
	require.NoError(t, WriteSummary(&sb, r))
	require.Contains(t, sb.String(), "FAIL: invariants violated: faults_not_reached")
	require.Contains(t, sb.String(), "[node killed] NOT REACHED")
}

// TestProgressLine: the progress line gives the share of the nearer bound
// and the time left.
func TestProgressLine(t *testing.T) {
	cfg := Config{Backend: "memory", Requests: 1000, Duration: 100 * time.Second}
	line := progressLine(cfg, 2*time.Second, 250, 250, 0)
	require.Contains(t, line, " 25%")
	require.Contains(t, line, "250 of 1000 requests")
	require.Contains(t, line, "ETA 6s")
	// The duration bound comes first: 50 s of 100.
	line = progressLine(cfg, 50*time.Second, 10, 10, 0)
	require.Contains(t, line, " 50%")
	require.Contains(t, line, "ETA 50s")
	require.Contains(t, progressLine(cfg, 0, 0, 0, 0), "ETA --")
}

// TestStyleOfUnknownKind: a fault kind the reports do not know is still
// labelled, by its name.
func TestStyleOfUnknownKind(t *testing.T) {
	s := styleOf("split_brain_thing")
	require.Equal(t, "split brain thing", s.Label)
	require.Equal(t, fallbackFault.Color, s.Color)
	require.Equal(t, "node killed", styleOf(FaultKillNode).Label)
}

// TestComparisonSentences: the ratios read the right way round, and a
// small run says that its figures are not stable.
func TestComparisonSentences(t *testing.T) {
	c := &Comparison{
		Ours:   &Result{WaitP50Ms: 0.06, WaitP99Ms: 10, MakespanMs: 100, ThroughputRPS: 800, RequestsWorkload: 20},
		ASPNET: &Result{WaitP50Ms: 0.024, WaitP99Ms: 500, MakespanMs: 2000, ThroughputRPS: 40, RequestsWorkload: 20},
	}
	s := strings.Join(c.sentences(), " ")
	require.Contains(t, s, "ASP.NET's median lock wait was 2.5x shorter than ours")
	require.Contains(t, s, "its p99 lock wait 50.0x longer than ours")
	require.Contains(t, s, "ASP.NET's throughput was 20.0x lower than ours")
	require.Contains(t, s, "A small sample: 20 requests per strategy")
	c.Ours.RequestsWorkload, c.ASPNET.RequestsWorkload = 1000, 1000
	require.NotContains(t, strings.Join(c.sentences(), " "), "small sample")
}

// TestFaultTableWords: instant faults say so, and "at" says from when.
func TestFaultTableWords(t *testing.T) {
	r := &Result{Events: []Event{{AtMs: 12, Kind: FaultKillNode, Target: "memcached node 0", What: "killed"}, {AtMs: 20, DurationMs: 30, Kind: "pause_node", What: "paused"}}}
	var b strings.Builder
	writeFaults(&b, r)
	require.Contains(t, b.String(), "at (since workload start)")
	require.Contains(t, b.String(), "<td data-label=\"lasted\">instant</td>")
	require.Contains(t, b.String(), "<td data-label=\"lasted\">30\u00a0ms</td>")
}

// TestKillRestartSpan: a kill ended by a restart of the same node is one
// "down" span, in the table and on the timeline.
func TestKillRestartSpan(t *testing.T) {
	evs := []Event{
		{AtMs: 10, Kind: FaultKillNode, Target: "memcached node 0"},
		{AtMs: 15, Kind: FaultFlush, Target: "memcached node 1"},
		{AtMs: 40, Kind: FaultRestartNode, Target: "memcached node 0"},
		{AtMs: 50, Kind: FaultKillNode, Target: "memcached node 1"},
	}
	require.Equal(t, map[int]int{0: 2}, restartOf(evs))
	var b strings.Builder
	writeFaults(&b, &Result{Events: evs})
	require.Contains(t, b.String(), "down until F3 (30\u00a0ms)")
}
