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
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/internal/testproc"
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
	proc *testproc.Process // nil when not running

	anyPID bool // a test's broken variant (the code before): any server answering on the port is ready
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
		if !errors.Is(err, testproc.ErrExited) || ctx.Err() != nil {
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
	p.Kill()
}

// Stop ends the process (SIGKILL; memcached keeps nothing worth a graceful
// shutdown) and waits for it. It is safe to call more than once.
func (s *Server) Stop() { s.Kill() }

// Pause stops the process with SIGSTOP: it keeps its connections and data
// but answers nothing, like a hung node. It returns once every thread of
// the process has stopped. Resume continues it.
func (s *Server) Pause() error { return s.signal((*testproc.Process).Pause) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal((*testproc.Process).Resume) }

func (s *Server) signal(do func(*testproc.Process) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return fmt.Errorf("mcserver: %s is not running", s.Addr())
	}
	if err := do(s.proc); err != nil {
		return fmt.Errorf("mcserver: %s: %w", s.Addr(), err)
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

	p, err := testproc.Start(s.bin, args...)
	if err != nil {
		return fmt.Errorf("mcserver: %w", err)
	}

	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := p.WaitReady(ctx, s.cfg.StartTimeout, func(ctx context.Context) error { return s.ready(ctx, p) }); err != nil {
		s.mu.Lock()
		if s.proc == p {
			s.killLocked()
		}
		s.mu.Unlock()
		return fmt.Errorf("mcserver: %s: %w", s.Addr(), err)
	}
	return nil
}

// ready answers whether p answers on the server's port: its `stats`
// report p's pid. A port found free a moment ago may have been taken by
// another test's server first (p then exits); that one answering is not
// ready.
func (s *Server) ready(ctx context.Context, p *testproc.Process) error {
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	if pid := st["pid"]; pid != strconv.Itoa(p.Pid()) && !s.anyPID {
		return fmt.Errorf("mcserver: %s: answered by pid %s, not %d", s.Addr(), pid, p.Pid())
	}
	return nil
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
