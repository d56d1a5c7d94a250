// Package counterlin checks that a history of operations on one counter
// (a session's "n") is linearizable, with porcupine: reads that returned
// a value, increments acknowledged from the value they read, and
// increments whose outcome is unknown, which may or may not have taken
// effect, at any time after their call. The seeded simulation
// (stress/sim) and the real-process harness (stress/internal/harness)
// both build their histories from their own records and check them here.
package counterlin

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// Never is the return time of an operation that may take effect at any
// time after its call: an increment of unknown outcome (a late command of
// a paused node, say, can still apply it long after its request ended).
const Never = int64(1 << 62)

// Op is one operation on the counter, with its call and return times (any
// unit, one clock for a whole history).
type Op struct {
	// Read: a read that returned N. Otherwise an increment from N to N+1.
	Read bool
	N    int
	// Maybe: an increment whose outcome is unknown: it took effect once
	// (from N) or not at all. Its Return should be Never.
	Maybe bool
	// AnyN: with Maybe, the value it started from is unknown too (the
	// request left no record of what it read): it may have added one to
	// whatever the counter held.
	AnyN         bool
	Call, Return int64
}

// Verdict is a history's check result.
type Verdict int

// The verdicts of Check.
const (
	// Linearizable: the history has a linearization.
	Linearizable Verdict = iota
	// NotLinearizable: it has none.
	NotLinearizable
	// Unchecked: porcupine ran out of time before deciding; nothing is
	// known.
	Unchecked
)

func (v Verdict) String() string {
	switch v {
	case Linearizable:
		return "linearizable"
	case NotLinearizable:
		return "not linearizable"
	}
	return "unchecked"
}

// Model is the counter, starting at 0, for porcupine.
var Model = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{0} },
	Step: func(state, input, output interface{}) []interface{} {
		st := state.(int)
		op := input.(Op)
		switch {
		case op.Read:
			if st == op.N {
				return []interface{}{st}
			}
			return nil
		case op.Maybe && (op.AnyN || st == op.N):
			return []interface{}{st, st + 1}
		case op.Maybe:
			return []interface{}{st}
		case st == op.N:
			return []interface{}{st + 1}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		op := input.(Op)
		switch {
		case op.Read:
			return fmt.Sprintf("read %d", op.N)
		case op.Maybe && op.AnyN:
			return "incr from any (maybe)"
		case op.Maybe:
			return fmt.Sprintf("incr from %d (maybe)", op.N)
		}
		return fmt.Sprintf("incr from %d", op.N)
	},
}

// Check decides whether ops, one counter's history, is linearizable,
// giving porcupine at most timeout (0: no bound).
func Check(ops []Op, timeout time.Duration) Verdict {
	hist := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		hist[i] = porcupine.Operation{ClientId: i, Input: op, Call: op.Call, Return: op.Return}
	}
	switch porcupine.CheckOperationsTimeout(Model.ToModel(), hist, timeout) {
	case porcupine.Ok:
		return Linearizable
	case porcupine.Illegal:
		return NotLinearizable
	}
	return Unchecked
}
