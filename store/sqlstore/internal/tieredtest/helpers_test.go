package tieredtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/sqlstore"
	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// pg is the PostgreSQL server of this test binary.
var pg pgserver.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

var tableSeq atomic.Uint64

// newDurable returns a SQL store on a fresh table of dsn. The caller (or the
// tiered store owning it) closes it.
func newDurable(t testing.TB, dsn string) *sqlstore.Store {
	t.Helper()
	d, err := sqlstore.New(context.Background(), sqlstore.Config{
		DSNs: []string{dsn}, Table: fmt.Sprintf("t%d", tableSeq.Add(1)), SweepInterval: -1,
	})
	require.NoError(t, err)
	return d
}

// newTiered returns a tiered store over cache and a fresh SQL table, closed
// when t ends.
func newTiered(t testing.TB, dsn string, cache provider.Store, cfg tiered.Config) (*tiered.Store, *sqlstore.Store) {
	t.Helper()
	d := newDurable(t, dsn)
	cfg.Cache, cfg.Durable = cache, d
	s, err := tiered.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, d
}

// newGatedTiered returns a tiered store over cache and a fresh database
// whose durable writes the test can pause (gatedDurable).
func newGatedTiered(t testing.TB, cache provider.Store) (*tiered.Store, *gatedDurable) {
	t.Helper()
	gate := &gatedDurable{Durable: newDurable(t, pg.NewDatabase(t))}
	s, err := tiered.New(tiered.Config{Cache: cache, Durable: gate})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, gate
}

// swapCache is a cache whose whole content can be lost at once: Flush
// replaces the memstore behind it with an empty one, as a memcached flush
// or restart does (the new one reissues the same CAS tokens, as a
// restarted memcached does).
type swapCache struct {
	mu     sync.RWMutex
	cur    *memstore.Store
	closed atomic.Bool
}

func newSwapCache() *swapCache {
	return &swapCache{cur: memstore.New(memstore.Config{SweepInterval: -1})}
}

func (c *swapCache) store() *memstore.Store {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// Flush drops every entry.
func (c *swapCache) Flush() {
	c.mu.Lock()
	old := c.cur
	c.cur = memstore.New(memstore.Config{SweepInterval: -1})
	c.mu.Unlock()
	old.Close()
}

func (c *swapCache) Get(ctx context.Context, key string) (provider.Entry, error) {
	return retryClosed(&c.closed, func() (provider.Entry, error) { return c.store().Get(ctx, key) })
}

func (c *swapCache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return retryClosed(&c.closed, func() (uint64, error) { return c.store().Add(ctx, key, value, ttl) })
}

func (c *swapCache) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return retryClosed(&c.closed, func() (uint64, error) { return c.store().CompareAndSwap(ctx, key, value, cas, ttl) })
}

func (c *swapCache) Touch(ctx context.Context, key string, ttl time.Duration) error {
	_, err := retryClosed(&c.closed, func() (int, error) { return 0, c.store().Touch(ctx, key, ttl) })
	return err
}

func (c *swapCache) Delete(ctx context.Context, key string) error {
	_, err := retryClosed(&c.closed, func() (int, error) { return 0, c.store().Delete(ctx, key) })
	return err
}

func (c *swapCache) TTL(ctx context.Context, key string) (time.Duration, error) {
	return retryClosed(&c.closed, func() (time.Duration, error) { return c.store().TTL(ctx, key) })
}

func (c *swapCache) Close() error {
	c.closed.Store(true)
	return c.store().Close()
}

// retryClosed retries an operation that raced with Flush closing the old
// store: to the caller, that operation ran on the new, empty one.
func retryClosed[T any](closed *atomic.Bool, op func() (T, error)) (T, error) {
	for {
		v, err := op()
		if !errors.Is(err, provider.ErrClosed) || closed.Load() {
			return v, err
		}
	}
}

// gatedDurable wraps the durable store to hold PutRecord at gates.
type gatedDurable struct {
	tiered.Durable
	gate  func() // called before each PutRecord
	after func() // called after each PutRecord
}

func (d *gatedDurable) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	if d.gate != nil {
		d.gate()
	}
	res, err := d.Durable.PutRecord(ctx, key, value, ttl)
	if d.after != nil {
		d.after()
	}
	return res, err
}

// Add implements provider.Store, calling after once the row is added.
func (d *gatedDurable) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	cas, err := d.Durable.Add(ctx, key, value, ttl)
	if d.after != nil {
		d.after()
	}
	return cas, err
}

// pause returns a gate that stops its first caller until release is
// closed, closing entered when it stops.
func pause() (gate func(), entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	return func() {
		if first.CompareAndSwap(false, true) { // later callers pass at once
			close(entered)
			<-release
		}
	}, entered, release
}
