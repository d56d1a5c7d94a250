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

// TestWrittenCacheStaleEntry: a process whose remembered record is stale
// (another process wrote since) never answers from it: it pays one refused
// write and reads again. Two providers stand for two servers.
func TestWrittenCacheStaleEntry(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memstore.New(memstore.Config{})}
	p1, err := provider.New(st, provider.Config{})
	require.NoError(t, err)
	p2, err := provider.New(st, provider.Config{})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, p1.SetAndReleaseItemExclusive(ctx, id, p1.CreateNewStoreData(time.Minute), 0, true))

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
	_, err = p1.GetItemExclusive(ctx, id)
	require.NoError(t, err, "a stale locked record must not refuse")
	require.Equal(t, 2, st.n, "the refusal on the guess is decided again on a read: read and lock")

	// Warm: p1 wrote last, so its release needs no read.
	st.n = 0
	require.NoError(t, p1.ReleaseItemExclusive(ctx, id, it1.LockID+1))
	require.Equal(t, 1, st.n, "release from the remembered record and token")
}
