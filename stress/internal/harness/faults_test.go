package harness_test

import (
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// TestRealFaults runs each fault kind once against real memcached
// processes (3 nodes, 3 app processes, lease 1.5 s), alone and as the
// tiered store's cache (tiered/, over a real PostgreSQL): the stage faults of
// scripts/test.sh (go test -p 1, SESSIONLOCK_FAULTS=1; skipped otherwise,
// so the unit stage does not run it). Every fault must be injected.
//
// The runs named after their kind use the store's default configuration,
// which on 3 nodes is the witness scheme (docs/replication.md, section
// 14's Real... tests): they are issue 13's requirements, every invariant
// must hold, except those listed in open for a case, each with its
// reason (a violation listed there is an expected failure naming it; any
// other fails). The runs under backup-on/ use the opt-in backup-copy
// scheme (-backup on), which is not safe under every single fault: a
// violation there is an expected failure naming the defect
// (docs/simulation.md, issue 10), and a run that happens to miss it says
// so; neither is silently passed. A session left unreadable at the end
// (sessions_unavailable) fails every case but the double fault that
// lists it (runCase.allows): a single fault must leave every session
// readable.
//
// expiry-skew-behind and expiry-skew-ahead (default scheme only) move
// node 1's item expiries 3 s later or 2 s earlier (Config.ExpirySkew):
// copies expiring at different instants; each probe's session is also
// read in the skew's window, and the case needs one read there to have
// met a lone data copy.
func TestRealFaults(t *testing.T) {
	if os.Getenv("SESSIONLOCK_FAULTS") == "" {
		t.Skip("set SESSIONLOCK_FAULTS=1 (scripts/test.sh stage faults)")
	}
	base := realFaultsBase()
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
	kinds := []struct {
		name string
		set  func(*harness.Config)
		on   string // the known defect of BackupOn a violation shows
	}{
		// The independent test found kill -9 and restart-empty
		// clean on BackupOn; the simulation finds lost updates and two
		// holders after both (restart: about 1 seed in 10, kill: 1 in
		// 40), and its restart run breaks invariants now and then.
		{"kill-node", func(c *harness.Config) { c.KillNode = at("40%") },
			"simulation finding: lost updates after a kill (per-process node health)"},
		{"restart-node", func(c *harness.Config) { c.RestartNode = at("40%") },
			"simulation finding: lost updates after a restart (suspected: the restarted node's CAS counter starts again from 0, so an old token matches a new item)"},
		// The independent test found pause-app clean; on
		// BackupOn it breaks invariants: the resumed process's
		// operations, past their client timeout, mark healthy nodes down
		// in its own view and its writes go to the backup copies, the
		// per-process health of defect 2 (a diagnosis from the symptoms,
		// not yet proven).
		{"pause-app", func(c *harness.Config) { c.PauseApp = span("30%:2.5s"); c.PauseAppIndex = 2 },
			"defect 2's per-process node health (suspected: the resumed app marks healthy nodes down)"},
		{"flush-one-node", func(c *harness.Config) { c.Flush = at("40%"); c.FlushNode = -1 },
			"defect 1 (a flush between a commit's read and CAS deletes both copies) or defect 4 (a commit reported failed was applied)"},
		// Seeded, printed flush instants: three flushes, each of one
		// node drawn from the seed, at least a tenth of the run apart.
		{"flush-seeded", func(c *harness.Config) { c.FlushCount = 3; c.FlushNode = -1 },
			"defect 1 (a flush between a commit's read and CAS deletes both copies) or defect 4 (a commit reported failed was applied)"},
		// The node paused or cut off for 3.5 s, past the failover time
		// (1.5 s): the requests sent between a failover time after the
		// fault began and its end must succeed too (faultWindows).
		{"partition", func(c *harness.Config) { c.Partition = span("30%:3.5s"); c.PartitionApp = 0 },
			"defect 2 (a node unreachable from one server only: another server's view of the node decides which copy it believes)"},
		{"pause-node", func(c *harness.Config) { c.PauseNode = span("30%:3.5s") },
			"defect 2 (a paused node lets another server read an old copy; an acknowledged commit is lost)"},
	}
	open := realFaultsOpen()
	var cases []runCase
	for _, k := range kinds {
		c := runCase{name: k.name, set: k.set}
		if o, ok := open[k.name]; ok {
			c.defect, c.may = o.why, o.invs
		}
		cases = append(cases, c)
	}
	// Copies expiring at different instants on different nodes
	// (Config.ExpirySkew): node 1's items expire 3 s later than the store
	// set (its clock behind: its copies outlive the others', the
	// dangerous direction) or 3 s earlier (ahead: its copies die first,
	// a probe's at once). Requirements, on the default only (the
	// simulation's SimExpirySkew covers the rest): every invariant, each
	// probe's session read in the skew's window (found while a lone copy
	// lives, never found gone within its timeout) and gone for good at
	// the read-back.
	for _, sk := range []struct {
		name string
		d    time.Duration
	}{{"expiry-skew-behind", 3 * time.Second}, {"expiry-skew-ahead", -2 * time.Second}} {
		cases = append(cases, runCase{name: sk.name, set: func(c *harness.Config) {
			c.ExpirySkew, c.ExpirySkewNode = sk.d, 1
			c.Requests = 1000
		}})
	}
	for _, k := range kinds {
		cases = append(cases, runCase{name: "backup-on/" + k.name, backup: "on", set: k.set,
			defect: "the opt-in backup-copy scheme's " + k.on})
	}
	// The same single faults on tiered: its cache is the default (the
	// witness scheme on the 3 nodes), in front of PostgreSQL, which the
	// harness starts and does not fault. Requirements, every invariant
	// and the availability after the failover time included (the cache
	// decides every lock), but the memcached case's open items (open).
	// flush-seeded's double fault is left to the memcached case and to the
	// simulation's tiered kinds.
	for _, k := range kinds {
		if k.name == "flush-seeded" {
			continue
		}
		c := runCase{name: "tiered/" + k.name, backend: harness.BackendTiered, set: k.set}
		if o, ok := open[k.name]; ok {
			// The cache's open item is tiered's: kill-node's expired
			// session is undecidable in the cache, which tiered, whose
			// durable copy may expire before the cache's (RefreshBelow),
			// cannot overrule.
			c.defect, c.may = o.why, o.invs
		}
		cases = append(cases, c)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runFaultCase(t, base, tc) })
	}
}

// runFaultCase runs one case of TestRealFaults (or TestRealFaultsFourNodes)
// over base and checks it: every invariant, but those tc allows (its
// defect's), the fault injected, and the checks that could not decide
// counted as failures.
func runFaultCase(t *testing.T, base harness.Config, tc runCase) {
	t.Helper()
	cfg := base
	tc.set(&cfg)
	cfg.Backup = tc.backup
	if tc.backend != "" {
		cfg.Backend = tc.backend
		skipWithoutPostgres(t)
	}
	if tc.backup == "" {
		// Issue 13's availability: requests sent a failover time
		// after the fault ended must succeed. The run goes on a
		// second past that time.
		cfg.RunPastFailover = time.Second
		// Issue 13's expiry: four sessions of a 1 s timeout,
		// idle from 12.5, 25, 37.5 and 50% of the run (across
		// the fault's moment), must be gone once their copies
		// must have expired (expired_session_revived). Not on
		// backup-on, whose known defects make its runs expected
		// failures: the wait (a few seconds) buys nothing there.
		// On tiered, only where the cache loses records (kill,
		// restart, flush: a revival from the durable tier must
		// not bring an expired session back); its node pauses
		// and partitions are the cache's, checked on memcached,
		// and the stage's budget (4 min) is near.
		if tc.backend == "" || !tieredNoProbes[strings.TrimPrefix(tc.name, "tiered/")] {
			cfg.ExpiryProbes = 4
		}
		if cfg.ExpirySkew != 0 {
			// Six: each probe's data copies miss the skewed node
			// one time in three, and the case needs one there.
			cfg.ExpiryProbes = 6
		}
	}
	res := run(t, cfg)
	if res.FailoverChecked && res.RequestsAfterFailover == 0 {
		t.Errorf("no request was sent a failover time (%v) after the fault ended: the availability check (failed_after_failover) checked nothing", harness.FailoverTime)
	}
	// A check that could not decide is no pass.
	if res.CounterHistories == 0 || res.CounterUnchecked > 0 {
		t.Errorf("counter linearizability: %s", res.CounterVerdict())
	}
	if cfg.ExpiryProbes > 0 && (res.ExpiryReads == 0 || res.ExpiryUnchecked > 0) {
		t.Errorf("expiry: %d of %d read-backs failed: nothing known of them", res.ExpiryUnchecked, res.ExpiryReads)
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
	if cfg.ExpirySkew != 0 {
		// The skew moved items, and the window reads saw the state
		// they are for: a session with one data copy left.
		t.Logf("expiry skew %+ds: %d items moved (%d at once), %d rounds (%d busy); window: %d reads, %d lone copies, %d found, %d failed",
			res.ExpirySkewS, res.ExpirySkewShifted, res.ExpirySkewLapsed, res.ExpirySkewRounds, res.ExpirySkewBusy,
			res.ExpirySkewWindowReads, res.ExpirySkewLone, res.ExpirySkewWindowFound, res.ExpirySkewWindowErrors)
		if res.ExpirySkewShifted == 0 || res.ExpirySkewWindowReads != cfg.ExpiryProbes || res.ExpirySkewLone == 0 {
			t.Errorf("the skew tested nothing: %d items moved, %d of %d probe sessions read in its window, %d with a lone data copy",
				res.ExpirySkewShifted, res.ExpirySkewWindowReads, cfg.ExpiryProbes, res.ExpirySkewLone)
		}
		if res.ExpirySkewWindowErrors > 0 {
			t.Errorf("%d window reads failed (a lone copy with its witness must be failed over, or two empty answers give not found)", res.ExpirySkewWindowErrors)
		}
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
		// Flushes of one node only are one node's loss, a single
		// fault however often repeated: the double fault's
		// allowance needs two nodes flushed.
		slices.Sort(flushed)
		if len(slices.Compact(flushed)) < 2 && tc.may != nil && tc.backup == "" {
			t.Logf("every flush hit %s: a single node's loss, every invariant must hold", flushed[0])
			tc.defect, tc.may = "", nil
		}
	}
	var expected, v []string
	for _, x := range res.Violations() {
		if tc.allows(x) {
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
}

// tieredNoProbes are the tiered/ cases run without expiry probes: the
// cache's own faults without a loss of records (TestRealFaults).
var tieredNoProbes = map[string]bool{"pause-app": true, "partition": true, "pause-node": true}

// runCase is one run of TestRealFaults.
type runCase struct {
	name, backup, defect string
	backend              string // "" for base's, memcached
	set                  func(*harness.Config)
	may                  []string // the invariants the defect may break; nil: any but sessions_unavailable
}

// allows reports whether violating invariant x is tc's expected failure.
// A case with no defect allows none. sessions_unavailable (a session
// unreadable at the end: only a double fault may leave one, and before
// the harness counted it, it failed every such run) only when listed in
// may: no case of a single fault allows it, not even backup-on's, whose
// may is nil.
func (tc runCase) allows(x string) bool {
	switch {
	case tc.defect == "":
		return false
	case tc.may == nil:
		return x != "sessions_unavailable"
	}
	return slices.Contains(tc.may, x)
}

// TestExpirySkewRevivalIsCaught runs TestRealFaults' expiry-skew-behind
// case (three memcached, node 1's expiries 3 s late, four expiry
// probes) with its three app servers in this process, each over a store
// that takes a copy that outlived the others for the session
// (outlivingCopy: its own copy of each key lives 30 s past its TTL, far
// past the 3 s the harness allows the skewed node's copies, and is
// written back when the store answers not found). The read-back must
// find the expired sessions come back: expired_session_revived, and the
// run fails.
func TestExpirySkewRevivalIsCaught(t *testing.T) {
	skipWithoutMemcached(t)
	var served atomic.Int64
	res := run(t, harness.Config{
		Backend: harness.BackendMemcached, Managed: 3, Procs: 3, InProcess: true,
		Sessions: 16, Burst: 6, Requests: 1000, Lease: 1500 * time.Millisecond,
		Duration: -1, Seed: 7, ExpiryProbes: 4,
		ExpirySkew: 3 * time.Second, ExpirySkewNode: 1,
		WrapStore: func(s provider.Store) provider.Store {
			return newOutlivingCopy(s, 30*time.Second, &served)
		},
	})
	require.Positive(t, res.ExpirySkewShifted, "the skew moved nothing")
	require.Positive(t, served.Load(), "no lone copy was served; the test proves nothing")
	require.Positive(t, res.ExpiredRevived, "expired_session_revived")
	require.Contains(t, res.Violations(), "expired_session_revived")
	require.False(t, res.OK())
}

// realFaultsOpen lists the default configuration's (the witness scheme's) open
// items: per case, the invariants (Result.Violations) it may still
// break and why. Every other invariant of that case, and every
// invariant of a case not listed, must hold.
func realFaultsOpen() map[string]openItem {
	return map[string]openItem{
		// pause-app is a requirement since the sixth session of
		// 2026-11-30. Its two holders were the check's (a holder stopped
		// inside its handler past its lease, taken over, then fenced: the
		// check counts leases now, TestExclusionPausedHolder, each from
		// the holder's own last write since the seventh session of
		// 2026-12-01, TestExclusionCountsOwnWritesOnly); its stuck
		// locks after the stop (TestOwnStopDoesNotFailNodes) and locks
		// left by unknown outcomes (docs/protocol.md, "Writes of unknown
		// outcome") were fixed. Its stuck waits under load, seen before
		// the provider's freshLease and lock stamp fixes, did not come
		// back: 0 in 70 runs of this case, up to four at once (load
		// average 5 to 22).
		// restart-node's stuck locks (the clean-clone CI at cf17bcc) were
		// a store defect (its calls in flight at the restart failed
		// ErrUnavailable a second later, a commit so leaving its lock:
		// TestRestartedCopyReadAgain) and the harness's check (a lock
		// left by a failed request counted stuck: TestLockedAtEnd), both
		// fixed: a requirement now.
		// Three flushes of drawn nodes, a tenth of the run apart, can
		// fall within the witness scheme's repair window: a double fault
		// there (section 8 allows a session to end unavailable or not
		// found). A session the harness's read-back at the end still
		// finds unavailable (ErrUnavailable: "one copy and nothing to
		// fail over to"; seen in the first stage run) is counted as
		// sessions_unavailable and left out of the lost-update and
		// lost-session checks; every other session, and the lock checks
		// of all, are still judged (until the sixth session of
		// 2026-11-30 such a run had no verdict at all: review of
		// 2026-11-30 m2). Lost updates and two holders still fail;
		// flush-one-node is the single flush, a requirement.
		// Found by the expiry probes (seventh session of 2026-11-30): a
		// session that expired while a node holding one of its data
		// copies was dead reads ErrUnavailable (503) through every app
		// server, after the failover time and for as long as the node
		// stays dead or its witness lives (TW, 4 h): the other data copy
		// expired (a blank now), the witness remains, the dead node is
		// silent: "Undecidable" in docs/replication.md's state table.
		// Indistinguishable there from a live session whose copy on the
		// blank's node was flushed and whose other copy's node is slow:
		// a conflict of requirements in the asynchronous model (R13,
		// rejected after two cold reviews). R14 (the eighth session)
		// buries an expired session's witness at the first read that
		// hears all three nodes, which the probes, read only after the
		// kill, do not get. No revival seen; every other invariant holds.
		"kill-node":    {[]string{"expired_session_unavailable"}, "an expired session whose other data copy was on the killed node is undecidable (witness + blank + silent node): 503 instead of a new session"},
		"flush-seeded": {[]string{"sessions_lost", "sessions_unavailable", "stuck_locks"}, "a double fault: a second flush within the repair window of the first (section 8: a session may end unavailable or not found)"},
	}
}

// openItem is an open item of a TestRealFaults case: the invariants it
// may break and why.
type openItem struct {
	invs []string
	why  string
}

// realFaultsBase is TestRealFaults' configuration before a case's fault:
// three managed memcached nodes, three app processes.
func realFaultsBase() harness.Config {
	return harness.Config{
		Backend: harness.BackendMemcached, Managed: 3, Procs: 3,
		Sessions: 16, Burst: 6, Requests: 1500, Lease: 1500 * time.Millisecond,
		Duration: -1, Seed: 7,
	}
}

// TestRealFaultsFourNodes runs two of TestRealFaults' single faults,
// kill-node (kill -9 at 40%) and pause-node (SIGSTOP at 30% for 3.5 s,
// past the failover time), on four managed memcached nodes instead of
// three, with three app processes: each session's witness-scheme
// placement takes 3 of the 4 nodes, so the struck node (the fourth, index
// 3) holds a data copy of some sessions, the witness of others and
// nothing of the rest. The requirements are TestRealFaults' (runFaultCase:
// every invariant, the availability a failover time after the fault, the
// expiry probes), with its open items (realFaultsOpen). Gated as
// TestRealFaults (SESSIONLOCK_FAULTS=1); scripts/test.sh does not run it.
func TestRealFaultsFourNodes(t *testing.T) {
	if os.Getenv("SESSIONLOCK_FAULTS") == "" {
		t.Skip("set SESSIONLOCK_FAULTS=1")
	}
	base := realFaultsBase()
	base.Managed, base.FaultNode = 4, 3
	kill, err := harness.ParseAt("40%")
	require.NoError(t, err)
	pause, err := harness.ParseSpan("30%:3.5s")
	require.NoError(t, err)
	open := realFaultsOpen()
	for _, tc := range []runCase{
		{name: "kill-node", set: func(c *harness.Config) { c.KillNode = kill }, defect: open["kill-node"].why, may: open["kill-node"].invs},
		{name: "pause-node", set: func(c *harness.Config) { c.PauseNode = pause }},
	} {
		t.Run(tc.name, func(t *testing.T) { runFaultCase(t, base, tc) })
	}
}
