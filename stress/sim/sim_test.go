package sim

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

var (
	flagSeeds         = flag.Int("seeds", 0, "TestSim: number of seeds to run (0 skips TestSim; scripts/test.sh runs 1200, make sim more)")
	flagFirst         = flag.Uint64("first", 1, "TestSim: first seed")
	flagSeed          = flag.Uint64("seed", 0, "TestReplay: the seed to replay")
	flagReplays       = flag.Int("replays", 5, "TestReplay: how many times to replay -seed")
	flagKinds         = flag.String("kinds", "", "comma-separated fault kinds to draw (default all)")
	flagConns         = flag.String("conns", "", "the memcached Stores' connections: pooled, pipelined, or by default half the seeds each (seeds 2 and 3 modulo 4 pooled); the witness scheme is always pooled")
	flagOneCopy       = flag.Bool("one-copy", false, "TestReplay: one node (one copy), lock changes appended as deltas (TestSimOneCopy's seeds)")
	flagAppends       = flag.Bool("appends", false, "TestSim, TestReplay: the provider appends lock changes as deltas on every node count (with two or more, to the backup copy too), as production does; off, only -one-copy appends")
	flagClientTimeout = flag.Duration("client-timeout", 0, "TestSim, TestSimTiered, TestReplay: the memcached Stores' client timeout (default DefaultParams' 300 ms, the independent fault test's; the store's own default, 500 ms, is its Config's zero value)")
	flagTiered        = flag.Bool("tiered", false, "TestReplay (TestSim skips): the tiered store (memcached cache over a simulated durable tier), as TestSimTiered runs it")
	flagNodes         = flag.Int("nodes", 0, "TestSim, TestSimTiered, TestReplay: the memcached nodes (Params.Nodes; default DefaultParams' 3); each session's placement takes 3 of them (the witness scheme's P, Q and W)")
)

func params() Params {
	p := DefaultParams()
	switch {
	case *flagNodes < 0:
		panic(fmt.Sprintf("-nodes %d: want 1 or more (0: DefaultParams' %d)", *flagNodes, p.Nodes))
	case *flagNodes > 0:
		p.Nodes = *flagNodes
	}
	if *flagKinds != "" {
		for _, k := range strings.Split(*flagKinds, ",") {
			p.Kinds = append(p.Kinds, FaultKind(k))
		}
	}
	if *flagOneCopy {
		p = oneCopy(p)
	}
	if *flagAppends {
		p.appends = true
	}
	conns, ok := connChoices[*flagConns]
	if !ok {
		panic(fmt.Sprintf("-conns %q: want pooled or pipelined (default: both, by seed)", *flagConns))
	}
	p.conns = conns
	p.Tiered = *flagTiered
	if *flagClientTimeout > 0 {
		p.Timeout = *flagClientTimeout
	}
	mode, ok := backupModes[*flagBackup]
	if !ok {
		panic(fmt.Sprintf("-backup %q: want on, off or witness", *flagBackup))
	}
	p.Backup = mode
	if p.scheme() == memcached.BackupWitness && !p.Tiered {
		p.Creates = witnessCreates
	}
	return p
}

// connChoices are the values of -conns.
var connChoices = map[string]connChoice{"": connsMixed, "pipelined": connsPipelined, "pooled": connsPooled}

// oneCopy is p on one node: one copy of each session, whose lock changes
// the provider appends to the record as deltas (provider.Appender).
func oneCopy(p Params) Params {
	p.Nodes = 1
	p.appends = true
	return p
}

// runSeed runs one seed in its own synctest bubble and checks it.
func runSeed(t *testing.T, seed uint64, p Params) *Result {
	var res *Result
	synctest.Test(t, func(t *testing.T) { res = Run(seed, p) })
	Check(res)
	return res
}

// report prints a seed's schedule, its violations and how to replay it.
func report(r *Result) string {
	var b strings.Builder
	path := "get+cas"
	if r.GetAndTouch {
		path = "get-and-touch"
	}
	conns := "pipelined"
	if r.Pooled {
		conns = "pooled"
	}
	writes := "whole"
	if r.Appends {
		writes = "lock changes appended"
	}
	fmt.Fprintf(&b, "seed %d: schedule: %s; reads: %s; connections: %s; writes: %s\n", r.Seed, r.Schedule, path, conns, writes)
	for _, h := range r.Hits {
		fmt.Fprintf(&b, "  struck %s at %v (nodes %v), ended %v\n", h.Kind, h.Start, h.Nodes, h.End)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	if r.Params.Tiered {
		fmt.Fprintf(&b, "  tiered counters: %+v\n", r.Tiered)
	}
	var mode string
	switch {
	case r.Params.appends && r.Params.Nodes == 1:
		mode += " -one-copy"
	case r.Params.appends:
		mode += " -appends"
	}
	if r.Params.Nodes != DefaultParams().Nodes && !(r.Params.appends && r.Params.Nodes == 1) {
		mode += fmt.Sprintf(" -nodes %d", r.Params.Nodes)
	}

	if r.Params.Tiered {
		mode += " -tiered"
	}
	if r.Params.Backup != memcached.BackupDefault {
		mode += " -backup " + backupName(r.Params.Backup)
	}
	if len(r.Params.Kinds) > 0 {
		mode += " -kinds " + kindList(r.Params.Kinds)
	}
	for name, c := range connChoices {
		if c == r.Params.conns && c != connsMixed {
			mode += " -conns " + name
		}
	}
	fmt.Fprintf(&b, "  replay: go test ./stress/sim -run TestReplay -seed %d%s -v\n", r.Seed, mode)
	return b.String()
}

func TestOneSeed(t *testing.T) {
	res := runSeed(t, 1, DefaultParams())
	if len(res.Requests) != DefaultParams().Ops() {
		t.Fatalf("%d requests, want %d", len(res.Requests), DefaultParams().Ops())
	}
	acked := 0
	for _, rq := range res.Requests {
		if rq.Err == nil {
			acked++
		}
	}
	t.Logf("%d of %d requests acknowledged in %v virtual\n%s", acked, len(res.Requests), res.Elapsed, report(res))
	if len(res.Hits) == 0 {
		t.Fatal("no fault struck")
	}
}

// runSeeds runs n seeds from first, two at a time per core, and returns
// their checked results in seed order.
func runSeeds(t *testing.T, first uint64, n int, p Params) []*Result {
	results := make([]*Result, n)
	t.Run("seeds", func(t *testing.T) {
		for i := range n {
			seed := first + uint64(i)
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				results[i] = runSeed(t, seed, p)
			})
		}
	})
	return results
}

// sweep runs n seeds of p from -first and prints, under name, how long
// they took, what each fault kind found and the coverage.
func sweep(t *testing.T, name string, p Params, n int) ([]*Result, *tally, *Coverage) {
	start := time.Now()
	results := runSeeds(t, *flagFirst, n, p)
	took := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d nodes, %d seeds of %d requests in %v (%.1f seeds/s)\n", name, p.Nodes, n, p.Ops(), took.Round(time.Millisecond), float64(n)/took.Seconds())
	tl := newTally(results)
	tl.print(&b)
	cov := NewCoverage()
	for _, r := range results {
		cov.Add(r)
	}
	cov.Print(&b)
	fmt.Print(b.String())
	return results, tl, cov
}

// Tally is what a set of seeds found, per fault kind.
type tally struct {
	seeds map[FaultKind]int
	found map[FaultKind]map[Invariant][]uint64 // seeds
}

func newTally(results []*Result) *tally {
	tl := &tally{seeds: map[FaultKind]int{}, found: map[FaultKind]map[Invariant][]uint64{}}
	for _, r := range results {
		k := KindOf(r.Seed, r.Params.kinds())
		tl.seeds[k]++
		if tl.found[k] == nil {
			tl.found[k] = map[Invariant][]uint64{}
		}
		seen := map[Invariant]bool{}
		for _, v := range r.Violations {
			if !seen[v.Inv] {
				seen[v.Inv] = true
				tl.found[k][v.Inv] = append(tl.found[k][v.Inv], r.Seed)
			}
		}
	}
	return tl
}

func (tl *tally) print(w *strings.Builder) {
	fmt.Fprintf(w, "violations per fault kind (seeds with the violation / seeds of the kind):\n")
	for _, k := range allKinds() {
		if tl.seeds[k] == 0 {
			continue
		}
		var parts []string
		for _, inv := range Invariants {
			if s := tl.found[k][inv]; len(s) > 0 {
				parts = append(parts, fmt.Sprintf("%s %d/%d (e.g. seed %d)", inv, len(s), tl.seeds[k], s[0]))
			}
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		fmt.Fprintf(w, "  %-11s %s\n", k, strings.Join(parts, ", "))
	}
}

// defects are the four defects of issue 10 that the backup-copy scheme
// (memcached.BackupOn, the default before issue 13, now opt-in) had, and
// a fifth, each with the fault kind that finds it and the invariant the
// checker reports. Those not fixed are expected failures of that scheme
// (TestSimBackupOn); fixed ones are regressions there. The witness
// scheme, the default on 3 nodes, fixes them all (regressions in TestSim:
// requireWitness).
var defects = []struct {
	name string
	kind FaultKind
	inv  Invariant
	// fixedOnBackupOn: BackupOn no longer has it; TestSimBackupOn
	// requires it absent.
	fixedOnBackupOn bool
}{
	{"defect1-flush-between-read-and-cas-loses-session", FaultFlush, InvSessionLost, false},
	{"defect2-paused-node-serves-old-copy-lost-update", FaultPause, InvLostUpdate, false},
	{"defect3-pause-and-kill-two-holders", FaultPauseKill, InvTwoHolders, false},
	// A write answered as not written was read. Before the sixth
	// session's d4 it showed in 177 of 2,400 seeds of delay and
	// flush-each (a write that landed on the primary answered a
	// conflict); after, in about 1 of 4,800 (delay: a process that took
	// the primary for down read the refused write's backup copy before
	// its undo). Since bocontract, BackupOn sends a write's backup half
	// only after its primary half succeeded: a refused write is on no
	// copy (store/memcached doc.go, "The unknown-outcome contract").
	{"defect4-failed-commit-applied", "", InvFailedApplied, true},
	// Found by the expiry kind (not one of the four): an expired
	// session is read back with its old values, from a copy that
	// outlived the others. Suspected: a process that does not yet know
	// the session's short own timeout reads it with GetAndTouch and the
	// default timeout as its hint, which touches the backup copy too;
	// the CAS that corrects the TTL does not reach the backup copy, which
	// keeps 20 minutes; once the primary expires, a read misses there and
	// repairs from the backup. About 1 seed in 130 of the kind.
	{"defect5-expired-session-revived-from-backup-copy", FaultExpiry, InvExpiredRead, false},
}

// TestSim runs -seeds seeds (skipped without it: scripts/test.sh stage sim
// and make sim run it) of the memcached Store's default configuration on
// 3 nodes and 4 app servers, which is the witness scheme, over its fault
// kinds, prints what each fault kind found and the coverage, and requires
// every invariant (requireWitness: only double faults may lose a session
// or leave it unavailable). With -backup on or off it runs that scheme
// instead and checks it as TestSimBackupOn does. With -tiered it is
// skipped: TestSimTiered runs the tiered store.
func TestSim(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := params()
	if p.Tiered {
		t.Skip("-tiered: TestSimTiered runs the tiered store")
	}
	name := "memcached, backup " + p.scheme().String()
	if p.Backup == memcached.BackupDefault {
		name += " (the default)"
	}
	if p.appends {
		name += ", appends"
	}
	if p.scheme() == memcached.BackupWitness {
		results, tl, cov := sweep(t, name, p, *flagSeeds)
		replayFailing(t, p, results)
		requireWitness(t, p, results, tl, cov)
		return
	}
	expectDefects(t, name, p, *flagSeeds)
}

// TestSimBackupOn runs -seeds/4 seeds (at least 4 a kind) of the
// backup-copy scheme (memcached.BackupOn, opt-in on 3 nodes) and requires
// the checker to report each of its open defects (expected failures, see
// defects) and none of its fixed ones (defect 4, the unknown-outcome
// contract: regressions): BackupOn is not safe under every single fault
// (docs/replication.md section 11.1). Skipped when -backup or -tiered
// chooses TestSim's scheme.
func TestSimBackupOn(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	if *flagBackup != "" || *flagTiered {
		t.Skip("-backup or -tiered: TestSim runs that scheme")
	}
	p := params()
	p.Backup, p.Creates = memcached.BackupOn, 0
	expectDefects(t, "memcached, backup on (opt-in)", p, max(len(p.kinds())*4, *flagSeeds/4))
}

// replayFailing replays up to 20 failing seeds of results once each and
// prints how many broke the same invariants again, and the reports of
// the first three.
func replayFailing(t *testing.T, p Params, results []*Result) {
	var failing []*Result
	for _, r := range results {
		if len(r.Violations) > 0 && len(failing) < 20 {
			failing = append(failing, r)
		}
	}
	same := 0
	for _, r := range failing {
		if sameInvariants(r, runSeed(t, r.Seed, p)) {
			same++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "replay: %d of %d failing seeds broke the same invariants again\n", same, len(failing))
	for i, r := range failing {
		if i == 3 {
			break
		}
		b.WriteString(report(r))
	}
	fmt.Print(b.String())
}

// expectDefects runs n seeds of p (a scheme other than the witness one),
// prints what each fault kind found, the coverage and how often failing
// seeds fail again on replay, and requires the checker to report each
// defect of the backup-copy scheme (expected failures).
func expectDefects(t *testing.T, name string, p Params, n int) {
	results, tl, cov := sweep(t, name, p, n)
	var b strings.Builder
	var appended int64
	for _, r := range results {
		appended += r.appended
	}
	fmt.Fprintf(&b, "%d lock changes appended as deltas\n", appended)
	var retried, failed int
	for _, r := range results {
		for _, f := range r.Finals {
			if f.Retried != nil {
				retried++
				if f.Err != nil {
					failed++
				}
			}
		}
	}
	fmt.Fprintf(&b, "%d final requests retried an AcquireItem of unknown outcome, %d of them failed again\n", retried, failed)
	if appended == 0 && (p.appends || (p.scheme() == memcached.BackupOn && !p.Tiered && n >= 8)) {
		t.Error("the seeds that append appended no delta")
	}
	fmt.Print(b.String())
	replayFailing(t, p, results)

	for _, k := range p.kinds() {
		if tl.seeds[k] > 0 && cov.Count(string(k), "any") < tl.seeds[k] {
			t.Errorf("fault kind %s struck in %d of its %d seeds", k, cov.Count(string(k), "any"), tl.seeds[k])
		}
	}
	// Expiry at different instants on different nodes: defect 5 (an
	// expired session read back) is expected; any other invariant broken
	// under it (a session lost early, a final stuck, a failed write
	// applied) is a regression. BackupOn does not keep every guarantee
	// here by itself: a final whose write's outcome is unknown retries
	// that once, as a user would (runner.final), and is stuck only if the
	// retry fails too.
	for inv, seeds := range tl.found[FaultExpiry] {
		if inv != InvExpiredRead {
			t.Errorf("expiry: %s in %d of %d seeds (e.g. seed %d)", inv, len(seeds), tl.seeds[FaultExpiry], seeds[0])
		}
	}
	for _, d := range defects {
		t.Run(d.name, func(t *testing.T) {
			var seeds []uint64
			total := 0
			for _, k := range p.kinds() {
				if d.kind == "" || d.kind == k {
					seeds = append(seeds, tl.found[k][d.inv]...)
					total += tl.seeds[k]
				}
			}
			if total == 0 {
				t.Skipf("no seed of kind %s", d.kind)
			}
			if d.fixedOnBackupOn {
				if len(seeds) > 0 {
					t.Errorf("REGRESSION %s: %s in %d of %d seeds (first: seed %d)", d.name, d.inv, len(seeds), total, seeds[0])
				}
				return
			}
			// Rare defects: search more seeds of the kind, so that the
			// expectation does not rest on the luck of -seeds: up to
			// 600, in parallel batches of 50 (every seed of a batch
			// counts as searched).
			extra := 0
			if len(seeds) == 0 {
				kp := p
				kp.Kinds = []FaultKind{d.kind}
				for extra < 600 && len(seeds) == 0 {
					for _, r := range runSeeds(t, 1_000_001+uint64(extra), 50, kp) {
						if r.Has(d.inv) {
							seeds = append(seeds, r.Seed)
						}
					}
					extra += 50
				}
				total += extra
			}
			if len(seeds) == 0 {
				t.Fatalf("the checker reported no %s in %d seeds of %q: either the defect is fixed (turn this expected failure into a regression test) or the checker is broken", d.inv, total, d.kind)
			}
			fmt.Printf("EXPECTED FAILURE %s: today's store breaks %s in %d of %d seeds of %q (%d searched beyond -seeds; first: seed %d)\n", d.name, d.inv, len(seeds), total, d.kind, extra, seeds[0])
		})
	}
}

// TestNoFaultIsClean runs seeds without faults, on memcached (the default,
// the witness scheme on 3 nodes, and BackupOn) and on tiered: the checker
// must find nothing (a checker that reports violations without faults is
// broken).
func TestNoFaultIsClean(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N")
	}
	tp := params()
	tp.Tiered, tp.Creates = true, 0
	op := params()
	op.Backup, op.Creates = memcached.BackupOn, 0
	for _, p := range []Params{params(), tp, op} {
		for seed := uint64(1); seed <= 20; seed++ {
			var res *Result
			synctest.Test(t, func(t *testing.T) { res = RunSchedule(seed, p, nil) })
			if v := Check(res); len(v) > 0 {
				t.Errorf("seed %d without faults (tiered %v, backup %s): %v", seed, p.Tiered, p.scheme(), v)
			}
			// Sessions created without faults: acknowledged, with a
			// witness record and two data records found when they
			// returned (so the record flags the checker reads,
			// dataFlags and witnessFlags, are the Store's), never
			// without their witness, nothing lost.
			if len(res.Creations) != p.Creates {
				t.Errorf("seed %d: %d sessions created during the run, want %d", seed, len(res.Creations), p.Creates)
			}
			for _, c := range res.Creations {
				if c.Req.Err != nil || !c.Witness || c.Data != 2 || c.NoWitness || c.Reported || len(c.Losses) > 0 {
					t.Errorf("seed %d without faults: creation %s: err %v, witness record seen %v, %d data records, without witness %v, reported %v, losses %v", seed, c.Req.ID, c.Req.Err, c.Witness, c.Data, c.NoWitness, c.Reported, c.Losses)
				}
			}
		}
	}
}

// TestReplay replays -seed -replays times, prints its schedule and
// violations, and how many replays broke the same invariants (goroutine
// scheduling is not seeded, so a replay may take another path).
func TestReplay(t *testing.T) {
	if *flagSeed == 0 {
		t.Skip("run with -seed N")
	}
	p := params()
	first := runSeed(t, *flagSeed, p)
	t.Log("\n" + report(first))
	if p.scheme() == memcached.BackupWitness {
		fails, unknown, d6 := lateFailures(first, failoverTime(p))
		for _, f := range slices.Concat(fails, unknown, d6) {
			t.Logf("SimFailoverTime: failed although started %v after the last fault event: %s", failoverTime(p), f)
		}
	}
	if testing.Verbose() {
		logRun(t, "", first)
	}
	same, shown := 0, len(first.Violations) > 0
	for i := range *flagReplays - 1 {
		r := runSeed(t, *flagSeed, p)
		if sameInvariants(first, r) {
			same++
		} else {
			t.Logf("replay %d broke other invariants:\n%s", i+2, report(r))
		}
		if testing.Verbose() && !shown && len(r.Violations) > 0 {
			// The first run broke nothing: its requests say nothing of
			// the violation (seed 62928's first run took another path).
			shown = true
			logRun(t, fmt.Sprintf("replay %d: ", i+2), r)
		}
	}
	t.Logf("%d of %d replays broke the same invariants", same, *flagReplays-1)
}

// logRun logs every request of r with its store operations, its
// creations and its final requests, each line prefixed with prefix.
func logRun(t *testing.T, prefix string, r *Result) {
	t.Helper()
	for _, rq := range r.Requests {
		t.Logf("%s%s %s app%d s%d n=%d w=%s acq=%v lock=%d [%v,%v] err=%v ops=%v", prefix, rq.ID, rq.Kind, rq.App, rq.Session, rq.N, rq.W, rq.Acq, rq.LockID, rq.Call, rq.Ret, rq.Err, rq.Ops)
	}
	for _, c := range r.Creations {
		t.Logf("%screation %s (session %d): reported without its witness %v, no witness record when it returned %v, a witness record seen %v, %d data records, data copies erased with no witness record at %v (marked nowit at %v)", prefix, c.Req.ID, c.Session, c.Reported, c.NoWitness, c.Witness, c.Data, c.Losses, c.NoWitLosses)
	}
	for _, rq := range r.Finals {
		t.Logf("%s%s app%d s%d n=%d w=%s [%v,%v] err=%v retried=%v lf=%d ops=%v", prefix, rq.ID, rq.App, rq.Session, rq.N, rq.W, rq.Call, rq.Ret, rq.Err, rq.Retried, len(rq.LFKeys), rq.Ops)
	}
}

// sameInvariants reports whether two runs broke the same set of
// invariants.
func sameInvariants(a, b *Result) bool {
	for _, inv := range Invariants {
		if a.Has(inv) != b.Has(inv) {
			return false
		}
	}
	return true
}

// TestExpiryCheckerCatchesBrokenTTL runs expiry seeds against two broken
// variants: a store that keeps every session 4 s longer than asked (the
// checker must report a session read back after it expired) and one that
// keeps it 3 s shorter (at least a millisecond; it must report a session
// lost before its timeout, on one copy so that no second copy hides the
// loss). A checker that passes them is broken. Up to 100 seeds each: the
// first hits come at seeds 3 and 18 (about 1 in 2 and 1 in 12 seeds
// report them). TestStoreOutlivesTTLAcrossClockSkips is the deterministic
// check of the store's own slack.
func TestExpiryCheckerCatchesBrokenTTL(t *testing.T) {
	for _, c := range []struct {
		skew time.Duration
		inv  Invariant
		p    Params
	}{
		{4 * time.Second, InvExpiredRead, DefaultParams()},
		{-3 * time.Second, InvSessionLost, oneCopy(DefaultParams())},
	} {
		t.Run(fmt.Sprint(c.inv), func(t *testing.T) {
			p := c.p
			p.Kinds = []FaultKind{FaultExpiry}
			p.ttlSkew = c.skew
			if r := firstWith(t, p, c.inv, 100); r == nil {
				t.Fatalf("TTLs skewed by %v: the checker reported no %s in 100 expiry seeds", c.skew, c.inv)
			}
		})
	}
}

// firstWith runs expiry seeds 1 to n with p and returns the first result
// that broke inv (logged), or nil.
func firstWith(t *testing.T, p Params, inv Invariant, n uint64) *Result {
	t.Helper()
	for seed := uint64(1); seed <= n; seed++ {
		if r := runSeed(t, seed, p); r.Has(inv) {
			t.Logf("seed %d:\n%s", seed, report(r))
			return r
		}
	}
	return nil
}

// TestSimOneCopy runs the simulation on one node (one copy), where the
// provider appends lock changes to the record as deltas (issue 12):
// -seeds/20 seeds (at least 40) of the kinds that leave that node its
// memory: an app server paused (lease takeover, fenced holders), short
// own timeouts (expiry: the TTL after every append, I4) and a slow node
// (timeouts: outcomes unknown, stray touches). Every invariant must hold.
// A session lost under delay was a defect of this mode: a write that timed
// out had its key noted stale, and when the node was back the Store
// removed it, the only copy (store/memcached
// TestOneCopyHungWriteKeepsSession); it is now a regression.
func TestSimOneCopy(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := oneCopy(DefaultParams())
	p.Kinds = []FaultKind{FaultPauseApp, FaultExpiry, FaultDelay}
	n := max(40, *flagSeeds/20)
	results := runSeeds(t, *flagFirst, n, p)
	var appended int64
	for _, r := range results {
		appended += r.appended
		if len(r.Violations) > 0 {
			t.Errorf("%s", report(r))
		}
	}
	t.Logf("%d seeds, %d lock changes appended as deltas", n, appended)
	if appended == 0 {
		t.Error("the seeds appended no delta")
	}
}

// kindList is kinds as the -kinds flag takes them.
func kindList(kinds []FaultKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

// TestSimAbandon runs -seeds/40 seeds (at least 24) of the abandon kind:
// an app server takes a session's lock and stops, the others write the
// session lock-free at least once a lease, and another waits for the
// lock. Every invariant must hold; stuck-while-written is the one this
// kind is for: the lock must be taken within abandonBound of the
// waiter's start. A holder that resumes after the writes (Fault.Resume)
// must be told ErrLockLost. With the stamp that lock-free writes bump (provider's
// lockStamp returning the record's Seq, before the fix) it is reported
// in every seed (docs/simulation.md).
func TestSimAbandon(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := DefaultParams()
	p.Kinds = []FaultKind{FaultAbandon}
	n := max(24, *flagSeeds/40)
	results := runSeeds(t, *flagFirst, n, p)
	stuck := 0
	for _, r := range results {
		if r.Has(InvStuckWhileWritten) {
			stuck++
		}
		if len(r.Violations) > 0 {
			t.Errorf("%s", report(r))
		}
	}
	abandoned, resumed, fenced := 0, 0, 0
	for _, r := range results {
		for _, rq := range r.Requests {
			if rq.ID != fmt.Sprintf("abandon%d", rq.Session) || !rq.Acq {
				continue
			}
			abandoned++
			if !errors.Is(rq.Err, errAbandoned) {
				resumed++
				if errors.Is(rq.Err, provider.ErrLockLost) {
					fenced++
				}
			}
		}
	}
	fmt.Printf("abandon: %d seeds, %d locks abandoned under lock-free writes (%d holders resumed and committed, %d of them told ErrLockLost), %s in %d\n", n, abandoned, resumed, fenced, InvStuckWhileWritten, stuck)
	if fenced < resumed {
		t.Errorf("%d of %d resumed holders committed without ErrLockLost, their lease long over and a waiter waiting (their lock was never broken)", resumed-fenced, resumed)
	}
	if abandoned < n/2 {
		t.Errorf("only %d of %d seeds abandoned a lock: the kind does not exercise the waiters", abandoned, n)
	}
}

// TestAbandonCheckerCatchesSeqStamp runs abandon seeds against a
// deliberately broken variant: the provider reads every record with
// DataSeq 0 (Params.seqStamp), so its lock stamp moves with every write,
// lock-free ones included, as it did when the stamp was the record's Seq.
// The checker must report stuck-while-written; against the provider as it
// is, it must not (TestSimAbandon runs more seeds). A checker that passes
// the broken variant is broken.
func TestAbandonCheckerCatchesSeqStamp(t *testing.T) {
	p := DefaultParams()
	p.Kinds = []FaultKind{FaultAbandon}
	for seed := uint64(1); seed <= 3; seed++ {
		if r := runSeed(t, seed, p); r.Has(InvStuckWhileWritten) {
			t.Errorf("the provider as it is:\n%s", report(r))
		}
		p := p
		p.seqStamp = true
		r := runSeed(t, seed, p)
		if !r.Has(InvStuckWhileWritten) {
			t.Errorf("stamp moved by every write: the checker reported no %s:\n%s", InvStuckWhileWritten, report(r))
		} else if seed == 1 {
			t.Logf("stamp moved by every write:\n%s", report(r))
		}
	}
}

// TestReplayLineCarriesNodes runs one flush-all seed on 5 nodes: the
// fault must strike all five (the run has them), and the seed's replay
// line must carry -nodes 5, which DefaultParams' 3 nodes and one copy
// (-one-copy) leave out, so that a replay runs on the seed's nodes.
func TestReplayLineCarriesNodes(t *testing.T) {
	p := DefaultParams()
	p.Nodes, p.Kinds = 5, []FaultKind{FaultFlushAll}
	res := runSeed(t, 1, p)
	if len(res.Hits) == 0 || len(res.Hits[0].Nodes) != 5 {
		t.Fatalf("flush-all on 5 nodes struck %v, want nodes 0 to 4", res.Hits)
	}
	if rep := report(res); !strings.Contains(rep, "-run TestReplay -seed 1 -nodes 5 -kinds flush-all") {
		t.Errorf("replay line without -nodes 5:\n%s", rep)
	}
	for _, q := range []Params{DefaultParams(), oneCopy(DefaultParams())} {
		if rep := report(&Result{Seed: 1, Params: q}); strings.Contains(rep, "-nodes") {
			t.Errorf("%d nodes: replay line with -nodes:\n%s", q.Nodes, rep)
		}
	}
}
