package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// countingStore counts the operations a provider sends.
type countingStore struct {
	provider.Store
	n int
}

func (c *countingStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	c.n++
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	c.n++
	return c.Store.Add(ctx, key, v, ttl)
}

func (c *countingStore) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	c.n++
	return c.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

// twoServers returns two providers (two servers) over one counting store
// and a session p1 created.
func twoServers(t *testing.T) (st *countingStore, p1, p2 *provider.Provider, id string) {
	t.Helper()
	st = &countingStore{Store: memstore.New(memstore.Config{})}
	p1, err := provider.New(st, provider.Config{})
	require.NoError(t, err)
	p2, err = provider.New(st, provider.Config{})
	require.NoError(t, err)
	id, err = session.NewID()
	require.NoError(t, err)
	require.NoError(t, p1.SetAndReleaseItemExclusive(context.Background(), id, p1.CreateNewStoreData(time.Minute), 0, true))
	return st, p1, p2, id
}

// TestWrittenCacheStaleEntry: a process whose remembered record is stale
// (another process wrote since) never answers from it: it pays one refused
// write and reads again. Two providers stand for two servers.
func TestWrittenCacheStaleEntry(t *testing.T) {
	ctx := context.Background()
	st, p1, p2, id := twoServers(t)

	// p1 remembers the session unlocked; p2 locks it: p1 must see it
	// locked, not lock it from its stale record.
	it2, err := p2.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	_, err = p1.GetItemExclusive(ctx, id)
	var le *provider.LockedError
	require.True(t, errors.As(err, &le), "a stale unlocked record must not lock: %v", err)

	// p2 commits n=5: p1's next lock sees it.
	require.NoError(t, it2.Data.Values.Set("n", 5))
	require.NoError(t, p2.SetAndReleaseItemExclusive(ctx, id, it2.Data, it2.LockID, false))
	st.n = 0
	it1, err := p1.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	var n int
	ok, err := it1.Data.Values.Get("n", &n)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 5, n, "the lock is decided on the stored record")
	require.Equal(t, 2, st.n, "p1 read then locked: its cache held no entry after its refused lock")

	// p1 remembers the session locked by it; p2 releases that lock (a
	// holder's release, from another server): p1's stale "locked" record
	// must not refuse the next lock.
	require.NoError(t, p2.ReleaseItemExclusive(ctx, id, it1.LockID))
	st.n = 0
	it3, err := p1.GetItemExclusive(ctx, id)
	require.NoError(t, err, "a stale locked record must not refuse")
	require.Equal(t, 2, st.n, "the refusal on the guess is decided again on a read: read and lock")

	// Warm: p1 wrote last (its lock), so its release needs no read.
	st.n = 0
	require.NoError(t, p1.ReleaseItemExclusive(ctx, id, it3.LockID))
	require.Equal(t, 1, st.n, "release from the remembered record and token")
}

// TestWrittenCacheContested: two servers taking turns on a session (no
// session affinity) pay read, lock, commit per exclusive request, not a
// refused guess first; once one server serves the session twice in a row,
// it guesses again. (Before contested keys: 4 operations per request
// while the servers took turns.)
func TestWrittenCacheContested(t *testing.T) {
	ctx := context.Background()
	st, p1, p2, id := twoServers(t)

	cycle := func(p *provider.Provider, n int) int {
		st.n = 0
		it, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, it.Data.Values.Set("n", n))
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false))
		return st.n
	}
	require.Equal(t, 2, cycle(p1, 1), "warm: lock, commit")
	require.Equal(t, 3, cycle(p2, 2), "cold: read, lock, commit")
	// Each refused guess is tried again once (one other server's request
	// is no contest), then the key is contested for both.
	require.Equal(t, 4, cycle(p1, 3), "p1's guess is refused: guess, read, lock, commit")
	require.Equal(t, 4, cycle(p2, 4), "so is p2's")
	require.Equal(t, 4, cycle(p1, 5), "p1's second refused guess: contested")
	require.Equal(t, 4, cycle(p2, 6), "p2's too")
	for i := 7; i < 11; i++ {
		p := p2
		if i%2 == 1 {
			p = p1
		}
		require.Equal(t, 3, cycle(p, i), "servers taking turns, request %d: read, lock, commit", i)
	}
	require.Equal(t, 3, cycle(p2, 11), "p2 again: its read finds its own token")
	require.Equal(t, 2, cycle(p2, 12), "p2 guesses again: lock, commit")
	require.Equal(t, 3, cycle(p1, 13), "p1's key is still contested: read, lock, commit")
}
