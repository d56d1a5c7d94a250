package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// newProvider returns a provider over s with short leases, so that a lock
// whose holder failed mid-request is taken over quickly.
func newProvider(t testing.TB, s provider.Store) *provider.Provider {
	t.Helper()
	p, err := provider.New(s, provider.Config{Lease: 300 * time.Millisecond})
	require.NoError(t, err)
	return p
}

// createSessions stores n sessions holding counter = 0.
func createSessions(t testing.TB, p *provider.Provider, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		id, err := session.NewID()
		require.NoError(t, err)
		d := p.CreateNewStoreData(0)
		require.NoError(t, d.Values.Set("counter", 0))
		require.NoError(t, p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
		ids[i] = id
	}
	return ids
}

// increment runs one exclusive request adding one to the session's counter.
func increment(ctx context.Context, p *provider.Provider, id string) error {
	item, err := p.AcquireItem(ctx, id)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	c, _, err := session.Get[int](item.Data.Values, "counter")
	if err != nil {
		return err
	}
	if err := item.Data.Values.Set("counter", c+1); err != nil {
		return err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// counter reads a session's counter, waiting behind any writer.
func counter(t testing.TB, p *provider.Provider, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	item, err := p.ReadItem(ctx, id)
	require.NoError(t, err, "session %s", id)
	c, ok, err := session.Get[int](item.Data.Values, "counter")
	require.NoError(t, err)
	require.True(t, ok)
	return c
}

// downSince returns when s marked addr down (zero while it is up).
func downSince(s *memcached.Store, addr string) time.Time {
	for _, st := range s.Nodes() {
		if st.Addr == addr {
			return st.DownSince
		}
	}
	return time.Time{}
}

func isUp(s *memcached.Store, addr string) bool {
	for _, st := range s.Nodes() {
		if st.Addr == addr {
			return st.Up
		}
	}
	return false
}

// TestKillNodeDuringTraffic: kill -9 one of three nodes while six workers
// run exclusive increments. No session is lost, no increment that
// succeeded is lost, and no request started after the node was marked down
// fails. Then the node restarts empty and every session is still there.
func TestKillNodeDuringTraffic(t *testing.T) {
	servers := startNodes(t, 3)
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupOn})
	p := newProvider(t, s)
	ids := createSessions(t, p, 12) // 6 workers on 12 sessions: they contend
	// The victim is the primary of the most sessions.
	primaries := map[string]int{}
	for _, id := range ids {
		key, _ := p.Key(id)
		primary, _ := s.Placement(key)
		primaries[primary]++
	}
	victim := servers[0]
	for _, srv := range servers {
		if primaries[srv.Addr()] > primaries[victim.Addr()] {
			victim = srv
		}
	}

	var (
		mu        sync.Mutex
		ok        = make(map[string]int)
		unknown   = make(map[string]int)
		failures  []string
		lateFails []string
		done      atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[i%len(ids)]
				start := time.Now()
				err := increment(ctx, p, id)
				mu.Lock()
				if err == nil {
					ok[id]++
				} else {
					unknown[id]++
					failures = append(failures, err.Error())
					if d := downSince(s, victim.Addr()); !d.IsZero() && start.After(d) {
						lateFails = append(lateFails, err.Error())
					}
				}
				mu.Unlock()
				done.Add(1)
			}
		}()
	}

	waitUntil(t, 20*time.Second, "traffic before the kill", func() bool { return done.Load() >= 150 })
	killed := time.Now()
	victim.Kill()
	waitUntil(t, 10*time.Second, "the node to be marked down", func() bool { return !downSince(s, victim.Addr()).IsZero() })
	markDown := downSince(s, victim.Addr()).Sub(killed)
	atKill := done.Load()
	waitUntil(t, 30*time.Second, "traffic after the kill", func() bool { return done.Load() >= atKill+300 })
	close(stop)
	wg.Wait()

	t.Logf("node marked down %v after kill -9 (the first operation on it failed); %d requests, %d failed around the kill", markDown, done.Load(), len(failures))
	require.Empty(t, lateFails, "requests started after the node was marked down failed")
	require.LessOrEqual(t, len(failures), 12, "only requests in flight at the kill may fail: %v", failures)
	total := 0
	for _, id := range ids {
		c := counter(t, p, id)
		require.GreaterOrEqual(t, c, ok[id], "session %s lost an acknowledged increment", id)
		require.LessOrEqual(t, c, ok[id]+unknown[id], "session %s counts an increment nobody made", id)
		total += ok[id]
	}
	require.Greater(t, total, 300)

	// The node comes back empty; the health check marks it up and reads
	// repair its copies.
	require.NoError(t, victim.Restart(context.Background()))
	waitUntil(t, 10*time.Second, "the node to be marked up", func() bool { return isUp(s, victim.Addr()) })
	for _, id := range ids {
		require.Equal(t, counter(t, p, id), counter(t, p, id))
		require.NoError(t, increment(ctx, p, id))
	}
	checkCopiesAgree(t, s, p, ids)
}

// checkCopiesAgree reads every session's primary and backup copies
// directly from the nodes and requires them to be equal.
func checkCopiesAgree(t *testing.T, s *memcached.Store, p *provider.Provider, ids []string) {
	t.Helper()
	for _, id := range ids {
		key, err := p.Key(id)
		require.NoError(t, err)
		primary, backup := s.Placement(key)
		pit, err := raw(t, primary).Get(key)
		require.NoError(t, err, "primary copy of %s on %s", key, primary)
		bit, err := raw(t, backup).Get("bak:" + key)
		require.NoError(t, err, "backup copy of %s on %s", key, backup)
		require.Equal(t, pit.Value, bit.Value, "copies of %s differ", key)
	}
}

// TestRestartedNodeRepairs: a node restarted empty loses nothing: reads
// fall back to the backup copies, and once the node is back, reads restore
// its copies (checked by reading the node directly).
func TestRestartedNodeRepairs(t *testing.T) {
	servers := startNodes(t, 3)
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupOn})
	p := newProvider(t, s)
	ids := createSessions(t, p, 60)
	ctx := context.Background()
	for _, id := range ids[:30] {
		require.NoError(t, increment(ctx, p, id))
	}

	victim := servers[2]
	require.NoError(t, victim.Restart(ctx))
	for _, id := range ids {
		_, err := p.GetItem(ctx, id)
		require.NoError(t, err, "reads never fail while the node comes back")
	}
	waitUntil(t, 10*time.Second, "the node to be marked up", func() bool { return isUp(s, victim.Addr()) })

	onVictim := 0
	for i, id := range ids {
		item, err := p.GetItem(ctx, id) // Get repairs a primary, Touch a backup
		require.NoError(t, err)
		c, _, err := session.Get[int](item.Data.Values, "counter")
		require.NoError(t, err)
		require.Equal(t, map[bool]int{true: 1, false: 0}[i < 30], c)
		key, _ := p.Key(id)
		if primary, backup := s.Placement(key); primary == victim.Addr() || backup == victim.Addr() {
			onVictim++
		}
	}
	require.Greater(t, onVictim, 20, "the restarted node held copies of many sessions")
	checkCopiesAgree(t, s, p, ids)
}

// TestEvictedPrimarySurvives: the primary copy deleted behind the library's
// back (as an LRU eviction would) is restored from the backup copy.
func TestEvictedPrimarySurvives(t *testing.T) {
	servers := startNodes(t, 3)
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupOn})
	p := newProvider(t, s)
	ids := createSessions(t, p, 20)
	ctx := context.Background()
	for _, id := range ids {
		require.NoError(t, increment(ctx, p, id))
		key, _ := p.Key(id)
		primary, _ := s.Placement(key)
		require.NoError(t, raw(t, primary).Delete(key))
	}
	for _, id := range ids {
		require.Equal(t, 1, counter(t, p, id))
		require.NoError(t, increment(ctx, p, id), "the restored copy is lockable")
		require.Equal(t, 2, counter(t, p, id))
	}
	checkCopiesAgree(t, s, p, ids)
}

// TestHungNodeMarkedDownAndCleaned: a node that stops answering (SIGSTOP) is
// marked down after one Timeout; writes meanwhile go to the other copy; when
// it answers again, the copies it still holds from before are deleted
// before it is marked up, so the newer writes win.
func TestHungNodeMarkedDownAndCleaned(t *testing.T) {
	for _, role := range []string{"primary", "backup"} {
		t.Run(role, func(t *testing.T) {
			servers := startNodes(t, 3)
			const timeout = 200 * time.Millisecond
			s := newStore(t, servers, memcached.Config{Backup: memcached.BackupOn, Timeout: timeout})
			ctx := context.Background()
			const key = "sl:hung"
			_, err := s.Add(ctx, key, record(1, "before"), time.Minute)
			require.NoError(t, err)
			primary, backup := s.Placement(key)
			hung := serverAt(t, servers, map[string]string{"primary": primary, "backup": backup}[role])
			staleKey := map[string]string{"primary": key, "backup": "bak:" + key}[role]

			require.NoError(t, hung.Pause())
			start := time.Now()
			e, err := s.Get(ctx, key) // reads the primary (hung or not)
			if role == "backup" {
				// The backup is only noticed by a write.
				require.NoError(t, err)
				_, err = s.CompareAndSwap(ctx, key, record(2, "during"), e.CAS, time.Minute)
				require.NoError(t, err, "a write whose backup node hangs still succeeds")
			} else {
				require.NoError(t, err, "a read whose primary hangs is served by the backup")
				_, err = s.CompareAndSwap(ctx, key, record(2, "during"), e.CAS, time.Minute)
				require.NoError(t, err, "a write whose primary is down goes to the backup copy")
			}
			took := time.Since(start)
			require.False(t, isUp(s, hung.Addr()))
			t.Logf("hung %s marked down after %v (Timeout %v)", role, took.Round(time.Millisecond), timeout)
			e, err = s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, record(2, "during"), e.Value)

			require.NoError(t, hung.Resume())
			waitUntil(t, 10*time.Second, "the node to be marked up", func() bool { return isUp(s, hung.Addr()) })
			_, err = raw(t, hung.Addr()).Get(staleKey)
			require.ErrorIs(t, err, memcache.ErrCacheMiss, "the stale copy was deleted before the node came back")

			e, err = s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, record(2, "during"), e.Value, "the newer copy wins")
			require.NoError(t, s.Touch(ctx, key, time.Minute)) // restores a lost backup copy
			pit, err := raw(t, primary).Get(key)
			require.NoError(t, err)
			bit, err := raw(t, backup).Get("bak:" + key)
			require.NoError(t, err)
			require.Equal(t, record(2, "during"), pit.Value)
			require.Equal(t, record(2, "during"), bit.Value)
		})
	}
}

// TestTokenFromAnotherNodeConflicts: a CAS token read from the primary
// does not match after the key moved to its backup copy, and vice versa.
func TestTokenFromAnotherNodeConflicts(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	const key = "sl:token"
	_, err := s.Add(ctx, key, record(1, "a"), time.Minute)
	require.NoError(t, err)
	fromPrimary, err := s.Get(ctx, key)
	require.NoError(t, err)
	primary, _ := s.Placement(key)
	serverAt(t, servers, primary).Kill()

	fromBackup, err := s.Get(ctx, key) // the primary fails and is marked down
	require.NoError(t, err)
	require.Equal(t, fromPrimary.Value, fromBackup.Value)
	_, err = s.CompareAndSwap(ctx, key, record(2, "b"), fromPrimary.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a primary token must not match on the backup node")
	_, err = s.CompareAndSwap(ctx, key, record(2, "b"), fromBackup.CAS, time.Minute)
	require.NoError(t, err)

	require.NoError(t, serverAt(t, servers, primary).Restart(ctx))
	waitUntil(t, 10*time.Second, "the primary to be marked up", func() bool { return isUp(s, primary) })
	fromBackup2 := fromBackup
	_, err = s.CompareAndSwap(ctx, key, record(3, "c"), fromBackup2.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a backup token must not match once the primary is back")
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, record(2, "b"), e.Value)
}

// TestFailedWriteLeavesNoBackupCopy: the backup copy is written once the
// primary took the write; when the primary refuses it, the backup copy
// never holds it.
func TestFailedWriteLeavesNoBackupCopy(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	const key = "sl:phantom"
	_, err := s.Add(ctx, key, record(1, "one"), time.Minute)
	require.NoError(t, err)
	primary, backup := s.Placement(key)
	bakOf := func() []byte {
		it, err := raw(t, backup).Get("bak:" + key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return nil
		}
		require.NoError(t, err)
		return it.Value
	}

	// CAS conflict: the loser's value does not stay on the backup.
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, key, record(2, "winner"), e.CAS, time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, key, record(2, "loser"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	require.Equal(t, record(2, "winner"), bakOf())

	// Add on a present key whose backup copy was missing: the primary
	// refuses it, and its backup half is never sent (doc.go, "The
	// unknown-outcome contract"): nothing was written, certainly.
	require.NoError(t, raw(t, backup).Delete("bak:"+key))
	_, err = s.Add(ctx, key, record(1, "refused"), time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)
	require.Nil(t, bakOf(), "the refused Add's value on the backup copy")
	e, err = s.Get(ctx, key)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, key, record(2, "winner"), e.CAS, time.Minute) // the next write restores the backup copy
	require.NoError(t, err)
	require.Equal(t, record(2, "winner"), bakOf())

	// Add where only the backup copy exists (the primary lost it): the
	// backup's copy, the newer record, is put back on the primary. The
	// Add's value was on the primary meanwhile: unknown (rv-d4 M2).
	require.NoError(t, raw(t, primary).Delete(key))
	_, err = s.Add(ctx, key, record(1, "new"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.NotErrorIs(t, err, provider.ErrExists)
	pit, err := raw(t, primary).Get(key)
	require.NoError(t, err)
	require.Equal(t, record(2, "winner"), pit.Value)

	// CAS on a key the primary no longer has (evicted, or its node
	// flushed): refused (not found), and its backup half never sent: the
	// backup copy, the only one left, keeps the session, and the primary
	// is restored from it (TestPrimaryLostKeyKeepsSession).
	e, err = s.Get(ctx, key)
	require.NoError(t, err)
	require.NoError(t, raw(t, primary).Delete(key))
	_, err = s.CompareAndSwap(ctx, key, record(3, "gone"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.Equal(t, record(2, "winner"), bakOf())
	got, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, record(2, "winner"), got.Value)
}

// TestConcurrentCASBackupNeverNewer: under CAS contention, from one Store
// and from two (two processes), the backup copy never ends up holding a
// refused write or anything newer than the primary.
func TestConcurrentCASBackupNeverNewer(t *testing.T) {
	servers := startNodes(t, 2)
	for _, procs := range []int{1, 2} {
		t.Run(strconv.Itoa(procs)+"stores", func(t *testing.T) {
			const key = "sl:contended"
			stores := contendedStores(t, servers, procs, key, memcached.Config{})
			ctx := context.Background()

			var (
				mu      sync.Mutex
				winners = map[string]bool{string(record(1, "start")): true}
				losers  = map[string]bool{}
				wg      sync.WaitGroup
			)
			for w := range 8 {
				s := stores[w%procs]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 60 {
						e, err := s.Get(ctx, key)
						if err != nil {
							t.Error(err)
							return
						}
						h, err := rec.Parse(e.Value)
						if err != nil {
							t.Error(err)
							return
						}
						next := record(h.Seq+1, fmt.Sprintf("w%d-%d", w, i))
						_, err = s.CompareAndSwap(ctx, key, next, e.CAS, time.Minute)
						mu.Lock()
						switch {
						case err == nil:
							winners[string(next)] = true
						case errors.Is(err, provider.ErrCASConflict):
							losers[string(next)] = true
						default:
							t.Error(err)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			require.NotEmpty(t, losers, "the workers contended")

			primary, backup := stores[0].Placement(key)
			pit, err := raw(t, primary).Get(key)
			require.NoError(t, err)
			bit, err := raw(t, backup).Get("bak:" + key)
			require.NoError(t, err)
			require.False(t, losers[string(bit.Value)], "the backup holds a refused write")
			require.True(t, winners[string(bit.Value)])
			require.Equal(t, pit.Value, bit.Value, "the last acknowledged write is on both copies")
			ph, err := rec.Parse(pit.Value)
			require.NoError(t, err)
			require.Equal(t, uint64(len(winners)), ph.Seq, "every successful CAS is in the primary's Seq")
		})
	}
}

// TestBackupWriteOrderedBySeq: a backup copy changed behind the Store's
// back is replaced when it is older than the write, and kept when newer.
func TestBackupWriteOrderedBySeq(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	const key = "sl:ordered"
	_, err := s.Add(ctx, key, record(5, "five"), time.Minute)
	require.NoError(t, err)
	_, backup := s.Placement(key)
	bak := raw(t, backup)
	cas := func(value []byte) {
		t.Helper()
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, key, value, e.CAS, time.Minute)
		require.NoError(t, err)
	}

	require.NoError(t, bak.Set(&memcache.Item{Key: "bak:" + key, Value: record(1, "old"), Expiration: 60}))
	cas(record(6, "six"))
	it, err := bak.Get("bak:" + key)
	require.NoError(t, err)
	require.Equal(t, record(6, "six"), it.Value, "an older backup copy is replaced")

	require.NoError(t, bak.Set(&memcache.Item{Key: "bak:" + key, Value: record(10, "newer"), Expiration: 60}))
	cas(record(7, "seven"))
	it, err = bak.Get("bak:" + key)
	require.NoError(t, err)
	require.Equal(t, record(10, "newer"), it.Value, "a newer backup copy is never replaced by an older one")

	require.NoError(t, bak.Delete("bak:"+key))
	cas(record(8, "eight"))
	it, err = bak.Get("bak:" + key)
	require.NoError(t, err)
	require.Equal(t, record(8, "eight"), it.Value, "a missing backup copy is written")
}

// TestMembershipChangeKeepsSessions: sessions stay readable when a node is
// added to or removed from the list; reads move their copies.
func TestMembershipChangeKeepsSessions(t *testing.T) {
	servers := startNodes(t, 4)
	ctx := context.Background()
	// BackupOn: the witness scheme refuses records of another node list
	// (docs/replication.md §11.2).
	three := newStore(t, servers[:3], memcached.Config{Backup: memcached.BackupOn})
	ids := createSessions(t, newProvider(t, three), 80)

	for name, nodes := range map[string][]*mcserver.Server{
		"added":   servers,
		"removed": servers[1:3],
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, nodes, memcached.Config{Backup: memcached.BackupOn})
			p := newProvider(t, s)
			for _, id := range ids {
				require.Equal(t, 0, counter(t, p, id), "session %s lost", id)
			}
			checkCopiesAgree(t, s, p, ids)
			_ = ctx
		})
	}
}

// TestOneCopyHungWriteKeepsSession: with one copy, a write that times out
// on a hung node (SIGSTOP) leaves that node's copy as the only one, so the
// node comes back with it: the session is never deleted by the clean-up
// that removes outdated copies of keys with a backup. Before the fix the
// key was noted stale and deleted when the node answered again, losing the
// session to a delay (stress/sim TestSimOneCopy caught it).
func TestOneCopyHungWriteKeepsSession(t *testing.T) {
	for _, name := range []string{"one node", "backup off"} {
		t.Run(name, func(t *testing.T) {
			servers := startNodes(t, map[string]int{"one node": 1, "backup off": 2}[name])
			cfg := memcached.Config{Timeout: 200 * time.Millisecond}
			if name == "backup off" {
				cfg.Backup = memcached.BackupOff
			}
			s := newStore(t, servers, cfg)
			ctx := context.Background()
			const key = "sl:hungonecopy"
			_, err := s.Add(ctx, key, record(1, "before"), time.Minute)
			require.NoError(t, err)
			primary, _ := s.Placement(key)
			hung := serverAt(t, servers, primary)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)

			require.NoError(t, hung.Pause())
			_, err = s.CompareAndSwap(ctx, key, record(2, "during"), e.CAS, time.Minute)
			require.Error(t, err, "the node is hung")
			require.False(t, errors.Is(err, provider.ErrCASConflict) || errors.Is(err, provider.ErrNotFound), "a timed-out write is never reported as not applied: %v", err)
			require.False(t, isUp(s, hung.Addr()))

			require.NoError(t, hung.Resume())
			waitUntil(t, 10*time.Second, "the node to be marked up", func() bool { return isUp(s, hung.Addr()) })
			e, err = s.Get(ctx, key)
			require.NoError(t, err, "the only copy survives the node's return")
			// The queued CAS ran when the node resumed.
			require.Equal(t, record(2, "during"), e.Value)
		})
	}
}
