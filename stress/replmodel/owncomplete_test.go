package replmodel

import (
	"strings"
	"testing"
)

// ownScopes are the scopes with a writer under faults, timeouts or
// suspicions that TestOwnComplete checks with the writer's own completion
// on (Scope.OwnComplete); full marks those that run only in make model.
// later marks those that must reach the undo's held ack
// (Result.UndoHeldLater).
var ownScopes = []struct {
	name  string
	full  bool
	later bool
	sc    Scope
}{
	// TestR9InTurn's (and TestWitnessRepair's, R9 in turn): R9's
	// re-stamp of P refuses the writer's CAS there (the store's make
	// soak 500 that led to the undo's completion).
	{"witness lost, writer and scan, R9 in turn, 1 flush, 1 timeout", false, false, Scope{Variant: Correct, Repair: true, Start: WitnessBlank, R9InTurn: true,
		Programs: [][]OpKind{{RMW}, {Scan}}, MaxFaults: 2, MaxTimeouts: 1}},
	// TestSingleFault's: the other writer's late fence re-stamps P.
	{"single fault, 2 writers, 1 timeout", false, true, Scope{Variant: Correct,
		Programs: [][]OpKind{{RMW}, {RMW}}, MaxFaults: 1, Restart: true, MaxTimeouts: 1}},
	// TestWitnessRepair's (R9's re-stamps in parallel).
	{"witness lost, writer and scan, 1 flush, 1 timeout", true, false, Scope{Variant: Correct, Repair: true, Start: WitnessBlank,
		Programs: [][]OpKind{{RMW}, {Scan}}, MaxFaults: 2, MaxTimeouts: 1}},
	// TestStaleThirdConverted's.
	{"writer and scan, 1 flush, 1 timeout, final read decides", true, false, Scope{Variant: Correct, Repair: true,
		Programs: [][]OpKind{{RMW}, {Scan}}, MaxFaults: 1, MaxTimeouts: 1, FinalDecides: true}},
	// TestExpiry's short scope.
	{"expiry, writer and reader (2 Gets)", true, false, Scope{Variant: Correct, Expiry: true, Programs: [][]OpKind{{RMW}, {Read, Read}}}},
	// TestAppendTouchGone's: appends, two writers and a reader.
	{"append, two writers and a reader", true, true, Scope{Variant: Correct, Append: true, Programs: [][]OpKind{{RMW}, {RMW}, {Read}}}},
	// TestPromiseTwoWriters's (R11), bounded as there.
	{"two writers, 2 timeouts, 1 suspicion, bounded", true, true, Scope{Variant: Correct, Programs: [][]OpKind{{RMW}, {RMW}},
		MaxTimeouts: 2, MaxSuspicions: 1, MaxStates: 12_000_000}},
}

func ownReport(t *testing.T, name string, r Result) {
	t.Helper()
	t.Logf("%s: writes acknowledged by their writer's own completion: %d before an undo, %d after an undo refused; %d acknowledged because the undo's read found them on both copies, %d because P had held them and the undo's read found a later version; undo read rounds: %d",
		name, r.OwnCompleted, r.UndoCompleted, r.UndoBothHeld, r.UndoHeldLater, r.UndoReadRounds)
}

// TestOwnComplete: the writer's own completion of R3's row "P refused,
// Q stored" (Scope.OwnComplete: the store's completeOwn, and the undo's
// read loop that completes the split again with Q's token just read)
// answers success only where the checker finds the write acknowledged
// safely: in each scope nothing acknowledged is lost. The scopes must
// reach both completions.
func TestOwnComplete(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	for _, tc := range ownScopes {
		t.Run(tc.name, func(t *testing.T) {
			if tc.full && !*full {
				t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
			}
			sc := tc.sc
			sc.OwnComplete, sc.FinalWrites = true, true
			var r Result
			if sc.MaxStates != 0 {
				r = bounded(t, tc.name+", own completion", sc)
			} else {
				r = mustHold(t, tc.name+", own completion", sc)
			}
			ownReport(t, tc.name, r)
			if r.OwnCompleted == 0 {
				t.Error("no write was acknowledged by its own completion: the scope does not reach it")
			}
			if r.UndoReadRounds == 0 {
				t.Error("no undo was refused and read both copies: the scope does not reach the undo's read")
			}
			if tc.later && r.UndoHeldLater == 0 {
				t.Error("no write was acknowledged because P had held it and the undo's read found a later version: the scope does not reach the held ack")
			}
		})
	}
}

// heldScope is a writer c0 and a client c1 whose program is progs, with
// the writer's own completion and the final writes, and at most faults
// flushes or restarts and timeouts timeouts: c1's first Get may complete
// c0's write onto P before c0's CAS of P (refused), and c1's write goes
// over it.
func heldScope(v Variant, progs []OpKind, faults, timeouts int) Scope {
	return Scope{Variant: v, Programs: [][]OpKind{{RMW}, progs}, MaxFaults: faults, Restart: faults > 0, MaxTimeouts: timeouts,
		OwnComplete: true, FinalWrites: true}
}

// TestUndoHeldLater: the undo's read loop acknowledges a write that a
// read of P showed P holding (the writer's own completion's read, or
// the loop's) once a read of the loop finds a later version of its
// configuration (the store's far && held, witness_write.go: the stalled
// writer, TestUndoStalledAfterPrimaryHeld): within one configuration,
// P having held the write means every later record is built on it.
// The model keeps no ancestors, so every later version counts as past
// them: a claim stronger than the store's, which acknowledges so only
// past envelope.Lineage versions. HeldAnyRecord (held from any record
// of the configuration at the write's version or above on P, a
// competitor included) is rejected: the check has teeth.
func TestUndoHeldLater(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		progs            []OpKind
		faults, timeouts int
	}{
		// A reader completes c0's write onto P, then writes over it.
		{"writer, reader then writer", []OpKind{Read, RMW}, 0, 0},
		// c1's first Get completes c0's write, or c1's first write is
		// a competitor on P; c1's second write goes over either.
		{"writer, writer twice", []OpKind{RMW, RMW}, 0, 0},
		{"writer, writer twice, 1 timeout", []OpKind{RMW, RMW}, 0, 1},
		{"writer, writer twice, 1 flush or restart", []OpKind{RMW, RMW}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled && tc.faults+tc.timeouts > 0 {
				t.Skip("single-threaded: runs in make test's model stage, without -race")
			}
			r := mustHold(t, tc.name+", own completion", heldScope(Correct, tc.progs, tc.faults, tc.timeouts))
			ownReport(t, tc.name, r)
			if r.UndoHeldLater == 0 {
				t.Error("no write was acknowledged because P had held it and the undo's read found a later version: the scope does not reach the held ack")
			}
		})
	}
	t.Run("HeldAnyRecord rejected", func(t *testing.T) {
		r := Check(heldScope(HeldAnyRecord, []OpKind{RMW, RMW}, 0, 0))
		report(t, "held-any-record", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted HeldAnyRecord")
		}
		if !strings.Contains(r.Violation, "c0's CompareAndSwap (acknowledged)") {
			t.Errorf("not the undo's acknowledgement of c0's write: %s", r.Violation)
		}
		tr := strings.Join(r.Trace, "\n")
		for _, w := range []string{
			"node 0 executes c1's cas D(e0 v2 val5 {0,1})", // the competitor on P
			"node 1 executes c0's cas D(e0 v1 val0 {0,1})", // c0's undo (refused)
			"executes c1's cas D(e0 v3 val6 {0,1})",        // the later version
		} {
			if !strings.Contains(tr, w) {
				t.Errorf("counterexample lacks %q", w)
			}
		}
		t.Logf("counterexample (%d steps): %s\n%s", len(r.Trace), r.Violation, tr)
	})
}

// TestOwnCompleteQOnly: the writer's own completion acknowledging the
// write once Q's CAS was stored, P's refused (OwnCompleteQOnly), is
// rejected: the checker sees the new step's answer.
func TestOwnCompleteQOnly(t *testing.T) {
	t.Parallel()
	sc := ownScopes[1].sc
	sc.OwnComplete, sc.Variant = true, OwnCompleteQOnly
	r := Check(sc)
	report(t, "own-complete-q-only", r)
	if r.Violation == "" {
		t.Fatal("the checker accepted OwnCompleteQOnly")
	}
	tr := strings.Join(r.Trace, "\n")
	if !strings.Contains(r.Violation, "c0's CompareAndSwap (acknowledged)") && !strings.Contains(r.Violation, "c1's CompareAndSwap (acknowledged)") {
		t.Errorf("not the completion's acknowledgement: %s", r.Violation)
	}
	t.Logf("counterexample (%d steps): %s\n%s", len(r.Trace), r.Violation, tr)
}

// TestUndoBothHeldTouched: with appends (Scope.Append) the undo's read
// that finds the write on both copies touches P before the ack: P's copy
// may be a reader's, made from Q's append before Q's touch, with the old
// life. The store's undo acknowledges it untouched
// (UndoBothHeldUntouched): P expires at the old deadline, one flush of Q
// loses the acknowledged write (found by TestAppendTouchGone's "holds,
// one flush" scope with Scope.OwnComplete).
func TestUndoBothHeldTouched(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	scope := func(v Variant) Scope {
		sc := appendScope(v, [][]OpKind{{Read}}, 1, 0, 0)
		sc.OwnComplete = true
		return sc
	}
	t.Run("UndoBothHeldUntouched rejected", func(t *testing.T) {
		r := Check(scope(UndoBothHeldUntouched))
		report(t, "undo-both-held-untouched", r)
		ownReport(t, "undo-both-held-untouched", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted UndoBothHeldUntouched")
		}
		tr := strings.Join(r.Trace, "\n")
		for _, w := range []string{"c0's cas D(e0 v1 val0 {0,1})", "FAULT: flush_all"} {
			if !strings.Contains(tr, w) {
				t.Errorf("counterexample lacks %q (the undo, the flush)", w)
			}
		}
		t.Logf("counterexample (%d steps): %s\n%s", len(r.Trace), r.Violation, tr)
	})
	t.Run("holds", func(t *testing.T) {
		r := appendHolds(t, "append at expiry, writer and reader, 1 flush, own completion", scope(Correct))
		ownReport(t, "append at expiry, writer and reader, 1 flush", r)
		if r.UndoBothHeld == 0 {
			t.Error("no undo's read found the write on both copies: the scope does not reach the touch")
		}
	})
}
