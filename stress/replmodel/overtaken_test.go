package replmodel

import (
	"testing"
)

// overtakenScopes are the scopes of docs/replication.md §17's rule as
// the cold review rvcarry asks it modelled (M6, Q4 (a)–(d)), each with
// Scope.Overtaken on: (a) one flush, repair on, a writer and a reader
// whose R7 of the writer's own write races its write failover; (b)
// opposite failovers, two suspicions (Q silent to the writer, P to the
// reader); (c) proposal v2's roll-back with the writer's own completion
// (TestRollBack's scopes); (d) (a) with appends at expiry. full marks
// those that run only in make model; applied and conflict those that
// must reach the rule's success and "not applied" answers.
var overtakenScopes = []struct {
	name              string
	full              bool
	applied, conflict bool
	sc                Scope
}{
	{"(a) writer and reader, repair, 1 flush", false, true, true, Scope{Variant: Correct, Overtaken: true, Repair: true, FinalWrites: true,
		Programs: [][]OpKind{{RMW}, {Read}}, MaxFaults: 1}},
	{"(a) writer and scan, 1 flush", false, true, true, Scope{Variant: Correct, Overtaken: true, Repair: true, FinalWrites: true,
		Programs: [][]OpKind{{RMW}, {Scan}}, MaxFaults: 1}},
	{"(a) writer and reader, repair, Q flushed first, 1 timeout", true, true, true, Scope{Variant: Correct, Overtaken: true, Repair: true,
		Programs: [][]OpKind{{RMW}, {Read}}, MaxFaults: 1, MaxTimeouts: 1, Prefix: []string{"FAULT: flush_all on node 1"}}},
	{"(b) opposite suspicions first, writer and reader", false, false, true, Scope{Variant: Correct, Overtaken: true,
		Programs: [][]OpKind{{RMW}, {Read}}, MaxSuspicions: 2,
		Prefix: []string{"SUSPICION: c0 holds node 1 failed", "SUSPICION: c1 holds node 0 failed"}}},
	{"(b) writer and reader, 2 suspicions", true, true, true, Scope{Variant: Correct, Overtaken: true,
		Programs: [][]OpKind{{RMW}, {Read}}, MaxSuspicions: 2}},
	{"(c) roll back, writer, writer twice, 1 timeout", false, true, true, overtakenOn(rollScope(Correct, []OpKind{RMW, RMW}, 0, 1))},
	{"(c) roll back, writer, writer twice, 1 suspicion", true, true, true, func() Scope {
		sc := overtakenOn(rollScope(Correct, []OpKind{RMW, RMW}, 0, 0))
		sc.MaxSuspicions = 1
		return sc
	}()},
	{"(c) roll back, writer, reader then writer, 1 timeout", false, true, true, overtakenOn(rollScope(Correct, []OpKind{Read, RMW}, 0, 1))},
	{"(d) append at expiry, writer and reader, 1 flush", true, true, true, overtakenOn(appendScope(Correct, [][]OpKind{{Read}}, 1, 0, 0))},
}

func overtakenOn(sc Scope) Scope {
	sc.Overtaken = true
	return sc
}

// overtakenReport logs the rule's rounds (each an ErrOutcomeUnknown
// without the rule) and their answers, success, "not applied" or still
// unknown, in all and by the phase whose answer they replace. Counted
// per explored step, as Result's other counts: a round begun in one
// state ends in many (each delivery of its last reply).
func overtakenReport(t *testing.T, name string, r Result) {
	t.Helper()
	t.Logf("%s: overtaken rounds begun %d (ErrOutcomeUnknown without the rule); answering steps: %d success, %d not applied, %d still unknown",
		name, r.Overtaken(OvRounds), r.Overtaken(OvApplied), r.Overtaken(OvConflicts), r.Overtaken(OvUnknown))
	for ph, a := range r.OvertakenAt {
		if a != [4]int{} {
			t.Logf("%s:   from %s: %d rounds; %d success, %d not applied, %d unknown", name, phaseNames[ph], a[OvRounds], a[OvApplied], a[OvConflicts], a[OvUnknown])
		}
	}
}

// TestOvertaken checks docs/replication.md §17's rule (Scope.Overtaken):
// a writer whose write another process's decision overtook answers
// success from an established record of a greater epoch that carries its
// write (touched first with appends), "not applied" from one that
// certainly does not (its other copy agreeing), unknown otherwise. In
// each scope nothing acknowledged or observed is lost and no write
// reported not applied is on the chain; the scopes reach both answers.
func TestOvertaken(t *testing.T) {
	t.Parallel()
	for _, tc := range overtakenScopes {
		t.Run(tc.name, func(t *testing.T) {
			if tc.full && (raceEnabled || !*full) {
				t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
			}
			r := mustHold(t, tc.name, tc.sc)
			overtakenReport(t, tc.name, r)
			if r.Overtaken(OvRounds) == 0 {
				t.Error("no writer was overtaken: the scope does not reach §17's case")
			}
			if tc.applied && r.Overtaken(OvApplied) == 0 {
				t.Error("no overtaken write answered success: the scope does not reach the rule's success")
			}
			if tc.conflict && r.Overtaken(OvConflicts) == 0 {
				t.Error("no overtaken write answered not applied: the scope does not reach the rule's conflict")
			}
		})
	}
}

// b1Prefix scripts the cold review rvcarry's B1 run (opposite failovers)
// up to the writer's overtaken read: c0's write stored on P (node 0), its
// CAS of Q unanswered; c1, holding Q failed, fails P over (R7): its
// promise on the witness node, its fence on P, pending, carrying c0's
// write; c0's write failover promises a greater epoch on the witness
// node, so c1's copy there is refused, and c0's fence of P is refused
// (c1's fence changed P's token). The explorer then lets c2, holding P
// failed, fail over from Q, which still holds the write's parent.
var b1Prefix = []string{
	"c0 starts Get+CompareAndSwap",
	"node 0 executes c0's get",
	"node 1 executes c0's get",
	"node 0 executes c0's cas D(e0 v2 val1 {0,1})",
	"c0 times out on node 1",
	"SUSPICION: c1 holds node 1 failed",
	"c1 starts Get",
	"node 0 executes c1's get",
	"node 0 executes c1's get",
	"node 2 executes c1's get",
	"node 2 executes c1's cas W(e0 {0,1}) promise e1",
	"node 0 executes c1's cas D(e1 v2 val1 {0,2} pending)",
	"node 2 executes c0's get",
	"node 2 executes c0's cas W(e0 {0,1}) promise e2",
	"node 0 executes c0's cas D(e2",
	"node 2 executes c1's cas D(e1 v2 val1 {0,2})",
}

// TestOvertakenVariants: the checker rejects §17's rule with the cold
// review's B1 and M5 left in, each with a printed trace.
// OvertakenPending counts a pending fence that carries the write as
// success: a failover from Q with the write's parent establishes a
// greater epoch and the acknowledged write is lost (in two processes the
// fence is the writer's own write failover's; the review's run, another
// process's fence, is scripted with three in make model).
// OvertakenNoTouch acknowledges from a decision taken from P's append
// before its touch, its copies never touched: the copy on the witness
// node keeps the old life and expires, and one flush of P loses the write.
func TestOvertakenVariants(t *testing.T) {
	t.Parallel()
	t.Run("pending, opposite failovers", func(t *testing.T) {
		r := rejected(t, Scope{Variant: OvertakenPending, Overtaken: true, Programs: [][]OpKind{{RMW}, {Read}}, MaxSuspicions: 2},
			"SUSPICION: c0 holds node 1 failed",
			"node 0 executes c0's cas D(e1 v2 val1 {0,2} pending)", // the writer's fence, carrying its write
			"SUSPICION: c1 holds node 0 failed",
			"node 2 executes c1's cas D(e2 v1 val0 {1,2})") // the failover from Q with the parent, established
		overtakenReport(t, "pending, opposite failovers", r)
	})
	t.Run("pending, the review's run", func(t *testing.T) {
		if raceEnabled || !*full {
			t.Skip("larger scope: go test ./replmodel -replmodel.full (make model)")
		}
		r := rejected(t, Scope{Variant: OvertakenPending, Overtaken: true, Programs: [][]OpKind{{RMW}, {Read}, {Read}},
			MaxSuspicions: 2, MaxTimeouts: 1, Prefix: b1Prefix},
			"SUSPICION: c2 holds node 0 failed",
			"node 2 executes c2's cas D(e4 v1 val0 {1,2})") // B's failover from Q with the parent, established
		overtakenReport(t, "pending, the review's run", r)
	})
	t.Run("no touch, append at expiry", func(t *testing.T) {
		r := rejected(t, overtakenOn(appendScope(OvertakenNoTouch, [][]OpKind{{Read}}, 1, 0, 0)),
			"EXPIRY: node 1's item expires; then node 1 executes c0's append's touch", // Q gone: the write failover
			"node 2 executes c1's cas D(e1 v2 val1 {0,2} nowit)",                      // the reader's copy from P's append, untouched
			"FAULT: flush_all on node 0")
		overtakenReport(t, "no touch", r)
	})
}
