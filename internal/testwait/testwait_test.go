package testwait

import (
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	Until(t, 5*time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper()               {}
func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true }

func TestUntilFailsAfterTheBound(t *testing.T) {
	f := &fatalRecorder{TB: t}
	Until(f, 5*time.Millisecond, "never", func() bool { return f.failed })
	if !f.failed {
		t.Fatal("a condition that never held did not fail the test")
	}
}

func TestPollReportsTheBound(t *testing.T) {
	if Poll(time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	n := 0
	if !Poll(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("Poll gave up on a condition that held")
	}
}
