package tieredtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/tiered"
)

func TestConformance(t *testing.T) {
	dsn := pg.NewDatabase(t)
	providertest.Run(t, providertest.Options{
		NewStore: func(t *testing.T) provider.Store {
			s, err := tiered.New(tiered.Config{Cache: memstore.New(memstore.Config{}), Durable: newDurable(t, dsn)})
			require.NoError(t, err)
			return s
		},
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := tiered.New(tiered.Config{})
	require.Error(t, err)
	_, err = tiered.New(tiered.Config{Cache: memstore.New(memstore.Config{}), Durable: &gatedDurable{}, RefreshBelow: 1.5})
	require.Error(t, err)
}

// createSession stores a new session holding n = 0 and returns its id.
func createSession(t testing.TB, p *provider.Provider, timeout time.Duration) string {
	t.Helper()
	id, err := session.NewID()
	require.NoError(t, err)
	d := p.CreateNewStoreData(timeout)
	require.NoError(t, d.Values.Set("n", 0))
	require.NoError(t, p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
	return id
}

// eventually polls cond until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// breakLock breaks the lock held on session id through p, as a waiter
// that found its holder dead does: with the stamp GetItemExclusive reports.
func breakLock(ctx context.Context, t testing.TB, p *provider.Provider, id string) {
	t.Helper()
	_, err := p.GetItemExclusive(ctx, id)
	var locked *provider.LockedError
	require.ErrorAs(t, err, &locked)
	require.NoError(t, p.BreakLock(ctx, id, locked.Stamp))
}

func counter(t testing.TB, p *provider.Provider, id string) int {
	t.Helper()
	item, err := p.ReadItem(context.Background(), id)
	require.NoError(t, err)
	n, ok, err := session.Get[int](item.Data.Values, "n")
	require.NoError(t, err)
	require.True(t, ok)
	return n
}

// Outcomes of one increment request.
type outcome int

const (
	acked       outcome = iota // committed and acknowledged
	refused                    // not committed: the lock was lost
	unavailable                // not committed: the store was unavailable before any write
	unknown                    // the commit's outcome is unknown (or it failed as unavailable): it may or may not have happened
)

// increment runs one exclusive request that adds 1 to n. Errors other than
// the expected ones (lock lost to a revival, unavailable while the cache
// restarts) fail t.
func increment(ctx context.Context, t testing.TB, p *provider.Provider, id string) outcome {
	item, err := p.AcquireItem(ctx, id)
	if errors.Is(err, provider.ErrUnavailable) {
		return unavailable
	}
	if errors.Is(err, provider.ErrOutcomeUnknown) {
		// The lock's write had an unknown outcome (BackupOn, two nodes:
		// a flushed primary leaves a whole write on the backup copy
		// only); nobody settles it (tiered forwards its cache's
		// provider.OutcomeReader, and BackupOn's reads do not settle).
		// No increment was made: the lock, if taken, is the lease's.
		return unknown
	}
	if errors.Is(err, provider.ErrCASConflict) {
		return refused
	}
	if err != nil {
		t.Errorf("AcquireItem: %v", err)
		return refused
	}
	n, _, err := session.Get[int](item.Data.Values, "n")
	if err != nil {
		t.Errorf("read n: %v", err)
		return refused
	}
	if err := item.Data.Values.Set("n", n+1); err != nil {
		t.Errorf("set n: %v", err)
		return refused
	}
	err = p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	switch {
	case err == nil:
		return acked
	case errors.Is(err, provider.ErrLockLost), errors.Is(err, provider.ErrCASConflict):
		return refused
	case errors.Is(err, provider.ErrUnavailable), errors.Is(err, provider.ErrOutcomeUnknown):
		return unknown
	default:
		t.Errorf("commit: %v", err)
		return refused
	}
}

// hammer runs workers that increment one session while lose() empties the
// cache after every few acknowledged increments, then checks that every
// acknowledged increment, and nothing else, is in the session and that
// its lock is free.
func hammer(t *testing.T, s *tiered.Store, lose func()) {
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id := createSession(t, p, time.Hour)

	const workers, each, losses = 4, 30, 12
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var nAcked, nRefused, nUnknown atomic.Int64
	progress := make(chan struct{}, workers*each)
	var wg sync.WaitGroup
	finished := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done, tries := 0, 0; done < each && tries < 50*each && ctx.Err() == nil; tries++ {
				switch increment(ctx, t, p, id) {
				case acked:
					done++
					nAcked.Add(1)
					progress <- struct{}{}
				case refused:
					nRefused.Add(1)
				case unavailable:
					tries-- // a restarting cache: retry until ctx ends
				case unknown:
					nUnknown.Add(1)
				}
			}
		}()
	}
	// Empty the cache after every few acknowledged increments: in the
	// middle of the traffic, whatever requests are doing at that moment.
	go func() {
		wg.Wait()
		close(finished)
	}()
	lost := 0
wait:
	for lost < losses {
		for i := 0; i < workers*each/(losses+1); i++ {
			select {
			case <-progress: // progress first, even when the workers are done
			default:
				select {
				case <-progress:
				case <-finished:
					break wait
				}
			}
		}
		lose()
		lost++
	}
	<-finished
	require.NoError(t, ctx.Err(), "requests stuck")
	// A restarted cache may still be marked down for a moment.
	eventually(t, "the cache to be available", func() bool {
		_, err := p.ReadItem(ctx, id)
		return !errors.Is(err, provider.ErrUnavailable)
	})
	n := int64(counter(t, p, id))
	t.Logf("%d cache losses; %d acknowledged increments, %d refused, %d unknown; counter %d; stats %+v",
		lost, nAcked.Load(), nRefused.Load(), nUnknown.Load(), n, s.Stats())
	require.Equal(t, losses, lost)
	require.EqualValues(t, workers*each, nAcked.Load(), "every request eventually committed")
	require.Greater(t, s.Stats().Revivals, uint64(0), "the cache losses were noticed")

	// Every acknowledged increment, and only those (and perhaps those
	// whose outcome the store could not know), is in the session.
	require.GreaterOrEqual(t, n, nAcked.Load(), "an acknowledged increment was lost")
	require.LessOrEqual(t, n, nAcked.Load()+nUnknown.Load(), "a refused increment was applied")

	// No lock stuck: the session can be locked at once.
	item, err := p.GetItemExclusive(context.Background(), id)
	require.NoError(t, err)
	require.NoError(t, p.ReleaseItemExclusive(context.Background(), id, item.LockID))
}

func TestCacheLostDuringIncrements(t *testing.T) {
	cache := newSwapCache()
	s, _ := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{})
	hammer(t, s, cache.Flush)
}

// An evicted session (deleted from the cache behind the store's back) is
// read from SQL, refilled in the cache, and comes back unlocked with a
// higher lock id: the holder of the lost lock is fenced.
func TestEvictedSessionIsRevived(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	var mu sync.Mutex
	var events []provider.Event
	s, durable := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{OnEvent: func(e provider.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	key, err := p.Key(id)
	require.NoError(t, err)
	require.Equal(t, acked, increment(ctx, t, p, id))
	e, err := cache.Get(ctx, key)
	require.NoError(t, err)
	committed, err := record.Parse(e.Value) // as the durable copy has it
	require.NoError(t, err)

	held, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, cache.Delete(ctx, key), "evict behind the store's back")

	before := durable.Stats().Statements
	require.Equal(t, 1, counter(t, p, id), "read from SQL, unlocked")
	require.EqualValues(t, 2, durable.Stats().Statements-before, "one read and one claim")
	e, err = cache.Get(ctx, key)
	require.NoError(t, err, "refilled")
	h, err := record.Parse(e.Value)
	require.NoError(t, err)
	require.False(t, h.Locked)
	require.Greater(t, h.LockID, held.LockID)
	// The revive row of docs/protocol.md: the durable copy (written by the
	// commit under the lock before held) comes back in the same
	// incarnation, its lock id advanced by record.LockReviveGap.
	require.Equal(t, committed.LockID+record.LockReviveGap, h.LockID)
	require.EqualValues(t, 1, s.Stats().Revivals)
	mu.Lock()
	require.Len(t, events, 1, "one event per revival")
	require.Equal(t, provider.EventRepair, events[0].Kind)
	mu.Unlock()

	// The holder of the lock the cache lost is fenced.
	require.NoError(t, held.Data.Values.Set("n", 100))
	err = p.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false)
	require.ErrorIs(t, err, provider.ErrLockLost)
	require.Equal(t, 1, counter(t, p, id))

	// Served from the cache again: no statement.
	before = durable.Stats().Statements
	require.Equal(t, 1, counter(t, p, id))
	require.Equal(t, before, durable.Stats().Statements)
}

// A commit whose SQL write arrives after the cache lost the session and a
// revival claimed the durable row is refused: the committer is told its
// lock is lost, and the revived session does not contain the change.
func TestCommitSupersededByRevivalIsRefused(t *testing.T) {
	cache := newSwapCache()
	s, gate := newGatedTiered(t, cache)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 41))

	// The commit waits at its SQL write (which comes before the cache)
	// while the cache is flushed and another request revives the session.
	var entered, release chan struct{}
	gate.gate, entered, release = pause()
	commitErr := make(chan error, 1)
	go func() { commitErr <- p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false) }()
	<-entered
	cache.Flush()
	require.Equal(t, 0, counter(t, p, id), "revived from SQL without the pending commit")
	close(release)

	require.ErrorIs(t, <-commitErr, provider.ErrLockLost)
	require.Equal(t, 0, counter(t, p, id))
	require.EqualValues(t, 1, s.Stats().StaleWrites)
	// And SQL agrees, should the cache lose it again.
	cache.Flush()
	require.Equal(t, 0, counter(t, p, id))
}

// A commit that is durable when the cache loses the session, before it
// reached the cache, is committed: the revival serves it.
func TestCommitDurableWhenCacheLost(t *testing.T) {
	cache := newSwapCache()
	s, gate := newGatedTiered(t, cache)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 1))
	var entered, release chan struct{}
	gate.after, entered, release = pause()
	commitErr := make(chan error, 1)
	go func() { commitErr <- p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false) }()
	<-entered
	cache.Flush()
	close(release)
	require.NoError(t, <-commitErr, "durable, then revived: committed")
	require.Equal(t, 1, counter(t, p, id))
	// Unlocked: a new request takes the lock at once.
	item, err = p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
}

// A new session revived by a concurrent request between its SQL insert and
// its cache insert is still created, once.
func TestNewSessionRevivedBeforeCached(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	s, gate := newGatedTiered(t, cache)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id, err := session.NewID()
	require.NoError(t, err)

	var entered, release chan struct{}
	gate.after, entered, release = pause()
	created := make(chan error, 1)
	go func() { created <- p.CreateUninitializedItem(ctx, id, time.Hour) }()
	<-entered
	_, err = p.GetItem(ctx, id) // revives the row, hands out InitializeItem
	require.NoError(t, err)
	close(release)
	require.NoError(t, <-created)
	require.EqualValues(t, 1, s.Stats().Revivals)
}

// A commit that is durable but whose lock was taken over before it reached
// the cache is fenced, and its durable write is undone: a later cache loss
// does not bring the fenced data back.
func TestFencedCommitIsUndone(t *testing.T) {
	cache := newSwapCache()
	s, gate := newGatedTiered(t, cache)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	other, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	key, _ := p.Key(id)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 99))
	var entered, release chan struct{}
	gate.after, entered, release = pause()
	commitErr := make(chan error, 1)
	go func() { commitErr <- p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false) }()
	<-entered
	// Another process breaks the lock (its holder looked dead) and takes it.
	e, err := cache.Get(ctx, key)
	require.NoError(t, err)
	h, err := record.Parse(e.Value)
	require.NoError(t, err)
	breakLock(ctx, t, other, id)
	taken, err := other.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	close(release)

	require.ErrorIs(t, <-commitErr, provider.ErrLockLost)
	d, err := gate.Durable.Get(ctx, key)
	require.NoError(t, err)
	dh, err := record.Parse(d.Value)
	require.NoError(t, err)
	require.Equal(t, h.DataSeq, dh.DataSeq, "the fenced commit was undone in SQL")
	require.NoError(t, other.ReleaseItemExclusive(ctx, id, taken.LockID))
	cache.Flush()
	require.Equal(t, 0, counter(t, p, id), "and does not come back after a cache loss")
}

// A commit whose SQL write lands before a revival reads the row is in the
// revived session.
func TestCommitDurableBeforeCacheLoss(t *testing.T) {
	cache := newSwapCache()
	s, _ := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	for i := 0; i < 3; i++ {
		require.Equal(t, acked, increment(ctx, t, p, id))
		cache.Flush()
		require.Equal(t, i+1, counter(t, p, id))
	}
	// Many concurrent first reads after a loss revive once per process.
	cache.Flush()
	before := s.Stats().Revivals
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			item, err := p.ReadItem(ctx, id)
			if err != nil {
				t.Error(err)
				return
			}
			if n, _, _ := session.Get[int](item.Data.Values, "n"); n != 3 {
				t.Errorf("n = %d, want 3", n)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, s.Stats().Revivals-before)
}

// The SQL row's expiry is refreshed by cache-only requests once it has less
// than RefreshBelow of the timeout left, and rewritten if it is gone.
func TestDurableExpiryRefresh(t *testing.T) {
	dsn := pg.NewDatabase(t)
	cache := memstore.New(memstore.Config{})
	var clock atomic.Int64 // nanoseconds added to the real clock
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	s, durable := newTiered(t, dsn, cache, tiered.Config{Now: now})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	const timeout = 10 * time.Minute
	id := createSession(t, p, timeout)
	key, _ := p.Key(id)

	statements := func(f func()) uint64 {
		before := durable.Stats().Statements
		f()
		return durable.Stats().Statements - before
	}
	read := func() { counter(t, p, id) }
	exclusive := func() {
		item, err := p.AcquireItem(ctx, id)
		require.NoError(t, err)
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	}

	require.Zero(t, statements(read))
	require.Zero(t, statements(exclusive))
	clock.Add(int64(timeout/2 - time.Minute)) // 6 min left: no refresh yet
	require.Zero(t, statements(read))
	clock.Add(int64(2 * time.Minute)) // 4 min left: refresh
	require.EqualValues(t, 1, statements(read))
	ttl, err := durable.TTL(ctx, key)
	require.NoError(t, err)
	require.InDelta(t, timeout.Seconds(), ttl.Seconds(), 5, "slid to the whole timeout")
	require.Zero(t, statements(read))
	require.EqualValues(t, 1, s.Stats().Refreshes)

	clock.Add(int64(timeout * 6 / 10))
	require.EqualValues(t, 1, statements(exclusive), "a lock-only change refreshes too, once")

	// The row is gone from SQL (expired behind the store's back): the next
	// due refresh writes the live record back.
	require.NoError(t, durable.Delete(ctx, key))
	clock.Add(int64(timeout * 6 / 10))
	read()
	e, err := durable.Get(ctx, key)
	require.NoError(t, err, "rewritten")
	_, err = record.Parse(e.Value)
	require.NoError(t, err)
}

// A session is found in neither tier after its timeout, locked or not, and
// the durable copy never brings it back.
func TestExpiredSessionStaysExpired(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	s, durable := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Second)
	key, _ := p.Key(id)
	_, err = p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	eventually(t, "the 1-second session to expire", func() bool {
		_, err := s.Get(ctx, key)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			t.Fatal(err)
		}
		return err != nil
	})
	_, err = durable.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = p.GetItem(ctx, id)
	require.ErrorIs(t, err, provider.ErrNotFound)
}

// A corrupted durable row is a clear error after a cache loss, never a
// session.
func TestCorruptDurableRow(t *testing.T) {
	cache := newSwapCache()
	s, durable := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	key, _ := p.Key(id)
	e, err := durable.Get(ctx, key)
	require.NoError(t, err)
	bad := append([]byte(nil), e.Value...)
	bad[len(bad)-1] ^= 0xff
	_, err = durable.CompareAndSwap(ctx, key, bad, e.CAS, time.Hour)
	require.NoError(t, err)
	cache.Flush()
	_, err = p.GetItem(ctx, id)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	_, err = p.GetItemExclusive(ctx, id)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	_, err = cache.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound, "not refilled into the cache")
}

// The SQL database down: commits fail with ErrUnavailable, while requests
// that change nothing are served from the cache.
func TestDurableDown(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	durable := newDurable(t, pg.NewDatabase(t))
	var down atomic.Bool
	gate := &gatedDurable{Durable: &failingDurable{Durable: durable, down: &down}}
	s, err := tiered.New(tiered.Config{Cache: cache, Durable: gate})
	require.NoError(t, err)
	defer s.Close()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	down.Store(true)

	require.Equal(t, 0, counter(t, p, id))
	item, err := p.AcquireItem(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 1))
	err = p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID), "releasing changes nothing: no SQL needed")
	require.Equal(t, 0, counter(t, p, id), "the failed commit is not live")

	down.Store(false)
	require.Equal(t, acked, increment(ctx, t, p, id), "works again once SQL is back")
}

type failingDurable struct {
	tiered.Durable
	down *atomic.Bool
}

func (d *failingDurable) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	if d.down.Load() {
		return tiered.PutResult{}, provider.ErrUnavailable
	}
	return d.Durable.PutRecord(ctx, key, value, ttl)
}

// A commit durable in SQL whose cache CAS loses to its own lock's renewal,
// and whose SQL write is then overwritten by a lock-free merge based on that
// renewal, is not in the lineage a revival serves after a cache loss: it
// must not be acknowledged (the harness saw two acknowledged increments
// return the same counter value).
func TestCommitOverwrittenBeforeRevivalIsNotAcknowledged(t *testing.T) {
	cache := newSwapCache()
	s, gate := newGatedTiered(t, cache)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	lf := p.LockFree()
	ctx := context.Background()
	id := createSession(t, p, time.Hour)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 1))
	var entered, release chan struct{}
	gate.after, entered, release = pause()
	commitErr := make(chan error, 1)
	go func() { commitErr <- p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false) }()
	<-entered // the commit (n = 1) is in SQL, not yet in the cache
	// The holder's lease renewal wins the cache, a lock-free request
	// merges a key on top of it (its SQL write, one Seq higher, replaces
	// the commit's), and the cache is lost.
	require.NoError(t, p.RenewLease(ctx, id, item.LockID))
	free, err := lf.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, free.Data.Values.Set("x", 1))
	require.NoError(t, lf.SetAndReleaseItemExclusive(ctx, id, free.Data, 0, false))
	cache.Flush()
	close(release)

	err = <-commitErr
	n := counter(t, p, id)
	require.ErrorIs(t, err, provider.ErrLockLost, "the commit is not live (n = %d), so it must not be acknowledged", n)
	require.Equal(t, 0, n)
	item, err = p.ReadItem(ctx, id)
	require.NoError(t, err)
	x, ok, err := session.Get[int](item.Data.Values, "x")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, x, "the lock-free merge survived the cache loss")
}

// A cache that goes back in time (memcached restoring an outdated replica
// after a partial flush) keeps serving a record older than the durable
// copy: every commit from it at a Seq the durable copy already has is
// refused by the durable tier. After a few
// refusals in a row, lasting a few seconds (a writer stalled between its
// durable write and its cache write is not a cache gone back: here a
// clock that advances 100 ms at every reading), the durable copy is
// revived over it, so the session is not stuck and the newer durable
// data is served again.
func TestCacheGoneBackIsRevived(t *testing.T) {
	cache := newSwapCache()
	var readings atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(readings.Add(1)) * 100 * time.Millisecond) }
	s, _ := newTiered(t, pg.NewDatabase(t), cache, tiered.Config{Now: now})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	lf := p.LockFree()
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	key, _ := p.Key(id)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	old, err := cache.Get(ctx, key)
	require.NoError(t, err)
	free, err := lf.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, free.Data.Values.Set("x", 1))
	require.NoError(t, lf.SetAndReleaseItemExclusive(ctx, id, free.Data, 0, false))
	// The cache goes back to the record before the merge.
	require.NoError(t, cache.Delete(ctx, key))
	_, err = cache.Add(ctx, key, old.Value, time.Hour)
	require.NoError(t, err)

	// The lock holder's commit, from the outdated record, is refused by
	// the durable copy each time it is tried.
	require.NoError(t, item.Data.Values.Set("n", 1))
	err = p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	require.ErrorIs(t, err, provider.ErrLockLost, "the durable copy was revived over the outdated cache")
	require.Equal(t, 0, counter(t, p, id))
	got, err := p.ReadItem(ctx, id)
	require.NoError(t, err)
	x, ok, err := session.Get[int](got.Data.Values, "x")
	require.NoError(t, err)
	require.True(t, ok, "the merge the cache lost is served again")
	require.Equal(t, 1, x)
	require.Equal(t, acked, increment(ctx, t, p, id), "and the session is usable")
	require.Equal(t, 1, counter(t, p, id))
}
