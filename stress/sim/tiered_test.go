package sim

import (
	"fmt"
	"testing"

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
// Its cache is BackupOn, the memcached default when the test was written:
// the test is about tiered's claim decision. Over the witness cache (the
// default on 3 nodes since issue 13) seed 13 once ended stuck, "refilling
// the cache kept conflicting" (1 of 40 in one run, 0 in another): a
// whole-cache flush then costs availability (known open,
// docs/simulation.md).
func TestSimFencedButApplied(t *testing.T) {
	p := tieredParams()
	p.Backup = memcached.BackupOn
	p.Kinds = []FaultKind{FaultReviveMidCommit}
	const seeds = 40
	t.Run("settle", func(t *testing.T) {
		var adopted, undone, unknown uint64
		for seed := uint64(1); seed <= seeds; seed++ {
			r := runSeed(t, seed, p)
			adopted += r.Tiered.Adopted
			undone += r.Tiered.Undone
			unknown += r.Tiered.UnknownOutcomes
			for _, inv := range []Invariant{InvFailedApplied, InvLostUpdate, InvLockFreeLost, InvNotLinearizable, InvDiverged, InvStuck} {
				if r.Has(inv) {
					t.Errorf("%s", report(r))
					break
				}
			}
		}
		t.Logf("%d seeds: %d commits adopted by a revival, %d undone, %d unknown outcomes", seeds, adopted, undone, unknown)
		if adopted == 0 {
			t.Errorf("no commit was adopted by a revival in %d seeds: the fault missed its window", seeds)
		}
	})
	t.Run("OldClaimCheckIsCaught", func(t *testing.T) {
		bp := p
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

// TestSimTiered runs -seeds/6 seeds (at least 4 a kind) of the tiered store over
// every fault kind of its cache and of its durable tier
// (TieredFaultKinds), prints what each kind found, the coverage and the
// tiered Stores' counters, and requires the durable tier's own faults
// (db-delay, db-pause) to keep every invariant. Over today's memcached
// cache the node faults break invariants the cache breaks on its own
// (docs/simulation.md); they are printed, not required.
func TestSimTiered(t *testing.T) {
	if *flagSeeds == 0 {
		t.Skip("run with -seeds N (scripts/test.sh stage sim, make sim)")
	}
	p := tieredParams()
	p.Kinds, p.Backup = params().Kinds, params().Backup
	results, tl, cov := sweep(t, "tiered", p, max(len(p.kinds())*4, *flagSeeds/6))
	var st tiered.Stats
	for _, r := range results {
		st = addStats(st, r.Tiered)
	}
	fmt.Printf("tiered counters: %+v\n", st)
	for _, k := range p.kinds() {
		if tl.seeds[k] > 0 && cov.Count(string(k), "any") < tl.seeds[k] {
			t.Errorf("fault kind %s struck in %d of its %d seeds", k, cov.Count(string(k), "any"), tl.seeds[k])
		}
	}
	for _, k := range []FaultKind{FaultDBDelay, FaultDBPause} {
		for inv, seeds := range tl.found[k] {
			t.Errorf("tiered, %s: %s in %d of %d seeds, e.g.\n%s", k, inv, len(seeds), tl.seeds[k], report(resultOf(results, seeds[0])))
		}
	}
	if st.DurableWrites == 0 || st.Revivals == 0 && len(p.Kinds) == 0 {
		t.Errorf("tiered counters %+v: no durable write, or no revival in seeds of every kind", st)
	}
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
