package sim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/tiered"
	"github.com/sessionlock/sessionlock/store/tiered/durabletest"
)

// tieredParams are the parameters of the tiered runs: DefaultParams with
// the tiered store (a memcached cache over the simulated durable tier).
func tieredParams() Params {
	p := DefaultParams()
	p.Tiered = true
	return p
}

// cacheLossKinds are the kinds that can lose every cache copy of a
// session: the whole cache (flush-all, revive-mid-commit: a single fault
// for tiered, whose durable tier holds every session) or, over the
// witness cache, both data copies of a session (flush-each, double: a
// double fault of the cache). Tiered then revives the session from its
// durable tier.
var cacheLossKinds = []FaultKind{FaultFlushAll, FaultReviveMidCommit, FaultFlushEach, FaultDouble}

// cacheDoubleFaults are the cache loss kinds that are double faults of
// the witness cache: they may cost availability (docs/replication.md
// section 8), so a session left unavailable after them (stuck) is
// allowed, and printed.
var cacheDoubleFaults = []FaultKind{FaultFlushEach, FaultDouble}

// epochHolders re-checks the two-holders invariant of r within each epoch
// of each session (record.ReviveGap): a revival from the durable tier
// unlocks the session and fences every holder of a lock of the lost
// cache, by design (store/tiered's package documentation), so a lock
// taken after a revival while a holder of the lost epoch still had a
// lease is not two holders; its commit is refused (ErrLockLost) or, if a
// revival claimed its durable write, adopted, which the lost-update,
// failed-write-applied and linearizability checks judge. Two holders
// within one epoch are returned. A revival advances the lock id by
// ReviveGap less the few locks the durable copy may lag the cache by, so
// a gap of more than half of it between two lock ids is a revival.
func epochHolders(r *Result) []Violation {
	var out []Violation
	for s := range r.Params.Sessions {
		var reqs []*Request
		for _, rq := range r.Requests {
			if rq.Session == s && rq.Kind == ReqIncr && rq.Acq {
				reqs = append(reqs, rq)
			}
		}
		slices.SortFunc(reqs, func(a, b *Request) int { return cmp.Compare(a.LockID, b.LockID) })
		for len(reqs) > 0 {
			n := 1
			for n < len(reqs) && reqs[n].LockID-reqs[n-1].LockID < record.ReviveGap/2 {
				n++
			}
			out = append(out, twoHolders(s, reqs[:n], r.Params.Lease)...)
			reqs = reqs[n:]
		}
	}
	return out
}

// The witness cache's wedge (until the seventh session of 2026-11-30 a
// known open issue, tolerated in up to 1 seed in 4 of a cache loss kind):
// after a loss of every cache copy, a revival's cache Add that failed
// half-way left the key with one data copy and no witness, which the
// cache reported unavailable ("one copy and nothing to fail over to")
// until the record expired: every request of the session failed after
// the faults healed. The cache now reports such a copy unconfirmed
// (provider.ErrUnconfirmed), and tiered deletes it and revives the
// durable copy (Stats.UnconfirmedDeleted; TestUnconfirmedCacheRecordRevived
// in store/sqlstore/internal/tieredtest fails on the code before). It is
// no longer tolerated: a session stuck so fails as any other.

// maxLateUnknown: more than one seed in maxLateUnknown (and more than
// one) of a kind that loses no session's every cache copy and is not a
// single fault (pause+kill, a double fault) with two holders across a
// revival fails; fewer are printed as KNOWN OPEN. Under the single node
// faults and the durable tier's (durableFaults) they fail, and so does a request
// failed with an unknown outcome a failover time after the last fault
// event (docs/simulation.md: tiered pause seeds 71 and 275, diagnosed and
// fixed in store/tiered: a commit sent again refused by its own durable
// write, and a writer stalled by the paused node making the cache look
// gone back in time; TestUnknownCommitSentAgainLands,
// TestStalledWriterDoesNotReviveOverHolder).
const maxLateUnknown = 20

// singleNodeFaults are the fault kinds that strike one cache node (or
// one app server) at a time: the project's guarantee allows no violation
// under them, on tiered as on memcached (issue 13).
// durableFaults are the durable tier's own faults, single faults too:
// two holders across a revival fail under them (they were KNOWN OPEN,
// bounded, until the sixth session of 2026-11-30: 0 in 200 seeds of each,
// TestSimTiered -seeds 3600 -kinds db-delay,db-pause,pause+kill).
var durableFaults = []FaultKind{FaultDBDelay, FaultDBPause}

var singleNodeFaults = []FaultKind{FaultFlush, FaultRestart, FaultKill, FaultPause, FaultPartition, FaultDelay, FaultPauseApp, FaultExpiry, FaultFlushStep, FaultOpposite}

// TestSimFencedButApplied is SimFencedButApplied of docs/replication.md
// section 14 on tiered: seeds of the revive-mid-commit kind flush every
// cache node as a data change's durable write runs and hold its answer,
// so that other requests revive the session from the durable tier
// (claiming that write) and commit on top of it before the writer
// settles its cache write. A conflict must never be reported for a write
// that was applied (failed-write-applied), and no acknowledged increment
// may be lost. The seeds must adopt such writes (tiered's Stats.Adopted):
// the window was hit. The same seeds against the old claim decision
// (durabletest.OldClaimCheck: adopted only if the durable copy is still exactly the
// revival of the write), kept here as a deliberately broken variant, must
// be caught reporting failed-write-applied.
//
// It runs over the default cache (the witness scheme on 3 nodes) and,
// with -seeds (the sim stage), over BackupOn (the default when the test
// was written). Every invariant but two holders across a revival (the
// fenced holder's lease, by design) must hold, two holders within one
// epoch (epochHolders) included; a session stuck in the witness cache's
// former wedge (seeds 127 and 273 before the seventh session) fails too.
func TestSimFencedButApplied(t *testing.T) {
	const seeds = 40
	caches := []memcached.BackupMode{memcached.BackupDefault}
	if *flagSeeds > 0 {
		// The sim stage: the opt-in BackupOn too (the unit stage, under
		// -race, runs the default only).
		caches = append(caches, memcached.BackupOn)
	}
	for _, backup := range caches {
		p := tieredParams()
		p.Backup = backup
		p.Kinds = []FaultKind{FaultReviveMidCommit}
		name := backupName(p.scheme())
		t.Run(name, func(t *testing.T) {
			var adopted, undone, unknown uint64
			for seed := uint64(1); seed <= seeds; seed++ {
				r := runSeed(t, seed, p)
				adopted += r.Tiered.Adopted
				undone += r.Tiered.Undone
				unknown += r.Tiered.UnknownOutcomes
				for _, v := range r.Violations {
					if v.Inv != InvTwoHolders {
						t.Errorf("%s", report(r))
						break
					}
				}
				if within := epochHolders(r); len(within) > 0 {
					t.Errorf("two holders within one epoch: %v\n%s", within, report(r))
				}
			}
			t.Logf("%d seeds: %d commits adopted by a revival, %d undone, %d unknown outcomes", seeds, adopted, undone, unknown)
			if adopted == 0 {
				t.Errorf("no commit was adopted by a revival in %d seeds: the fault missed its window", seeds)
			}
		})
	}
	t.Run("OldClaimCheckIsCaught", func(t *testing.T) {
		bp := tieredParams()
		bp.Kinds = []FaultKind{FaultReviveMidCommit}
		bp.wrapDurable = func(d tiered.Durable) tiered.Durable {
			return durabletest.OldClaimCheck(d)
		}
		for seed := uint64(1); seed <= 3*seeds; seed++ {
			if r := runSeed(t, seed, bp); r.Has(InvFailedApplied) {
				t.Logf("caught in seed %d:\n%s", seed, report(r))
				return
			}
		}
		t.Fatalf("the old claim decision went uncaught in %d seeds", 3*seeds)
	})
}

// TestSimTiered runs -seeds/6 seeds (at least 4 a kind) of the tiered
// store over every fault kind of its cache and of its durable tier
// (TieredFaultKinds, or -kinds), prints what each kind found, the
// coverage and the tiered Stores' counters. Over the default cache (the
// witness scheme on 3 nodes) it requires, per kind (a subtest), every
// invariant, except: two holders across a revival (epochHolders) under
// the cache loss kinds, where only two holders within one epoch fail
// (under the single node faults and the durable tier's faults they fail;
// under pause+kill, a double fault, they are KNOWN OPEN, at most 1 seed in
// maxLateUnknown and 1 of a kind);
// stuck under the cache's double faults (cacheDoubleFaults); and the
// cache's known open issue (cacheWedged) under the cache loss kinds,
// printed as KNOWN OPEN, at most 1 seed in maxWedged (and 3) of a kind
// that is not a double fault of the cache; and, for the single node
// faults, that every request started a failover time after the last fault
// event succeeded (SimFailoverTime, lateFailures; one failed with an
// unknown outcome included, but for the witness cache's residual reasons,
// printed as KNOWN OPEN as TestSim does, at most max(1, seeds/200) seeds
// of a kind). With -backup on (or off) the node faults
// are printed, not required (BackupOn breaks invariants on its
// own, TestSimBackupOn); the durable tier's own faults (db-delay,
// db-pause) are required on every cache.
func TestSimTiered(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := tieredParams()
	p.Kinds, p.Backup, p.Timeout, p.Nodes = params().Kinds, params().Backup, params().Timeout, params().Nodes
	results, tl, cov := sweep(t, "tiered, backup "+p.scheme().String(), p, max(len(p.kinds())*4, *flagSeeds/6))
	var st tiered.Stats
	for _, r := range results {
		st = addStats(st, r.Tiered)
	}
	fmt.Printf("tiered counters: %+v\n", st)
	if st.DurableWrites == 0 || st.Revivals == 0 && len(p.Kinds) == 0 {
		t.Errorf("tiered counters %+v: no durable write, or no revival in seeds of every kind", st)
	}
	settled := 0
	for _, r := range results {
		settled += settledLocks(r)
	}
	fmt.Printf("tiered: %d requests took a lock or committed after a lock or commit write of unknown outcome that the provider settled by reading it back\n", settled)
	if settled == 0 && len(p.Kinds) == 0 && p.scheme() == memcached.BackupWitness {
		t.Errorf("no write of unknown outcome settled through tiered in seeds of every kind: does tiered still forward its cache's provider.OutcomeReader?")
	}
	if p.scheme() != memcached.BackupWitness {
		for _, k := range []FaultKind{FaultDBDelay, FaultDBPause} {
			for inv, seeds := range tl.found[k] {
				t.Errorf("tiered, %s: %s in %d of %d seeds, e.g.\n%s", k, inv, len(seeds), tl.seeds[k], report(resultOf(results, seeds[0])))
			}
		}
		return
	}
	for _, k := range p.kinds() {
		t.Run(string(k), func(t *testing.T) {
			if tl.seeds[k] == 0 {
				t.Skipf("no seed of kind %s", k)
			}
			if got := cov.Count(string(k), "any"); got < tl.seeds[k] {
				t.Errorf("fault kind %s struck in %d of its %d seeds", k, got, tl.seeds[k])
			}
			loss := slices.Contains(cacheLossKinds, k)
			double := slices.Contains(cacheDoubleFaults, k)
			single := slices.Contains(singleNodeFaults, k)
			var revivedUnder, lateUnknown []uint64
			revivalHolders := 0
			for _, r := range results {
				if KindOf(r.Seed, p.kinds()) != k {
					continue
				}
				var bad []Violation
				for _, v := range r.Violations {
					switch {
					case v.Inv == InvTwoHolders:
						continue // re-checked within epochs below
					case double && v.Inv == InvStuck:
						t.Logf("allowed under a double fault of the cache (section 8): seed %d: %s", r.Seed, v)
					default:
						bad = append(bad, v)
					}
				}
				if r.Has(InvTwoHolders) {
					within := epochHolders(r)
					switch {
					case len(within) > 0:
						bad = append(bad, within...)
					case loss:
						revivalHolders++
					case single || slices.Contains(durableFaults, k):
						t.Errorf("tiered, %s: two holders across a revival under a single fault (no cache loss):\n%s", k, report(r))
					default:
						revivedUnder = append(revivedUnder, r.Seed)
						fmt.Printf("KNOWN OPEN (two-holders across a revival under %s, no cache loss): seed %d: %s", k, r.Seed, report(r))
					}
				}
				if len(bad) > 0 {
					var b strings.Builder
					for _, v := range bad {
						fmt.Fprintf(&b, "  %s\n", v)
					}
					t.Errorf("tiered, %s:\n%s%s", k, b.String(), report(r))
				}
				if slices.Contains(failoverKinds, k) {
					fails, unknown, _ := lateFailures(r, failoverTime(p)) // no creations (Params.Creates): no D6
					if len(fails) > 0 {
						t.Errorf("SimFailoverTime: seed %d (%s): requests started %v after the last fault event failed:\n  %s\n%s", r.Seed, k, failoverTime(p), strings.Join(fails, "\n  "), report(r))
					}
					if len(unknown) > 0 {
						// The witness cache's residual reasons, as TestSim:
						// printed, and failed (no seed may have one since
						// the first session of 2026-12-03).
						lateUnknown = append(lateUnknown, r.Seed)
						fmt.Printf("RESIDUAL UNKNOWN (SimFailoverTime, fails): seed %d (%s): requests started %v after the last fault event failed:\n  %s\n%s", r.Seed, k, failoverTime(p), strings.Join(unknown, "\n  "), report(r))
					}
				}
			}
			t.Logf("%d seeds of %s; %d with a lock taken after a revival while a fenced holder's lease ran (by design); %d with two holders across a revival under pause+kill (known open: %v)", tl.seeds[k], k, revivalHolders, len(revivedUnder), revivedUnder)
			if len(revivedUnder) > max(1, tl.seeds[k]/maxLateUnknown) {
				t.Errorf("%s: %d of %d seeds took a lock across a revival while a fenced holder's lease ran (seeds %v): more than 1 in %d", k, len(revivedUnder), tl.seeds[k], revivedUnder, maxLateUnknown)
			}
			if len(lateUnknown) > 0 {
				t.Errorf("%s: %d of %d seeds had a request started a failover time after the last fault event fail with an unknown outcome (seeds %v)", k, len(lateUnknown), tl.seeds[k], lateUnknown)
			}
		})
	}
}

// settledLocks counts the requests of r (the final ones too) that took
// a lock, and committed if they are increments, after one of their lock
// or commit writes ("cas", "commit-cas") had an unknown outcome: the
// provider settled it by reading the record back. Without that, an
// unknown outcome there fails the request, so through tiered the count is
// 0 unless tiered forwards its cache's provider.OutcomeReader (before it
// did: 0 in 200 seeds, after: 24; the partition seed 21's final
// acquisition, "the primary holds a newer configuration that may be
// built on this write", ended stuck without it in 1 run in 8).
func settledLocks(r *Result) (n int) {
	for _, rq := range append(slices.Clone(r.Requests), r.Finals...) {
		if rq.Err != nil || !rq.Acq {
			continue
		}
		for _, op := range rq.Ops {
			if (op.Name == "cas" || op.Name == "commit-cas") && errors.Is(op.Err, provider.ErrOutcomeUnknown) {
				n++
				break
			}
		}
	}
	return n
}

// resultOf returns the result of seed.
func resultOf(results []*Result, seed uint64) *Result {
	for _, r := range results {
		if r.Seed == seed {
			return r
		}
	}
	return nil
}
