package sqlstore

import (
	"context"
	osexec "os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
	"github.com/sessionlock/sessionlock/store/tiered"
)

func schemaVersion(t *testing.T, c *pgx.Conn, table string) int {
	t.Helper()
	var v int
	require.NoError(t, c.QueryRow(context.Background(),
		`SELECT version FROM sessionlock_schema_version WHERE table_name = $1`, table).Scan(&v))
	return v
}

// Processes starting together on an empty database all succeed and create
// the schema once.
func TestSchemaConcurrentNew(t *testing.T) {
	dsn := pg.NewDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*Store, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			table := "shared"
			if i%2 == 1 {
				table = "other" // a second table races on the version table too
			}
			stores[i], errs[i] = New(context.Background(), Config{DSNs: []string{dsn}, Table: table, SweepInterval: -1})
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i])
		defer stores[i].Close()
	}
	c := connect(t, dsn)
	require.Equal(t, SchemaVersion, schemaVersion(t, c, "shared"))
	require.Equal(t, SchemaVersion, schemaVersion(t, c, "other"))
	// Every store sees the others' rows: one table, not several.
	_, err := stores[0].Add(context.Background(), "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	_, err = stores[2].Get(context.Background(), "k")
	require.NoError(t, err)
	_, err = stores[1].Get(context.Background(), "k")
	require.ErrorIs(t, err, provider.ErrNotFound, "another table")
}

// schema.sql run by hand with psql gives the schema New would create, and
// New then accepts it without running DDL.
func TestSchemaFileWithPsql(t *testing.T) {
	dsn := pg.NewDatabase(t)
	bin, err := pgserver.FindBinDir()
	if err != nil {
		t.Skipf("psql not found: %v", err)
	}
	psql := filepath.Join(bin, "psql")
	for i := 0; i < 2; i++ { // twice: the script is idempotent
		out, err := osexec.Command(psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-v", "table=by_psql",
			"-f", "schema.sql", dsn).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	c := connect(t, dsn)
	require.Equal(t, SchemaVersion, schemaVersion(t, c, "by_psql"))

	// Revoke DDL: New must not need it when the schema is current.
	exec(t, c, `CREATE ROLE app LOGIN`)
	exec(t, c, `GRANT SELECT, INSERT, UPDATE, DELETE ON by_psql TO app`)
	exec(t, c, `GRANT SELECT ON sessionlock_schema_version TO app`)
	exec(t, c, `GRANT USAGE ON SEQUENCE by_psql_version_seq TO app`)
	exec(t, c, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	t.Cleanup(func() {
		exec(t, c, `DROP OWNED BY app`)
		exec(t, c, `DROP ROLE app`)
	})
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	appDSN := "host=" + cfg.Host + " port=" + itoa(uint64(cfg.Port)) + " dbname=" + cfg.Database + " user=app sslmode=disable"
	s := newStore(t, Config{DSNs: []string{appDSN}, Table: "by_psql"})
	ctx := context.Background()
	cas, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", []byte("w"), cas, time.Minute)
	require.NoError(t, err)

	// The library's own schema has the same columns.
	newStore(t, Config{DSNs: []string{dsn}, Table: "by_library"})
	columns := func(table string) [][]string {
		rows, err := c.Query(ctx, `SELECT column_name, data_type, is_nullable FROM information_schema.columns
			WHERE table_name = $1 ORDER BY ordinal_position`, table)
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]string, error) {
			var a, b, c string
			err := r.Scan(&a, &b, &c)
			return []string{a, b, c}, err
		})
		require.NoError(t, err)
		return got
	}
	require.Equal(t, [][]string{
		{"key", "text", "NO"}, {"value", "bytea", "NO"}, {"version", "bigint", "NO"}, {"expires_at", "timestamp with time zone", "NO"},
		{"claimed_version", "bigint", "NO"}, {"overwritten_version", "bigint", "NO"}, {"created_version", "bigint", "NO"},
	}, columns("by_library"))
	require.Equal(t, columns("by_library"), columns("by_psql"))
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	dsn := pg.NewDatabase(t)
	newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	exec(t, c, `UPDATE sessionlock_schema_version SET version = 99 WHERE table_name = 'records'`)
	_, err := New(context.Background(), Config{DSNs: []string{dsn}, Table: "records"})
	require.ErrorIs(t, err, ErrSchemaTooNew)
	require.Contains(t, err.Error(), "version 99")
}

func TestSchemaRecreatesMissingTable(t *testing.T) {
	dsn := pg.NewDatabase(t)
	newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	exec(t, c, `DROP TABLE records`)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	_, err := s.Add(context.Background(), "k", []byte("v"), time.Minute)
	require.NoError(t, err)
}

// A table that schema version 1 created, with rows, is brought to version 2
// by New: the rows and their tokens stay, the new columns are added, and
// ClaimOf answers for the old rows.
func TestSchemaUpgradeFromVersion1(t *testing.T) {
	dsn := pg.NewDatabase(t)
	c := connect(t, dsn)
	ctx := context.Background()
	// Version 1's schema, as its schema.sql left it.
	exec(t, c, `CREATE TABLE sessionlock_schema_version (
		table_name text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`)
	exec(t, c, `CREATE SEQUENCE records_version_seq AS bigint`)
	exec(t, c, `CREATE TABLE records (key text PRIMARY KEY, value bytea NOT NULL, version bigint NOT NULL, expires_at timestamptz NOT NULL)`)
	exec(t, c, `CREATE INDEX records_expires_at_idx ON records (expires_at)`)
	exec(t, c, `INSERT INTO sessionlock_schema_version (table_name, version) VALUES ('records', 1)`)
	exec(t, c, `INSERT INTO records SELECT 'k' || i, 'v', nextval('records_version_seq'), now() + interval '1 hour'
		FROM generate_series(1, 100) i`)
	var oldVersion int64
	require.NoError(t, c.QueryRow(ctx, `SELECT version FROM records WHERE key = 'k1'`).Scan(&oldVersion))

	// A transaction holds the table: the upgrade gives up (lock_timeout)
	// rather than queue every statement behind its wait, and changes
	// nothing.
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT count(*) FROM records`)
	require.NoError(t, err)
	_, err = New(ctx, Config{DSNs: []string{dsn}, Table: "records", SweepInterval: -1})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 1, schemaVersion(t, c, "records"))

	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	require.Equal(t, 2, schemaVersion(t, c, "records"))
	require.Equal(t, 100, count(t, c, "records"))
	e, err := s.Get(ctx, "k1")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
	require.EqualValues(t, oldVersion, e.CAS, "tokens kept")
	st, err := s.ClaimOf(ctx, "k1", e.CAS)
	require.NoError(t, err)
	require.Equal(t, tiered.NotClaimed, st, "an old row, current version")
	_, err = s.Claim(ctx, "k1", []byte("w"), e.CAS, time.Hour)
	require.NoError(t, err)
	st, err = s.ClaimOf(ctx, "k1", e.CAS)
	require.NoError(t, err)
	require.Equal(t, tiered.Claimed, st)

	// Running the upgrade again (another process starting) changes nothing.
	newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	require.Equal(t, 100, count(t, c, "records"))
}
