package harness_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// TestRealFaults runs each fault kind once against real memcached
// processes (3 nodes, 3 app processes, lease 1.5 s): the stage faults of
// scripts/test.sh (go test -p 1, SESSIONLOCK_FAULTS=1; skipped otherwise,
// so the unit stage does not run it). Every fault must be injected. Today
// every kind can hit a known defect of the backup copies
// (docs/simulation.md, issue 10): a run that breaks an invariant is an
// expected failure naming the defect, and one that happens to miss it
// says so; neither is silently passed. The replication step (issue 13)
// turns them into requirements (every kind clean): each kind runs again
// on the witness scheme (-backup witness, docs/replication.md section 14's
// Real... tests), where every invariant must hold.
func TestRealFaults(t *testing.T) {
	if os.Getenv("SESSIONLOCK_FAULTS") == "" {
		t.Skip("set SESSIONLOCK_FAULTS=1 (scripts/test.sh stage faults)")
	}
	base := harness.Config{
		Backend: harness.BackendMemcached, Managed: 3, Procs: 3,
		Sessions: 16, Burst: 6, Requests: 1500, Lease: 1500 * time.Millisecond,
		Duration: -1, Seed: 7,
	}
	at := func(s string) harness.At {
		a, err := harness.ParseAt(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	span := func(s string) harness.Span {
		sp, err := harness.ParseSpan(s)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	cases := []struct {
		name   string
		set    func(*harness.Config)
		defect string // the known defect a violation shows today; "" = must be clean
	}{
		// The independent test found kill -9 and restart-empty
		// clean; the simulation finds lost updates and two holders after
		// both (restart: about 1 seed in 10, kill: 1 in 40), and this
		// stage's restart run breaks invariants now and then. Known, not
		// one of the four defects; left to the replication step.
		{"kill-node", func(c *harness.Config) { c.KillNode = at("40%") },
			"simulation finding: lost updates after a kill (per-process node health)"},
		{"restart-node", func(c *harness.Config) { c.RestartNode = at("40%") },
			"simulation finding: lost updates after a restart (suspected: the restarted node's CAS counter starts again from 0, so an old token matches a new item)"},
		// The independent test found pause-app clean; here it
		// breaks invariants: the resumed process's operations, past
		// their client timeout, mark healthy nodes down in its own view
		// and its writes go to the backup copies, the per-process health
		// of defect 2 (a diagnosis from the symptoms, not yet proven).
		{"pause-app", func(c *harness.Config) { c.PauseApp = span("30%:2.5s"); c.PauseAppIndex = 2 },
			"defect 2's per-process node health (suspected: the resumed app marks healthy nodes down)"},
		{"flush-one-node", func(c *harness.Config) { c.Flush = at("40%"); c.FlushNode = -1 },
			"defect 1 (a flush between a commit's read and CAS deletes both copies) or defect 4 (a commit reported failed was applied)"},
		// Seeded, printed flush instants: three flushes, each of one
		// node drawn from the seed, at least a tenth of the run apart.
		{"flush-seeded", func(c *harness.Config) { c.FlushCount = 3; c.FlushNode = -1 },
			"defect 1 (a flush between a commit's read and CAS deletes both copies) or defect 4 (a commit reported failed was applied)"},
		{"partition", func(c *harness.Config) { c.Partition = span("30%:1.5s"); c.PartitionApp = 0 },
			"defect 2 (a node unreachable from one server only: another server's view of the node decides which copy it believes)"},
		{"pause-node", func(c *harness.Config) { c.PauseNode = span("30%:1.5s") },
			"defect 2 (a paused node lets another server read an old copy; an acknowledged commit is lost)"},
	}
	// The witness scheme (docs/replication.md, -backup witness) is opt-in
	// and not ready: its runs show every invariant it breaks, as expected
	// failures naming its open issues, until they hold (then "" again: a
	// requirement). In the clean-clone CI at cf17bcc, after the review-5
	// fixes, pause-app showed two holders and restart-node stuck locks in
	// some runs; the three runs of each before those fixes held. The two
	// holders were the harness's check (open, below); restart-node's
	// stuck locks were a store defect (its calls in flight at the restart
	// failed ErrUnavailable a second later, a commit so leaving its lock:
	// TestRestartedCopyReadAgain) and the harness's check (a lock left by
	// a failed request counted stuck: TestLockedAtEnd), both fixed.
	const witnessOpen = "the witness scheme's open issues (docs/replication.md, Review 5: status)"
	for _, tc := range slices.Clone(cases) {
		if tc.name == "flush-seeded" {
			// Three flushes of drawn nodes, a tenth of the run apart, fall
			// within the witness scheme's repair window: a double fault
			// there (section 8 allows a session unavailable), which the
			// harness's read-back of every session cannot tell from a
			// failure. flush-one-node covers the single flush.
			continue
		}
		tc.name, tc.defect = "witness/"+tc.name, witnessOpen
		cases = append(cases, tc)
	}
	// open lists, per case, the invariants (Result.Violations) its defect
	// may break; none listed: any. A violation of another one fails.
	open := map[string][]string{
		// Its two holders were the check's: a holder stopped inside its
		// handler past its lease, taken over, then fenced (the check
		// counts leases now: TestExclusionPausedHolder). Its stuck locks
		// after the stop (the resumed server failing healthy nodes:
		// TestOwnStopDoesNotFailNodes) are fixed; stuck locks stay open
		// because unknown outcomes under load leave locks nobody holds
		// (Review 5: status).
		"witness/pause-app": {"stuck_locks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.set(&cfg)
			if strings.HasPrefix(tc.name, "witness/") {
				cfg.Backup = "witness"
				// Issue 13's availability: requests sent a failover time
				// after the fault ended must succeed. The run goes on a
				// second past that time.
				cfg.RunPastFailover = time.Second
			}
			res := run(t, cfg)
			if res.FailoverChecked && res.RequestsAfterFailover == 0 {
				t.Errorf("no request was sent a failover time (%v) after the fault ended: the availability check (failed_after_failover) checked nothing", harness.FailoverTime)
			}
			for _, e := range res.Events {
				t.Logf("fault at %.0f ms: %s %s", e.AtMs, e.Kind, e.What)
				if e.Missed || e.Kind == harness.FaultError {
					t.Fatalf("fault not injected: %+v", e)
				}
			}
			if len(res.Events) == 0 {
				t.Fatal("no fault was injected")
			}
			if cfg.FlushCount > 0 {
				var flushed []string
				for _, e := range res.Events {
					if e.Kind == harness.FaultFlush {
						flushed = append(flushed, e.Target)
					}
				}
				if len(flushed) != cfg.FlushCount {
					t.Fatalf("%d flushes injected, want %d: %v", len(flushed), cfg.FlushCount, res.Events)
				}
			}
			var expected, v []string
			for _, x := range res.Violations() {
				if tc.defect != "" && (open[tc.name] == nil || slices.Contains(open[tc.name], x)) {
					expected = append(expected, x)
				} else {
					v = append(v, x)
				}
			}
			if len(v) > 0 {
				t.Errorf("invariants violated: %s", strings.Join(v, ", "))
			}
			switch {
			case len(expected) > 0:
				t.Logf("EXPECTED FAILURE (%s): invariants violated: %s", tc.defect, strings.Join(expected, ", "))
			case tc.defect != "":
				t.Logf("this run did not hit %s: every invariant it may break held", tc.defect)
			}
		})
	}
}
