package provider_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// lockFreeWrites commits a lock-free write to session id through free (a
// provider in lock-free mode) every half lease until stop is closed, and
// then closes done. Errors are reported with t.Errorf.
func lockFreeWrites(t *testing.T, free *provider.Provider, id string, lease time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ctx := context.Background()
	tick := time.NewTicker(lease / 2)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		item, err := free.GetItemExclusive(ctx, id)
		if err != nil {
			t.Errorf("lock-free read %d: %v", n, err)
			return
		}
		if err := item.Data.Values.Set("free", n); err != nil {
			t.Errorf("lock-free write %d: %v", n, err)
			return
		}
		if err := free.SetAndReleaseItemExclusive(ctx, id, item.Data, 0, false); err != nil {
			t.Errorf("lock-free write %d: %v", n, err)
			return
		}
	}
}

// threeApps returns the providers of three app servers sharing one
// memstore, with leases of lease: two that lock (holder, waiting) and one
// in lock-free mode (free).
func threeApps(t *testing.T, lease time.Duration) (holder, waiting, free *provider.Provider) {
	t.Helper()
	mem := memstore.New(memstore.Config{SweepInterval: -1})
	t.Cleanup(func() { mem.Close() })
	app := func() *provider.Provider {
		p, err := provider.New(mem, provider.Config{Lease: lease})
		require.NoError(t, err)
		return p
	}
	return app(), app(), app().LockFree()
}

// TestLockFreeWritesDoNotKeepAbandonedLock: a lock whose holder vanished
// (a crashed app server) is broken within a lease of the waiter's first
// look although lock-free writes land on the session every half lease.
// Lock-free commits bump the record's Seq; a stamp that followed Seq
// restarted every waiter's lease at each of them, so the lock was never
// broken (the waiter timed out). Only lock changes may move the stamp
// (docs/protocol.md, "Leases, takeover").
func TestLockFreeWritesDoNotKeepAbandonedLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 3 * time.Second
		ctx := context.Background()
		dead, waiting, free := threeApps(t, lease)
		id, held := lockedSession(t, dead) // and dead renews and releases nothing

		stop, done := make(chan struct{}), make(chan struct{})
		go lockFreeWrites(t, free, id, lease, stop, done)

		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 5*lease) // the old code waited until this ended
		item, err := waiting.AcquireItem(wctx, id)
		cancel()
		waited := time.Since(start)
		close(stop)
		<-done
		require.NoError(t, err, "the abandoned lock was not broken in %v (lease %v) under lock-free writes every half lease", waited, lease)
		require.LessOrEqual(t, waited, lease+lease/2, "the abandoned lock was broken only after %v (lease %v)", waited, lease)
		require.Greater(t, item.LockID, held.LockID)
		require.EqualValues(t, 1, waiting.WaitStats().Expirations)
		var n int
		ok, err := item.Data.Values.Get("free", &n)
		require.NoError(t, err)
		require.True(t, ok && n >= 1, "the lock-free writes before the takeover were kept")

		require.ErrorIs(t, dead.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false), provider.ErrLockLost, "the vanished holder is fenced")
		require.NoError(t, waiting.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false))
	})
}

// TestRenewingHolderKeepsLockUnderLockFreeWrites is the other side of the
// stamp: a holder that renews its lease keeps its lock for many leases
// while lock-free writes land every half lease and a waiter waits (I1); a
// stamp that ignored renewals would let the waiter break it.
func TestRenewingHolderKeepsLockUnderLockFreeWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 3 * time.Second
		ctx := context.Background()
		holder, waiting, free := threeApps(t, lease)
		id, held := lockedSession(t, holder)
		kept := holder.KeepLease(ctx, id, held.LockID)
		defer kept.Stop()

		stop, done := make(chan struct{}), make(chan struct{})
		go lockFreeWrites(t, free, id, lease, stop, done)
		defer func() { <-done }()
		defer close(stop)
		type result struct {
			item *provider.Item
			err  error
		}
		got := make(chan result, 1)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel() // on failure, so that the bubble ends
		go func() {
			item, err := waiting.AcquireItem(wctx, id)
			got <- result{item, err}
		}()

		time.Sleep(6 * lease) // the fake clock: twelve lock-free writes, eighteen renewals
		synctest.Wait()
		select {
		case r := <-got:
			t.Fatalf("the waiter's wait for the lock of a renewing holder ended (lock taken: %t, err %v)", r.item != nil, r.err)
		case <-kept.Lost():
			t.Fatal("the renewing holder's lease was reported lost")
		default:
		}
		require.GreaterOrEqual(t, kept.Renewals(), int64(17))
		kept.Stop()
		require.NoError(t, holder.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false), "the renewing holder still holds its lock")
		r := <-got
		require.NoError(t, r.err)
		require.Greater(t, r.item.LockID, held.LockID, "the waiter's lock is a new one")
		require.Zero(t, waiting.WaitStats().Expirations)
		require.NoError(t, waiting.ReleaseItemExclusive(ctx, id, r.item.LockID))
	})
}
