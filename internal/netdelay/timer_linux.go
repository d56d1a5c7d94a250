//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || s390x || loong64)

package netdelay

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// timer waits until a time on a timerfd registered with the runtime's
// poller: the waiting goroutine holds no thread, and the poller wakes when
// the timer fires rather than at its next whole millisecond. Without a
// timerfd (a sandbox that forbids it) it falls back to time.Sleep.
type timer struct {
	f   *os.File
	fd  uintptr // f's descriptor, kept: f.Fd would make f blocking
	buf [8]byte
}

// itimerspec is the kernel's struct itimerspec on 64-bit Linux.
type itimerspec struct{ interval, value syscall.Timespec }

const clockMonotonic = 1

func newTimer() *timer {
	fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return &timer{}
	}
	return &timer{f: os.NewFile(fd, "netdelay-timerfd"), fd: fd}
}

func (t *timer) waitUntil(due time.Time) {
	wait := time.Until(due)
	if wait <= 0 {
		return
	}
	if t.f != nil {
		its := itimerspec{value: syscall.NsecToTimespec(int64(wait))}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, t.fd, 0, uintptr(unsafe.Pointer(&its)), 0, 0, 0)
		if errno == 0 {
			if _, err := t.f.Read(t.buf[:]); err == nil {
				return
			}
		}
	}
	time.Sleep(time.Until(due))
}

func (t *timer) close() {
	if t.f != nil {
		_ = t.f.Close()
	}
}
