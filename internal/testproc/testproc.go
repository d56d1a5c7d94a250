// Package testproc runs the server processes that tests and the stress
// harness start on 127.0.0.1 (memcached, redis-server): one child process
// whose output is kept for error messages, killed with its parent on
// Linux, started, paused, resumed and killed on demand. internal/mcserver
// and store/redis/redistest build on it.
package testproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ErrExited reports a process that exited before it answered, typically
// because its port was taken by someone else meanwhile.
var ErrExited = errors.New("process exited during start")

// Process is one running server process.
type Process struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	output *bytes.Buffer // stdout and stderr; read only after done
}

// Start runs bin with args. On Linux the kernel kills the process when
// the one that started it dies, so a crashed test binary leaves no server
// behind.
func Start(bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	out := new(bytes.Buffer)
	cmd.Stdout = out
	cmd.Stderr = out
	setSysProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), output: out}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// WaitReady calls probe, backing off from 1 ms to 50 ms, until it
// succeeds, the process exits (ErrExited, with its output), or timeout or
// ctx ends.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s", ErrExited, strings.TrimSpace(p.output.String()))
		case <-ctx.Done():
			return fmt.Errorf("did not answer: %w", ctx.Err())
		case <-timer.C:
		}
		if probe(ctx) == nil {
			return nil
		}
		backoff = min(2*backoff, 50*time.Millisecond)
		timer.Reset(backoff)
	}
}

// Pid is the process's id: a readiness probe compares it with the one
// the server on the port reports, so that a server another test started
// on the same port (it took the port first; this one is exiting) is not
// taken for this one.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL (which ends a paused process too) and waits until the
// process has exited.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pause stops the process with SIGSTOP: it keeps its connections and data
// but answers nothing, like a hung node; commands sent meanwhile run when
// it resumes. On Linux it returns once every thread has stopped (SIGSTOP
// takes effect asynchronously).
func (p *Process) Pause() error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return waitAllStopped(p.cmd.Process.Pid, 5*time.Second)
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error {
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}
