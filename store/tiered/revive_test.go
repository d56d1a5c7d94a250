package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// gateDurable is a seqDurable whose next GetWithTTL, once armed, closes
// reading and waits for proceed before reading the row: a revival that
// missed the cache, descheduled before it reads the durable copy.
type gateDurable struct {
	*seqDurable
	armed            bool
	reading, proceed chan struct{}
}

func (d *gateDurable) GetWithTTL(ctx context.Context, key string) (provider.Entry, time.Duration, error) {
	if d.armed {
		d.armed = false
		close(d.reading)
		<-d.proceed
	}
	return d.seqDurable.GetWithTTL(ctx, key)
}

// twoServers returns two Stores (two app servers) over one cache and one
// durable tier, a provider over each, and a session created through the
// first, with one commit.
func twoServers(t *testing.T, durable Durable) (cache provider.Store, a, b *Store, pa, pb *provider.Provider, id, key string) {
	t.Helper()
	ctx := context.Background()
	cache = memstore.New(memstore.Config{})
	var err error
	a, err = New(Config{Cache: cache, Durable: durable})
	require.NoError(t, err)
	b, err = New(Config{Cache: cache, Durable: durable})
	require.NoError(t, err)
	pa, err = provider.New(a, provider.Config{})
	require.NoError(t, err)
	pb, err = provider.New(b, provider.Config{})
	require.NoError(t, err)
	id, err = session.NewID()
	require.NoError(t, err)
	require.NoError(t, pa.SetAndReleaseItemExclusive(ctx, id, pa.CreateNewStoreData(time.Minute), 0, true))
	item, err := pa.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 1))
	require.NoError(t, pa.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false))
	key, err = pa.Key(id)
	require.NoError(t, err)
	return cache, a, b, pa, pb, id, key
}

// After the cache lost a session, server B missed it and was descheduled
// before reading the durable copy; server A revived the session (claimed
// the durable copy, put it in the cache) and a request there took its
// lock. B's revival then reads the durable copy A claimed. It must serve
// the record A put in the cache, not claim the copy again: claimed again,
// the copy is installed over A's record, and A's holder, whose lock was
// taken after the loss, is fenced for nothing (its commit ErrLockLost)
// while another request can take the lock. Seen under the harness: after
// one flush of the whole cache, sessions revived up to five times
// (TestTieredSurvivesFlush's lock epochs 1 to 5), 17 holders in 10 runs
// fenced by such a revival. The code before (noRecheck) fails it.
func TestRevivalServesAnotherServersRevival(t *testing.T) {
	for _, before := range []bool{false, true} {
		t.Run(fmt.Sprintf("code-before=%v", before), func(t *testing.T) {
			ctx := context.Background()
			durable := &gateDurable{seqDurable: &seqDurable{}}
			cache, a, b, pa, _, id, key := twoServers(t, durable)
			b.hooks.noRecheck = before
			require.NoError(t, cache.Delete(ctx, key), "the cache loses the session")

			durable.armed, durable.reading, durable.proceed = true, make(chan struct{}), make(chan struct{})
			got := make(chan error, 1)
			go func() {
				_, err := b.Get(ctx, key)
				got <- err
			}()
			<-durable.reading // B missed the cache and is about to read the durable copy

			item, err := pa.GetItemExclusive(ctx, id) // A revives it and takes the lock
			require.NoError(t, err)
			require.EqualValues(t, 1, a.Stats().Revivals)
			close(durable.proceed)
			require.NoError(t, <-got)

			require.NoError(t, item.Data.Values.Set("n", 2))
			err = pa.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
			if before {
				require.ErrorIs(t, err, provider.ErrLockLost, "the code before: A's holder fenced by B's second revival")
				require.EqualValues(t, 1, b.Stats().Revivals)
				return
			}
			require.NoError(t, err, "A's holder, whose lock was taken after the loss, is not fenced")
			require.Zero(t, b.Stats().Revivals, "B served A's revival")
			h, err := record.Parse(durable.value)
			require.NoError(t, err)
			require.EqualValues(t, 1, record.Epoch(h.Seq), "one revival: one new epoch")
		})
	}
}

// A holder of a lock in the cache's record commits after another server's
// revival claimed the durable copy (a newer epoch) and before that
// revival put its record in the cache: the commit is refused by the
// durable tier (its lineage lost), and the durable copy must not be
// revived again over the cache at once: the claiming server's record
// arrives within round trips, and a second revival installed over it
// would fence its holders for nothing (the code before, staleAtOnce,
// revives: a third epoch). Only when the refusals last goneBackAfter (the
// claiming revival failed half-way: here nobody installs its record, and
// the clock steps) is the durable copy revived over the cache.
func TestStaleWriteWaitsForTheRevival(t *testing.T) {
	for _, tc := range []struct {
		name            string
		before, nobody  bool
		revivals, epoch uint64
	}{
		{"the claiming revival installs", false, false, 0, 2},
		{"code-before", true, false, 1, 3},
		{"nobody installs", false, true, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			durable := &seqDurable{}
			cache, a, _, pa, _, id, key := twoServers(t, durable)
			a.hooks.staleAtOnce = tc.before
			require.NoError(t, cache.Delete(ctx, key), "the cache loses the session")
			item, err := pa.GetItemExclusive(ctx, id) // revived (epoch 1), locked
			require.NoError(t, err)

			// Another server's revival claims the durable copy (epoch
			// 2); its record is not in the cache yet.
			claimed, err := record.Revive(durable.value)
			require.NoError(t, err)
			_, err = durable.Claim(ctx, key, claimed, durable.cas, time.Minute)
			require.NoError(t, err)

			require.NoError(t, item.Data.Values.Set("n", 2))
			if tc.nobody {
				a.now = steppingClock(100 * time.Millisecond) // the refusals last goneBackAfter
			}
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err = pa.SetAndReleaseItemExclusive(cctx, id, item.Data, item.LockID, false)
			cancel()
			require.Error(t, err, "the lost lineage's commit is not applied")
			require.Equal(t, tc.revivals, a.Stats().Revivals-1, "revivals after the first")
			h, err := record.Parse(durable.value)
			require.NoError(t, err)
			require.Equal(t, tc.epoch, record.Epoch(h.Seq))
			if tc.revivals > 0 {
				return
			}
			// The claiming server's record arrives: the holder's lock is
			// lost (nothing of its commit written), and the session is
			// served at the claimed epoch.
			cur, err := cache.Get(ctx, key)
			require.NoError(t, err)
			_, err = cache.CompareAndSwap(ctx, key, claimed, cur.CAS, time.Minute)
			require.NoError(t, err)
			err = pa.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
			require.ErrorIs(t, err, provider.ErrLockLost)
			got, err := pa.GetItemExclusive(ctx, id)
			require.NoError(t, err)
			n, _, err := session.Get[int](got.Data.Values, "n")
			require.NoError(t, err)
			require.Equal(t, 1, n, "the refused commit is not live")
		})
	}
}

// splitAddCache is a cache whose next Add, once armed, stores put (this
// Add's record when nil) and answers provider.ErrOutcomeUnknown, as
// memcached's BackupOn answers an Add whose two copies split (two
// servers' revivals crossing, each taking one copy first) after bringing
// the copies to one of the two records.
type splitAddCache struct {
	provider.Store
	armed bool
	put   []byte
}

func (c *splitAddCache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if !c.armed {
		return c.Store.Add(ctx, key, value, ttl)
	}
	c.armed = false
	put := c.put
	if put == nil {
		put = value
	}
	if _, err := c.Store.Add(ctx, key, put, ttl); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("split add, copies settled: %w", provider.ErrOutcomeUnknown)
}

// A revival's cache Add of unknown outcome reads what the cache holds, as
// after ErrExists: its own record (served), or another's of an older
// epoch (replaced by the revived record). The code before
// (unknownAddFails) failed the Get although the cache held a record
// (rv-d4b MJ1: two servers' revivals over a BackupOn cache whose Adds
// crossed).
func TestRevivalOverUnknownCacheAdd(t *testing.T) {
	for _, tc := range []struct {
		name         string
		other, broke bool
	}{
		{"own-record", false, false},
		{"older-record", true, false},
		{"code-before", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cache := &splitAddCache{Store: memstore.New(memstore.Config{})}
			s, err := New(Config{Cache: cache, Durable: &seqDurable{}})
			require.NoError(t, err)
			s.hooks.unknownAddFails = tc.broke
			p, err := provider.New(s, provider.Config{})
			require.NoError(t, err)
			id, err := session.NewID()
			require.NoError(t, err)
			require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(time.Minute), 0, true))
			key, err := p.Key(id)
			require.NoError(t, err)
			old, err := cache.Store.Get(ctx, key)
			require.NoError(t, err)
			require.NoError(t, cache.Store.Delete(ctx, key)) // the cache lost it

			cache.armed = true
			if tc.other {
				cache.put = old.Value // another server's record, of the epoch before
			}
			e, err := s.Get(ctx, key)
			if tc.broke {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the revival failed")
				return
			}
			require.NoError(t, err)
			h, err := record.Parse(e.Value)
			require.NoError(t, err)
			require.EqualValues(t, 1, record.Epoch(h.Seq), "the revived record, one epoch on")
			cur, err := cache.Store.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, e.Value, cur.Value, "the cache holds the record served")
			_, err = p.GetItemExclusive(ctx, id)
			require.NoError(t, err, "the session loads")
		})
	}
}
