package provider_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// gatedStore holds every CompareAndSwap while its gate is set.
type gatedStore struct {
	provider.Store
	mu   sync.Mutex
	gate chan struct{}
}

func (g *gatedStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return g.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

func (g *gatedStore) setGate(c chan struct{}) {
	g.mu.Lock()
	g.gate = c
	g.mu.Unlock()
}

// lockedSession creates a session and takes its lock with p.
func lockedSession(t *testing.T, p *provider.Provider) (string, *provider.Item) {
	t.Helper()
	ctx := context.Background()
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	return id, item
}

// TestLeaseRenewsUntilStopped: a lease renews its lock every third of a
// lease; Stop waits for a renewal in flight, and none follows it.
func TestLeaseRenewsUntilStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		mem := memstore.New(memstore.Config{SweepInterval: -1})
		defer mem.Close()
		store := &gatedStore{Store: mem}
		p, err := provider.New(store, provider.Config{Lease: 3 * time.Second})
		require.NoError(t, err)
		id, item := lockedSession(t, p)

		lease := p.KeepLease(ctx, id, item.LockID)
		time.Sleep(3*time.Second + time.Millisecond) // the fake clock: three renewals due
		synctest.Wait()
		require.EqualValues(t, 3, lease.Renewals())

		gate := make(chan struct{})
		store.setGate(gate)
		time.Sleep(time.Second) // the fourth renewal starts and is held in its write
		synctest.Wait()
		stopped := make(chan struct{})
		go func() {
			lease.Stop()
			close(stopped)
		}()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("Stop returned while a renewal was in flight")
		default:
		}
		store.setGate(nil)
		close(gate)
		<-stopped
		require.EqualValues(t, 4, lease.Renewals())

		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.EqualValues(t, 4, lease.Renewals(), "no renewal after Stop")
		select {
		case <-lease.Lost():
			t.Fatal("a stopped lease reported its lock lost")
		default:
		}
		lease.Stop() // again: a no-op
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	})
}

// TestLeaseLost: a renewal that finds the lock taken over closes Lost and
// renews no more.
func TestLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := memstore.New(memstore.Config{SweepInterval: -1})
		defer store.Close()
		p, err := provider.New(store, provider.Config{Lease: 3 * time.Second})
		require.NoError(t, err)
		id, item := lockedSession(t, p)
		lease := p.KeepLease(ctx, id, item.LockID)

		// The lock goes to another request behind the lease's back.
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
		other, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err)

		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		select {
		case <-lease.Lost():
		default:
			t.Fatal("the lease did not report its lock lost")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Zero(t, lease.Renewals())
		lease.Stop()
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, other.LockID), "the other request still holds its lock")
	})
}

// TestLeaseOff: with leases off, or lock-free, or no lock, KeepLease
// renews nothing and Stop returns at once.
func TestLeaseOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := memstore.New(memstore.Config{SweepInterval: -1})
		defer store.Close()
		p, err := provider.New(store, provider.Config{Lease: -1})
		require.NoError(t, err)
		id, item := lockedSession(t, p)
		lease := p.KeepLease(ctx, id, item.LockID)
		time.Sleep(5 * time.Minute) // many leases' worth, within the session's timeout
		synctest.Wait()
		require.Zero(t, lease.Renewals())
		lease.Stop()
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	})
}
