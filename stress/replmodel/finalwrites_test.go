package replmodel

import (
	"strings"
	"testing"
)

// writes turns on the final writes' check (Scope.FinalWrites): the short
// scopes mustHold checks run it.
func writes(sc Scope) Scope {
	sc.FinalWrites = true
	return sc
}

// TestFinalWrites (review-3 M3): once every client is done, a write run
// alone is acknowledged, with no node dead and with one node dead (the
// node the run's fault hit, or each node in a run with no fault): issue
// 13's promise that a request started a failover time after the fault
// succeeds. FailoverNeedsAnswer, which fails over from an empty answer
// but not from silence, passes every other check (the final read never
// meets a silent node) and must be rejected by this one with a trace.
func TestFinalWrites(t *testing.T) {
	t.Parallel()
	sc := func(v Variant) Scope {
		return Scope{Variant: v, FinalWrites: true, FinalDecides: true, Programs: [][]OpKind{{RMW}, {RMW}}, MaxFaults: 1, MaxTimeouts: 1}
	}
	t.Run("FailoverNeedsAnswer passes without it", func(t *testing.T) {
		if raceEnabled {
			t.Skip("2.3 million states, single-threaded: runs in make test's model stage, without -race")
		}
		s := sc(FailoverNeedsAnswer)
		s.FinalWrites = false
		r := Check(s)
		report(t, "failover-needs-answer, no final writes", r)
		if r.Violation != "" || !r.Complete {
			t.Fatalf("the variant is rejected without the final writes (complete=%v): %s\n%s", r.Complete, r.Violation, strings.Join(r.Trace, "\n"))
		}
	})
	t.Run("FailoverNeedsAnswer rejected", func(t *testing.T) {
		r := rejected(t, sc(FailoverNeedsAnswer), "FINAL WRITE", "is dead", "Get+CompareAndSwap")
		if !strings.Contains(r.Violation, "not acknowledged") {
			t.Errorf("violation %q is not a write left unacknowledged", r.Violation)
		}
	})
}
