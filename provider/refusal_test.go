package provider_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestCommitOverCorruptValuesReleases: a commit whose merge cannot decode
// the stored values (here: written behind the provider's back under the
// caller's lock) fails with ErrCorrupt, releases the lock in the same
// write, and leaves the stored values as they were: nobody waits a lease,
// nothing is overwritten.
func TestCommitOverCorruptValuesReleases(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Config{})
	defer store.Close()
	p, err := provider.New(store, provider.Config{})
	require.NoError(t, err)
	id := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	held, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	key, err := p.Key(id)
	require.NoError(t, err)
	e, err := store.Get(ctx, key)
	require.NoError(t, err)
	r, err := record.Decode(e.Value)
	require.NoError(t, err)
	r.Values = []byte{0x7f, 'x'} // an unknown values format: ErrCorrupt
	_, err = store.CompareAndSwap(ctx, key, r.Encode(), e.CAS, r.Timeout)
	require.NoError(t, err)

	require.NoError(t, held.Data.Values.Set("k", "v"))
	err = p.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	require.NotErrorIs(t, err, provider.ErrLockLost)
	after, err := store.Get(ctx, key)
	require.NoError(t, err)
	h, err := record.Decode(after.Value)
	require.NoError(t, err)
	require.False(t, h.Locked, "released in the same write")
	require.Equal(t, r.Values, h.Values, "the stored values were not rewritten")
	require.Equal(t, r.DataSeq, h.DataSeq)
	_, err = p.GetItemExclusive(ctx, id)
	require.ErrorIs(t, err, provider.ErrCorrupt, "every later request fails at once")
}
