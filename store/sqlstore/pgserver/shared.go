package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Environment variables read by Shared.
const (
	// EnvDSN names an existing PostgreSQL server to test against instead of
	// starting one. The role needs CREATE DATABASE for NewDatabase.
	EnvDSN = "SESSIONLOCK_PG_DSN"
	// EnvRequire, when set to a non-empty value, turns the skip for missing
	// binaries into a failure (for CI, where a skipped suite is a bug).
	// `make test` sets it; memcached and Chromium tests read it too.
	EnvRequire = "SESSIONLOCK_REQUIRE_SERVERS"
)

// Shared gives the tests of one test binary a PostgreSQL server: the one
// named by SESSIONLOCK_PG_DSN when set, otherwise one started by Start on
// first use and shared by every later test. Declare one in the package's
// test code and stop it from TestMain:
//
//	var pg pgserver.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pg.Stop()
//		os.Exit(code)
//	}
//
// Tests without binaries or a DSN are skipped with a message saying why.
// The zero value is ready to use; it is safe for concurrent use.
type Shared struct {
	// Config configures the server Start runs. Set it before first use.
	Config Config

	once    sync.Once
	srv     *Server
	dsn     string
	err     error
	skipped bool
	dbSeq   atomic.Uint64
}

func (s *Shared) init() {
	s.once.Do(func() {
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			s.dsn = dsn
			return
		}
		srv, err := Start(context.Background(), s.Config)
		if err != nil {
			s.err = err
			s.skipped = errors.Is(err, ErrNoBinaries) && os.Getenv(EnvRequire) == ""
			return
		}
		s.srv = srv
		s.dsn = srv.DSN()
	})
}

// DSN returns the DSN of the shared server's default database, starting the
// server on first use. It skips the test when no binaries are installed and
// no DSN is configured, and fails it when the server cannot start.
func (s *Shared) DSN(t testing.TB) string {
	t.Helper()
	s.init()
	if s.skipped {
		t.Skipf("PostgreSQL tests skipped: %v; set %s to use an existing server", s.err, EnvDSN)
	}
	if s.err != nil {
		t.Fatalf("start PostgreSQL: %v", s.err)
	}
	return s.dsn
}

// NewDatabase creates a fresh, empty database on the shared server for the
// calling test and returns its DSN; the database is dropped when the test
// ends.
func (s *Shared) NewDatabase(t testing.TB) string {
	t.Helper()
	dsn := s.DSN(t)
	name := fmt.Sprintf("sltest_%d_%d", os.Getpid(), s.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := CreateDatabase(ctx, dsn, name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, dsn, name); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	dbDSN, err := WithDatabase(dsn, name)
	if err != nil {
		t.Fatal(err)
	}
	return dbDSN
}

// Server returns the server Shared started, or nil when it uses
// SESSIONLOCK_PG_DSN or has not started one.
func (s *Shared) Server() *Server {
	s.once.Do(func() {}) // synchronise with a start in progress
	return s.srv
}

// Stop stops the server Shared started, if any.
func (s *Shared) Stop() error {
	s.once.Do(func() {}) // synchronise with (or prevent) a start
	if s.srv == nil {
		return nil
	}
	return s.srv.Stop()
}
