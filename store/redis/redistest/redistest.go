// Package redistest starts and controls real local redis-server processes,
// for the tests of package redis and for the stress harness.
//
// Each Server is one redis-server process on a free 127.0.0.1 port, with
// persistence off (a restarted server comes back empty) and the DEBUG
// command enabled (tests use DEBUG SLEEP to hang it). Start waits until the
// process answers PING, with a bound and without fixed sleeps.
//
//	srv, err := redistest.Start(ctx, redistest.Config{})
//	if err != nil { ... }
//	defer srv.Stop()
//	store, err := redis.New(redis.Config{Addr: srv.Addr()})
package redistest

import (
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
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testproc"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNoBinary is returned (wrapped) by Start when redis-server is not
// installed.
var ErrNoBinary = errors.New("redistest: redis-server binary not found")

// Defaults of Config.
const (
	// DefaultBinary is the executable looked up in PATH.
	DefaultBinary = "redis-server"
	// DefaultStartTimeout bounds the wait for a server to answer.
	DefaultStartTimeout = 10 * time.Second
)

// EnvRequire, when set to a non-empty value, turns the skip for a missing
// redis-server into a failure (`make test` sets it; the memcached and
// PostgreSQL helpers read the same variable).
const EnvRequire = testproc.EnvRequire

// SkipMessage is the reason tests are skipped when redis-server is missing.
const SkipMessage = "redis-server not installed: run `make test`, which installs it"

// maxPortAttempts bounds how often Start picks a new port when the chosen
// one was taken before redis-server could bind it.
const maxPortAttempts = 5

// Config configures the processes Start runs. The zero value runs
// `redis-server` from PATH with no memory limit.
type Config struct {
	// Binary is the redis-server executable. Default "redis-server".
	Binary string
	// StartTimeout bounds how long Start and Restart wait for the process
	// to answer. Default 10 s.
	StartTimeout time.Duration
	// Args are extra arguments, as on redis-server's command line
	// ("--maxmemory", "1mb").
	Args []string
}

// Server is one running (or killed) redis-server process on a fixed
// 127.0.0.1 port. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	bin  string
	port int
	dir  string

	mu   sync.Mutex
	proc *testproc.Process // nil when not running

	anyPID bool // a test's broken variant (the code before): any server answering on the port is ready
}

type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	output *bytes.Buffer
}

// Start runs redis-server on a free 127.0.0.1 port and returns once it
// answers. The error wraps ErrNoBinary when redis-server is not installed.
// Stop the server when done with it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrNoBinary, cfg.Binary, err)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	var lastErr error
	for range maxPortAttempts {
		port, err := freePort()
		if err != nil {
			lastErr = err
			break
		}
		s := &Server{cfg: cfg, bin: bin, port: port, dir: dir}
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, testproc.ErrExited) || ctx.Err() != nil {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// StartN starts n servers with the same Config, all at once. On error it
// stops the ones it started.
func StartN(ctx context.Context, n int, cfg Config) ([]*Server, error) {
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { servers[i], errs[i] = Start(ctx, cfg) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				s.Stop()
			}
		}
		return nil, err
	}
	return servers, nil
}

// StartForTest starts n servers for a test or benchmark and stops them in
// tb.Cleanup. When redis-server is not installed it skips tb with
// SkipMessage, or fails it when EnvRequire is set.
func StartForTest(tb testing.TB, n int, cfg Config) []*Server {
	tb.Helper()
	servers, err := StartN(context.Background(), n, cfg)
	testproc.SkipOrFail(tb, err, ErrNoBinary, SkipMessage)
	tb.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	return servers
}

// Addr returns the server's "127.0.0.1:port" address. It stays the same
// across Restart.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Running reports whether the process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Kill sends SIGKILL to the process and waits until it has exited; the
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

// Pause stops the process with SIGSTOP: it keeps its connections and data
// but answers nothing, like a hung server; commands sent meanwhile run when
// Resume continues it with SIGCONT. It returns once every thread has
// stopped.
func (s *Server) Pause() error { return s.signal((*testproc.Process).Pause) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal((*testproc.Process).Resume) }

func (s *Server) signal(do func(*testproc.Process) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return fmt.Errorf("redistest: %s is not running", s.Addr())
	}
	if err := do(s.proc); err != nil {
		return fmt.Errorf("redistest: %s: %w", s.Addr(), err)
	}
	return nil
}

// Stop kills the process and removes its directory. It is safe to call
// more than once.
func (s *Server) Stop() {
	s.Kill()
	_ = os.RemoveAll(s.dir)
}

// Restart kills the process if it is running and starts a new, empty one
// on the same port. It returns once the process answers.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	return s.start(ctx)
}

// FlushAll empties the server (FLUSHALL).
func (s *Server) FlushAll(ctx context.Context) error {
	return s.Do(ctx, "FLUSHALL").Err()
}

// Do runs one command on a fresh connection (no retries), for
// administration: CONFIG SET, SCRIPT FLUSH, DEBUG SLEEP, ...
func (s *Server) Do(ctx context.Context, args ...any) *goredis.Cmd {
	c := s.Client()
	defer c.Close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return c.Do(ctx, args...)
}

// Client returns a new go-redis client of the server with retries off.
// Close it when done.
func (s *Server) Client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr: s.Addr(), Protocol: 2, MaxRetries: -1, DisableIdentity: true,
		ContextTimeoutEnabled: true, ReadTimeout: -1, PoolSize: 2,
	})
}

// CommandStats returns the calls per command from INFO commandstats
// ("get", "evalsha", "set", ...): commands a script runs are counted too,
// under their own names, besides the EVALSHA that ran it.
func (s *Server) CommandStats(ctx context.Context) (map[string]uint64, error) {
	info, err := s.Do(ctx, "INFO", "commandstats").Text()
	if err != nil {
		return nil, err
	}
	stats := map[string]uint64{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_get:calls=3,usec=12,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("redistest: %s: %q: %w", s.Addr(), line, err)
				}
				stats[name] = n
			}
		}
	}
	return stats, nil
}

func (s *Server) start(ctx context.Context) error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--enable-debug-command", "yes",
		"--daemonize", "no",
	}
	args = append(args, s.cfg.Args...)
	p, err := testproc.Start(s.bin, args...)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
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
		return fmt.Errorf("redistest: %s: %w", s.Addr(), err)
	}
	return nil
}

// ready answers whether p answers on the server's port: `INFO server`
// reports p's process id. A port found free a moment ago may have been
// taken by another test's server first (p then exits): that one answering
// is not ready (a cluster create was once given such a node, "not
// empty").
func (s *Server) ready(ctx context.Context, p *testproc.Process) error {
	c := s.Client()
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	if s.anyPID {
		return nil
	}
	want := "process_id:" + strconv.Itoa(p.Pid())
	for _, line := range strings.Split(info, "\n") {
		if strings.TrimSpace(line) == want {
			return nil
		}
	}
	return fmt.Errorf("redistest: %s: answered by another process than pid %d", s.Addr(), p.Pid())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
