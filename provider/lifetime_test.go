package provider_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestLifetimeUnderContinuousUse: a session with a 1-hour lifetime and a
// 20-minute timeout, used every minute by exclusive and read-only
// requests, is found at every request before its lifetime ends and at
// none after: activity never extends it. Under synctest the store's and
// the provider's clocks are the same fake clock, so expiry is exact. On
// the provider before lifetimes (each TTL the own timeout) the session
// would live on as long as it is used.
func TestLifetimeUnderContinuousUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := memstore.New(memstore.Config{SweepInterval: -1})
		defer store.Close()
		const lifetime = time.Hour
		p, err := provider.New(store, provider.Config{DefaultTimeout: 20 * time.Minute, Lifetime: lifetime})
		require.NoError(t, err)
		start := time.Now()
		id, err := session.NewID()
		require.NoError(t, err)
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
		key, err := p.Key(id)
		require.NoError(t, err)
		for i := 0; ; i++ {
			elapsed := time.Since(start)
			var err error
			if i%2 == 0 {
				var it *provider.Item
				if it, err = p.AcquireItem(ctx, id); err == nil {
					require.Equal(t, start.Add(lifetime), it.Deadline)
					_ = it.Data.Values.Set("n", i)
					err = p.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false)
				}
			} else {
				_, err = p.GetItem(ctx, id)
			}
			if elapsed < lifetime {
				require.NoError(t, err, "at %v", elapsed)
				ttl, err := store.TTL(ctx, key)
				require.NoError(t, err)
				require.LessOrEqual(t, ttl, lifetime-elapsed, "the TTL never reaches past the lifetime")
			} else {
				require.ErrorIs(t, err, provider.ErrNotFound, "at %v", elapsed)
				_, err := store.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound, "the store has dropped it too")
				break
			}
			time.Sleep(time.Minute) // the fake clock: one request a minute
		}
	})
}

// TestLifetimeClockSkew: the remaining lifetime is read on each server's
// clock. A server whose clock is ahead by d ends the session d early; one
// behind by d keeps it at most d longer. Locks are unaffected: a server
// with a clock years off takes and releases locks as any other.
func TestLifetimeClockSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := memstore.New(memstore.Config{SweepInterval: -1})
		defer store.Close()
		skewed := func(d time.Duration) *provider.Provider {
			p, err := provider.New(store, provider.Config{DefaultTimeout: 2 * time.Hour, Lifetime: time.Hour,
				Now: func() time.Time { return time.Now().Add(d) }})
			require.NoError(t, err)
			return p
		}
		a, ahead, behind := skewed(0), skewed(5*time.Minute), skewed(-5*time.Minute)
		id, err := session.NewID()
		require.NoError(t, err)
		require.NoError(t, a.SetAndReleaseItemExclusive(ctx, id, a.CreateNewStoreData(0), 0, true))
		key, _ := a.Key(id)
		time.Sleep(56 * time.Minute)
		_, err = a.GetItem(ctx, id)
		require.NoError(t, err)
		it, err := behind.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, behind.ReleaseItemExclusive(ctx, id, it.LockID))
		ttl, err := store.TTL(ctx, key)
		require.NoError(t, err)
		require.Equal(t, 9*time.Minute, ttl, "a clock 5 min behind gives 9 min instead of 4")
		_, err = ahead.GetItem(ctx, id)
		require.ErrorIs(t, err, provider.ErrNotFound, "a clock 5 min ahead sees the session 61 min old")
		_, err = a.GetItem(ctx, id)
		require.ErrorIs(t, err, provider.ErrNotFound, "its read left a tombstone: the session has ended for every server")

		// Locks never read the clock: a server a year ahead, with no
		// lifetime, locks, is fenced and takes over as usual.
		far, err := provider.New(store, provider.Config{Now: func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }})
		require.NoError(t, err)
		id2, err := session.NewID()
		require.NoError(t, err)
		require.NoError(t, a.SetAndReleaseItemExclusive(ctx, id2, a.CreateNewStoreData(0), 0, true))
		h, err := far.GetItemExclusive(ctx, id2)
		require.NoError(t, err)
		_, err = a.GetItemExclusive(ctx, id2)
		require.ErrorIs(t, err, provider.ErrLocked)
		require.NoError(t, far.ReleaseItemExclusive(ctx, id2, h.LockID))
		h2, err := a.GetItemExclusive(ctx, id2)
		require.NoError(t, err)
		require.ErrorIs(t, far.ReleaseItemExclusive(ctx, id2, h.LockID), provider.ErrLockLost)
		require.NoError(t, a.ReleaseItemExclusive(ctx, id2, h2.LockID))
	})
}

// TestLifetimeUpgradesOldRecords: a session stored without a creation
// time (format version 1) gets one at its first write under a Lifetime,
// and its lifetime counts from there.
func TestLifetimeUpgradesOldRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := memstore.New(memstore.Config{SweepInterval: -1})
		defer store.Close()
		old, err := provider.New(store, provider.Config{})
		require.NoError(t, err)
		id, err := session.NewID()
		require.NoError(t, err)
		require.NoError(t, old.SetAndReleaseItemExclusive(ctx, id, old.CreateNewStoreData(0), 0, true))
		key, _ := old.Key(id)
		e, err := store.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, record.Prefix, string(e.Value[:3]), "no lifetime: the record is version 1 as before")

		time.Sleep(10 * time.Minute)
		p, err := provider.New(store, provider.Config{Lifetime: time.Hour})
		require.NoError(t, err)
		it, err := p.GetItem(ctx, id)
		require.NoError(t, err)
		require.True(t, it.Deadline.IsZero(), "no creation time stored yet")
		it, err = p.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, it.LockID))
		e, err = store.Get(ctx, key)
		require.NoError(t, err)
		r, err := record.Decode(e.Value)
		require.NoError(t, err)
		require.Equal(t, time.Now(), r.Created, "stamped at its first write")
		require.Equal(t, record.PrefixV2, string(e.Value[:3]))
	})
}

// TestHashIDs: with HashIDs the key is the prefix and the SHA-256 of the
// id in lower-case base32 (52 characters of [a-z2-7]); it never contains
// the id. The key log of the conformance suite's second pass catches a
// provider that stores plain ids.
func TestHashIDs(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Config{})
	defer store.Close()
	id, err := session.NewID()
	require.NoError(t, err)
	for _, app := range []string{"", "shop"} {
		p, err := provider.New(store, provider.Config{HashIDs: true, App: app})
		require.NoError(t, err)
		key, err := p.Key(id)
		require.NoError(t, err)
		require.NotContains(t, key, id)
		prefix := "sl:"
		if app != "" {
			prefix += app + ":"
		}
		require.True(t, strings.HasPrefix(key, prefix), key)
		h := strings.TrimPrefix(key, prefix)
		require.Len(t, h, provider.HashedIDLen)
		require.Equal(t, strings.Trim(h, "abcdefghijklmnopqrstuvwxyz234567"), "", "lower-case base32")
		again, _ := p.Key(id)
		require.Equal(t, key, again, "stable")
		require.LessOrEqual(t, len("bak:")+provider.MaxKeyPrefixLen+1+provider.HashedIDLen, 250, "within memcached's key limit")
	}
	for _, hashed := range []bool{false, true} {
		log := &providertest.KeyLog{Store: store}
		p, err := provider.New(log.Wrap(), provider.Config{HashIDs: hashed})
		require.NoError(t, err)
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
		if hashed {
			require.NoError(t, log.CheckHashed())
		} else {
			require.Error(t, log.CheckHashed(), "the key log catches plain ids")
		}
	}
}

// TestErrorsNeverCarryWholeIDs: the provider's errors name a session by
// the start of its id, never the whole id (a usable credential in a log).
func TestErrorsNeverCarryWholeIDs(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Config{})
	defer store.Close()
	p, err := provider.New(store, provider.Config{})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	var errs []error
	_, err = p.GetItem(ctx, id)
	errs = append(errs, err)
	require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	errs = append(errs, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	it, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	_, err = p.GetItemExclusive(ctx, id)
	errs = append(errs, err)
	errs = append(errs, p.ReleaseItemExclusive(ctx, id, it.LockID+1))
	require.NoError(t, p.ReleaseItemExclusive(ctx, id, it.LockID))
	errs = append(errs, p.ReleaseItemExclusive(ctx, id, it.LockID))
	key, _ := p.Key(id)
	_, err = store.CompareAndSwap(ctx, key, []byte("not a record"), mustCAS(t, store, key), time.Minute)
	require.NoError(t, err)
	_, err = p.GetItem(ctx, id)
	errs = append(errs, err)
	for _, err := range errs {
		require.Error(t, err)
		require.NotContains(t, err.Error(), id, "%v", err)
		if !errors.Is(err, provider.ErrLocked) { // a LockedError names no session
			require.Contains(t, err.Error(), id[:6], "the start of the id correlates log lines")
		}
	}
	require.True(t, errors.Is(errs[len(errs)-1], provider.ErrCorrupt))
}

func mustCAS(t *testing.T, s provider.Store, key string) uint64 {
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	return e.CAS
}
