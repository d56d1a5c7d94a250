package memcached_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestAppendSetsTTL: memcached's append keeps the item's expiry (it
// ignores the T flag), so the Store sends a touch after every append, in
// the same round trip: the TTL right after a lock or release written as a
// delta is the session's own timeout (I4), cold and warm. The check runs
// on a deliberately broken variant too (the append without its touch),
// and must fail there.
func TestAppendSetsTTL(t *testing.T) {
	servers := startNodes(t, 1)
	check := func(t *testing.T, broken bool) []string {
		flush(t, servers)
		s := newStore(t, servers, memcached.Config{})
		if broken {
			memcached.SetAppendWithoutTouch(s)
		}
		failures, err := providertest.AppendTTLFailures(context.Background(), s)
		require.NoError(t, err)
		return failures
	}
	require.Empty(t, check(t, false))
	require.Len(t, check(t, true), 5, "the broken variant (append without touch) must fail every step")
}

func mustGet(t *testing.T, client *memcache.Client, key string) []byte {
	t.Helper()
	it, err := client.Get(key)
	require.NoError(t, err)
	return it.Value
}

// hideTouched is a deliberately broken Appender: it does not tell the
// provider which value its touch landed on.
type hideTouched struct{ *memcached.Store }

func (h hideTouched) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (uint64, uint64, error) {
	n, _, err := h.Store.CompareAndAppend(ctx, key, delta, cas, ttl)
	return n, 0, err
}

// TestStrayTouchFixed: an append that fails (a stale token) still sends
// its touch, which lands on the newer value with the TTL the appender
// expected. When that value's own timeout differs (another process
// committed a new timeout and holds the lock), the provider gives it back
// its own TTL (I4). Against a store that hides where its touch landed,
// the check fails.
func TestStrayTouchFixed(t *testing.T) {
	servers := startNodes(t, 1)
	run := func(t *testing.T, wrap func(*memcached.Store) provider.Store) time.Duration {
		flush(t, servers)
		s := newStore(t, servers, memcached.Config{})
		ctx := context.Background()
		newProvider := func(st provider.Store) *provider.Provider {
			p, err := provider.New(st, provider.Config{})
			require.NoError(t, err)
			return p
		}
		a := newProvider(wrap(s))
		id := newBenchSession(t, a) // a wrote last: its next lock starts from its cache
		b := newProvider(s)
		item, err := b.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, item.Data.SetTimeout(5*time.Minute))
		require.NoError(t, b.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false))
		_, err = b.GetItemExclusive(ctx, id) // b holds the lock
		require.NoError(t, err)
		_, err = a.GetItemExclusive(ctx, id) // a stale append, its touch lands on b's
		require.ErrorIs(t, err, provider.ErrLocked)
		key, err := a.Key(id)
		require.NoError(t, err)
		ttl, err := s.TTL(ctx, key)
		require.NoError(t, err)
		return ttl
	}
	own := func(s *memcached.Store) provider.Store { return s }
	broken := func(s *memcached.Store) provider.Store { return hideTouched{s} }
	require.LessOrEqual(t, run(t, own), 5*time.Minute+2*time.Second, "the session's own timeout")
	require.Greater(t, run(t, broken), 5*time.Minute+2*time.Second, "the broken variant leaves the stray TTL")
}

// TestAppendTooLargeWritesWhole: a record so close to the server's item
// size (-I) that a delta does not fit: memcached answers the append NS
// (not stored), which the Store reports as provider.ErrTooLarge, and the
// provider writes the change whole instead (the deltas dropped, the
// record smaller). Read as "not found", the lock would retry until it gave
// up.
func TestAppendTooLargeWritesWhole(t *testing.T) {
	servers := mcserver.StartForTest(t, 1, mcserver.Config{MaxItemSize: 2048, Args: []string{"-o", "slab_chunk_max=1024"}})
	s := newStore(t, servers, memcached.Config{MaxItemSize: 4096})
	ctx := context.Background()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	create := func(n int) (string, error) {
		id, err := session.NewID()
		require.NoError(t, err)
		d := p.CreateNewStoreData(0)
		require.NoError(t, d.Values.Set("blob", strings.Repeat("x", n)))
		return id, p.SetAndReleaseItemExclusive(ctx, id, d, 0, true)
	}
	// The largest session the server stores.
	lo, hi := 0, 2048
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if _, err := create(mid); err != nil {
			require.ErrorIs(t, err, provider.ErrTooLarge)
			hi = mid
		} else {
			lo = mid
		}
	}
	id, err := create(lo)
	require.NoError(t, err)
	key, err := p.Key(id)
	require.NoError(t, err)
	client := raw(t, servers[0].Addr())
	for i := range 3 {
		item, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err, "lock %d", i)
		r, err := rec.Decode(mustGet(t, client, key))
		require.NoError(t, err)
		require.True(t, r.Locked)
		require.Zero(t, r.Deltas, "a delta does not fit: written whole")
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	}
}

// TestAppendToMissingKey: memcached answers an append to a missing key NS,
// as it answers one that does not fit; the Store reports the first as
// provider.ErrNotFound (the touch found no key), not as too large.
func TestAppendToMissingKey(t *testing.T) {
	servers := startNodes(t, 1)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id := newBenchSession(t, p)
	key, err := p.Key(id)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	cur, err := rec.Decode(e.Value)
	require.NoError(t, err)
	next := cur
	next.Seq++
	next.Locked = true
	d, ok := rec.Delta(&cur, &next)
	require.True(t, ok)
	require.NoError(t, s.Delete(ctx, key))
	_, touched, err := s.CompareAndAppend(ctx, key, d, e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.Zero(t, touched)
	_, err = p.GetItemExclusive(ctx, id) // from its cache: the append misses, the read too
	require.ErrorIs(t, err, provider.ErrNotFound)
}
