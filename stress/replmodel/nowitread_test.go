package replmodel

import (
	"flag"
	"strings"
	"testing"
)

// nowitRead is review-n4b F2's shape: review-4 N4 with its Add in flight
// (LateForeignWitness, the first steps scripted as in lateWitness): the
// Add's primary CAS is refused by the late witness and it undoes its
// witness; c1 reads (re-balloting the creation over the witness, nowit),
// then writes (Get+CompareAndSwap), then reads; R9 (Repair), one flush
// or restart, one timeout.
func nowitRead(v Variant, fix bool) Scope {
	sc := lateWitness(v)
	sc.Repair, sc.NoWitRead = true, fix
	sc.Programs = [][]OpKind{{Create}, {Read, RMW, Read}}
	sc.MaxStates = 40_000_000
	if *noTimeout {
		sc.MaxTimeouts = 0
	}
	return sc
}

var noTimeout = flag.Bool("nt", false, "")

func TestNoWitReadScratch(t *testing.T) {
	for _, c := range []struct {
		name string
		v    Variant
		fix  bool
	}{{"before", Correct, false}, {"fix", Correct, true}, {"fastpath", NoWitFastPath, true}, {"beforeR9", NoWitReturnedBeforeR9, true}} {
		t.Run(c.name, func(t *testing.T) {
			r := Check(nowitRead(c.v, c.fix))
			report(t, c.name, r)
			t.Logf("excepted %d (loss %d) exc-unavail %d reballots done %d", r.Excepted, r.ExceptedLoss, r.ExceptedUnavailable, r.CreationReballotsDone)
			if r.Violation != "" {
				t.Logf("VIOLATION %s (%d steps)\n%s", r.Violation, len(r.Trace), strings.Join(r.Trace, "\n"))
			}
		})
	}
}
