package redistest

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel kill redis-server when the process that
// started it dies, so a crashed test binary leaves no server behind.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
