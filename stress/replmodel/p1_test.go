package replmodel

import (
	"strings"
	"testing"
)

// p1Prefix scripts review-silentp's P1 (docs/replication.md, R7's
// promise) as the protocol before the fix ran it (NoPromise): a reader
// (c0) fails over twice on wrong suspicions (epoch 0 to 1, then 1 to 2,
// each fence refused where it mattered and left pending on node 0),
// while a writer (c1) stores value 5 on node 1 and times out on node 0;
// a third process (c2) then suspects node 0.
var p1Prefix = []string{
	"c0 starts Get",
	"node 0 executes c0's get",
	"c1 starts Get+CompareAndSwap",
	"node 0 executes c1's get",
	"node 1 executes c1's get",
	"node 1 executes c1's cas D(e0 v2 val5 {0,1})",
	"node 1 executes c0's get",
	"node 0 executes c0's get",
	"node 2 executes c0's get",
	"SUSPICION: c0 holds node 1 failed",
	"node 0 executes c0's cas D(e1 v1 val0 {0,2} pending)",
	"node 1 executes c0's get",
	"c0's probe finds node 1 answering again",
	"SUSPICION: c0 holds node 2 failed",
	"node 0 executes c0's get", "node 1 executes c0's get", "node 0 executes c0's get", "node 1 executes c0's get",
	"node 0 executes c0's cas D(e2 v1 val0 {0,1} pending)",
	"c0's probe finds node 2 answering again",
	"c1 times out on node 0",
	"c2 starts Get",
	"SUSPICION: c2 holds node 0 failed",
}

// p1PromisePrefix is the same schedule under the protocol: each of c0's
// failovers first promises its epoch on its w (node 2, then node 1), then
// fences node 0.
var p1PromisePrefix = insertBefore(p1Prefix, map[string]string{
	"node 0 executes c0's cas D(e1 v1 val0 {0,2} pending)": "node 2 executes c0's cas W(e0 {0,1}) promise e1",
	"node 0 executes c0's cas D(e2 v1 val0 {0,1} pending)": "node 1 executes c0's cas D(e0 v2 val5 {0,1}) promise e2",
})

// insertBefore returns prefix with steps[s] put before each step s.
func insertBefore(prefix []string, steps map[string]string) []string {
	out := make([]string, 0, len(prefix)+len(steps))
	for _, s := range prefix {
		if pre, ok := steps[s]; ok {
			out = append(out, pre)
		}
		out = append(out, s)
	}
	return out
}

func p1Scope(v Variant, prefix []string) Scope {
	return Scope{Variant: v, Programs: [][]OpKind{{Read}, {RMW}, {Read}}, MaxTimeouts: 1, MaxSuspicions: 4,
		MaxStates: 3_000_000, Prefix: prefix}
}

// TestPromiseP1 is review-silentp's P1: with no fault, one timeout and
// four wrong suspicions, a chain of two failovers leaves a fence of epoch
// 2 pending on node 0 whose copy on node 1 is refused, because a third
// process that holds node 0 failed fails over from node 1 meanwhile.
// Before the fix (NoPromise) that process took epoch 1 (its base's plus
// one), and the final read completed the epoch-2 fence over the value it
// had returned. With R7's promise (the new epoch written on w before the
// fence, and a new epoch above every epoch and promise read) every
// interleaving after the same schedule holds: the third process either
// sees the promise on node 1 and takes epoch 3, or read node 1 before
// it and its fence there is refused.
func TestPromiseP1(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	t.Run("NoPromise rejected", func(t *testing.T) {
		r := Check(p1Scope(NoPromise, p1Prefix))
		report(t, "no-promise, P1 scope", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted NoPromise in P1's scope")
		}
		tr := strings.Join(r.Trace, "\n")
		if !strings.Contains(r.Violation, "lost update or stale read") || !strings.Contains(tr, "D(e1 v2 val5 {1,2} pending)") {
			t.Errorf("not P1's counterexample: %s\n%s", r.Violation, tr)
		}
		t.Logf("counterexample: %s\n%s", r.Violation, tr)
	})
	t.Run("holds", func(t *testing.T) {
		r := mustHold(t, "P1 scope", writes(p1Scope(Correct, p1PromisePrefix)))
		if r.Fences == 0 {
			t.Error("no failover after the prefix: the scope does not reach R7")
		}
	})
}

// TestPromiseTwoWriters (review-ballot m2): P1 without a script, two
// writers, two timeouts, one wrong suspicion, no fault. The rules before
// R11 (NoPromise) lose an acknowledged write (found by review-p1 in
// 3,693,125 states with its harness's order, here in the checker's); R11
// is searched up to a bound in make model.
func TestPromiseTwoWriters(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("single-threaded: runs in make test's model stage, without -race")
	}
	sc := Scope{Programs: [][]OpKind{{RMW}, {RMW}}, MaxTimeouts: 2, MaxSuspicions: 1}
	t.Run("NoPromise rejected", func(t *testing.T) {
		sc := sc
		sc.Variant, sc.MaxStates = NoPromise, 2_000_000
		r := Check(sc)
		report(t, "no-promise, two writers", r)
		if r.Violation == "" {
			t.Fatal("the checker accepted NoPromise with two writers, two timeouts and a suspicion")
		}
		t.Logf("counterexample: %s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
	})
	t.Run("R11 bounded", func(t *testing.T) {
		if !*full {
			t.Skip("12 million states: make model (-replmodel.full)")
		}
		sc := sc
		sc.Variant, sc.MaxStates = Correct, 12_000_000
		bounded(t, "R11, two writers", sc)
	})
}
