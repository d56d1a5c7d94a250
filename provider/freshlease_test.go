package provider_test

import (
	"context"
	"errors"
	"fmt"
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

// scriptedStore runs each CompareAndSwap and Add through script, with
// its ordinal from 1: step says whether the write is applied, how long
// its reply then takes (time passes in the synctest bubble; a context
// that ends first loses the reply: ErrOutcomeUnknown if it was applied),
// and what it answers instead of the store's own answer (nil: the
// store's). It hides the memory store's OutcomeReader, so a write
// reported unknown stays unknown.
type scriptedStore struct {
	provider.Store
	writes atomic.Int64
	script func(n int64) step
}

// step is what scriptedStore does with one write.
type step struct {
	skip   bool          // not applied
	delay  time.Duration // before the reply
	answer error         // instead of the store's answer
	then   func()        // runs once the write is applied, before the delay
}

func (s *scriptedStore) write(ctx context.Context, do func() (uint64, error)) (uint64, error) {
	st := step{}
	if s.script != nil {
		st = s.script(s.writes.Add(1))
	}
	var cas uint64
	var err error
	if !st.skip {
		cas, err = do()
	}
	if st.then != nil {
		st.then()
	}
	if st.delay > 0 {
		t := time.NewTimer(st.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			if st.skip {
				return 0, fmt.Errorf("test: not sent: %w", provider.ErrUnavailable)
			}
			return 0, fmt.Errorf("test: reply lost (%w): %w", ctx.Err(), provider.ErrOutcomeUnknown)
		}
	}
	if st.answer != nil {
		return 0, st.answer
	}
	return cas, err
}

func (s *scriptedStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return s.write(ctx, func() (uint64, error) { return s.Store.CompareAndSwap(ctx, key, value, cas, ttl) })
}

func (s *scriptedStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return s.write(ctx, func() (uint64, error) { return s.Store.Add(ctx, key, value, ttl) })
}

const scriptLease = 3 * time.Second

// slowStep is an acquisition applied at once whose reply comes after
// 0.6 leases: GetItemExclusive renews its lease (freshLease).
var slowStep = step{delay: scriptLease * 6 / 10}

// scripted returns a provider over a scriptedStore of a memory store,
// another provider straight over the memory store (other servers), and
// an uninitialized session (CreateUninitializedItem: the first exclusive
// acquisition is handed InitializeItem). The script starts after the
// session was created.
func scripted(t *testing.T, wrap func(*provider.Provider) *provider.Provider, script func(n int64) step) (p, other *provider.Provider, st *scriptedStore, id string) {
	t.Helper()
	mem := memstore.New(memstore.Config{SweepInterval: -1})
	t.Cleanup(func() { mem.Close() })
	st = &scriptedStore{Store: mem}
	var err error
	p, err = provider.New(st, provider.Config{Lease: scriptLease})
	require.NoError(t, err)
	p = wrap(p)
	other, err = provider.New(mem, provider.Config{Lease: scriptLease})
	require.NoError(t, err)
	id, err = session.NewID()
	require.NoError(t, err)
	require.NoError(t, other.CreateUninitializedItem(context.Background(), id, 0))
	st.script = script
	return p, other, st, id
}

func unwrapped(p *provider.Provider) *provider.Provider { return p }

// requireFree asserts that another server takes the lock at once (no
// LockedError: nobody has to wait a lease) and is handed InitializeItem
// (the failed acquisition put it back).
func requireFree(t *testing.T, other *provider.Provider, id string) {
	t.Helper()
	item, err := other.GetItemExclusive(context.Background(), id)
	require.NoError(t, err, "the failed acquisition left its lock behind")
	require.Equal(t, session.InitializeItem, item.Actions, "the InitializeItem flag the failed acquisition took is lost")
	require.NoError(t, other.ReleaseItemExclusive(context.Background(), id, item.LockID))
}

// TestFailedFreshLeaseReleasesLock: a slow acquisition whose renewal
// fails with something other than ErrLockLost does not hand out the
// lock, and releases it (InitializeItem put back) so that the next
// request takes it at once; the error says truthfully what is left: a
// renewal of unknown outcome whose lock was released is no longer
// unknown; a release that failed leaves the lock (and says so), and its
// unknown outcome stays unknown. Never ErrLockLost. KeepLock (the
// provider before abandon) left the lock behind:
// TestKeepLockLeavesLockBehind.
func TestFailedFreshLeaseReleasesLock(t *testing.T) {
	unavailable := fmt.Errorf("test: node down: %w", provider.ErrUnavailable)
	unknown := fmt.Errorf("test: connection reset: %w", provider.ErrOutcomeUnknown)
	server := fmt.Errorf("test: SERVER_ERROR out of memory: %w", provider.ErrServer)
	for _, c := range []struct {
		name    string
		renewal step // the second write
		release step // the third
		want    []error
		notWant []error
		free    bool // the lock is gone (and the flag back)
	}{
		{name: "renewal-unavailable", renewal: step{skip: true, answer: unavailable},
			want: []error{provider.ErrUnavailable}, notWant: []error{provider.ErrOutcomeUnknown}, free: true},
		{name: "renewal-unknown-landed", renewal: step{answer: unknown},
			want: []error{provider.ErrUnavailable}, notWant: []error{provider.ErrOutcomeUnknown}, free: true},
		{name: "renewal-unknown-dropped", renewal: step{skip: true, answer: unknown},
			want: []error{provider.ErrUnavailable}, notWant: []error{provider.ErrOutcomeUnknown}, free: true},
		{name: "renewal-server-error", renewal: step{skip: true, answer: server},
			want: []error{provider.ErrServer}, notWant: []error{provider.ErrOutcomeUnknown}, free: true},
		{name: "release-fails-too", renewal: step{answer: unknown}, release: step{skip: true, answer: unavailable},
			want: []error{provider.ErrOutcomeUnknown, provider.ErrUnavailable}},
		{name: "release-unknown-landed", renewal: step{skip: true, answer: unavailable}, release: step{answer: unknown},
			want: []error{provider.ErrOutcomeUnknown, provider.ErrUnavailable}, free: true},
		{name: "release-unknown-dropped", renewal: step{skip: true, answer: unavailable}, release: step{skip: true, answer: unknown},
			want: []error{provider.ErrOutcomeUnknown, provider.ErrUnavailable}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, other, st, id := scripted(t, unwrapped, func(n int64) step {
					return [...]step{{}, slowStep, c.renewal, c.release}[min(n, 3)]
				})
				item, err := p.GetItemExclusive(context.Background(), id)
				require.Error(t, err)
				require.Nil(t, item)
				t.Log(err)
				for _, w := range c.want {
					require.ErrorIs(t, err, w)
				}
				for _, w := range append(c.notWant, provider.ErrLockLost) {
					require.NotErrorIs(t, err, w)
				}
				require.Equal(t, int64(3), st.writes.Load(), "acquisition, renewal, release")
				if c.free {
					requireFree(t, other, id)
					return
				}
				_, err = other.GetItemExclusive(context.Background(), id)
				var locked *provider.LockedError
				require.ErrorAs(t, err, &locked, "the release did not land: the lock stays until it is broken")
			})
		})
	}
}

// TestKeepLockLeavesLockBehind: the broken variant KeepLock (the
// provider before abandon) leaves the lock of an acquisition whose
// renewal failed in the store: the next request finds it locked, and
// would wait a lease for a lock nobody holds.
func TestKeepLockLeavesLockBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, other, _, id := scripted(t, provider.KeepLock, func(n int64) step {
			return [...]step{{}, slowStep, {skip: true, answer: provider.ErrUnavailable}, {}}[min(n, 3)]
		})
		_, err := p.GetItemExclusive(context.Background(), id)
		require.ErrorIs(t, err, provider.ErrUnavailable)
		_, err = other.GetItemExclusive(context.Background(), id)
		var locked *provider.LockedError
		require.ErrorAs(t, err, &locked)
	})
}

// TestSlowRenewalsBounded: when every write is slow (0.6 leases), one
// GetItemExclusive makes one acquisition and MaxFreshRenewals renewals,
// then gives up with ErrUnavailable and releases the lock (the release
// is bounded by a third of a lease: its reply does not come in time, so
// its outcome is reported unknown, though it landed: the next request
// takes the lock at once). With a context deadline, the call ends at the
// deadline (a renewal's reply lost), plus the release's bound.
func TestSlowRenewalsBounded(t *testing.T) {
	slow := func(int64) step { return slowStep }
	t.Run("renewals", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, other, st, id := scripted(t, unwrapped, slow)
			start := time.Now()
			_, err := p.GetItemExclusive(context.Background(), id)
			elapsed := time.Since(start)
			t.Log(err)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the release's reply did not come: its outcome is unknown")
			require.NotErrorIs(t, err, provider.ErrLockLost)
			require.Equal(t, int64(1+provider.MaxFreshRenewals+1), st.writes.Load(), "acquisition, renewals, release")
			require.Equal(t, time.Duration(1+provider.MaxFreshRenewals)*slowStep.delay+scriptLease/3, elapsed)
			requireFree(t, other, id)
		})
	})
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, other, st, id := scripted(t, unwrapped, slow)
			ctx, cancel := context.WithTimeout(context.Background(), scriptLease)
			defer cancel()
			start := time.Now()
			_, err := p.GetItemExclusive(ctx, id)
			elapsed := time.Since(start)
			t.Log(err)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.NotErrorIs(t, err, provider.ErrLockLost)
			require.Equal(t, int64(3), st.writes.Load(), "acquisition, renewal, release")
			require.Equal(t, scriptLease+scriptLease/3, elapsed, "the deadline, and the release's bound")
			requireFree(t, other, id)
		})
	})
}

// breakDuring is a script whose acquisitions that are writes brk picks,
// slow, are broken by other (BreakLock with the stamp a LockedError
// reports) while their reply is on its way, and meanwhile does extra (if
// not nil); nobody takes the lock.
func breakDuring(t *testing.T, other **provider.Provider, id *string, brk func(n int64) bool, extra func()) func(n int64) step {
	return func(n int64) step {
		if !brk(n) {
			return step{}
		}
		s := slowStep
		s.then = func() {
			ctx := context.Background()
			_, err := (*other).GetItemExclusive(ctx, *id)
			var locked *provider.LockedError
			require.ErrorAs(t, err, &locked)
			require.NoError(t, (*other).BreakLock(ctx, *id, locked.Stamp))
			if extra != nil {
				extra()
			}
		}
		return s
	}
}

// TestInitializeItemCarriedOver: an acquisition takes the InitializeItem
// flag of an uninitialized session, and its lock is broken before it
// returns; GetItemExclusive decides again and takes the lock again: the
// caller must still be told to initialize the session. Against NoCarry
// (the provider before carried) the flag was lost: nobody was told. A
// lock-free write of the data meanwhile means the session was used: the
// flag is not carried over to it.
func TestInitializeItemCarriedOver(t *testing.T) {
	for _, c := range []struct {
		name     string
		wrap     func(*provider.Provider) *provider.Provider
		dataSeen bool // a lock-free commit during the acquisition
		want     session.ActionFlags
	}{
		{name: "carried", wrap: unwrapped, want: session.InitializeItem},
		{name: "NoCarry-loses-it", wrap: provider.NoCarry, want: 0},
		{name: "data-written-meanwhile", wrap: unwrapped, dataSeen: true, want: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var other *provider.Provider
				var id string
				var extra func()
				if c.dataSeen {
					extra = func() {
						free := other.LockFree()
						d := free.CreateNewStoreData(0)
						require.NoError(t, d.Values.Set("k", "v"))
						require.NoError(t, free.SetAndReleaseItemExclusive(context.Background(), id, d, 0, false))
					}
				}
				p, o, st, i := scripted(t, c.wrap, nil)
				other, id = o, i
				st.script = breakDuring(t, &other, &id, func(n int64) bool { return n == 1 }, extra)
				item, err := p.GetItemExclusive(context.Background(), id)
				require.NoError(t, err)
				require.Equal(t, c.want, item.Actions)
				require.Equal(t, int64(3), st.writes.Load(), "acquisition, renewal (lock lost), acquisition")
				if c.dataSeen {
					require.True(t, item.Data.Values.Has("k"), "the lock-free write is kept")
				}
			})
		})
	}
}

// TestLostAcquisitionsBounded: every acquisition is slow and broken
// before it returns (nobody takes the lock): GetItemExclusive decides
// again after each renewal that finds its lock lost, until its
// MaxFreshRenewals renewals are spent; the last acquisition is then
// released (here it was broken already) and the call answers
// ErrUnavailable, never ErrLockLost (its acquisitions did write). It
// answered ErrLockLost after three lost ones before.
func TestLostAcquisitionsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var other *provider.Provider
		var id string
		p, o, st, i := scripted(t, unwrapped, nil)
		other, id = o, i
		acquisitions := int64(1 + provider.MaxFreshRenewals)
		st.script = breakDuring(t, &other, &id, func(n int64) bool { return n%2 == 1 && n <= 2*acquisitions }, nil)
		_, err := p.GetItemExclusive(context.Background(), id)
		t.Log(err)
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.NotErrorIs(t, err, provider.ErrLockLost)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
		require.Equal(t, 2*acquisitions, st.writes.Load(), "acquisitions each with a renewal that found it lost, the last with a release")
		_, err = other.GetItemExclusive(context.Background(), id)
		require.NoError(t, err)
	})
}
