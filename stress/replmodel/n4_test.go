package replmodel

import (
	"fmt"
	"testing"
)

// TestForeignWitness (review-4 N4): R4.4 does not complete a creation's
// record onto a witness on its other copy y (always another
// configuration's: the creation's own is on its third node); it blanks
// that witness (a CAS with its read token) and reads again. The scopes are
// TestLoneWitness's "lone witness of another configuration": c0, holding
// node 0 failed, puts its witness (of {1, 2}) on node 0, the primary of
// c1's Add, so c1's secondary can stand beside that foreign witness on its
// primary (c0's witness CAS landing after c1's read of the blank there)
// and a read or a scan sees a creation's record with a witness as y.
// Checked: the rule loses nothing there (every single-fault guarantee, R8's
// stated residual counted) and is reached. The old rule
// (CompleteOverForeignWitness) holds in these scopes too: the model has no
// Delete and no creator's resumption (R8), so N4's own trace (the
// completion unmarked, a Delete of unknown outcome, "not found", the
// resumption) is not in it; the store's
// TestUnknownCreationForeignWitnessOnPrimary rejects it.
func TestForeignWitness(t *testing.T) {
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	for _, tc := range []struct {
		name     string
		progs    [][]OpKind
		timeouts int
		v        Variant
		stage    string // "": the short stage; "full": make model; "long": -replmodel.long
	}{
		{"Add suspecting the primary, Add + read", [][]OpKind{{Create}, {Create, Read}}, 1, Correct, ""},
		{"Add suspecting the primary, Add + read", [][]OpKind{{Create}, {Create, Read}}, 1, CompleteOverForeignWitness, "full"},
		{"Add suspecting the primary then scan, Add", [][]OpKind{{Create, Scan}, {Create}}, 1, Correct, "full"},
		{"Add suspecting the primary then scan, Add", [][]OpKind{{Create, Scan}, {Create}}, 1, CompleteOverForeignWitness, "full"},
		{"Add suspecting the primary, Add + read", [][]OpKind{{Create}, {Create, Read}}, 2, Correct, "long"},
	} {
		name := fmt.Sprintf("%s, %d timeouts/%v", tc.name, tc.timeouts, tc.v)
		t.Run(name, func(t *testing.T) {
			switch {
			case tc.stage == "full" && !*full:
				t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
			case tc.stage == "long" && !*long:
				t.Skip("17.7 million states: go test -run TestForeignWitness ./replmodel -replmodel.long")
			}
			sc := addUnresponsive(tc.v, "0", tc.progs, tc.timeouts)
			sc.MaxStates = 40_000_000
			r := mustHold(t, name, sc)
			t.Logf("foreign witnesses blanked: %d explored steps; creations completed over a witness: %d; takeovers %d; residual %d",
				r.ForeignWitnessBlanks, r.CompletedOverWitness, r.Takeovers, r.Excepted)
			switch {
			case tc.v == Correct && r.ForeignWitnessBlanks == 0:
				t.Error("no read blanked a foreign witness: the scope does not reach the rule")
			case tc.v == Correct && r.CompletedOverWitness != 0:
				t.Error("a creation was completed over a witness under the rule")
			case tc.v == CompleteOverForeignWitness && r.CompletedOverWitness == 0:
				t.Error("the old rule never completed a creation over a witness: the scope does not reach N4's step")
			}
		})
	}
}
