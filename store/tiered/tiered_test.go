package tiered

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

func TestConformance(t *testing.T) {
	dsn := pg.NewDatabase(t)
	providertest.Run(t, providertest.Options{
		NewStore: func(t *testing.T) provider.Store {
			s, err := New(Config{Cache: memstore.New(memstore.Config{}), Durable: newDurable(t, dsn)})
			require.NoError(t, err)
			return s
		},
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{})
	require.Error(t, err)
	_, err = New(Config{Cache: memstore.New(memstore.Config{}), Durable: &gatedDurable{}, RefreshBelow: 1.5})
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

func counter(t testing.TB, p *provider.Provider, id string) int {
	t.Helper()
	item, err := p.ReadItem(context.Background(), id)
	require.NoError(t, err)
	n, ok, err := session.Get[int](item.Data.Values, "n")
	require.NoError(t, err)
	require.True(t, ok)
	return n
}

// increment runs one exclusive request that adds 1 to n. It reports
// whether the commit was acknowledged; errors that mean "not committed"
// (the lock was lost to a revival) return false, anything else fails t.
func increment(ctx context.Context, t testing.TB, p *provider.Provider, id string) bool {
	item, err := p.AcquireItem(ctx, id)
	if errors.Is(err, provider.ErrCASConflict) {
		return false
	}
	if err != nil {
		t.Errorf("AcquireItem: %v", err)
		return false
	}
	n, _, err := session.Get[int](item.Data.Values, "n")
	if err != nil {
		t.Errorf("read n: %v", err)
		return false
	}
	if err := item.Data.Values.Set("n", n+1); err != nil {
		t.Errorf("set n: %v", err)
		return false
	}
	err = p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	switch {
	case err == nil:
		return true
	case errors.Is(err, provider.ErrLockLost), errors.Is(err, provider.ErrCASConflict):
		return false
	default:
		t.Errorf("commit: %v", err)
		return false
	}
}

// hammer runs workers that increment one session while lose() empties the
// cache after every few acknowledged increments, then checks that every
// acknowledged increment, and nothing else, is in the session and that
// its lock is free.
func hammer(t *testing.T, s *Store, lose func()) {
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id := createSession(t, p, time.Hour)

	const workers, each, losses = 4, 30, 6
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acked atomic.Int64
	progress := make(chan struct{}, workers*each)
	var wg sync.WaitGroup
	finished := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done, tries := 0, 0; done < each && tries < 5*each && ctx.Err() == nil; tries++ {
				if increment(ctx, t, p, id) {
					done++
					acked.Add(1)
					progress <- struct{}{}
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
			case <-progress:
			case <-finished:
				break wait
			}
		}
		lose()
		lost++
	}
	<-finished
	require.NoError(t, ctx.Err(), "requests stuck")
	require.Equal(t, losses, lost)
	require.Greater(t, s.Stats().Revivals, uint64(0), "the cache losses were noticed")

	require.EqualValues(t, acked.Load(), counter(t, p, id), "every acknowledged increment, and only those, is in the session")
	t.Logf("%d acknowledged increments, stats %+v", acked.Load(), s.Stats())

	// No lock stuck: the session can be locked at once.
	item, err := p.GetItemExclusive(context.Background(), id)
	require.NoError(t, err)
	require.NoError(t, p.ReleaseItemExclusive(context.Background(), id, item.LockID))
}

func TestCacheLostDuringIncrements(t *testing.T) {
	cache := newSwapCache()
	s, _ := newTiered(t, pg.NewDatabase(t), cache, Config{})
	hammer(t, s, cache.Flush)
}

// An evicted session (deleted from the cache behind the store's back) is
// read from SQL, refilled in the cache, and comes back unlocked with a
// higher lock id: the holder of the lost lock is fenced.
func TestEvictedSessionIsRevived(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	s, durable := newTiered(t, pg.NewDatabase(t), cache, Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	key, err := p.Key(id)
	require.NoError(t, err)
	require.True(t, increment(ctx, t, p, id))

	held, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, cache.Delete(ctx, key), "evict behind the store's back")

	before := durable.Stats().Statements
	require.Equal(t, 1, counter(t, p, id), "read from SQL, unlocked")
	require.EqualValues(t, 2, durable.Stats().Statements-before, "one read and one claim")
	e, err := cache.Get(ctx, key)
	require.NoError(t, err, "refilled")
	h, err := provider.ParseRecordHeader(e.Value)
	require.NoError(t, err)
	require.False(t, h.Locked)
	require.Greater(t, h.LockID, held.LockID)
	require.EqualValues(t, 1, s.Stats().Revivals)

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

// A commit whose record the cache lost after accepting it, and whose SQL
// write arrives after a revival claimed the durable row, is refused: the
// committer is told its lock is lost, and the revived session does not
// contain the change.
func TestCommitSupersededByRevivalIsRefused(t *testing.T) {
	cache := newSwapCache()
	durable := newDurable(t, pg.NewDatabase(t))
	gate := &gatedDurable{Durable: durable}
	s, err := New(Config{Cache: cache, Durable: gate})
	require.NoError(t, err)
	defer s.Close()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)

	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, item.Data.Values.Set("n", 41))

	// The commit passes the cache, then waits at the SQL write while the
	// cache is flushed and another request revives the session.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	gate.gate = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
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

// A commit whose SQL write lands before a revival reads the row is in the
// revived session.
func TestCommitDurableBeforeCacheLoss(t *testing.T) {
	cache := newSwapCache()
	s, _ := newTiered(t, pg.NewDatabase(t), cache, Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Hour)
	for i := 0; i < 3; i++ {
		require.True(t, increment(ctx, t, p, id))
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
	s, durable := newTiered(t, dsn, cache, Config{Now: now})
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

	clock.Add(int64(timeout*6/10))
	require.EqualValues(t, 1, statements(exclusive), "a lock-only change refreshes too, once")

	// The row is gone from SQL (expired behind the store's back): the next
	// due refresh writes the live record back.
	require.NoError(t, durable.Delete(ctx, key))
	clock.Add(int64(timeout * 6 / 10))
	read()
	e, err := durable.Get(ctx, key)
	require.NoError(t, err, "rewritten")
	_, err = provider.ParseRecordHeader(e.Value)
	require.NoError(t, err)
}

// A session is found in neither tier after its timeout, locked or not, and
// the durable copy never brings it back.
func TestExpiredSessionStaysExpired(t *testing.T) {
	cache := memstore.New(memstore.Config{})
	s, durable := newTiered(t, pg.NewDatabase(t), cache, Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	id := createSession(t, p, time.Second)
	key, _ := p.Key(id)
	_, err = p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Get(ctx, key)
		if errors.Is(err, provider.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "session still there long after its timeout")
		time.Sleep(20 * time.Millisecond)
	}
	_, err = durable.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = p.GetItem(ctx, id)
	require.ErrorIs(t, err, provider.ErrNotFound)
}

// A corrupted durable row is a clear error after a cache loss, never a
// session.
func TestCorruptDurableRow(t *testing.T) {
	cache := newSwapCache()
	s, durable := newTiered(t, pg.NewDatabase(t), cache, Config{})
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
	s, err := New(Config{Cache: cache, Durable: gate})
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

	down.Store(false)
	require.True(t, increment(ctx, t, p, id), "works again once SQL is back")
}

type failingDurable struct {
	Durable
	down *atomic.Bool
}

func (d *failingDurable) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, uint64, error) {
	if d.down.Load() {
		return false, 0, provider.ErrUnavailable
	}
	return d.Durable.PutRecord(ctx, key, value, ttl)
}
