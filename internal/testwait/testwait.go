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
	deadline := time.Now().Add(bound)
	pause := 100 * time.Microsecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(pause) // polling the condition, bounded by the deadline
		pause = min(2*pause, 10*time.Millisecond)
	}
}
