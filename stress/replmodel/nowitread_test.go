package replmodel

import "testing"

// nowitRead is review-n4b F2's shape: review-4 N4 with its Add in flight
// (lateWitness: a late witness CAS of another configuration lands on the
// Add's primary blank, so its primary CAS is refused and it undoes its
// witness and its secondary); c1 reads (re-balloting the creation over
// that witness, nowit), writes (Get+CompareAndSwap) and reads again. R9
// (Repair), one flush or restart, timeouts as given. fix sets
// Scope.NoWitRead (the store's readers since F2's fix).
func nowitRead(v Variant, fix bool, timeouts int) Scope {
	sc := lateWitness(v)
	sc.Repair, sc.NoWitRead = true, fix
	sc.Programs = [][]OpKind{{Create}, {Read, RMW, Read}}
	sc.MaxTimeouts = timeouts
	return sc
}

// TestNoWitReadWaitsForWitness (review-n4b F2): a nowit configuration
// whose third node answers is not returned before R9 stored its witness
// there: R2 sends a nowit record to the anomaly read, whose R4.3 runs R9
// first (Scope.NoWitRead). The re-ballot of a creation over a foreign
// witness then needs no stated exception: no read is excused. Only a
// third node that does not answer (a timeout) opens R8's D6 window, as
// the two-record creation does (final reads unavailable, counted). The
// rule before (the exception opened by the re-ballot, every candidate
// answering) needs that exception to excuse lost reads. Each half of the
// fix alone is rejected with no timeout at all: R2's fast path returning
// the nowit record (NoWitFastPath), and a plain reader's R4.3 returning
// it with R9 queued (NoWitReturnedBeforeR9): the write acknowledged on
// the nowit configuration, then one flush, leaves a lone copy that no
// read can decide (stuck).
func TestNoWitReadWaitsForWitness(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	r := mustHold(t, "N4's re-ballot, then a write, readers wait for R9, 1 fault, 1 timeout", writes(nowitRead(Correct, true, 1)))
	if r.Excepted != 0 {
		t.Errorf("%d reads excused by R8's exception: every read that found no session must be a fault's", r.Excepted)
	}
	if r.CreationReballotsDone == 0 || r.WitnessRepairs == 0 {
		t.Error("no creation re-balloted, or no witness repaired: the scope does not reach the rule")
	}
	if r.ExceptedUnavailable == 0 {
		t.Error("the silent-third window (D6) is never reached: the timeout does not reach R4.3")
	}
	mustHold(t, "the same, no timeout", writes(nowitRead(Correct, true, 0)))
	before := mustHold(t, "the rule before: the re-ballot opens R8's exception", writes(nowitRead(Correct, false, 1)))
	if before.ExceptedLoss == 0 {
		t.Error("the rule before never needs the exception: the scope does not reach F2's window")
	}
	rejected(t, nowitRead(NoWitFastPath, true, 0), "promise e1", "FAULT")
	rejected(t, nowitRead(NoWitReturnedBeforeR9, true, 0), "promise e1", "FAULT")
}
