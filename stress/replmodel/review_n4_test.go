package replmodel

import "testing"

// TestForeignWitnessN4 (review-n4 M1's experiment, make model): from
// review-resume-4 N4's state (ForeignWitnessN4: a foreign witness on the
// Add's primary, its creation record on the secondary, its witness on
// the third node), two processes read at once: c0 reads twice and runs
// the scan (R9, which clears nowit after its witness: R9ClearsNoWit),
// c1 reads once; R14, R9's adoption, one flush or restart, no timeout.
// The reviewer's run of this scope, with an atomic clear and this R4.4
// (the completion over the foreign witness), held in 5,456,108 states.
func TestForeignWitnessN4(t *testing.T) {
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	if !*full {
		t.Skip("8.3 million states: go test ./replmodel -replmodel.full (make model)")
	}
	r := mustHold(t, "N4's state, two readers and the scan, 1 flush or restart", Scope{Variant: Correct, Start: ForeignWitnessN4,
		Repair: true, OldWitness: true, AdoptWitness: true, R9ClearsNoWit: true,
		Programs: [][]OpKind{{Read, Read, Scan}, {Read}}, MaxFaults: 1, Restart: true, MaxStates: 30_000_000})
	if r.R9Clears == 0 {
		t.Error("R9 never cleared nowit after its witness: the scope does not reach it")
	}
}
