// Package pgserver starts throwaway PostgreSQL clusters for tests and the
// stress harness.
//
// Start runs initdb in a fresh temporary directory and then the postgres
// server itself as a child process, listening on 127.0.0.1 on a free port
// with trust authentication, tuned for speed over durability (fsync off,
// small buffers): it is a test fixture, never a place to keep data. When the
// calling process runs as root, both run as the "postgres" OS user, because
// PostgreSQL refuses to run as root. Stop shuts the server down and removes
// its directory.
//
// The binaries are looked up in Config.BinDir, then in the newest
// /usr/lib/postgresql/*/bin (Debian's postgresql package), then in PATH.
// Start returns an error wrapping ErrNoBinaries when none are found, so
// callers can skip rather than fail.
//
// For tests, Shared starts one server per test binary on first use and hands
// every test a DSN or a fresh database; it honours SESSIONLOCK_PG_DSN to use
// an existing server instead.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries is wrapped by Start and FindBinDir when no PostgreSQL server
// binaries (initdb and postgres) are installed.
var ErrNoBinaries = errors.New("pgserver: no PostgreSQL server binaries found")

// Config configures Start. The zero value is ready to use.
type Config struct {
	// BinDir is the directory holding initdb and postgres. Empty means
	// FindBinDir.
	BinDir string
	// Dir is the parent directory of the cluster's temporary directory.
	// Empty means os.TempDir(). The postgres OS user must be able to
	// traverse it when running as root.
	Dir string
	// User is the OS user the server runs as when the calling process is
	// root. Empty means "postgres". Ignored when not running as root.
	User string
	// StartTimeout bounds initdb plus server start-up. Zero means 60s.
	StartTimeout time.Duration
	// Settings are extra server settings passed as -c name=value; they
	// override the defaults (fsync=off, shared_buffers=16MB,
	// max_connections=200, ...).
	Settings map[string]string
}

// Server is a running throwaway PostgreSQL cluster.
type Server struct {
	dir     string // temporary directory: data/, socket, log
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
	waitErr error         // set before exited is closed
	logPath string

	stopOnce sync.Once
	stopErr  error
}

// FindBinDir returns the directory holding the PostgreSQL server binaries:
// the newest /usr/lib/postgresql/*/bin that has both initdb and postgres,
// else the directory of initdb found in PATH. It returns an error wrapping
// ErrNoBinaries when there is none.
func FindBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked in /usr/lib/postgresql/*/bin and PATH; install the Debian package postgresql)", ErrNoBinaries)
}

// versionOf returns the major version in a path like
// /usr/lib/postgresql/15/bin, or -1.
func versionOf(binDir string) int {
	v, err := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	if err != nil {
		return -1
	}
	return v
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Start creates a cluster in a fresh temporary directory and starts it. It
// returns once the server accepts connections, or an error (the server is
// then stopped and its directory removed).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	binDir := cfg.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !hasServerBinaries(binDir) {
		return nil, fmt.Errorf("%w in %s", ErrNoBinaries, binDir)
	}
	cred, err := credential(cfg.User)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(cfg.Dir, "pgserver-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgserver: %w", err)
		}
	}
	dataDir := filepath.Join(dir, "data")

	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgserver: initdb: %w\n%s", err, out)
	}

	// The port is picked by binding port 0 and releasing it; another
	// process may take it before the server binds, so a bind failure is
	// retried with a new port.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startServer(ctx, binDir, dir, dataDir, port, cred, cfg.Settings)
		if err == nil {
			ok = true
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	return nil, lastErr
}

var errPortInUse = errors.New("port in use")

func startServer(ctx context.Context, binDir, dir, dataDir string, port int, cred *syscall.Credential, extra map[string]string) (*Server, error) {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"shared_buffers":          "16MB",
		"max_connections":         "200",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"log_min_error_statement": "panic",
		"max_wal_size":            "256MB",
		"autovacuum_naptime":      "5s",
	}
	for k, v := range extra {
		settings[k] = v
	}
	args := []string{"-D", dataDir, "-p", strconv.Itoa(port)}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}

	logPath := filepath.Join(dir, fmt.Sprintf("postgres-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Pdeathsig: if the test binary dies, the postmaster gets SIGQUIT
	// (immediate shutdown) instead of living on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("pgserver: start postgres: %w", err)
	}
	logFile.Close() // the child holds its own descriptor
	s := &Server{dir: dir, port: port, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx); err != nil {
		s.kill()
		log := s.logTail()
		if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
			return nil, fmt.Errorf("pgserver: %w: %v", errPortInUse, err)
		}
		return nil, fmt.Errorf("pgserver: %w\n%s", err, log)
	}
	return s, nil
}

// waitReady polls until the server accepts a connection, the process
// exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	const pollEvery = 20 * time.Millisecond
	var lastErr error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, s.DSN())
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		lastErr = err
		t := time.NewTimer(pollEvery)
		select {
		case <-s.exited:
			t.Stop()
			return fmt.Errorf("postgres exited during start-up: %v", s.waitErr)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("postgres not accepting connections: %w (last error: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// credential returns the credentials to run the server with: the given
// user's (default "postgres") when running as root, nil otherwise.
func credential(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgserver: running as root needs OS user %q to run PostgreSQL as: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgserver: user %q has non-numeric uid/gid %s/%s", name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the server's address, 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// DSN returns the URL of the server's "postgres" database, as superuser
// postgres (trust authentication, no password).
func (s *Server) DSN() string { return s.DatabaseDSN("postgres") }

// DatabaseDSN returns the URL of database name on the server.
func (s *Server) DatabaseDSN(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     s.Addr(),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name on the server and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := CreateDatabase(ctx, s.DSN(), name); err != nil {
		return "", err
	}
	return s.DatabaseDSN(name), nil
}

// Stop shuts the server down (fast shutdown, then a kill if it has not
// exited within 10s) and removes its directory. It is safe to call more
// than once; later calls return the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
			t := time.NewTimer(10 * time.Second)
			select {
			case <-s.exited:
			case <-t.C:
				s.kill()
			}
			t.Stop()
		}
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}

// Stopped returns a channel closed when the server process has exited.
func (s *Server) Stopped() <-chan struct{} { return s.exited }

// kill ends the server process at once and waits for it.
func (s *Server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown, children exit too
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// logTail returns the last few KB of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// CreateDatabase creates database name through the server at dsn (which
// must allow CREATE DATABASE).
func CreateDatabase(ctx context.Context, dsn, name string) error {
	return adminExec(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDatabase drops database name through the server at dsn, ending its
// connections first. A missing database is not an error.
func DropDatabase(ctx context.Context, dsn, name string) error {
	return adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgserver: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgserver: %s: %w", sql, err)
	}
	return nil
}

// WithDatabase returns dsn (a postgres:// URL or a keyword/value string)
// with its database replaced by name.
func WithDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgserver: parse DSN: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name)
	return strings.TrimSpace(dsn) + " dbname='" + quoted + "'", nil
}
