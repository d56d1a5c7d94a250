// Package testwait is the tests' one bounded wait for a condition: poll it,
// from 100 µs backing off to 10 ms, on the caller's goroutine (so tests
// that count goroutines are not disturbed), and fail the test when it does
// not hold within the bound. Tests wait on conditions, never on sleeps.
package testwait

import (
	"testing"
	"time"
)

// Until polls cond until it holds, failing tb with what when bound passes
// first.
func Until(tb testing.TB, bound time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Poll(bound, cond) {
		tb.Fatalf("timed out after %v waiting for %s", bound, what)
	}
}

// Poll polls cond as Until does and reports whether it held within bound.
// It fails nothing, so code off the test's goroutine (a connection
// wrapper, a server hook) can wait and report with t.Errorf.
func Poll(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	pause := 100 * time.Microsecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause) // polling the condition, bounded by the deadline
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}
