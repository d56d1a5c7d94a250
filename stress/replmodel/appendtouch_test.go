package replmodel

import (
	"strings"
	"testing"
)

// appendScope is the append-at-expiry scope (docs/replication-review-
// appendtouch.md, F2): a writer whose R3 sends its data writes as appends
// that keep each item's expiry, each touched with the caller's T once
// stored (Scope.Append), against the programs in others, across the
// session's deadline; a copy expires no later than its source
// (Scope.CopyLife, the store's copyExp) and every acknowledged write
// renews the session's life (Scope.Renewal: without it a write
// acknowledged on a session already gone goes unseen).
func appendScope(v Variant, others [][]OpKind, faults, timeouts, maxStates int) Scope {
	return Scope{Variant: v, Expiry: true, CopyLife: true, Append: true, Renewal: true,
		Programs: append([][]OpKind{{RMW}}, others...), MaxFaults: faults, MaxTimeouts: timeouts, MaxStates: maxStates}
}

// TestAppendTouchGone (F2): a copy whose append was stored and whose touch
// then found the key gone (EN: it expired between the two) is not a
// stored copy. The store's code before counted it stored
// (AppendGoneStored): both copies gone, a write acknowledged on a session
// that is gone; one gone, acknowledged with one live copy and no fault,
// which one flush loses. Counting it refused by NF throughout R3's table
// (AppendGoneRefused, the fix as first stated) denies a value a read may
// have returned: the appended value was on the copy, unfenced, until it
// expired. The rule the model holds (appendGone): the other copy stored
// and Q gone: Q missing (the completion, then the write failover); P
// gone: ErrOutcomeUnknown, Q left alone; both gone (or gone and NF): not
// found, the session expired with the value; gone and the other refused
// otherwise or silent: unknown. And R3's completion that finds the write
// on Q (a reader's R4.4 copy, made from P's append before its touch,
// carries P's old life) touches Q before the ack (AppendCompleteUntouched:
// the store's completeWrite, which does not). A touch that finds another
// item than the append's (the store's strayed touch) counts the copy
// stored only when that item holds the append's value or one built on
// it: a blank (left by a reader's mg … N where the copy expired: not EN)
// is a gone copy (AppendStrayStored counts it stored), any other record
// a replaced one, as gone save that it never makes "not found" (the key
// is not gone: two writers, one's completion over the other's append).
// A rival write of the append's own base, found beside a refused copy or
// another lost tie, is a conflict (rTie: the rival won the tie, and the
// append was never returned; the rule before, unknown, ended such a call
// so with no fault: the simulation's flush-step seeds). The row
// stretched (any replaced copy beside a refused one; a lost tie beside a
// stored copy) holds in these scopes too: the rule keeps to the case it
// argues, and no broken variant of it is rejected here.
func TestAppendTouchGone(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	reader := [][]OpKind{{Read}}
	for _, tc := range []struct {
		name, violation string
		sc              Scope
		want            []string // steps the counterexample must contain
	}{
		{"AppendGoneStored rejected, both copies gone", "a write acknowledged on a session that is gone",
			appendScope(AppendGoneStored, reader, 0, 0, 0), []string{
				"EXPIRY: node 0's item expires; then node 0 executes c0's append's touch",
				"EXPIRY: node 1's item expires; then node 1 executes c0's append's touch"}},
		{"AppendGoneStored rejected, one copy gone, one flush", "after a single fault",
			appendScope(AppendGoneStored, reader, 1, 0, 0), []string{
				"node 0 executes c0's append's touch",
				"EXPIRY: node 1's item expires; then node 1 executes c0's append's touch",
				"FAULT: flush_all on node 0"}},
		// c1 reads both copies holding the append, P expires before its
		// touch, Q's touch lands: P gone, Q stored, Q undone and the
		// write reported not applied after c1 returned it.
		{"AppendGoneRefused rejected", "reported not applied",
			appendScope(AppendGoneRefused, reader, 0, 0, 0), []string{
				"EXPIRY: node 0's item expires; then node 0 executes c0's append's touch",
				"node 1 executes c0's cas D(e0 v1 val0 {0,1})"}},
		// c1 completes c0's append from P onto Q before P's touch (Q's
		// copy gets P's old life); c0's Q append is refused, its
		// completion finds the write on Q and acknowledges it; Q expires
		// with the old life, and one flush of P loses the write.
		{"AppendCompleteUntouched rejected", "after a single fault",
			appendScope(AppendCompleteUntouched, reader, 1, 0, 0), []string{
				"node 1 executes c1's cas D(e0 v2 val1 {0,1})",
				"EXPIRY: node 1's item expires",
				"FAULT: flush_all on node 0"}},
		// With R9's repair reads (mg … N): c1's anomaly read leaves a
		// blank where Q expired after its append, so Q's touch finds the
		// blank, not EN; the same for P later: acknowledged, and gone.
		{"AppendStrayStored rejected", "a write acknowledged on a session that is gone",
			withRepair(appendScope(AppendStrayStored, reader, 0, 0, 0)), []string{
				"EXPIRY: node 1's item expires",
				"node 1 executes c1's get-or-blank",
				"node 1 executes c0's append's touch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := rejected(t, tc.sc, tc.want...); !strings.Contains(r.Violation, tc.violation) {
				t.Errorf("want a violation with %q, got %q", tc.violation, r.Violation)
			}
		})
	}
	t.Run("without Renewal the checker misses AppendGoneStored", func(t *testing.T) {
		// The checker before Scope.Renewal: once an item expired any
		// later "not found" passed, so the write acknowledged on a gone
		// session was not seen.
		sc := appendScope(AppendGoneStored, reader, 0, 0, 0)
		sc.Renewal = false
		r := Check(sc)
		report(t, "append-gone-stored without Renewal", r)
		if r.Violation != "" || !r.Complete {
			t.Fatalf("expected the scope to pass unseen without Renewal (it documents why Renewal exists), got %q (complete=%v)", r.Violation, r.Complete)
		}
	})
	t.Run("holds", func(t *testing.T) {
		r := appendHolds(t, "append at expiry, writer and reader", appendScope(Correct, reader, 0, 0, 0))
		if r.WriteFailovers == 0 {
			t.Error("no write failed over: the scope does not reach Q gone after its append")
		}
	})
	t.Run("holds, one flush", func(t *testing.T) {
		// Expiry with a flush: the expiry's reduction is not exact there
		// (section 13), so this is evidence beside the scope above.
		appendHolds(t, "append at expiry, writer and reader, 1 flush", appendScope(Correct, reader, 1, 0, 0))
	})
	t.Run("holds, reader reading twice", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		appendHolds(t, "append at expiry, writer and reader (2 Gets)", appendScope(Correct, [][]OpKind{{Read, Read}}, 0, 0, 0))
	})
	t.Run("holds, two writers", func(t *testing.T) {
		// A touch that finds the other writer's completion over its
		// append (a record not built on it) is not a gone key: "not
		// found" there was wrong (rStray).
		r := appendHolds(t, "append at expiry, two writers", appendScope(Correct, [][]OpKind{{RMW}}, 0, 0, 0))
		// A touch that finds the rival's completion of the same base
		// over its append beside a refused copy is a conflict (rTie):
		// the notApplied check holds it.
		t.Logf("touches that found a rival write of the same base (a lost tie): %d; calls ended not applied by the tie row: %d", r.AppendsTie, r.TieConflicts)
		if r.TieConflicts == 0 {
			t.Error("no call ended by the tie row: the scope does not reach it")
		}
	})
	t.Run("holds, two writers and a reader", func(t *testing.T) {
		// The reader is what could observe the append before the tie
		// row reports it not applied (the tie row's cold review, M1:
		// with two writers alone nothing observes it, so the check
		// cannot fire).
		tieHolds(t, "append, two writers and a reader", Scope{Variant: Correct, Append: true, Programs: [][]OpKind{{RMW}, {RMW}, {Read}}})
	})
	t.Run("holds, two writers and a reader, 1 timeout", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		tieHolds(t, "append, two writers and a reader, 1 timeout", Scope{Variant: Correct, Append: true, Programs: [][]OpKind{{RMW}, {RMW}, {Read}}, MaxTimeouts: 1, MaxStates: 40_000_000})
	})
	t.Run("holds, two writers, 1 flush", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		r := appendHolds(t, "append at expiry, two writers, 1 flush", appendScope(Correct, [][]OpKind{{RMW}}, 1, 0, 60_000_000))
		t.Logf("touches that found a rival write of the same base (a lost tie): %d; calls ended not applied by the tie row: %d", r.AppendsTie, r.TieConflicts)
	})
	t.Run("holds, repair", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		// R9's reads leave blanks: a touch finds one where its copy
		// expired (or was buried).
		r := appendHolds(t, "append at expiry, writer and reader, repair", withRepair(appendScope(Correct, reader, 0, 0, 40_000_000)))
		t.Logf("touches that found another item than the append's (a blank: gone; a record not built on it: replaced): %d", r.AppendsStrayGone)
		if r.AppendsStrayGone == 0 {
			t.Error("no touch found a blank: the scope does not reach AppendStrayStored's case")
		}
	})
	t.Run("holds, 1 timeout", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		// AppendCompleteUntouched fails here with no fault (4.3 M
		// states): a failover with a silent y left the configuration no
		// witness, so Q's old life alone loses the write.
		appendHolds(t, "append at expiry, writer and reader, 1 timeout", appendScope(Correct, reader, 0, 1, 40_000_000))
	})
	t.Run("Renewal with whole writes", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		// TestExpiry's short scope with Scope.Renewal: the refined check
		// finds nothing in R3's whole writes.
		appendHolds(t, "expiry, writer and reader (2 Gets), Renewal", Scope{Variant: Correct, Expiry: true, Renewal: true,
			Programs: [][]OpKind{{RMW}, {Read, Read}}, MaxStates: 40_000_000})
	})
}

// tieHolds checks that sc, a scope with a reader beside two writers,
// holds completely and reaches the tie row (rTie): calls ended "not
// applied" by it, which the reader could have contradicted.
func tieHolds(t *testing.T, name string, sc Scope) {
	t.Helper()
	r := Check(sc)
	report(t, name, r)
	t.Logf("calls ended not applied by the tie row: %d", r.TieConflicts)
	if r.Violation != "" || !r.Complete || r.TieConflicts == 0 {
		t.Fatalf("want the scope complete, with no violation and the tie row reached: %q (complete %v, %d tie conflicts)", r.Violation, r.Complete, r.TieConflicts)
	}
}

// withRepair turns on R9's repair (its anomaly reads leave blanks).
func withRepair(sc Scope) Scope {
	sc.Repair = true
	return sc
}

// appendHolds is mustHold with the append scope's counts.
func appendHolds(t *testing.T, name string, sc Scope) Result {
	t.Helper()
	r := mustHold(t, name, writes(sc))
	t.Logf("%s: explored steps in which an append's touch found the key gone: %d; writes acknowledged (renewals): %d", name, r.AppendsGone, r.Renewals)
	if sc.Append && r.AppendsGone == 0 || r.Renewals == 0 || r.Expired == 0 {
		t.Error("no append's touch found its copy gone, no write was acknowledged, or no read found the session expired: the scope does not reach F2")
	}
	return r
}
