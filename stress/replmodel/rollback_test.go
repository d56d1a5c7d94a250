package replmodel

import (
	"strings"
	"testing"
)

// rollScope is heldScope with proposal v2 (Scope.RollBack) on, under
// variant v.
func rollScope(v Variant, progs []OpKind, faults, timeouts int) Scope {
	sc := heldScope(v, progs, faults, timeouts)
	sc.RollBack = true
	return sc
}

func rollReport(t *testing.T, name string, r Result) {
	t.Helper()
	ownReport(t, name, r)
	t.Logf("%s: roll-backs (R4.4′) begun %d, stored %d; the undo's not applied: %d far, %d Q replaced; undoes instead of completing again: %d; v1's not applied (RollBackPSide): %d by R3′'s re-stamp of P refused, %d by a later record on Q",
		name, r.RollBackDecisions, r.RollBacks, r.FarNotApplied, r.ReplacedNotApplied, r.UndoneAfterRefused, r.RolledBackNotApplied, r.LaterNotApplied)
}

// rollScopes are TestUndoHeldLater's scopes and one of two writers whose
// Gets may read one base, with a reader and a third write (so that the
// undo's loop may read past the write, and a reader complete a sibling
// split: rv-roll's B1), with proposal v2 on. slow marks those skipped
// under -race; far those that must reach the undo's answers "not
// applied" (far, and Q replaced); undone those that must reach the undo
// sent instead of a completion again (rv-roll M4).
var rollScopes = []struct {
	name              string
	slow, far, undone bool
	sc                Scope
}{
	{"writer, reader then writer", false, false, false, rollScope(Correct, []OpKind{Read, RMW}, 0, 0)},
	{"writer, writer twice", false, true, false, rollScope(Correct, []OpKind{RMW, RMW}, 0, 0)},
	{"writer, writer twice, 1 timeout", true, true, true, rollScope(Correct, []OpKind{RMW, RMW}, 0, 1)},
	{"writer, writer twice, 1 flush or restart", true, true, true, rollScope(Correct, []OpKind{RMW, RMW}, 1, 0)},
	{"two writers from one read, a reader and a third write", true, true, true, Scope{Variant: Correct,
		Programs: [][]OpKind{{RMW}, {RMW}, {Read, RMW}}, OwnComplete: true, FinalWrites: true, RollBack: true}},
}

// TestRollBack checks proposal v2 of the fourth session of 2026-12-02
// (Scope.RollBack, proposal v2, docs/replication-review-rollback.md): R4.4′ rolls
// back a Q-ahead plain split instead of completing it; R3's row "P
// stored, Q refused" is unchanged; the writer whose write is on Q alone,
// no completion CAS of P having been sent and not refused, answers "not
// applied" when its undo's loop reads the session past the write, or Q
// holding another record of its configuration; and after a refused
// completion CAS of P it undoes instead of completing again. In each
// scope nothing acknowledged or observed is lost and no write reported
// not applied is on the chain; the scopes reach the roll-back and the
// new answers. Besides rollScopes: TestOwnComplete's scopes and
// TestUndoBothHeldTouched's, in make model.
func TestRollBack(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, name string, sc Scope, far, undone bool) {
		var r Result
		if sc.MaxStates != 0 {
			r = bounded(t, name+", roll back", sc)
		} else {
			r = mustHold(t, name+", roll back", sc)
		}
		rollReport(t, name, r)
		if r.RolledBackNotApplied+r.LaterNotApplied != 0 {
			t.Errorf("v1's rows of \"P stored, Q refused\" answered (%d, %d): not proposal v2", r.RolledBackNotApplied, r.LaterNotApplied)
		}
		if r.RollBacks == 0 {
			t.Error("no roll-back stored: the scope does not reach R4.4′")
		}
		if far && (r.FarNotApplied == 0 || r.ReplacedNotApplied == 0) {
			t.Error("no undo's read answered not applied (past the write, or Q replaced): the scope does not reach L7″")
		}
		if undone && r.UndoneAfterRefused == 0 {
			t.Error("no undo was sent instead of a completion again after a refused completion of P: the scope does not reach rv-roll M4's rule")
		}
	}
	for _, tc := range rollScopes {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow && raceEnabled {
				t.Skip("single-threaded: runs in make test's model stage, without -race")
			}
			check(t, tc.name, tc.sc, tc.far, tc.undone)
		})
	}
	for _, tc := range ownScopes {
		t.Run("own/"+tc.name, func(t *testing.T) {
			if raceEnabled {
				t.Skip("single-threaded: runs in make test's model stage, without -race")
			}
			if !*full {
				t.Skip("TestOwnComplete's scope with Scope.RollBack: go test ./replmodel -replmodel.full (make model)")
			}
			sc := tc.sc
			sc.OwnComplete, sc.FinalWrites, sc.RollBack = true, true, true
			check(t, tc.name, sc, false, false)
		})
	}
	t.Run("own/append at expiry, writer and reader, 1 flush", func(t *testing.T) {
		if raceEnabled || !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		sc := appendScope(Correct, [][]OpKind{{Read}}, 1, 0, 0)
		sc.OwnComplete, sc.RollBack = true, true
		r := appendHolds(t, "append at expiry, writer and reader, 1 flush, roll back", sc)
		rollReport(t, "append at expiry, writer and reader, 1 flush", r)
	})
}

// TestRollBackVariants: the checker rejects the broken variants of
// proposal v2, each with a printed trace. RollBackPSide is proposal v1
// (the cold review rv-roll's B1: a reader still copies a write on P alone
// onto Q through a sibling split, a later write is built on it, and R3′'s
// row "Q holds a later record of this configuration" answers not
// applied); RollBackFarSilent answers the far "not applied" after a
// completion CAS of P that got no reply (rv-roll M2); RollBackFarAnyEpoch
// for a record of a greater epoch (a reader's failover carried the write
// there, from Q). RollBackUnfenced (the roll-back's CAS of Q with no
// re-stamp of P first): the anomaly read's read of P may be older than
// its read of Q, the write's CAS of P landing between them; the write,
// acknowledged, is then rolled back on Q and left on P alone, which one
// flush of P loses.
func TestRollBackVariants(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	three := rollScopes[4].sc // two writers from one read, a reader and a third write
	three.Variant = RollBackPSide
	for _, tc := range []struct {
		name      string
		sc        Scope
		violation string   // in the violation
		steps     []string // in the trace
	}{
		// v1's rejection (the helper rollmodel's trace): c0's write on
		// P alone (val1), c1's sibling on Q (val5); c1, its undo left in
		// flight, reads the split and completes val1 onto Q, then
		// writes val6 on it; c0's completion finds val6 on Q.
		{"writer, writer twice, 1 timeout", rollScope(RollBackPSide, []OpKind{RMW, RMW}, 0, 1), "write 1 reported not applied", []string{
			"node 1 executes c1's cas D(e0 v2 val5 {0,1})", // c1's sibling on Q
			"c1 times out on node 1 (undo)",
			"node 1 executes c1's cas D(e0 v2 val1 {0,1})", // a completion of c0's write over it
			"executes c1's cas D(e0 v3 val6 {0,1})",        // and a write on it
		}},
		// B1 as the cold review wrote it, with no timeout: the reader
		// c2 completes c0's val1 over c1's sibling and writes val10 on
		// it.
		{"two writers from one read, a reader and a third write", three, "write 1 reported not applied", []string{
			"node 1 executes c1's cas D(e0 v2 val5 {0,1})", // c1's sibling on Q
			"node 1 executes c2's cas D(e0 v2 val1 {0,1})", // the reader completes c0's write over it
			"executes c2's cas D(e0 v3 val10 {0,1})",       // and a write on it
		}},
		{"writer, writer twice, 1 timeout", rollScope(RollBackFarSilent, []OpKind{RMW, RMW}, 0, 1), "reported not applied", []string{
			"times out on node 0 (own-complete-p)", // the completion's CAS of P unanswered
		}},
		{"writer, writer twice, 1 timeout", rollScope(RollBackFarAnyEpoch, []OpKind{RMW, RMW}, 0, 1), "reported not applied", []string{
			"times out on node 0 (read-all)",                       // P silent to a reader
			"node 1 executes c0's cas D(e1 v3 val6 {1,2} pending)", // its failover fences Q, holding c1's write
		}},
		{"writer, writer twice, 1 flush or restart", rollScope(RollBackUnfenced, []OpKind{RMW, RMW}, 1, 0), "lost update or stale read", []string{
			"node 1 executes c1's cas D(e0 v1 val0 {0,1})", // the roll-back of Q, c0's write acknowledged
			"FAULT: flush_all on node 0",                   // P, the write's one copy, lost
		}},
	} {
		v := tc.sc.Variant
		t.Run(v.String()+"/"+tc.name, func(t *testing.T) {
			r := Check(tc.sc)
			report(t, v.String(), r)
			rollReport(t, v.String(), r)
			if r.Violation == "" {
				t.Fatalf("the checker accepted %v", v)
			}
			tr := strings.Join(r.Trace, "\n")
			t.Logf("counterexample (%d steps, %d states): %s\n%s", len(r.Trace)-1, r.States, r.Violation, tr)
			if !strings.Contains(r.Violation, tc.violation) {
				t.Errorf("not the expected violation (%q): %s", tc.violation, r.Violation)
			}
			for _, w := range tc.steps {
				if !strings.Contains(tr, w) {
					t.Errorf("counterexample lacks %q", w)
				}
			}
		})
	}
}
