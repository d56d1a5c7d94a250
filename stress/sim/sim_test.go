package sim

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

var (
	flagSeeds   = flag.Int("seeds", 0, "TestSim: number of seeds to run (0 skips TestSim; scripts/test.sh runs 2000, make sim more)")
	flagFirst   = flag.Uint64("first", 1, "TestSim: first seed")
	flagSeed    = flag.Uint64("seed", 0, "TestReplay: the seed to replay")
	flagReplays = flag.Int("replays", 5, "TestReplay: how many times to replay -seed")
	flagKinds   = flag.String("kinds", "", "comma-separated fault kinds to draw (default all)")
)

func params() Params {
	p := DefaultParams()
	if *flagKinds != "" {
		for _, k := range strings.Split(*flagKinds, ",") {
			p.Kinds = append(p.Kinds, FaultKind(k))
		}
	}
	return p
}

// runSeed runs one seed in its own synctest bubble and checks it.
func runSeed(t *testing.T, seed uint64, p Params) *Result {
	var res *Result
	synctest.Test(t, func(t *testing.T) { res = Run(seed, p) })
	Check(res)
	return res
}

// report prints a seed's schedule, its violations and how to replay it.
func report(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: schedule: %s\n", r.Seed, r.Schedule)
	for _, h := range r.Hits {
		fmt.Fprintf(&b, "  struck %s at %v (nodes %v), ended %v\n", h.Kind, h.Start, h.Nodes, h.End)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	fmt.Fprintf(&b, "  replay: go test ./stress/sim -run TestReplay -seed %d -v\n", r.Seed)
	return b.String()
}

func TestOneSeed(t *testing.T) {
	res := runSeed(t, 1, DefaultParams())
	if len(res.Requests) != DefaultParams().Ops() {
		t.Fatalf("%d requests, want %d", len(res.Requests), DefaultParams().Ops())
	}
	acked := 0
	for _, rq := range res.Requests {
		if rq.Err == nil {
			acked++
		}
	}
	t.Logf("%d of %d requests acknowledged in %v virtual\n%s", acked, len(res.Requests), res.Elapsed, report(res))
	if len(res.Hits) == 0 {
		t.Fatal("no fault struck")
	}
}
