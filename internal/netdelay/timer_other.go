//go:build !(linux && (amd64 || arm64 || riscv64 || ppc64le || s390x || loong64))

package netdelay

import "time"

// timer waits with time.Sleep where there is no timerfd: delays under the
// runtime's timer resolution come out longer.
type timer struct{}

func newTimer() *timer { return &timer{} }

func (t *timer) waitUntil(due time.Time) {
	if wait := time.Until(due); wait > 0 {
		time.Sleep(wait)
	}
}

func (t *timer) close() {}
