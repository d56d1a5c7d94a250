package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

var flagBackup = flag.String("backup", "", "TestSim, TestReplay: the memcached Store's replication: on (TestSimBackupOn's seeds), off or witness; default the Store's default (the witness scheme on 3 nodes)")

// backupModes are the values of -backup ("": memcached.BackupDefault).
var backupModes = map[string]memcached.BackupMode{"": memcached.BackupDefault, "on": memcached.BackupOn, "off": memcached.BackupOff, "witness": memcached.BackupWitness}

// backupName is the -backup value of mode.
func backupName(mode memcached.BackupMode) string {
	for name, m := range backupModes {
		if m == mode && name != "" {
			return name
		}
	}
	return ""
}

// witnessParams are the parameters of the witness scheme's runs
// (docs/replication.md, "2+W"): DefaultParams (3 nodes, 4 app servers)
// with memcached.Config.Backup = BackupWitness, which is what the
// default gives on 3 nodes.
func witnessParams() Params {
	p := DefaultParams()
	p.Backup = memcached.BackupWitness
	p.Creates = witnessCreates
	return p
}

// witnessCreates is how many sessions each seed of the witness scheme
// creates during the run, under its faults (Params.Creates).
const witnessCreates = 2

// d6Before is the D6 allowance before opposite seeds 208, 2058 and 2859
// (a broken variant for TestD6CreationFailedOverByRepairClient and
// TestD6UnavailableBeforeLoss): a creation without its witness only if
// its Store reported it within the creating request's own goroutine
// (Creation.Witless), not by the nowit mark of the data record erased
// (Creation.NoWitLosses); any request of the session told ErrUnavailable
// before the loss refused the allowance, and so did, for a session-lost
// violation too, a final request that failed otherwise.
var d6Before bool

// d6Creation returns session s's Creation when the run may lose it by
// the one stated exception to single-fault safety (docs/replication.md,
// R8 and section 6, review-4 D6): it was created during the run without
// its witness by R8's failed-candidate case or R7's completion of an Add
// abandoned at its primary, and a fault then erased a node holding one
// of its data records while no node held its witness record
// (Creation.Losses: before R9 stored it). Without its witness: no node
// held a witness record when its Add or its request returned
// (Creation.NoWitness), and either its Store reported it within the
// creating request's own calls (Creation.Witless) or the first data
// record so erased carried the nowit mark (Creation.NoWitLosses: the
// Store had established the configuration without its witness,
// whichever of its goroutines did it, and whatever the creating request
// was told). Else nil. A session created with its witness and later
// failed over nowit (R7 cannot tell its record from an abandoned Add's)
// is not one.
func d6Creation(r *Result, s int) *Creation {
	c := r.creation(s)
	if c == nil || len(c.Losses) == 0 {
		return nil
	}
	marked := !d6Before && c.NoWitness && len(c.NoWitLosses) > 0 && c.NoWitLosses[0] == c.Losses[0]
	if !c.Witless() && !marked {
		return nil
	}
	return c
}

// d6Answer reports whether rq, a request of a d6Creation c, ended as
// that exception may end it, after c's first data copy was lost: "not
// found", or ErrUnavailable (a lone copy marked nowit, R4.6; also
// provider.ErrUnconfirmed, which wraps it).
func d6Answer(c *Creation, rq *Request) bool {
	return rq.Ret > c.Losses[0] && (errors.Is(rq.Err, provider.ErrNotFound) || errors.Is(rq.Err, provider.ErrUnavailable))
}

// d6Allowed reports whether v is allowed by that exception: the session
// lost ("not found") or unavailable after the faults healed, every
// request that found it so having ended after its first data copy was
// lost, of a d6Creation. Any other violation of such a session fails.
// A request of the run (not a final one) told ErrUnavailable before the
// loss is no violation and neither allows nor refuses it: a witness-less
// creation is unavailable to a reader that hears one of its copies and
// not the other while a partition lasts (R4.6; opposite seed 2058). A
// final request that failed otherwise refuses a stuck violation, not the
// session-lost one: its failure is that stuck violation, judged on its
// own (opposite seed 2859), unless it is D6's writer form (d6Write),
// which counts as such a request.
func d6Allowed(r *Result, v Violation) bool {
	c := d6Creation(r, v.Session)
	if c == nil || (v.Inv != InvSessionLost && v.Inv != InvStuck) {
		return false
	}
	n := 0
	for _, rq := range slices.Concat(r.Requests, r.Finals) {
		if rq.Session != v.Session || rq.Err == nil {
			continue
		}
		if errors.Is(rq.Err, provider.ErrNotFound) || errors.Is(rq.Err, provider.ErrUnavailable) {
			if !d6Answer(c, rq) {
				if rq.Kind != ReqFinal && !errors.Is(rq.Err, provider.ErrNotFound) && !d6Before {
					continue
				}
				return false
			}
			n++
		} else if v.Inv == InvStuck && d6Write(c, rq) {
			n++
		} else if rq.Kind == ReqFinal && (v.Inv == InvStuck || d6Before) {
			return false // stuck for another reason
		}
	}
	return n > 0
}

// d6Write reports whether rq, a final request of a d6Creation c, ended
// as D6's writer form: its write, begun after c's first data copy was
// lost, stored on the lone nowit copy (P), refused by the flushed
// secondary, and its write failover found the witness node holding
// nothing (a nowit configuration has no witness), so the outcome is
// unknown; the provider's read-back found the lone copy unconfirmed
// (R4.6). No rule can answer otherwise: the lone copy may be one a
// reader hearing the other two has called "not found". Opposite seeds
// 62928, 63083 and 63559 (helper s62928, first session of 2026-12-03;
// 1089 and 2859 before); with d6Before (the allowance before) never.
func d6Write(c *Creation, rq *Request) bool {
	if d6Before || rq.Kind != ReqFinal || rq.Call <= c.Losses[0] || !errors.Is(rq.Err, provider.ErrOutcomeUnknown) {
		return false
	}
	msg := rq.Err.Error()
	_, why, ok := strings.Cut(msg, "(not resolved: ")
	return ok && strings.Contains(msg, "the secondary is lost and the witness node holds no record to fail over to") &&
		strings.Contains(why, provider.ErrUnavailable.Error())
}

// failoverTime is F + Timeout (docs/replication.md section 9) with the
// Store's default FailoverAfter and the simulation's client timeout.
func failoverTime(p Params) time.Duration { return time.Second + p.Timeout }

// simTests names, per fault kind, the test of docs/replication.md section
// 14 that the kind's witness seeds are.
var simTests = map[FaultKind]string{
	FaultFlush:     "SimFlush",
	FaultFlushStep: "SimFlushEveryStep",
	FaultRestart:   "SimRestart",
	FaultKill:      "SimKill",
	FaultPause:     "SimPauseNode",
	FaultPartition: "SimPartition",
	FaultDelay:     "SimDelay",
	FaultPauseApp:  "SimPauseApp",
	FaultPauseKill: "SimPauseAndKill",
	FaultFlushAll:  "SimFlushAll",
	FaultFlushEach: "SimFlushEach",
	FaultExpiry:    "SimExpirySkew",
	FaultOpposite:  "SimOppositeFailovers",
	FaultDouble:    "SimDoubleFaults",
}

// witnessAllowed lists, per kind, what the witness scheme may answer
// under it: double faults "cost availability or end as not found, never
// a wrong value or two holders" (docs/replication.md section 8), so under
// them a session may be lost (not found) or unavailable after the faults
// healed (stuck). pause+kill is not among them: section 8 has it resume
// when the paused node does. Everything else is a violation. The allowed
// ones are printed.
var witnessAllowed = map[FaultKind][]Invariant{
	FaultFlushAll:  {InvSessionLost, InvStuck},
	FaultFlushEach: {InvSessionLost, InvStuck},
	FaultDouble:    {InvSessionLost, InvStuck},
}

// allowedUnder reports whether inv may be broken in r, a run of kind k,
// as a double fault's cost (witnessAllowed), narrowed to the runs that are
// double faults and to what they can cost: a flush-each seed with a
// single flush is a single fault (nothing allowed), and a session may end
// not found under a double only when both of its faults lose a node's
// records (flush, restart, kill); a pause or a partition loses nothing,
// and "not found" while a record survives would be silence (issue 13:
// double faults cost availability, never silence).
func allowedUnder(k FaultKind, r *Result, inv Invariant) bool {
	if !slices.Contains(witnessAllowed[k], inv) {
		return false
	}
	switch k {
	case FaultFlushEach:
		return len(r.Schedule) >= 2
	case FaultDouble:
		if inv != InvSessionLost {
			return true
		}
		for _, f := range r.Schedule {
			if !slices.Contains([]FaultKind{FaultFlush, FaultRestart, FaultKill}, f.Kind) {
				return false
			}
		}
	}
	return true
}

// knownOpen reports whether v is one of the witness scheme's residual
// unknown outcomes: a request after the faults healed (stuck) that failed
// with provider.ErrOutcomeUnknown for one of the residual reasons
// (residual). Until the first session of 2026-12-03 such seeds were
// tolerated (at most max(1, seeds/200) of a kind); none was
// seen after §17 (docs/replication.md), and the issue allows none: they
// are printed, named, and fail (cold re-audit audit4).
func knownOpen(v Violation) bool {
	return v.Inv == InvStuck && strings.Contains(v.Detail, provider.ErrOutcomeUnknown.Error()) && residual(v.Detail)
}

// A final request's unknown outcome had a tolerance of its own until the
// first session of 2026-12-03 (finalUnknown: at most max(1, seeds/200)
// seeds of a kind): a final write whose write failover lost the race with
// another process's R7 failover of that very write ("write failover:
// fencing the primary"; opposite seed 3428; review of 2026-11-30, M1),
// or found the witness node holding nothing ("the secondary is lost and
// the witness node holds no record to fail over to"). §17
// (docs/replication.md, "Which write a decision carries";
// memcached.TestCarriesWriteFailoverOvertaken) answers the first from
// the record, and no run since showed it; every instance of the second
// seen (opposite seeds 1089, 2859, 16784, 62928, 63083, 63559) was a D6
// session, now allowed as D6 (d6Write). Both fail now like any other
// reason (cold re-audit audit4).

// residualUnknown are the reasons the witness scheme still gives for an
// unknown outcome with no fault in progress (docs/replication.md, Review
// 5: status, M2): a write stored on P (or sent to one copy that gave no
// reply while the other refused it) while a failover, not yet established
// on its other copy or resting on this very write's version with this
// write's payload, moved the session on. Issue 13's M2 fixed the unknown
// outcomes of a writer's undo refused by its own re-stamp and of a write
// over a failover established without it ("the secondary holds another
// record"), and docs/replication.md §16 (fifth session of 2026-12-02)
// that of a writer that read again only after its session moved more
// versions on than its records' ancestors keep ("versions past this
// write", now "not applied", L7″): those, and every other reason, fail.
var residualUnknown = []string{
	"holds a failover's fence and its other copy no established record after it",
	"holds a newer configuration that may be built on this write",
}

// residual reports whether err's text names one of residualUnknown.
func residual(err string) bool {
	for _, r := range residualUnknown {
		if strings.Contains(err, r) {
			return true
		}
	}
	return false
}

// failoverKinds are the single node faults after which every request
// started a failover time later must succeed (SimFailoverTime).
var failoverKinds = []FaultKind{FaultFlush, FaultFlushStep, FaultRestart, FaultKill, FaultPause, FaultPartition}

// lateFailures returns the requests of r that failed although they
// started at least a failover time after the last fault event (a fault
// striking or healing) before them, and no fault event came while they
// ran (SimFailoverTime: docs/replication.md section 9, question 14).
// Those that failed with provider.ErrOutcomeUnknown for a residual reason
// are returned apart (unknown): the witness scheme's known open issue
// (docs/simulation.md), printed, not failed; any other unknown outcome
// is among fails.
//
// A request of a session that d6Creation allows to be lost, ended as
// d6Answer allows, is returned apart too (d6): printed, not failed.
func lateFailures(r *Result, ft time.Duration) (fails, unknown, d6 []string) {
	var events []time.Duration
	for _, h := range r.Hits {
		events = append(events, h.Start)
		if h.End > h.Start {
			events = append(events, h.End)
		}
	}
	for _, rq := range r.Requests {
		if !storeFailed(rq) {
			continue
		}
		after := false
		quiet := true
		for _, e := range events {
			if e <= rq.Call-ft {
				after = true
			}
			if e > rq.Call-ft && e <= rq.Ret {
				quiet = false
			}
		}
		if !after || !quiet {
			continue
		}
		line := fmt.Sprintf("%s %s (app %d, session %d) [%v, %v]: %v", rq.Kind, rq.ID, rq.App, rq.Session, rq.Call, rq.Ret, rq.Err)
		if op, ok := failedOp(rq); ok {
			line += fmt.Sprintf(" (its %s at %v: %v)", op.Name, op.Call, op.Err)
		}
		switch c := d6Creation(r, rq.Session); {
		case c != nil && d6Answer(c, rq):
			d6 = append(d6, line)
		case errors.Is(rq.Err, provider.ErrOutcomeUnknown) && residual(rq.Err.Error()):
			unknown = append(unknown, line)
		default:
			fails = append(fails, line)
		}
	}
	return fails, unknown, d6
}

// storeFailed reports whether a request failed because of the store: one
// of its store operations failed other than by contention (a CAS conflict,
// an Add that found the key, an append the store declined) or by the request's own deadline, or it
// ended with an error that is not its own deadline. A request that ran out of time waiting for a lock a long
// handler held, or in its own long handler, did not (the workload's
// bound, not the store's availability).
//
// A write of unknown outcome in a request that then succeeded is not a
// failure: the provider read it back and settled it (provider/protocol.go,
// "Writes of unknown outcome"); settledUnknown counts those apart.
func storeFailed(rq *Request) bool {
	if _, ok := failedOp(rq); ok {
		return true
	}
	return rq.Err != nil && !ctxErr(rq.Err)
}

// failedOp returns the first of rq's store operations that storeFailed
// counts as the store's failure, if any.
func failedOp(rq *Request) (StoreOp, bool) {
	for _, op := range rq.Ops {
		if op.Err != nil && !errors.Is(op.Err, provider.ErrCASConflict) && !errors.Is(op.Err, provider.ErrExists) && !ctxErr(op.Err) &&
			!(rq.Kind == ReqCreate && errors.Is(op.Err, provider.ErrNotFound)) && // a creation's read finds no session
			!errors.Is(op.Err, provider.ErrNoAppend) && // declined, nothing sent: the provider writes whole
			!(rq.Err == nil && errors.Is(op.Err, provider.ErrTooLarge)) && // an append refused for size: the provider writes whole
			!(rq.Err == nil && errors.Is(op.Err, provider.ErrOutcomeUnknown)) {
			return op, true
		}
	}
	return StoreOp{}, false
}

// settledUnknown counts r's requests that succeeded although one of their
// store writes had an unknown outcome (the provider settled it by a read).
func settledUnknown(r *Result) (n int) {
	for _, rq := range r.Requests {
		if rq.Err != nil {
			continue
		}
		for _, op := range rq.Ops {
			if errors.Is(op.Err, provider.ErrOutcomeUnknown) {
				n++
				break
			}
		}
	}
	return n
}

func ctxErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// requireWitness checks results (seeds of p, run by sweep) as runs of
// the witness scheme (3 nodes, 4 app servers) over its fault kinds
// (WitnessFaultKinds, or -kinds): it requires, per kind (a subtest named
// after its test in docs/replication.md section 14): every invariant,
// except "not found" or stuck under the double faults of section 8
// (witnessAllowed), and D6's sessions (d6Allowed), printed as KNOWN OPEN
// (the residual reasons of an unknown outcome, knownOpen, also a
// failover time after the last fault event, are printed and fail);
// for the single node faults, every request started a failover time
// after the last fault event succeeded (SimFailoverTime); and the five
// defects of BackupOn absent (regressions). A failing seed prints its
// schedule and how to replay it.
func requireWitness(t *testing.T, p Params, results []*Result, tl *tally, cov *Coverage) {
	t.Helper()
	if p.scheme() != memcached.BackupWitness {
		t.Fatalf("requireWitness on the %v scheme", p.scheme())
	}
	p.Kinds = p.kinds()
	var appended int64
	for _, r := range results {
		appended += r.appended
	}
	t.Logf("%d lock changes appended to both data copies (seeds 4 to 7 modulo 8)", appended)
	settled := 0
	for _, r := range results {
		settled += settledUnknown(r)
	}
	t.Logf("%d requests succeeded after a write of unknown outcome that the provider settled by reading it back", settled)
	if appended == 0 && len(results) >= 8 {
		t.Error("the seeds that append appended no lock change")
	}

	ft := failoverTime(p)
	for _, k := range p.Kinds {
		name := simTests[k]
		if name == "" {
			name = string(k)
		}
		t.Run(name, func(t *testing.T) {
			if tl.seeds[k] == 0 {
				t.Skipf("no seed of kind %s", k)
			}
			if got := cov.Count(string(k), "any"); got < tl.seeds[k] {
				t.Errorf("fault kind %s struck in %d of its %d seeds", k, got, tl.seeds[k])
			}
			late, d6 := 0, 0
			var residualSeeds []uint64 // seeds with a knownOpen violation or a late unknown outcome
			for _, r := range results {
				if KindOf(r.Seed, p.Kinds) != k {
					continue
				}
				var bad []Violation
				for _, v := range r.Violations {
					if d6Allowed(r, v) {
						c := r.creation(v.Session)
						fmt.Printf("KNOWN OPEN (%s, D6: session %s created without its witness, a data copy lost at %v before R9 stored it): seed %d (%s): %s\n", v.Inv, c.Req.ID, c.Losses, r.Seed, k, v)
						d6++
						continue
					}
					if knownOpen(v) {
						fmt.Printf("RESIDUAL UNKNOWN (%s, fails): seed %d: %s\n", v.Inv, r.Seed, v)
						if !slices.Contains(residualSeeds, r.Seed) {
							residualSeeds = append(residualSeeds, r.Seed)
						}
						continue
					}
					if !allowedUnder(k, r, v.Inv) {
						bad = append(bad, v)
					} else if v.Inv != InvSessionLost {
						t.Logf("allowed under a double fault (section 8): seed %d: %s", r.Seed, v)
					}
				}
				if len(bad) > 0 {
					t.Errorf("witness scheme, %s: %s", k, report(r))
				}
				if slices.Contains(failoverKinds, k) {
					fails, unknown, d6s := lateFailures(r, ft)
					for _, l := range d6s {
						fmt.Printf("KNOWN OPEN (SimFailoverTime, D6: a session created without its witness lost a data copy before R9 stored it): seed %d (%s): %s\n", r.Seed, k, l)
					}
					if len(fails) > 0 {
						t.Errorf("SimFailoverTime: seed %d (%s): requests started %v after the last fault event failed:\n  %s\n%s", r.Seed, k, ft, strings.Join(fails, "\n  "), report(r))
					}
					if len(unknown) > 0 {
						late++
						if !slices.Contains(residualSeeds, r.Seed) {
							residualSeeds = append(residualSeeds, r.Seed)
						}
						fmt.Printf("RESIDUAL UNKNOWN (SimFailoverTime, fails): seed %d (%s): requests started %v after the last fault event failed:\n  %s\n%s", r.Seed, k, ft, strings.Join(unknown, "\n  "), report(r))
					}
				}
			}
			fmt.Printf("creations under %s: %s; %d violations allowed by D6\n", k, creationStats(results, p.Kinds, k), d6)
			fmt.Printf("roll-backs under %s: %d (writes on a secondary alone, R4.4′)\n", k, rollBacks(results, p.Kinds, k))
			t.Logf("%d seeds of %s; %d with a request failed with an unknown outcome for a residual reason a failover time after the last fault event", tl.seeds[k], k, late)
			if len(residualSeeds) > 0 {
				t.Errorf("%s: %d of %d seeds had a request started a failover time after the last fault event, or after the faults healed, fail with an unknown outcome (seeds %v)", k, len(residualSeeds), tl.seeds[k], residualSeeds)
			}
		})
	}
	// The five defects of BackupOn (sim_test.go defects) must not occur
	// in the witness scheme: regressions.
	for _, d := range defects {
		t.Run(d.name+"-fixed", func(t *testing.T) {
			var seeds []uint64
			total := 0
			for _, k := range p.Kinds {
				if d.kind == "" || d.kind == k {
					seeds = append(seeds, tl.found[k][d.inv]...)
					total += tl.seeds[k]
				}
			}
			if total == 0 {
				t.Skipf("no seed of kind %q", d.kind)
			}
			if len(seeds) > 0 {
				t.Errorf("the witness scheme breaks %s in %d of %d seeds of %q (first: seed %d)", d.inv, len(seeds), total, d.kind, seeds[0])
			}
		})
	}
}

// creationStats summarizes the sessions created during the runs of kind
// k: how many were acknowledged, failed (not created) or of unknown
// outcome (those ended by ErrUnavailable counted apart),
// how many ran while a fault struck or lasted (their creating
// request's interval meets a fault's [start, end]), went without their
// witness (Creation.Witless), and lost a data copy before R9 stored it
// (d6Creation).
// rollBacks sums the roll-backs (Result.RollBacks) of kind k's seeds.
func rollBacks(results []*Result, kinds []FaultKind, k FaultKind) int64 {
	var n int64
	for _, r := range results {
		if KindOf(r.Seed, kinds) == k {
			n += r.RollBacks
		}
	}
	return n
}

func creationStats(results []*Result, kinds []FaultKind, k FaultKind) string {
	var n, acked, failed, unavailable, under, witless, d6 int
	for _, r := range results {
		if KindOf(r.Seed, kinds) != k {
			continue
		}
		for _, c := range r.Creations {
			n++
			switch outcome(c.Req.Err) {
			case Acked:
				acked++
			case Failed:
				failed++
			default:
				if errors.Is(c.Req.Err, provider.ErrUnavailable) {
					unavailable++
				}
			}
			for _, h := range r.Hits {
				if h.Start <= c.Req.Ret && max(h.End, h.Start) >= c.Req.Call {
					under++
					break
				}
			}
			if c.Witless() {
				witless++
			}
			if d6Creation(r, c.Session) != nil {
				d6++
			}
		}
	}
	return fmt.Sprintf("%d created, %d acknowledged, %d failed, %d unavailable, %d of unknown outcome; %d under a fault; %d without their witness; %d of those lost a data copy before R9", n, acked, failed, unavailable, n-acked-failed-unavailable, under, witless, d6)
}

// witnessExpirySeeds are seeds of the expiry kind (a seed's run depends
// on the kind list only through its kind) in which the witness scheme
// lost a session before its own timeout after its last access (issue 13:
// every decision on a copy's own node took a second off its TTL, and
// R9's re-stamps set back a client touch that landed after their read):
// 252 and 352 in a 400-seed run of the kind alone before the fix, with
// the sim's skipping memcached clock (71fda15). (Before that clock, seeds
// 136 and 192 printed KNOWN OPEN in TestSimWitness.)
var witnessExpirySeeds = []uint64{252, 352}

// TestSimWitnessExpirySeeds replays witnessExpirySeeds three times each
// under the expiry kind (goroutine scheduling is not seeded, so a replay
// may take another path): every invariant must hold.
func TestSimWitnessExpirySeeds(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := witnessParams()
	p.Kinds = []FaultKind{FaultExpiry}
	for _, seed := range witnessExpirySeeds {
		for range 3 {
			if r := runSeed(t, seed, p); len(r.Violations) > 0 {
				t.Errorf("witness scheme, expiry seed %d: %s", seed, report(r))
			}
		}
	}
}

// TestSchemeIsStoreDefault: the scheme the simulation reports and checks
// a run against (Params.scheme) is the one the memcached Store runs with
// the same node count and Backup (memcached.Store.Backup), for the
// default and each explicit mode, so that "the default" is the Store's
// default.
func TestSchemeIsStoreDefault(t *testing.T) {
	for nodes := 1; nodes <= 4; nodes++ {
		for _, mode := range []memcached.BackupMode{memcached.BackupDefault, memcached.BackupOn, memcached.BackupOff, memcached.BackupWitness} {
			if mode == memcached.BackupWitness && nodes < 3 {
				continue
			}
			p := DefaultParams()
			p.Nodes, p.Backup = nodes, mode
			addrs := make([]string, nodes)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("127.0.0.1:%d", i+1)
			}
			st, err := memcached.New(memcached.Config{Nodes: addrs, Backup: mode})
			if err != nil {
				t.Fatal(err)
			}
			got := st.Backup()
			_ = st.Close()
			if p.scheme() != got {
				t.Errorf("%d nodes, Backup %v: the sim says %v, the Store runs %v", nodes, mode, p.scheme(), got)
			}
		}
	}
	if s := DefaultParams().scheme(); s != memcached.BackupWitness {
		t.Errorf("the default scheme on DefaultParams' 3 nodes is %v, want witness", s)
	}
}

// TestCreateCheckerCatchesMissingWitness runs flush and restart seeds
// against a deliberately broken variant: the nodes acknowledge, and do not
// keep, the witness record of a session created during the run
// (Params.dropCreateWitness), so its Store believes it created the
// session with a witness, and reports nothing. One flush or restart of a
// data copy then loses the acknowledged session: the checker must report
// it, and the D6 allowance (d6Allowed: only creations the Store reported
// without their witness, or whose erased data record it had marked
// nowit; these are not marked) must not cover it. Against the store as it is,
// the same seeds lose no created session (TestSim runs more). A checker
// that passes the broken variant is broken.
func TestCreateCheckerCatchesMissingWitness(t *testing.T) {
	p := witnessParams()
	p.Kinds = []FaultKind{FaultFlush, FaultRestart}
	for seed := uint64(1); seed <= 30; seed++ {
		bp := p
		bp.dropCreateWitness = true
		r := runSeed(t, seed, bp)
		for _, v := range r.Violations {
			if r.creation(v.Session) != nil && !d6Allowed(r, v) {
				t.Logf("witness records of created sessions not kept: seed %d:\n%s", seed, report(r))
				if r := runSeed(t, seed, p); len(r.Violations) > 0 {
					t.Errorf("the store as it is, seed %d:\n%s", seed, report(r))
				}
				return
			}
		}
	}
	t.Fatal("witness records of created sessions not kept: the checker reported no lost created session in 30 flush and restart seeds")
}
