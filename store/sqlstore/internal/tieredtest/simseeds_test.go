package tieredtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/sqlstore"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// A cache-only compare-and-swap (a read's slide of the unchanged record on
// the Get+CAS path, or a change of the lock alone) that finds the cache
// lost the session while the durable tier holds it revives the session and
// reports a conflict, never not found (stress/sim, revive-mid-commit, seed
// 489 of docs/simulation.md).
func TestCacheOnlyCASAfterCacheLossRevives(t *testing.T) {
	servers := mcserver.StartForTest(t, 2, mcserver.Config{})
	s, _, p, id, key := memcachedSession(t, servers, time.Hour)
	ctx := context.Background()

	t.Run("slide", func(t *testing.T) {
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		flushAll(t, servers)
		_, err = s.CompareAndSwap(ctx, key, e.Value, e.CAS, time.Hour)
		require.ErrorIs(t, err, provider.ErrCASConflict, "not applied, and not 'not found': the durable tier holds the session")
		require.Equal(t, 0, counter(t, p, id), "served again")
	})

	t.Run("lock-only", func(t *testing.T) {
		held, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		flushAll(t, servers)
		err = p.ReleaseItemExclusive(ctx, id, held.LockID)
		require.False(t, errors.Is(err, provider.ErrNotFound), "release reported the session not found: %v", err)
		require.Equal(t, 0, counter(t, p, id), "served again, unlocked")
	})

	t.Run("lock-only-store", func(t *testing.T) {
		// The same at the Store level: a change of the lock alone from
		// a record this process saw, after the cache lost it.
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		r, err := record.Decode(e.Value)
		require.NoError(t, err)
		r.Seq++
		r.LockID++
		r.Locked = true
		flushAll(t, servers)
		_, err = s.CompareAndSwap(ctx, key, r.Encode(), e.CAS, time.Hour)
		require.ErrorIs(t, err, provider.ErrCASConflict)
		cur, err := s.Get(ctx, key)
		require.NoError(t, err)
		h, err := record.Parse(cur.Value)
		require.NoError(t, err)
		require.False(t, h.Locked, "the refused change was not applied")
	})

	t.Run("gone", func(t *testing.T) {
		// Gone from both tiers: not found, as before.
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, key))
		_, err = s.CompareAndSwap(ctx, key, e.Value, e.CAS, time.Hour)
		require.ErrorIs(t, err, provider.ErrNotFound)
	})
}

// A read by a process that does not know the session's timeout touches
// with the provider's hint (the default 20 minutes); the durable copy is
// refreshed with the session's own timeout, never the hint, so an expired
// session is not revived from it (stress/sim, expiry, seed 514 of
// docs/simulation.md).
func TestHintedReadKeepsDurableExpiry(t *testing.T) {
	// One node: the expiry of the memcached store's replica copies is
	// its own subject (docs/simulation.md, defect 5).
	servers := mcserver.StartForTest(t, 1, mcserver.Config{})
	const timeout = 2 * time.Second
	s, durable, _, id, key := memcachedSession(t, servers, timeout)
	ctx := context.Background()

	// Another server's provider: it has not seen the session yet.
	other, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	require.Equal(t, 0, counter(t, other, id))
	ttl, err := durable.TTL(ctx, key)
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, timeout+time.Second, "the durable copy lives no longer than the session")

	eventually(t, "the session to expire", func() bool {
		_, err := s.Get(ctx, key) // a Get does not slide; a cache miss revives from SQL
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			t.Fatal(err)
		}
		return err != nil
	})
	_, err = durable.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound, "not revivable after it expired")
	_, err = other.GetItem(ctx, id)
	require.ErrorIs(t, err, provider.ErrNotFound)
}

// memcachedSession returns a tiered store over servers and a fresh SQL
// database, a provider over it, and a new session of that provider with
// the given timeout, its id and its store key.
func memcachedSession(t *testing.T, servers []*mcserver.Server, timeout time.Duration) (s *tiered.Store, durable *sqlstore.Store, p *provider.Provider, id, key string) {
	t.Helper()
	s, durable = newTiered(t, pg.NewDatabase(t), newMemcached(t, servers), tiered.Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id = createSession(t, p, timeout)
	key, err = p.Key(id)
	require.NoError(t, err)
	return s, durable, p, id, key
}
