package replmodel

import (
	"strings"
	"testing"
)

// buryScope is the scope that found BuryUnfenced's lost value (sixth
// session of 2026-11-30): TestLoneWitness's "lone witness of another
// configuration" (c0, suspecting node 0, puts its Add's witness there,
// then the scan; a second Add) with a read-modify-write after the second
// Add; one flush or restart, one timeout.
func buryScope(v Variant, prefix []string, maxStates int) Scope {
	sc := addUnresponsive(v, "0", [][]OpKind{{Create, Scan}, {Create, RMW}}, 1)
	sc.MaxStates = maxStates
	if prefix != nil {
		sc.Prefix = prefix
	}
	return sc
}

// buryPrefix scripts the start of BuryUnfenced's counterexample (found
// unscripted in 13,847,285 states): c0, holding node 0 failed, reads the
// three candidates, stores its witness on node 0 and its secondary on node
// 2, and times out on its primary, node 1 (the CAS left in flight); the
// scan starts; c1's Add reads the three (finding c0's records), and c1's
// read-modify-write starts. What follows is explored; the counterexample:
// c1's anomaly read finds node 1 blank and fails over (promise on node 0,
// fence on node 2); node 0 is flushed; c0's late primary CAS lands on
// node 1 and c0's scan fails the session over onto {2, 1}, returning val1;
// c1's read again, which saw node 1 blank before all that and node 2's
// copy after, takes node 2's copy for a lone one and buries it: the final
// read finds no session. D3′'s re-stamp of node 1 is refused there (c0's
// CAS changed its token) and c1 reads again.
var buryPrefix = []string{
	"SUSPICION: c0 holds node 0 failed",
	"c0 starts Add",
	"node 0 executes c0's get-or-blank",
	"node 1 executes c0's get-or-blank",
	"node 2 executes c0's get-or-blank",
	"node 0 executes c0's cas W(e0 {1,2})",
	"node 2 executes c0's cas D(e0 v0 val1 {1,2})",
	"c0 times out on node 1 (add-primary)",
	"c0 starts a repair scan",
	"c1 starts Add",
	"node 0 executes c1's get-or-blank",
	"node 1 executes c1's get-or-blank",
	"node 2 executes c1's get-or-blank",
	"c1 starts Get+CompareAndSwap",
}

// TestBuryFenced is D3′ in the model: before R4.1 buries a lone copy (not
// a creation's), it re-stamps each empty peer that answered a blank with
// its read token, as the store's fenceEmpties does, and reads again when
// one is refused or unanswered; a peer read absent needs none (review-d3
// M1). The rule before, BuryUnfenced (the burial CASes the copy only), is
// rejected after buryPrefix: a value c0's scan returned is lost. The rule
// holds on every interleaving after the prefix (complete), and in make
// model after its first 8 steps (c0's Add up to its timeout).
func TestBuryFenced(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("BuryUnfenced rejected", func(t *testing.T) {
		r := rejected(t, buryScope(BuryUnfenced, buryPrefix, 3_000_000), "FAULT: flush_all", "(late: its client gave up)", "cas blank")
		if !strings.Contains(r.Violation, "returned value 0, but value 1") {
			t.Errorf("not the lost value of the scratch scope: %s", r.Violation)
		}
	})
	for _, tc := range []struct {
		name   string
		prefix []string
		full   bool
	}{
		{"holds after the prefix", buryPrefix, false},
		{"holds after c0's timeout", buryPrefix[:8], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.full && !*full {
				t.Skip("5 million states: go test ./replmodel -replmodel.full (make model)")
			}
			r := mustHold(t, "lone witness of another configuration, then a write", writes(buryScope(Correct, tc.prefix, 20_000_000)))
			t.Logf("lone copies buried: %d; burials whose re-stamp was refused (read again): %d", r.Buried, r.BuryFenceRefused)
			if r.BuryFenceRefused == 0 {
				t.Error("no burial's re-stamp was refused: the scope does not reach D3′")
			}
		})
	}
}
