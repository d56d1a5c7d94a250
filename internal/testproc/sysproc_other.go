//go:build !linux

package testproc

import (
	"os/exec"
	"time"
)

// setSysProcAttr does nothing outside Linux: servers are stopped by Stop.
func setSysProcAttr(cmd *exec.Cmd) {}

// waitAllStopped cannot observe the process state outside Linux.
func waitAllStopped(pid int, bound time.Duration) error { return nil }
