package provider_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// lateReturnStore applies every CompareAndSwap at once; while held, the
// next one that succeeds returns only when released (a store that
// reports a write it made long ago: the memcached witness scheme's write
// failover after a copy that ran the write but whose reply was held by a
// partition). writes counts the CompareAndSwap calls.
type lateReturnStore struct {
	provider.Store
	mu     sync.Mutex
	hold   chan struct{} // non-nil: the next stored write waits for it
	landed chan struct{} // closed when that write was applied
	writes atomic.Int64
}

func (s *lateReturnStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	s.writes.Add(1)
	out, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	s.mu.Lock()
	hold, landed := s.hold, s.landed
	if err == nil {
		s.hold = nil
	}
	s.mu.Unlock()
	if hold != nil && err == nil {
		close(landed)
		<-hold
	}
	return out, err
}

// lateAcquisition runs the partition run's two holders: slow takes the
// lock of a session with a write that lands at once but returns after
// 1.5 leases, while waiter waits for that lock (AcquireItem), breaks it
// after a lease and takes it. It returns slow's GetItemExclusive's
// outcome and waiter's lock.
func lateAcquisition(t *testing.T, wrap func(*provider.Provider) *provider.Provider) (slowItem *provider.Item, slowErr error, waiterItem *provider.Item) {
	const lease = 3 * time.Second
	ctx := context.Background()
	mem := memstore.New(memstore.Config{SweepInterval: -1})
	t.Cleanup(func() { mem.Close() })
	late := &lateReturnStore{Store: mem}
	slow, err := provider.New(late, provider.Config{Lease: lease})
	require.NoError(t, err)
	slow = wrap(slow)
	waiter, err := provider.New(mem, provider.Config{Lease: lease})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, waiter.SetAndReleaseItemExclusive(ctx, id, waiter.CreateNewStoreData(0), 0, true))

	hold, landed := make(chan struct{}), make(chan struct{})
	late.mu.Lock()
	late.hold, late.landed = hold, landed
	late.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		slowItem, slowErr = slow.GetItemExclusive(ctx, id)
	}()
	<-landed
	start := time.Now()
	waiterItem, err = waiter.AcquireItem(ctx, id)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), lease, "the waiter broke the lock before a lease")
	time.Sleep(lease / 2) // the slow write's reply comes 1.5 leases after it landed
	close(hold)
	<-done
	return slowItem, slowErr, waiterItem
}

// TestSlowAcquisitionNotHandedOutBroken: an acquisition whose write
// landed at once but returned only after the lock could be broken (here
// 1.5 leases later; in the real-process partition run, a store call that
// failed a silent copy over while the lock was already visible) must not
// hand out the lock: the waiter that broke it holds it. Before freshLease
// the slow request began its handler while the waiter's ran, and was
// fenced only at its commit (the harness's "two holders").
func TestSlowAcquisitionNotHandedOutBroken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slowItem, slowErr, waiterItem := lateAcquisition(t, func(p *provider.Provider) *provider.Provider { return p })
		var locked *provider.LockedError
		require.Error(t, slowErr, "a lock broken before its acquisition returned was handed out (two holders)")
		require.Nil(t, slowItem)
		require.True(t, errors.As(slowErr, &locked), "want the waiter's lock reported: %v", slowErr)
		require.Equal(t, waiterItem.LockID, locked.LockID)
	})
}

// TestNoFreshLeaseHasTwoHolders: the broken variant NoFreshLease (the
// provider before freshLease) hands out the broken lock, and its holder is
// fenced only at its commit.
func TestNoFreshLeaseHasTwoHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slowItem, slowErr, waiterItem := lateAcquisition(t, provider.NoFreshLease)
		require.NoError(t, slowErr)
		require.NotNil(t, slowItem)
		require.NotEqual(t, waiterItem.LockID, slowItem.LockID)
		t.Logf("two holders: lock %d (broken, handed out late) and lock %d (the waiter's)", slowItem.LockID, waiterItem.LockID)
	})
}

// TestFastAcquisitionNotRenewed: an acquisition that returns in time
// costs one write, no renewal.
func TestFastAcquisitionNotRenewed(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Config{SweepInterval: -1})
	defer mem.Close()
	counted := &lateReturnStore{Store: mem}
	p, err := provider.New(counted, provider.Config{Lease: time.Minute})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	before := counted.writes.Load()
	_, err = p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.Equal(t, int64(1), counted.writes.Load()-before)
}
