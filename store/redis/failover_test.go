package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

// failoverSessions asserts, one by one, the rows of the failover table in
// docs/backends.md that follow from every acknowledged write surviving a
// failover: I2, I3, I6 and I7. Each has a session whose last writes (the
// act) a failover that dropped them would turn into a violation of that
// invariant, seen through a provider of another process afterwards:
//
//	I2  locked (prepared), released (act): the release lost locks it again
//	I3  locked by a stalled holder (prepared), taken over (act): the
//	    takeover lost lets the stale holder's write in
//	I6  created uninitialized (prepared), InitializeItem handed out and
//	    the lock released (act): lost, the flag is handed out again
//	I7  created (prepared), locked and released (act): lost, the next
//	    lock gets the same lock id again
//
// TestClusterMasterFailover asserts no violation with WaitReplicas 1;
// TestStalledReplicaFailover/wait0 is the negative control, where each
// act is acknowledged and then lost, and every check reports it.
type failoverSessions struct {
	released, takenOver, initialized, relocked string
	stale                                      *provider.Item // the stalled holder's lock
	keys                                       []string       // the sessions' store keys
	releasedID                                 uint64         // the prepared lock on released
	relockedID                                 uint64         // the act's lock id on relocked
}

// leaseForTakeover is the lease of the stalled holder and of the request
// taking the lock over from it (which waits one lease of its own).
const leaseForTakeover = 300 * time.Millisecond

// newFailoverProviders returns providers over store: a with the default
// lease, stalled and taker with leaseForTakeover.
func newFailoverProviders(t *testing.T, store provider.Store) (a, stalled, taker *provider.Provider) {
	t.Helper()
	var err error
	a, err = provider.New(store, provider.Config{})
	require.NoError(t, err)
	stalled, err = provider.New(store, provider.Config{Lease: leaseForTakeover})
	require.NoError(t, err)
	taker, err = provider.New(store, provider.Config{Lease: leaseForTakeover})
	require.NoError(t, err)
	return a, stalled, taker
}

// prepareFailover creates the sessions through providers on store, each
// on a key for which where reports true (the master to be killed), and
// makes the writes that come before the act.
func prepareFailover(t *testing.T, store provider.Store, where func(key string) bool) *failoverSessions {
	t.Helper()
	ctx := context.Background()
	a, stalled, _ := newFailoverProviders(t, store)
	var keys []string
	newID := func(create func(id string) error) string {
		for range 200 {
			id, err := session.NewID()
			require.NoError(t, err)
			key, err := a.Key(id)
			require.NoError(t, err)
			if where(key) {
				require.NoError(t, create(id))
				keys = append(keys, key)
				return id
			}
		}
		t.Fatal("no session key on the wanted node in 200 tries")
		return ""
	}
	create := func(id string) error {
		return a.SetAndReleaseItemExclusive(ctx, id, a.CreateNewStoreData(0), 0, true)
	}
	f := &failoverSessions{
		released:    newID(create),
		takenOver:   newID(create),
		initialized: newID(func(id string) error { return a.CreateUninitializedItem(ctx, id, 0) }),
		relocked:    newID(create),
	}
	f.keys = keys
	item, err := a.GetItemExclusive(ctx, f.released)
	require.NoError(t, err)
	f.releasedID = item.LockID
	f.stale, err = stalled.GetItemExclusive(ctx, f.takenOver) // never renewed
	require.NoError(t, err)
	return f
}

// act makes the writes a failover must keep, through providers on store;
// each is acknowledged.
func (f *failoverSessions) act(t *testing.T, store provider.Store) {
	t.Helper()
	ctx := context.Background()
	a, _, taker := newFailoverProviders(t, store)
	// The holder of prepareFailover's lock releases it (what it checks is
	// the lock id in the store).
	require.NoError(t, a.ReleaseItemExclusive(ctx, f.released, f.releasedID))

	item, err := taker.AcquireItem(ctx, f.takenOver) // after one lease
	require.NoError(t, err)
	require.Greater(t, item.LockID, f.stale.LockID, "taken over")

	item, err = a.GetItemExclusive(ctx, f.initialized)
	require.NoError(t, err)
	require.NotZero(t, item.Actions&session.InitializeItem, "the first request is handed InitializeItem")
	require.NoError(t, a.ReleaseItemExclusive(ctx, f.initialized, item.LockID))

	item, err = a.GetItemExclusive(ctx, f.relocked)
	require.NoError(t, err)
	f.relockedID = item.LockID
	require.NoError(t, a.ReleaseItemExclusive(ctx, f.relocked, item.LockID))
}

// violations checks the sessions through a new provider on store (a
// process that has cached nothing) and returns one line per invariant
// violated.
func (f *failoverSessions) violations(t *testing.T, store provider.Store) []string {
	t.Helper()
	ctx := context.Background()
	p, err := provider.New(store, provider.Config{})
	require.NoError(t, err)
	var v []string
	if item, err := p.GetItemExclusive(ctx, f.released); errors.Is(err, provider.ErrLocked) {
		v = append(v, "I2: an acknowledged release was lost: the session is locked again")
	} else {
		require.NoError(t, err)
		require.NoError(t, p.ReleaseItemExclusive(ctx, f.released, item.LockID))
	}
	switch err := p.SetAndReleaseItemExclusive(ctx, f.takenOver, f.stale.Data, f.stale.LockID, false); {
	case err == nil:
		v = append(v, "I3: the holder whose lock was taken over (acknowledged) wrote: the takeover was lost")
	case !errors.Is(err, provider.ErrLockLost):
		require.NoError(t, err)
	}
	item, err := p.GetItemExclusive(ctx, f.initialized)
	require.NoError(t, err)
	if item.Actions&session.InitializeItem != 0 {
		v = append(v, "I6: InitializeItem handed out a second time: the acknowledged first request was lost")
	}
	// I7: lock ids take random steps (provider, nextLockID), so a lost
	// lock's id is reused only by chance; the record's lock id going back
	// below the acknowledged one is what lets a later lock repeat it.
	key, err := p.Key(f.relocked)
	require.NoError(t, err)
	e, err := store.Get(ctx, key)
	require.NoError(t, err)
	rec, err := record.Decode(e.Value)
	require.NoError(t, err)
	item, err = p.GetItemExclusive(ctx, f.relocked)
	require.NoError(t, err)
	if rec.LockID < f.relockedID || item.LockID <= f.relockedID {
		v = append(v, fmt.Sprintf("I7: lock id %d after the acknowledged lock id %d (the stored lock id went back to %d)", item.LockID, f.relockedID, rec.LockID))
	}
	return v
}
