package replmodel

import (
	"strings"
	"testing"
)

// The scopes below answer docs/replication-review-1.md: creation (F2),
// witness repair under two wrong suspicions and a flush (F1), expiry at
// different instants and the TTL of internal writes (F3). Each has a
// broken variant the checker must reject.

// createTwice is two Adds of one key (two servers, or a retry after
// ErrOutcomeUnknown), from no session; the final read checks the result.
var createTwice = [][]OpKind{{Create}, {Create}}

// TestCreate: two Adds of one key, one flush or restart of any node at any
// instant, one timeout: never two successful Adds, never "not found" after
// an acknowledged Add (R8). make model adds a concurrent reader.
func TestCreate(t *testing.T) {
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	r := mustHold(t, "create: 2 Adds, 1 fault, 1 timeout", Scope{Variant: Correct, Start: Empty,
		Programs: createTwice, MaxFaults: 1, Restart: true, MaxTimeouts: 1})
	if r.Creations == 0 {
		t.Error("no Add completed: the scope does not reach creation")
	}
}

// TestCreateRetry (make model): an Add retried by the same client (after
// an unknown outcome) against a second Add, then a write, one flush, one
// timeout; and two Adds with a concurrent reader.
func TestCreateRetry(t *testing.T) {
	if !*full {
		t.Skip("larger scopes: go test ./replmodel -replmodel.full (make model)")
	}
	mustHold(t, "create: 2 Adds + reader, 1 fault, 1 timeout", Scope{Variant: Correct, Start: Empty,
		Programs: [][]OpKind{{Create}, {Create}, {Read}}, MaxFaults: 1, Restart: true, MaxTimeouts: 1})
	r := mustHold(t, "create: Add, retried, against Add+write, 1 flush, 1 timeout", Scope{Variant: Correct, Start: Empty,
		Programs: [][]OpKind{{Create, Create}, {Create, RMW}}, MaxFaults: 1, MaxTimeouts: 1})
	if r.Creations == 0 {
		t.Error("no Add completed")
	}
}

// TestExpiry: the session's timeout runs out at any step and each item
// then expires at its own instant; a writer and a reader run across it,
// with one timeout (a failover may copy a copy that is about to expire):
// a session found expired never comes back.
func TestExpiry(t *testing.T) {
	if !*full {
		t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
	}
	r := mustHold(t, "expiry at different instants, writer and 2 readers, 1 timeout", Scope{Variant: Correct, Expiry: true,
		Programs: [][]OpKind{{RMW}, {Read, Read}}, MaxTimeouts: 1})
	if r.Expired == 0 {
		t.Error("no read found the session expired: the scope does not reach expiry")
	}
}

// f1Scope is review-1 F1's scope: a repair scan, and a client that
// writes and then reads, one flush and two timeouts (wrong suspicions:
// one sends the writer's failover one way, the other sends its read's
// failover back from the stale copy).
func f1Scope(v Variant, maxStates int) Scope {
	return Scope{Variant: v, Repair: true, Programs: [][]OpKind{{Scan}, {RMW, Read}},
		MaxFaults: 1, MaxTimeouts: 2, MaxStates: maxStates}
}

// TestBrokenVariantsRejectedReview1: the first versions of R9, Add and
// the internal writes' TTL, each of which review-1 refuted by hand, must
// be rejected by the checker with a trace.
func TestBrokenVariantsRejectedReview1(t *testing.T) {
	for _, tc := range []struct {
		sc   Scope
		want []string
	}{
		{Scope{Variant: AddParallel, Start: Empty, Programs: createTwice, MaxFaults: 1, MaxTimeouts: 0}, []string{"FAULT: flush_all"}},
		{Scope{Variant: InternalNoTTL, Expiry: true, Programs: [][]OpKind{{RMW}, {RMW}}, MaxTimeouts: 1}, []string{"EXPIRY"}},
	} {
		t.Run(tc.sc.Variant.String(), func(t *testing.T) {
			r := Check(tc.sc)
			report(t, tc.sc.Variant.String(), r)
			if r.Violation == "" {
				t.Fatalf("the checker accepted the broken variant %v", tc.sc.Variant)
			}
			tr := strings.Join(r.Trace, "\n")
			for _, w := range tc.want {
				if !strings.Contains(tr, w) {
					t.Errorf("counterexample lacks %q", w)
				}
			}
			t.Logf("counterexample: %s\n%s", r.Violation, tr)
		})
	}
}

// TestRepairF1 (make model): review-1 F1's scope. The first version of R9
// (one CAS on the blank) must be rejected there; the protocol is searched
// to a bound (the scope does not finish in make model's time).
func TestRepairF1(t *testing.T) {
	if !*full {
		t.Skip("larger scopes: go test ./replmodel -replmodel.full (make model)")
	}
	t.Run("R9Unfenced rejected", func(t *testing.T) {
		r := Check(f1Scope(R9Unfenced, 20_000_000))
		report(t, "r9-unfenced", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted R9Unfenced in F1's scope")
		}
		t.Logf("counterexample: %s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
	})
	t.Run("protocol, bounded", func(t *testing.T) {
		bounded(t, "F1 scope", f1Scope(Correct, 20_000_000))
	})
}
