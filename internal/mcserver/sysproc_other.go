//go:build !linux

package mcserver

import "os/exec"

// setSysProcAttr does nothing outside Linux: servers are stopped by Stop.
func setSysProcAttr(cmd *exec.Cmd) {}
