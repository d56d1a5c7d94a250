package replmodel

import (
	"strings"
	"testing"
)

// The scopes below answer docs/replication-review-3.md's open items: R8's
// Add with an unresponsive candidate (M1) and the Add abandoned at its
// primary that the model found with it; each has a broken variant the
// checker must reject.

// rejected requires the checker to reject sc's variant with a trace that
// contains every string of want.
func rejected(t *testing.T, sc Scope, want ...string) Result {
	t.Helper()
	r := Check(sc)
	report(t, sc.Variant.String(), r)
	if r.Violation == "" {
		t.Fatalf("the checker accepted the broken variant %v", sc.Variant)
	}
	tr := strings.Join(r.Trace, "\n")
	for _, w := range want {
		if !strings.Contains(tr, w) {
			t.Errorf("counterexample lacks %q", w)
		}
	}
	t.Logf("counterexample: %s\n%s", r.Violation, tr)
	return r
}

// addUnresponsive (review-3 M1) is R8's Add by a process that holds one
// candidate failed (a wrong suspicion, scripted as the first step): the
// witness goes to that node, which the Add still reads and CASes; when it
// gives no reply within Timeout (a timeout, no fault) the record goes to
// the two others marked nowit, and the key on the process's witness-less
// list, whose R9 the process's next step runs (a Scan); R9, its witness
// stored, clears nowit on both copies (R9ClearsNoWit, review-n4 M1). One
// flush or restart anywhere, 2 timeouts (the unresponsive candidate's and
// one more, so that a reader can miss the surviving copy). Checked: every
// single-fault guarantee, except exactly R8's stated residual (a flush of
// a copy still marked nowit: a read that does not hear the other copy
// finds no session; the final read may be ErrUnavailable), which is
// counted and where the run stops.
func addUnresponsive(v Variant, suspect string, programs [][]OpKind, timeouts int) Scope {
	return Scope{Variant: v, Start: Empty, Repair: true, OldWitness: true, AdoptWitness: true, R9ClearsNoWit: true, Programs: programs,
		Prefix:    []string{"SUSPICION: c0 holds node " + suspect + " failed", "c0 starts Add"},
		MaxFaults: 1, Restart: true, MaxTimeouts: timeouts, MaxSuspicions: 1}
}

// TestAddUnresponsiveCandidate (review-3 M1): R8's two-record creation, its
// witness-less list and the stated residual.
func TestAddUnresponsiveCandidate(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	addScan := [][]OpKind{{Create, Scan}}
	for _, tc := range []struct {
		name string
		sc   Scope
	}{
		{"witness node suspected", addUnresponsive(Correct, "2", addScan, 2)},
		{"primary node suspected (configuration {1,2})", addUnresponsive(Correct, "0", addScan, 2)},
		{"against a second Add", addUnresponsive(Correct, "2", [][]OpKind{{Create, Scan}, {Create}}, 1)},
		// Review-n4 M1: a write after R9's clear of nowit, then a fault
		// (R9ClearFirst, the clear before the witness, is rejected here).
		{"witness node suspected, then a write", addUnresponsive(Correct, "2", [][]OpKind{{Create, Scan, RMW}}, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustHold(t, tc.name, writes(tc.sc))
			t.Logf("two-record creations begun: %d explored steps; residual: %d reads find no session, %d final reads ErrUnavailable; nowit clears after R9 adopted a witness: %d",
				r.NoWitCreations, r.Excepted, r.ExceptedUnavailable, r.Adoptions)
			if r.NoWitCreations == 0 || r.WitnessRepairs == 0 {
				t.Error("no two-record creation, or no R9 after one: the scope does not reach R8's case")
			}
			if r.R9Clears == 0 {
				t.Error("R9 never cleared nowit after its witness: the scope does not reach clearNoWitAfter")
			}
			if r.Excepted+r.ExceptedUnavailable == 0 {
				t.Error("the stated residual is never reached: the scope is weaker than the rule's window")
			}
		})
	}
	t.Run("BuryCreation rejected", func(t *testing.T) {
		// Review-4 D3 as first stated (bury any lone copy): a scan that
		// reads an Add's blank primary before its CAS, the witness
		// flushed, buries the secondary; the Add is then acknowledged.
		rejected(t, addUnresponsive(BuryCreation, "2", [][]OpKind{{Create, Scan}, {Create}}, 1), "FAULT: flush_all", "cas blank")
	})
	t.Run("R9ClearFirst rejected", func(t *testing.T) {
		rejected(t, addUnresponsive(R9ClearFirst, "2", [][]OpKind{{Create, Scan, RMW}}, 2), "times out on node 1 (restamp)", "FAULT")
	})
	t.Run("NoWitUnmarked rejected", func(t *testing.T) {
		rejected(t, addUnresponsive(NoWitUnmarked, "2", addScan, 2), "times out on node 2 (add-witness)", "FAULT")
	})
}

// abandonedAdd: an Add whose primary does not answer its CAS (a timeout,
// no fault: the Add reports ErrOutcomeUnknown and leaves the witness, the
// secondary's record and the primary's blank), and a process that writes
// then reads; one flush, 2 timeouts. A reader fails over from the
// secondary onto the witness node: that configuration has two present
// records though nothing failed, so R7 marks it nowit whenever the base is
// a creation's record (E0, V0) and its other copy is silent, absent or
// blank, and it is R8's stated residual's second origin.
func abandonedAdd(v Variant) Scope {
	return Scope{Variant: v, Start: Empty, Programs: [][]OpKind{{Create}, {RMW, Read}}, MaxFaults: 1, MaxTimeouts: 2}
}

// TestAbandonedAdd: R7's nowit for a creation's silent copy holds (make
// model); the rule before it (CreationFailoverUnmarked: a silent y left
// the new configuration unmarked) loses an acknowledged write to one flush.
func TestAbandonedAdd(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("CreationFailoverUnmarked rejected", func(t *testing.T) {
		rejected(t, abandonedAdd(CreationFailoverUnmarked), "times out on node 0 (add-primary)", "FAULT: flush_all")
	})
	t.Run("R7 marks it nowit", func(t *testing.T) {
		if !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		r := mustHold(t, "abandoned Add, writer then reader, 1 flush, 2 timeouts", abandonedAdd(Correct))
		t.Logf("residual: %d reads find no session, %d final reads ErrUnavailable", r.Excepted, r.ExceptedUnavailable)
		if r.Excepted == 0 || r.WriteFailovers == 0 {
			t.Error("the residual or a write failover is never reached: the scope does not reach the abandoned Add's case")
		}
	})
}

// twoTimeouts (review-3 M2): a writer with the session's timeout, the
// longest allowed (MaxT = 3 ticks, so TW = 6), and a cold process's
// GetAndTouch with a shorter guessed timeout (1 tick; its correcting CAS
// skipped); time passes at any step and every command runs within MaxT
// ticks of its send (no fault). The witness must never expire while a
// data copy of its configuration lives.
func twoTimeouts(v Variant, delay uint8) Scope {
	return Scope{Variant: v, Timed: true, MaxT: 3, MaxDelay: delay, SessionT: []uint8{3, 1},
		Programs: [][]OpKind{{RMW}, {ReadTouch}}}
}

// TestTwoTimeouts (review-3 M2): every witness touch gives TW = 2 ×
// MaxTimeout; the rule before it (2 × the caller's T) lets the short
// guess's touch, run after the long writer's, cut the witness below its
// data with no fault.
func TestTwoTimeouts(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("TW for every touch", func(t *testing.T) {
		mustHold(t, "two timeouts, a writer and a cold GetAndTouch", writes(twoTimeouts(Correct, 1)))
	})
	t.Run("WitnessTTLFromT rejected", func(t *testing.T) {
		rejected(t, twoTimeouts(WitnessTTLFromT, 1), "TICK", "witness touch")
	})
	// The bound is tight: a data touch and the next call's witness touch
	// each delayed by 2 of MaxT = 3 ticks (4 > TW - T = 3 in all) let the
	// witness die first with the rule too: section 2.3's "delayed past
	// MaxTimeout" is about the sum of the two delays.
	t.Run("two delays summing past MaxTimeout", func(t *testing.T) {
		r := Check(twoTimeouts(Correct, 2))
		report(t, "TW, delays up to 2 ticks", r)
		if !strings.Contains(r.Violation, "witness on node 2 expired") {
			t.Fatalf("the witness outlived its data with delays of 2 ticks (violation %q): the scope no longer shows the bound", r.Violation)
		}
		t.Logf("counterexample: %s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
	})
}

// b2Scope is review-4 B2's scope: the witness lost (the one fault), the
// repair scan (R9) and a reader with two Gets (make model; one Get in the
// short stage) across the session's expiry. Exact under the expiry
// reduction (no flush in the run).
func b2Scope(v Variant, reads int) Scope {
	reader := []OpKind{Read}
	if reads == 2 {
		reader = []OpKind{Read, Read}
	}
	return Scope{Variant: v, Start: WitnessBlank, Repair: true, Expiry: true,
		Programs: [][]OpKind{{Scan}, reader}, MaxFaults: 1, MaxStates: 150_000_000}
}

// TestLoneCopyBuried (review-4 B2, D3): R4.1 buries the lone copy before
// it answers "not found"; without the burial (NoBury) a late R9 witness
// CAS on a blank peer revives a session a read reported expired.
func TestLoneCopyBuried(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("NoBury rejected", func(t *testing.T) {
		rejected(t, b2Scope(NoBury, 1), "EXPIRY", "c0's cas W(e0 {0,1})")
	})
	t.Run("D3 holds, 1 Gets", func(t *testing.T) {
		r := mustHold(t, "B2's scope, D3", writes(b2Scope(Correct, 1)))
		t.Logf("lone copies buried: %d explored steps; burials whose re-stamp was refused: %d", r.Buried, r.BuryFenceRefused)
		if r.Buried == 0 || r.Expired == 0 || r.BuryFenceRefused == 0 {
			t.Error("no lone copy was buried, no burial's re-stamp refused, or no read found the session expired: the scope does not reach R4.1")
		}
	})
	t.Run("D3 bounded, 2 Gets", func(t *testing.T) {
		if !*full {
			t.Skip("the review's scope, larger: go test ./replmodel -replmodel.full (make model)")
		}
		// Complete in 76,747,806 states before D3′'s re-stamps (seventh
		// session of 2026-11-30); with them no violation to 150,000,000
		// (incomplete, about 10 GB), so a bounded search here.
		sc := b2Scope(Correct, 2)
		sc.MaxStates = 40_000_000
		r := Check(sc)
		report(t, "B2's scope, 2 Gets, D3 (bounded)", r)
		if r.Violation != "" {
			t.Fatalf("%s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
		}
		t.Logf("lone copies buried: %d explored steps", r.Buried)
		if r.Buried == 0 {
			t.Error("no lone copy was buried: the scope does not reach R4.1")
		}
	})
}

// lapse (review-4 B1): one data copy may lapse while the session is live
// (its last touch lost), a writer and a reader, one more flush.
func lapse(v Variant) Scope {
	return Scope{Variant: v, Lapse: true, Programs: [][]OpKind{{RMW}, {Read}}, MaxFaults: 1, MaxTimeouts: 1}
}

// TestDataCopyLapse (review-4 B1, D1): with data touches carrying the
// caller's (guessed) T, a copy lapses early with no fault and one flush
// loses the session (LapseFree, rejected); under D1 a lapse needs a lost
// touch, a fault, and the same scope holds.
func TestDataCopyLapse(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("LapseFree rejected", func(t *testing.T) {
		rejected(t, lapse(LapseFree), "LAPSE", "FAULT: flush_all")
	})
	t.Run("D1: a lapse is a fault", func(t *testing.T) {
		mustHold(t, "a copy lapses (a lost touch), writer and reader, 1 timeout", writes(lapse(Correct)))
	})
}
