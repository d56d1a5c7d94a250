// Package mcserver starts and controls real local memcached processes, for
// tests and for the stress harness.
//
// Each Server is one memcached process listening on a free 127.0.0.1 port.
// Start waits until the process answers, with a bound and without fixed
// sleeps. Kill, Pause and Restart let tests simulate a node that dies, hangs
// or comes back empty; Stats reads the server's own counters, which is how
// benchmarks count operations.
//
//	srv, err := mcserver.Start(ctx, mcserver.Config{})
//	if err != nil { ... }
//	defer srv.Stop()
//	client := memcache.New(srv.Addr())
package mcserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBinary is returned (wrapped) by Start when the memcached binary is not
// installed.
var ErrNoBinary = errors.New("mcserver: memcached binary not found")

// Defaults of Config.
const (
	// DefaultBinary is the executable looked up in PATH.
	DefaultBinary = "memcached"
	// DefaultMemoryMB is the cache memory of each server (-m).
	DefaultMemoryMB = 64
	// DefaultThreads is the number of worker threads of each server (-t).
	DefaultThreads = 2
	// DefaultStartTimeout bounds the wait for a server to answer.
	DefaultStartTimeout = 10 * time.Second
)

// maxPortAttempts bounds how often Start picks a new port when the chosen
// one was taken by another process before memcached could bind it.
const maxPortAttempts = 5

// Config configures the memcached processes Start runs. The zero value runs
// `memcached` from PATH with 64 MB of memory, memcached's default 1 MiB item
// size limit and 2 worker threads.
type Config struct {
	// Binary is the memcached executable, looked up in PATH when it has
	// no slash. Default "memcached".
	Binary string
	// MemoryMB is the cache memory (-m). Default 64.
	MemoryMB int
	// MaxItemSize is the largest item in bytes (-I). Zero keeps
	// memcached's default of 1 MiB.
	MaxItemSize int
	// Threads is the number of worker threads (-t). Default 2.
	Threads int
	// StartTimeout bounds how long Start and Restart wait for the process
	// to answer. Default 10 s.
	StartTimeout time.Duration
	// Args are extra command-line arguments passed to memcached.
	Args []string
}

func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.MemoryMB <= 0 {
		c.MemoryMB = DefaultMemoryMB
	}
	if c.Threads <= 0 {
		c.Threads = DefaultThreads
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	return c
}

// Server is one running (or killed) memcached process on a fixed
// 127.0.0.1 port. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	bin  string
	port int

	mu   sync.Mutex
	proc *process // nil when not running
}

// process is one memcached process and the channel closed when it exited.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *bytes.Buffer
}

// Start runs a memcached process on a free 127.0.0.1 port and returns once
// it answers, or fails after Config.StartTimeout or when ctx ends. The error
// wraps ErrNoBinary when memcached is not installed. Stop the server when
// done with it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrNoBinary, cfg.Binary, err)
	}
	var lastErr error
	for range maxPortAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{cfg: cfg, bin: bin, port: port}
		err = s.start(ctx)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errExited) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// StartN starts n servers with the same Config. On error it stops the ones
// it started.
func StartN(ctx context.Context, n int, cfg Config) ([]*Server, error) {
	servers := make([]*Server, 0, n)
	for range n {
		s, err := Start(ctx, cfg)
		if err != nil {
			for _, s := range servers {
				s.Stop()
			}
			return nil, err
		}
		servers = append(servers, s)
	}
	return servers, nil
}

// Addrs returns the addresses of servers, in order.
func Addrs(servers []*Server) []string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Addr returns the server's "127.0.0.1:port" address. It stays the same
// across Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Running reports whether the process is running (possibly paused).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Kill sends SIGKILL to the process and waits until it has exited. The
// port then refuses connections. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	// SIGKILL ends a paused (SIGSTOP) process too.
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop ends the process (SIGKILL; memcached keeps nothing worth a graceful
// shutdown) and waits for it. It is safe to call more than once.
func (s *Server) Stop() { s.Kill() }

// Pause stops the process with SIGSTOP: it keeps its connections and data
// but answers nothing, like a hung node. It returns once every thread of
// the process has stopped. Resume continues it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, waitStopped bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return fmt.Errorf("mcserver: %s is not running", s.Addr())
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("mcserver: signal %s: %w", s.Addr(), err)
	}
	if waitStopped {
		return waitAllStopped(s.proc.cmd.Process.Pid, 5*time.Second)
	}
	return nil
}

// Restart kills the process if it is running and starts a new one on the
// same port. The new process is empty. It returns once the process answers.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	s.killLocked()
	s.mu.Unlock()
	return s.start(ctx)
}

// errExited reports a memcached process that exited before it answered,
// typically because its port was taken.
var errExited = errors.New("mcserver: memcached exited during start")

// start runs the process on s.port and waits until it answers.
func (s *Server) start(ctx context.Context) error {
	args := []string{
		"-l", "127.0.0.1",
		"-p", strconv.Itoa(s.port),
		"-U", "0",
		"-m", strconv.Itoa(s.cfg.MemoryMB),
		"-t", strconv.Itoa(s.cfg.Threads),
	}
	if s.cfg.MaxItemSize > 0 {
		args = append(args, "-I", strconv.Itoa(s.cfg.MaxItemSize))
	}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	args = append(args, s.cfg.Args...)

	cmd := exec.Command(s.bin, args...)
	stderr := new(bytes.Buffer)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	setSysProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mcserver: run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), stderr: stderr}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(ctx, p); err != nil {
		s.mu.Lock()
		if s.proc == p {
			s.killLocked()
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// waitReady polls the port with a version command until the process
// answers, exits, or the start timeout or ctx ends.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	backoff := time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s: %s", errExited, s.Addr(), strings.TrimSpace(p.stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("mcserver: %s did not answer: %w", s.Addr(), ctx.Err())
		case <-timer.C:
		}
		if _, err := s.command(ctx, "version\r\n", "VERSION "); err == nil {
			return nil
		}
		backoff = min(2*backoff, 50*time.Millisecond)
		timer.Reset(backoff)
	}
}

// Stats returns the server's `stats` as a map from name to value.
func (s *Server) Stats(ctx context.Context) (Stats, error) {
	lines, err := s.command(ctx, "stats\r\n", "END")
	if err != nil {
		return nil, err
	}
	st := make(Stats, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "STAT" {
			st[f[1]] = f[2]
		}
	}
	return st, nil
}

// FlushAll invalidates every item on the server.
func (s *Server) FlushAll(ctx context.Context) error {
	_, err := s.command(ctx, "flush_all\r\n", "OK")
	return err
}

// command sends one command on a new connection and reads reply lines until
// one starts with last, which ends the reply. It returns the lines before
// that one (or the last line itself when it is the only one).
func (s *Server) command(ctx context.Context, cmd, last string) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return nil, fmt.Errorf("mcserver: %s: %w", s.Addr(), err)
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write([]byte(cmd)); err != nil {
		return nil, fmt.Errorf("mcserver: %s: %w", s.Addr(), err)
	}
	r := bufio.NewReader(nc)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("mcserver: %s: %w", s.Addr(), err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, last) {
			if len(lines) == 0 {
				lines = append(lines, line)
			}
			return lines, nil
		}
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "SERVER_ERROR") || strings.HasPrefix(line, "CLIENT_ERROR") {
			return nil, fmt.Errorf("mcserver: %s: %q: %s", s.Addr(), strings.TrimSpace(cmd), line)
		}
		lines = append(lines, line)
	}
}

// Stats is the reply of memcached's `stats` command.
type Stats map[string]string

// Uint returns the named counter, or 0 when it is absent or not a number.
func (st Stats) Uint(name string) uint64 {
	v, err := strconv.ParseUint(st[name], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("mcserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
