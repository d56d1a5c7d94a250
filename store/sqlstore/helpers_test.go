package sqlstore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
)

// pg is the PostgreSQL server of this test binary.
var pg pgserver.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// tableSeq names each test store's table, so stores sharing a database
// start empty.
var tableSeq atomic.Uint64

// newStore returns a store on a fresh table of dsn, closed when t ends.
func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Table == "" {
		cfg.Table = fmt.Sprintf("t%d", tableSeq.Add(1))
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	s, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// connect returns a plain connection to dsn, for checks behind the store's
// back, closed when t ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// exec runs sql on c and returns the rows affected.
func exec(t testing.TB, c *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	tag, err := c.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
	return tag.RowsAffected()
}

// count returns the number of rows of table (expired ones included).
func count(t testing.TB, c *pgx.Conn, table string) int {
	t.Helper()
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "SELECT count(*) FROM "+ident(table)).Scan(&n))
	return n
}

// eventually polls cond until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

func itoa(n uint64) string { return fmt.Sprint(n) }
