package counterlin_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/stress/internal/counterlin"
)

// TestCheck decides small histories: a read that misses an increment
// acknowledged before it was sent breaks linearizability; an increment of
// unknown outcome may or may not count, from its value or, with AnyN,
// from any.
func TestCheck(t *testing.T) {
	incr := func(n int, call, ret int64) counterlin.Op { return counterlin.Op{N: n, Call: call, Return: ret} }
	read := func(n int, call, ret int64) counterlin.Op {
		return counterlin.Op{Read: true, N: n, Call: call, Return: ret}
	}
	maybe := func(n int, call int64) counterlin.Op {
		return counterlin.Op{N: n, Maybe: true, Call: call, Return: counterlin.Never}
	}
	for _, tc := range []struct {
		name string
		ops  []counterlin.Op
		want counterlin.Verdict
	}{
		{"sequential", []counterlin.Op{incr(0, 0, 1), read(1, 2, 3), incr(1, 4, 5), read(2, 6, 7)}, counterlin.Linearizable},
		{"stale read", []counterlin.Op{incr(0, 0, 1), incr(1, 2, 3), read(1, 4, 5)}, counterlin.NotLinearizable},
		{"concurrent read sees either", []counterlin.Op{incr(0, 0, 10), read(0, 1, 2), read(1, 3, 4)}, counterlin.Linearizable},
		{"reads disagree on the order", []counterlin.Op{incr(0, 0, 10), read(1, 1, 2), read(0, 3, 4)}, counterlin.NotLinearizable},
		{"two increments from one value", []counterlin.Op{incr(0, 0, 1), incr(0, 2, 3)}, counterlin.NotLinearizable},
		{"unknown outcome applied late", []counterlin.Op{incr(0, 0, 1), maybe(1, 2), read(1, 3, 4), read(2, 100, 101)}, counterlin.Linearizable},
		{"unknown outcome not applied", []counterlin.Op{incr(0, 0, 1), maybe(1, 2), incr(1, 3, 4), read(2, 5, 6)}, counterlin.Linearizable},
		{"unknown outcome from another value", []counterlin.Op{incr(0, 0, 1), maybe(0, 2), read(2, 3, 4)}, counterlin.NotLinearizable},
		{"unknown outcome from any value", []counterlin.Op{incr(0, 0, 1), {Maybe: true, AnyN: true, Call: 2, Return: counterlin.Never}, read(2, 3, 4)}, counterlin.Linearizable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, counterlin.Check(tc.ops, time.Minute))
		})
	}
}
