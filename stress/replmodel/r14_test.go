package replmodel

import (
	"strings"
	"testing"
)

// r14Add (R14, review-r14): a reader of an id whose Add is in flight,
// against that Add and a write after it; from no session, one flush. A
// read that hears the Add's witness and two blanks (before the Add's data
// CASes land) buries the witness (R14, whatever its age); fenced, the
// Add's data CASes, holding the blanks' read tokens, are then refused.
// R14Unfenced (no re-stamps first) lets them land: the session is
// acknowledged with no witness, written, and one flush loses it.
func r14Add(v Variant) Scope {
	return Scope{Variant: v, Start: Empty, OldWitness: true, FinalDecides: true,
		Programs: [][]OpKind{{Read}, {Create, RMW}}, MaxFaults: 1}
}

// r14Adopt is review-r14 B1's scope: from an expired session's lone
// witness (LoneWitness: the witness of (E0, {0, 1}) on node 2), c0's
// read (R14) and c1, holding node 2 failed, which Adds the id (R8's
// two-record creation once node 2 gives no reply: nowit), runs R9 (its
// witness-less list: a Scan, which adopts the old witness and clears
// nowit), then writes; one flush or restart, two timeouts, the wrong
// suspicion scripted first (prefix's first step).
func r14Adopt(v Variant, prefix []string, maxStates int) Scope {
	return Scope{Variant: v, Start: LoneWitness, OldWitness: true, Repair: true, AdoptWitness: true, R9ClearsNoWit: true,
		Programs: [][]OpKind{{Read}, {Create, Scan, RMW}}, Prefix: prefix,
		MaxFaults: 1, Restart: true, MaxTimeouts: 2, MaxSuspicions: 1, MaxStates: maxStates}
}

// adoptPrefix scripts review-r14 B1's trace up to c1's two-record
// creation: c0's read re-stamps the blanks it made on nodes 0 and 1 and
// gets no reply to its burial of node 2's witness (the CAS stays in
// flight); c1, holding node 2 failed, reads the two re-stamped blanks and
// times out on node 2. What follows is explored; B1's counterexample: c1
// stores its nowit record on nodes 1 and 0; its probe finds node 2
// answering; its scan adopts the old witness and clears nowit; c0's late
// burial lands on node 2; c1's write is acknowledged; one flush of node
// 0 leaves a lone copy between two empties, buried: no session.
var adoptPrefix = []string{
	"SUSPICION: c1 holds node 2 failed",
	"c0 starts Get",
	"node 0 executes c0's get",
	"node 1 executes c0's get",
	"node 0 executes c0's get-or-blank",
	"node 1 executes c0's get-or-blank",
	"node 2 executes c0's get-or-blank",
	"node 0 executes c0's cas blank",
	"node 1 executes c0's cas blank",
	"c0 times out on node 2 (old-witness-bury)",
	"c1 starts Add",
	"node 0 executes c1's get-or-blank",
	"node 1 executes c1's get-or-blank",
	"c1 times out on node 2 (add-read)",
}

// TestOldWitness is R14 in the model (review-r14): the anomaly read's
// "not found" with every candidate heard, no data and one witness
// re-stamps the blanks and then buries the witness (any age: the store's
// age condition is availability only), answering "not found" either way;
// and R9's adoption of a witness it did not write, re-stamped before
// nowit is cleared (review-r14 B1). Each rule's variant without its fence
// is rejected.
func TestOldWitness(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("R14 holds against an Add", func(t *testing.T) {
		r := mustHold(t, "R14: a reader against an Add then a write, 1 flush", writes(r14Add(Correct)))
		t.Logf("witnesses buried %d, kept (a re-stamp or the burial refused) %d", r.OldWitnessBuried, r.OldWitnessKept)
		if r.OldWitnessBuried == 0 || r.OldWitnessKept == 0 {
			t.Error("R14 never buried a witness, or was never refused: the scope does not reach it")
		}
	})
	t.Run("R14Unfenced rejected", func(t *testing.T) {
		rejected(t, r14Add(R14Unfenced), "node 2 executes c0's cas blank", "FAULT")
	})
	t.Run("adoption holds after B1's prefix", func(t *testing.T) {
		r := mustHold(t, "R9's adoption after B1's prefix", writes(r14Adopt(Correct, adoptPrefix, 0)))
		t.Logf("nowit clears after an adoption %d; witnesses buried %d, kept %d", r.Adoptions, r.OldWitnessBuried, r.OldWitnessKept)
		if r.Adoptions == 0 {
			t.Error("R9 never adopted the witness: the scope does not reach B1")
		}
	})
	t.Run("AdoptByTouch rejected after B1's prefix", func(t *testing.T) {
		r := rejected(t, r14Adopt(AdoptByTouch, adoptPrefix, 0), "witness touch", "executes c0's cas blank (late", "FAULT")
		if !strings.Contains(r.Violation, "no session") {
			t.Errorf("not B1's lost session: %s", r.Violation)
		}
	})
	t.Run("AdoptByTouch rejected, suspicion scripted only", func(t *testing.T) {
		if !*full {
			t.Skip("1.3 million states: go test ./replmodel -replmodel.full (make model)")
		}
		rejected(t, r14Adopt(AdoptByTouch, adoptPrefix[:1], 0), "witness touch", "(late", "FAULT")
	})
	t.Run("adoption, suspicion scripted only", func(t *testing.T) {
		if !*full {
			t.Skip("20 million states: go test ./replmodel -replmodel.full (make model)")
		}
		r := Check(r14Adopt(Correct, adoptPrefix[:1], 20_000_000))
		report(t, "R9's adoption, suspicion scripted only", r)
		if r.Violation != "" {
			t.Fatalf("%s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
		}
		t.Logf("complete=%v; nowit clears after an adoption %d; witnesses buried %d", r.Complete, r.Adoptions, r.OldWitnessBuried)
	})
}
