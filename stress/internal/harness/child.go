package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
)

// childEnv carries an app server process's configuration (JSON). Its
// presence puts the harness binary in its hidden serve mode.
const childEnv = "SESSIONLOCK_STRESS_SERVE"

// listenPrefix starts the line an app server process prints once it
// listens.
const listenPrefix = "LISTEN "

// IsChild reports whether this process was started by a harness as an app
// server: the binary's main (or a test binary's TestMain) must then call
// ServeChild instead of doing its usual work.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// ServeChild runs this process as one app server of a harness: it opens
// the store, listens on a free 127.0.0.1 port, prints that address, and
// serves until its standard input closes (the harness ended) or it gets
// SIGTERM or SIGINT. It returns the process's exit status.
func ServeChild() int {
	if err := serveChild(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stress app server:", err)
		return 1
	}
	return 0
}

func serveChild(stdin io.Reader, stdout io.Writer) error {
	var cfg appConfig
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &cfg); err != nil {
		return fmt.Errorf("bad %s: %w", childEnv, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger, closeLog, err := childLogger(cfg.Proc)
	if err != nil {
		return err
	}
	defer closeLog()
	var onEvent provider.EventFunc
	if logger != nil {
		onEvent = middleware.LogEvents(logger).StoreEvent
	}
	store, err := openStoreEvents(ctx, cfg.Store, onEvent)
	if err != nil {
		return err
	}
	defer store.Close()
	a, err := newApp(cfg, store, logger)
	if err != nil {
		return err
	}
	srv, err := startAppServer(a)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, listenPrefix+srv.addr()); err != nil {
		_ = srv.close()
		return err
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return srv.close()
}

// child is an app server process started by the harness.
type child struct {
	cmd    *exec.Cmd
	addr   string
	stdin  io.WriteCloser
	stderr *lockedBuffer
	done   chan struct{}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil // keep the start; enough to explain a failure
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// startChild re-executes this binary as an app server process and waits
// until it listens.
func startChild(ctx context.Context, cfg appConfig) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("harness: find own binary to start app servers: %w", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("harness: start app server process: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, r)
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, listenPrefix)
		if !ok {
			c.kill()
			return nil, fmt.Errorf("harness: app server process %d did not start: %s", cfg.Proc, c.stderr.String())
		}
		c.addr = addr
		return c, nil
	case <-timer.C:
		c.kill()
		return nil, fmt.Errorf("harness: app server process %d did not listen within 30 s: %s", cfg.Proc, c.stderr.String())
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
}

// kill ends the process at once (SIGKILL), as a crash would, and waits
// for it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stop asks the process to finish (closing its standard input) and kills
// it if it has not within a bound.
func (c *child) stop() error {
	_ = c.stdin.Close()
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		c.kill()
		return errors.New("harness: app server process did not stop; killed")
	}
	if s := c.cmd.ProcessState; s != nil && !s.Success() {
		return fmt.Errorf("harness: app server process exited with %v: %s", s, c.stderr.String())
	}
	return nil
}

// pause stops the app process (SIGSTOP); resume continues it.
func (c *child) pause() error  { return c.cmd.Process.Signal(syscall.SIGSTOP) }
func (c *child) resume() error { return c.cmd.Process.Signal(syscall.SIGCONT) }

// LogDirEnv names a directory for the diagnosis of a run: when set, each
// app server process writes its middleware's log (every failed request's
// error), its store's node events and a line per request, with times, to
// app-<proc>.log there, and the harness the run's observations to
// observations.json (dumpObservations). Off by default.
const LogDirEnv = "SESSIONLOCK_STRESS_LOGDIR"

// childLogger returns the app server's diagnostic logger (nil when
// LogDirEnv is unset) and a function that closes its file.
func childLogger(proc int) (*slog.Logger, func(), error) {
	dir := os.Getenv(LogDirEnv)
	if dir == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("app-%d.log", proc)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", LogDirEnv, err)
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})), func() { _ = f.Close() }, nil
}
