package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

func TestStoreContract(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}})
	ctx := context.Background()

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)

	cas1, err := s.Add(ctx, "k", []byte("v1"), time.Minute)
	require.NoError(t, err)
	require.NotZero(t, cas1)
	_, err = s.Add(ctx, "k", []byte("other"), time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)

	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, provider.Entry{Value: []byte("v1"), CAS: cas1}, e)

	cas2, err := s.CompareAndSwap(ctx, "k", []byte("v2"), cas1, time.Minute)
	require.NoError(t, err)
	require.NotEqual(t, cas1, cas2)

	_, err = s.CompareAndSwap(ctx, "k", []byte("stale"), cas1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	require.NotErrorIs(t, err, provider.ErrNotFound)
	_, err = s.CompareAndSwap(ctx, "k", []byte("zero"), 0, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	_, err = s.CompareAndSwap(ctx, "k", []byte("huge token"), 1<<63, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	_, err = s.CompareAndSwap(ctx, "missing", []byte("x"), cas2, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.NotErrorIs(t, err, provider.ErrCASConflict)

	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, provider.Entry{Value: []byte("v2"), CAS: cas2}, e)

	// Touch keeps value and token, sets the TTL.
	require.NoError(t, s.Touch(ctx, "k", time.Hour))
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, provider.Entry{Value: []byte("v2"), CAS: cas2}, e)
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5)
	require.ErrorIs(t, s.Touch(ctx, "missing", time.Hour), provider.ErrNotFound)
	_, err = s.TTL(ctx, "missing")
	require.ErrorIs(t, err, provider.ErrNotFound)

	// An empty (and a nil) value is a value.
	cas3, err := s.CompareAndSwap(ctx, "k", nil, cas2, time.Minute)
	require.NoError(t, err)
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Empty(t, e.Value)
	require.Equal(t, cas3, e.CAS)

	require.NoError(t, s.Delete(ctx, "k"))
	require.ErrorIs(t, s.Delete(ctx, "k"), provider.ErrNotFound)
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.CompareAndSwap(ctx, "k", []byte("x"), cas3, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)

	// Tokens are never reused, even by a key added again after a delete.
	cas4, err := s.Add(ctx, "k", []byte("again"), time.Minute)
	require.NoError(t, err)
	for _, old := range []uint64{cas1, cas2, cas3} {
		require.NotEqual(t, old, cas4)
	}
}

func TestTTLIsSetByEveryWrite(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}})
	ctx := context.Background()
	near := func(want time.Duration) {
		t.Helper()
		got, err := s.TTL(ctx, "k")
		require.NoError(t, err)
		require.LessOrEqual(t, got, want)
		require.Greater(t, got, want-5*time.Second)
	}
	cas, err := s.Add(ctx, "k", []byte("v"), 2*time.Minute)
	require.NoError(t, err)
	near(2 * time.Minute)
	_, err = s.CompareAndSwap(ctx, "k", []byte("v"), cas, 7*time.Minute)
	require.NoError(t, err)
	near(7 * time.Minute)
	require.NoError(t, s.Touch(ctx, "k", 30*time.Second))
	near(30 * time.Second)
}

func TestExpiredRowsInvisibleAtOnce(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	ctx := context.Background()

	cas, err := s.Add(ctx, "k", []byte("v"), time.Hour)
	require.NoError(t, err)
	// Expire the row by the server's clock, behind the store's back.
	require.EqualValues(t, 1, exec(t, c, `UPDATE records SET expires_at = now() - interval '1 microsecond' WHERE key = 'k'`))

	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.TTL(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.ErrorIs(t, s.Touch(ctx, "k", time.Hour), provider.ErrNotFound)
	_, err = s.CompareAndSwap(ctx, "k", []byte("x"), cas, time.Hour)
	require.ErrorIs(t, err, provider.ErrNotFound, "an expired row is gone, not a conflict")

	// Add replaces the expired row in one statement, with a new token.
	cas2, err := s.Add(ctx, "k", []byte("fresh"), time.Hour)
	require.NoError(t, err)
	require.NotEqual(t, cas, cas2)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "fresh", string(e.Value))

	// Delete of an expired row reports not found and removes it.
	exec(t, c, `UPDATE records SET expires_at = now() WHERE key = 'k'`)
	require.ErrorIs(t, s.Delete(ctx, "k"), provider.ErrNotFound)
	require.Zero(t, count(t, c, "records"))
}

func TestAddOverExpiredRowRacesSafely(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		key := "k" + strconv.Itoa(round)
		_, err := s.Add(ctx, key, []byte("old"), time.Hour)
		require.NoError(t, err)
		exec(t, c, `UPDATE records SET expires_at = now() - interval '1 second' WHERE key = $1`, key)
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Add(ctx, key, []byte(strconv.Itoa(i)), time.Hour)
			}()
		}
		wg.Wait()
		winners := 0
		for _, err := range errs {
			if err == nil {
				winners++
			} else {
				require.ErrorIs(t, err, provider.ErrExists)
			}
		}
		require.Equal(t, 1, winners, "exactly one Add replaces the expired row")
	}
}

func TestSweep(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records", SweepBatch: 7})
	c := connect(t, dsn)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		_, err := s.Add(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Hour)
		require.NoError(t, err)
	}
	require.EqualValues(t, 30, exec(t, c, `UPDATE records SET expires_at = now() - interval '1 second' WHERE substr(key, 2)::int < 30`))
	before := s.Stats().Statements
	n, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	require.Equal(t, 20, count(t, c, "records"), "live rows stay")
	require.EqualValues(t, 5, s.Stats().Statements-before, "30 rows in batches of 7: 4 full batches and a short one")
	require.EqualValues(t, 30, s.Stats().Swept)
	n, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestBackgroundSweep(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records", SweepInterval: 20 * time.Millisecond})
	c := connect(t, dsn)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		_, err := s.Add(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Hour)
		require.NoError(t, err)
	}
	exec(t, c, `UPDATE records SET expires_at = now() - interval '1 second' WHERE key <> 'k0'`)
	eventually(t, "the background sweep to delete 9 expired rows", func() bool { return count(t, c, "records") == 1 })
	_, err := s.Get(ctx, "k0")
	require.NoError(t, err)
}

func TestCloseStopsEverything(t *testing.T) {
	dsn := pg.NewDatabase(t)
	baseline := runtime.NumGoroutine()
	s, err := New(context.Background(), Config{DSNs: []string{dsn}, SweepInterval: time.Millisecond})
	require.NoError(t, err)
	_, err = s.Add(context.Background(), "k", []byte("v"), time.Hour)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Get(context.Background(), "k")
	require.ErrorIs(t, err, provider.ErrClosed)
	_, err = s.Add(context.Background(), "k", []byte("v"), time.Hour)
	require.ErrorIs(t, err, provider.ErrClosed)
	_, err = s.Sweep(context.Background())
	require.ErrorIs(t, err, provider.ErrClosed)
	eventually(t, "goroutines to return to the baseline after Close", func() bool { return runtime.NumGoroutine() <= baseline })
}

func TestBadInput(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}, MaxValueSize: 100})
	ctx := context.Background()
	for _, key := range []string{"", "a\x00b", "\xff\xfe", strings.Repeat("k", MaxKeyLen+1)} {
		_, err := s.Get(ctx, key)
		require.Error(t, err, "key %q", key)
		_, err = s.Add(ctx, key, []byte("v"), time.Minute)
		require.Error(t, err)
		require.NotErrorIs(t, err, provider.ErrUnavailable)
		_, err = s.CompareAndSwap(ctx, key, []byte("v"), 1, time.Minute)
		require.Error(t, err)
		require.Error(t, s.Touch(ctx, key, time.Minute))
		require.Error(t, s.Delete(ctx, key))
	}
	_, err := s.Add(ctx, strings.Repeat("k", MaxKeyLen), []byte("v"), time.Minute)
	require.NoError(t, err, "a key of MaxKeyLen bytes is fine")

	for _, ttl := range []time.Duration{0, -time.Second} {
		_, err := s.Add(ctx, "k", []byte("v"), ttl)
		require.Error(t, err)
		require.Error(t, s.Touch(ctx, "k", ttl), "ttl %v", ttl)
		_, err = s.CompareAndSwap(ctx, "k", []byte("v"), 1, ttl)
		require.Error(t, err)
		require.NotErrorIs(t, err, provider.ErrNotFound, "checked before the statement")
	}

	// Too large: refused before writing.
	_, err = s.Add(ctx, "big", make([]byte, 101), time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	_, err = s.Get(ctx, "big")
	require.ErrorIs(t, err, provider.ErrNotFound)
	cas, err := s.Add(ctx, "big", make([]byte, 100), time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "big", make([]byte, 101), cas, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	e, err := s.Get(ctx, "big")
	require.NoError(t, err)
	require.Equal(t, cas, e.CAS, "nothing written")

	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(cctx, "big")
	require.ErrorIs(t, err, context.Canceled)
}

func TestConcurrentCASIncrementsLoseNothing(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}, MaxConns: 8})
	ctx := context.Background()
	_, err := s.Add(ctx, "counter", []byte("0"), time.Hour)
	require.NoError(t, err)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				e, err := s.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				n, _ := strconv.Atoi(string(e.Value))
				_, err = s.CompareAndSwap(ctx, "counter", []byte(strconv.Itoa(n+1)), e.CAS, time.Hour)
				if errors.Is(err, provider.ErrCASConflict) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				i++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e, err := s.Get(ctx, "counter")
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*each), string(e.Value))
}

func TestStatsCountsOneStatementPerOperation(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}})
	ctx := context.Background()
	require.Zero(t, s.Stats().Statements, "the schema check is not counted")
	cas, _ := s.Add(ctx, "k", []byte("v"), time.Minute)
	s.Get(ctx, "k")
	s.CompareAndSwap(ctx, "k", []byte("w"), cas, time.Minute)
	s.CompareAndSwap(ctx, "k", []byte("w"), cas, time.Minute) // conflict: still one statement
	s.Touch(ctx, "k", time.Minute)
	s.TTL(ctx, "k")
	s.Delete(ctx, "k")
	s.Get(ctx, "")          // bad key: no statement
	s.Add(ctx, "k", nil, 0) // bad ttl: no statement
	require.EqualValues(t, 7, s.Stats().Statements)
}

func TestClassify(t *testing.T) {
	for code, want := range map[string]error{
		"08006": provider.ErrUnavailable,
		"53300": provider.ErrUnavailable,
		"57P01": provider.ErrUnavailable,
		"57014": provider.ErrUnavailable,
		"42P01": provider.ErrServer, // undefined table
		"23505": provider.ErrServer,
		"22P02": provider.ErrServer,
	} {
		require.Equal(t, want, classify(fmt.Errorf("x: %w", &pgconn.PgError{Code: code})), code)
	}
	require.Equal(t, provider.ErrUnavailable, classify(context.DeadlineExceeded))
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no DSNs":        {},
		"bad table":      {DSNs: []string{"postgres://127.0.0.1:1/x"}, Table: "x; DROP TABLE y"},
		"long table":     {DSNs: []string{"postgres://127.0.0.1:1/x"}, Table: strings.Repeat("t", 49)},
		"bad DSN":        {DSNs: []string{"postgres://%zz"}},
		"names mismatch": {DSNs: []string{"postgres://127.0.0.1:1/x"}, Names: []string{"a", "b"}},
		"duplicate":      {DSNs: []string{"postgres://127.0.0.1:1/x", "postgres://127.0.0.1:1/x"}},
		"empty name":     {DSNs: []string{"postgres://127.0.0.1:1/x"}, Names: []string{""}},
	} {
		s, err := New(ctx, cfg)
		require.Error(t, err, name)
		require.Nil(t, s)
	}
	// Nothing listens on port 1: unavailable, quickly.
	_, err := New(ctx, Config{DSNs: []string{"postgres://postgres@127.0.0.1:1/x?sslmode=disable"}, Timeout: 2 * time.Second})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.Contains(t, err.Error(), "127.0.0.1:1/x")
}

// A write that times out after its statement was sent may have taken
// effect: its error says the outcome is unknown; one that never left says
// it is unavailable only.
func TestWriteTimeoutIsOutcomeUnknown(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	ctx := context.Background()
	cas, err := s.Add(ctx, "k", []byte("v"), time.Hour)
	require.NoError(t, err)

	// Another transaction holds the row: the CAS waits on its lock until
	// its context's deadline.
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT 1 FROM records WHERE key = 'k' FOR UPDATE`)
	require.NoError(t, err)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = s.CompareAndSwap(short, "k", []byte("w"), cas, time.Hour)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NoError(t, tx.Rollback(ctx))
	// Whether it was applied depends on whether the server saw the
	// cancellation before the lock was released: unknown indeed.
	_, err = s.Get(ctx, "k")
	require.NoError(t, err)

	// A context done before the statement is sent: nothing was written.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	_, err = s.CompareAndSwap(cctx, "k", []byte("x"), e.CAS, time.Hour)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
}
