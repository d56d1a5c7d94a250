package replmodel

import (
	"flag"
	"strings"
	"testing"
)

var full = flag.Bool("replmodel.full", false, "run the larger scopes (make model)")

func report(t *testing.T, name string, r Result) {
	t.Helper()
	t.Logf("%s: %d states, %d terminal, complete=%v, lost(double faults)=%d, final-unavailable=%d",
		name, r.States, r.Terminals, r.Complete, r.Lost, r.FinalUnavailable)
}

func TestScratch(t *testing.T) {
	sc := Scope{Variant: Correct, Programs: [][]OpKind{{RMW}, {RMW}}, MaxFaults: 1, MaxTimeouts: 2}
	r := Check(sc)
	report(t, "scratch", r)
	if r.Violation != "" {
		t.Fatalf("violation: %s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
	}
}

func TestScratchBroken(t *testing.T) {
	for _, v := range []Variant{NoWitness, InsertContent, ParallelFailover, NoUndo} {
		sc := Scope{Variant: v, Programs: [][]OpKind{{RMW}, {RMW}}, MaxFaults: 1, MaxTimeouts: 2}
		if v == InsertContent {
			sc.Start = WitnessBlank
			sc.MaxFaults = 2
		}
		r := Check(sc)
		report(t, v.String(), r)
		t.Logf("violation: %s\n%s", r.Violation, strings.Join(r.Trace, "\n"))
	}
}
