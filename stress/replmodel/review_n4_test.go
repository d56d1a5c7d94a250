package replmodel

import "testing"

// TestForeignWitnessN4 (review-n4 M1's experiment, make model): from
// review-resume-4 N4's state (ForeignWitnessN4: a foreign witness on the
// Add's primary, its creation record on the secondary, its witness on
// the third node), two processes read at once: c0 reads twice and runs
// the scan (R9, which clears nowit after its witness: R9ClearsNoWit),
// c1 reads once; R14, R9's adoption, one flush or restart, no timeout.
// The reviewer's run of this scope, with an atomic clear and R4.4's
// completion over the foreign witness, held in 5,456,108 states; with the
// model's clear, 8,274,306. With review-4 N4's fix (the readers re-ballot
// the creation, nowit, and R9 replaces the Add's witness on the third
// node and clears nowit) it holds in 81,160,827 states (about 5 minutes),
// the final read deciding wherever a value was returned (FinalDecides, as
// with the rule before).
func TestForeignWitnessN4(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	if !*full {
		t.Skip("81 million states: go test ./replmodel -replmodel.full (make model)")
	}
	r := mustHold(t, "N4's state, two readers and the scan, 1 flush or restart", Scope{Variant: Correct, Start: ForeignWitnessN4, FinalDecides: true,
		Repair: true, OldWitness: true, AdoptWitness: true, R9ClearsNoWit: true,
		Programs: [][]OpKind{{Read, Read, Scan}, {Read}}, MaxFaults: 1, Restart: true, MaxStates: 120_000_000})
	if r.R9Clears == 0 {
		t.Error("R9 never cleared nowit after its witness: the scope does not reach it")
	}
	if r.CreationReballotsDone == 0 || r.WitnessReplaced == 0 {
		t.Error("no creation re-balloted over the foreign witness, or R9 never replaced the Add's witness: the scope does not reach the rule")
	}
}

// lateWitness is review-4 N4 with its Add in flight (LateForeignWitness):
// a late witness CAS of another configuration, holding the token of the
// Add's primary blank, lands there just after the Add's read (the first
// steps scripted), so the Add's primary CAS is refused and it undoes its
// witness and its secondary; a reader reads twice. Every interleaving
// after that, one flush or restart, one timeout.
func lateWitness(v Variant) Scope {
	return Scope{Variant: v, Start: LateForeignWitness, FinalDecides: true, Programs: [][]OpKind{{Create}, {Read, Read}},
		Prefix:    []string{"c0 starts Add", "node 0 executes c0's get-or-blank", "node 0 executes c0's cas W(e0 {1,2})"},
		MaxFaults: 1, Restart: true, MaxTimeouts: 1}
}

// TestCreationOverLateWitness (review-4 N4's fix, R4.4/R11.3): a reader
// that finds the creation's record on the secondary and a witness on the
// primary re-ballots it onto those two nodes, marked nowit, the window
// counted as R8's stated residual (the Add's undo blanks its witness, so
// one flush of a copy before R9 leaves a lone nowit copy). The rule
// before (CreationCompletesOverWitness: R4.4's completion over the
// witness) leaves a creation's lone copy after one flush, ErrUnavailable
// for good; the re-ballot without nowit (CreationReballotUnmarked) has
// that copy buried, a value a read returned.
func TestCreationOverLateWitness(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	r := mustHold(t, "late foreign witness on the Add's primary, a reader reading twice, 1 fault, 1 timeout", writes(lateWitness(Correct)))
	if r.CreationReballotsDone == 0 {
		t.Error("no creation re-balloted over a witness: the scope does not reach the rule")
	}
	if r.Excepted+r.ExceptedUnavailable == 0 {
		t.Error("the stated residual is never reached: the scope does not reach the Add's undo of its witness")
	}
	rejected(t, lateWitness(CreationCompletesOverWitness), "cas W(e0 {1,2}) (late", "FAULT")
	rejected(t, lateWitness(CreationReballotUnmarked), "promise e1", "FAULT")
}
