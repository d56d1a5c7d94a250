package replmodel

import (
	"strings"
	"testing"
)

// rollScope is heldScope with the proposal "roll back, not complete"
// (Scope.RollBack) on.
func rollScope(progs []OpKind, faults, timeouts int) Scope {
	sc := heldScope(Correct, progs, faults, timeouts)
	sc.RollBack = true
	return sc
}

func rollReport(t *testing.T, name string, r Result) {
	t.Helper()
	ownReport(t, name, r)
	t.Logf("%s: roll-backs (R4.4′) begun %d, stored %d; not applied: %d by R3′'s re-stamp of P refused, %d by a later record on Q, %d by the undo's far read",
		name, r.RollBackDecisions, r.RollBacks, r.RolledBackNotApplied, r.LaterNotApplied, r.FarNotApplied)
}

// TestRollBack checks the proposal of the fourth session of 2026-12-02
// (Scope.RollBack: R4.4′ rolls a plain split back; R3′ re-stamps P before
// its completion of Q and answers "not applied" where the session went
// past the write in its configuration, the writer's own completion never
// stored). The proposal's L4′ (a one-copy write reaches its other copy
// only by its writer's own completion) does not hold: R4.4′ keeps
// completing the splits that are not plain, one whose other copy holds a
// sibling of the write among them, so a reader copies the write there
// and a later write is built on it; R3′'s row "Q holds a later record of
// this configuration: not applied" then denies a value a read returned.
// The checker rejects the proposal in TestUndoHeldLater's scope with one
// timeout; in the scopes with no timeout it holds, and reaches the new
// paths.
func TestRollBack(t *testing.T) {
	t.Parallel()
	t.Run("rejected", func(t *testing.T) {
		if raceEnabled {
			t.Skip("single-threaded: runs in make test's model stage, without -race")
		}
		r := Check(rollScope([]OpKind{RMW, RMW}, 0, 1))
		report(t, "roll back, writer and writer twice, 1 timeout", r)
		rollReport(t, "roll back, writer and writer twice, 1 timeout", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted the proposal: the trace of L4′'s failure is gone (a change of the model, or of the proposal?)")
		}
		if !strings.Contains(r.Violation, "write 1 reported not applied") {
			t.Errorf("not c0's write denied: %s", r.Violation)
		}
		tr := strings.Join(r.Trace, "\n")
		for _, w := range []string{
			"node 1 executes c1's cas D(e0 v2 val5 {0,1})", // c1's sibling on Q
			"c1 times out on node 1 (undo)",                // c1's undo left in flight
			"node 1 executes c1's cas D(e0 v2 val1 {0,1})", // c1's R4.4 completes c0's write over it
			"executes c1's cas D(e0 v3 val6 {0,1})",        // and writes on it
		} {
			if !strings.Contains(tr, w) {
				t.Errorf("counterexample lacks %q", w)
			}
		}
		t.Logf("counterexample (%d steps, %d states): %s\n%s", len(r.Trace)-1, r.States, r.Violation, tr)
	})
	for _, tc := range []struct {
		name             string
		progs            []OpKind
		faults, timeouts int
		far              bool // the undo's far answer reached
	}{
		{"writer, reader then writer", []OpKind{Read, RMW}, 0, 0, false},
		{"writer, writer twice", []OpKind{RMW, RMW}, 0, 0, true},
		{"writer, writer twice, 1 flush or restart", []OpKind{RMW, RMW}, 1, 0, true},
	} {
		t.Run("holds/"+tc.name, func(t *testing.T) {
			if raceEnabled && tc.faults+tc.timeouts > 0 {
				t.Skip("single-threaded: runs in make test's model stage, without -race")
			}
			r := mustHold(t, tc.name+", roll back", rollScope(tc.progs, tc.faults, tc.timeouts))
			rollReport(t, tc.name, r)
			if r.RollBacks == 0 || r.RolledBackNotApplied == 0 {
				t.Error("no roll-back stored, or no R3′ completion found its write rolled back: the scope does not reach the proposal")
			}
			if tc.far && r.FarNotApplied == 0 {
				t.Error("no undo's read answered not applied past the write: the scope does not reach it")
			}
		})
	}
}
