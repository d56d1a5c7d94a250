package replmodel

import "testing"

// TestR9InTurn: R9 as the store runs it (restampBoth, Scope.R9InTurn):
// P's re-stamp first, Q's only once P's is stored; a process refused on
// P sends nothing more and reads again. The parallel re-stamps the other
// scopes run are a superset of the orders, but the process waits for
// both replies: a refused P's sending nothing more is only a lost
// message there (the tie row's cold review, m5). The scopes with
// concurrent repairs, where two R9s from one read meet.
func TestR9InTurn(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	for _, tc := range []struct {
		name string
		full bool
		sc   Scope
	}{
		{"witness lost, two scans and a writer, 1 fault", false, Scope{Variant: Correct, Repair: true, Start: WitnessBlank,
			Programs: [][]OpKind{{Scan}, {Scan}, {RMW}}, MaxFaults: 1}},
		{"witness lost, writer and scan, 2 faults, 1 timeout", true, Scope{Variant: Correct, Repair: true, Start: WitnessBlank,
			Programs: [][]OpKind{{RMW}, {Scan}}, MaxFaults: 2, MaxTimeouts: 1}},
		{"nowit read (N4 re-ballot), 1 fault, 1 timeout", true, nowitRead(Correct, true, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.full && !*full {
				t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
			}
			sc := tc.sc
			sc.R9InTurn, sc.FinalWrites = true, true
			r := mustHold(t, tc.name+", R9 in turn", sc)
			t.Logf("witness repairs: %d", r.WitnessRepairs)
			if r.WitnessRepairs == 0 {
				t.Error("no R9 stored its witness: the scope does not reach R9")
			}
		})
	}
}
