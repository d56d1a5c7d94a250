package pgserver

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

var pg Shared

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

func TestStartStop(t *testing.T) {
	if _, err := FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	ctx := context.Background()
	srv, err := Start(ctx, Config{})
	require.NoError(t, err)
	defer srv.Stop()

	conn, err := pgx.Connect(ctx, srv.DSN())
	require.NoError(t, err)
	var fsync string
	require.NoError(t, conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync))
	require.Equal(t, "off", fsync)
	var addr string
	require.NoError(t, conn.QueryRow(ctx, "SELECT inet_server_addr()::text").Scan(&addr))
	require.Equal(t, "127.0.0.1/32", addr)
	require.NoError(t, conn.Close(ctx))

	dsn, err := srv.CreateDatabase(ctx, "made_by_test")
	require.NoError(t, err)
	conn, err = pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	var db string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, "made_by_test", db)
	require.NoError(t, conn.Close(ctx))

	dir := srv.dir
	require.NoError(t, srv.Stop())
	require.NoError(t, srv.Stop(), "Stop twice")
	select {
	case <-srv.Stopped():
	default:
		t.Fatal("server process still running after Stop")
	}
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "cluster directory left behind: %v", err)
	c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
	if err == nil {
		c.Close()
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	_, err := Start(context.Background(), Config{BinDir: t.TempDir()})
	require.ErrorIs(t, err, ErrNoBinaries)
}

func TestSharedNewDatabase(t *testing.T) {
	dsn1 := pg.NewDatabase(t)
	dsn2 := pg.NewDatabase(t)
	require.NotEqual(t, dsn1, dsn2)
	ctx := context.Background()
	for _, dsn := range []string{dsn1, dsn2} {
		conn, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, "CREATE TABLE t (x int)")
		require.NoError(t, err, "each database is fresh")
		require.NoError(t, conn.Close(ctx))
	}
	if os.Getenv(EnvDSN) == "" {
		require.NotNil(t, pg.Server())
	}
}

func TestWithDatabase(t *testing.T) {
	got, err := WithDatabase("postgres://u:p@h:5432/old?sslmode=disable", "new")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@h:5432/new?sslmode=disable", got)

	got, err = WithDatabase("host=h user=u dbname=old", "it's")
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig(got)
	require.NoError(t, err)
	require.Equal(t, "it's", cfg.Database)
	require.Equal(t, "h", cfg.Host)

	_, err = WithDatabase("postgres://%zz", "x")
	require.Error(t, err)
}

func TestSharedSkipsWithoutBinaries(t *testing.T) {
	if os.Getenv(EnvDSN) != "" {
		t.Skipf("%s is set: Shared does not look for binaries", EnvDSN)
	}
	t.Setenv(EnvRequire, "")
	s := Shared{Config: Config{BinDir: t.TempDir()}}
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		s.DSN(t)
		t.Error("DSN returned without binaries")
	})
	require.True(t, skipped)
	require.NoError(t, s.Stop())
}
