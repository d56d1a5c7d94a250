package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// appendEnv is a session written through a provider on s1, over two nodes
// shared with a second Store s2 (another app server).
type appendEnv struct {
	servers          []*mcserver.Server
	s1, s2           *memcached.Store
	p1, p2           *provider.Provider
	id, key          string
	primary, backup  string // node addresses
	bakKey           string
	firstBackupValue []byte // the backup copy right after the session was created
}

func newAppendEnv(t *testing.T, broken bool) *appendEnv {
	t.Helper()
	return newAppendEnvDial(t, broken, nil)
}

// newAppendEnvDial is newAppendEnv whose s1 dials with dial (nil: plainly).
func newAppendEnvDial(t *testing.T, broken bool, dial func(context.Context, string, string) (net.Conn, error)) *appendEnv {
	t.Helper()
	e := &appendEnv{servers: startNodes(t, 2)}
	e.s1 = newStore(t, e.servers, memcached.Config{DialContext: dial})
	e.s2 = newStore(t, e.servers, memcached.Config{})
	if broken {
		memcached.SetBackupAppendNoWhole(e.s1)
	}
	e.p1, e.p2 = defaultProvider(t, e.s1), defaultProvider(t, e.s2)
	e.id = newBenchSession(t, e.p1)
	var err error
	e.key, err = e.p1.Key(e.id)
	require.NoError(t, err)
	e.primary, e.backup = e.s1.Placement(e.key)
	e.bakKey = "bak:" + e.key
	it, err := raw(t, e.backup).Get(e.bakKey)
	require.NoError(t, err)
	e.firstBackupValue = it.Value
	return e
}

// defaultProvider returns a provider over s, of the default configuration.
func defaultProvider(t *testing.T, s *memcached.Store) *provider.Provider {
	t.Helper()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	return p
}

// copies returns the records on both copies (nil when absent or corrupt).
func (e *appendEnv) copies(t *testing.T) (p, b *rec.Record) {
	t.Helper()
	get := func(addr, key string) *rec.Record {
		it, err := raw(t, addr).Get(key)
		if err != nil {
			return nil
		}
		r, err := rec.Decode(it.Value)
		if err != nil {
			return nil
		}
		return &r
	}
	return get(e.primary, e.key), get(e.backup, e.bakKey)
}

// lockDelta reads the session through s1 (which learns the pair of
// copies) and returns what it read, its record and the delta that locks it.
func (e *appendEnv) lockDelta(t *testing.T) (en provider.Entry, cur rec.Record, delta []byte) {
	t.Helper()
	en, err := e.s1.Get(context.Background(), e.key)
	require.NoError(t, err)
	cur, err = rec.Decode(en.Value)
	require.NoError(t, err)
	return en, cur, lockingDelta(t, cur)
}

// lockingDelta returns the delta that locks cur.
func lockingDelta(t *testing.T, cur rec.Record) []byte {
	t.Helper()
	next := cur
	next.Seq++
	next.Locked, next.LockID, next.LockedAt = true, cur.LockID+1, time.Now()
	delta, ok := rec.Delta(&cur, &next)
	require.True(t, ok)
	return delta
}

// readLocking reads key through s and returns the entry read, the record
// a lock's append makes of it (locked, a new lock id) and that append's
// delta (lockingDelta).
func readLocking(t *testing.T, s *memcached.Store, key string) (provider.Entry, rec.Record, []byte) {
	t.Helper()
	en, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	cur, err := rec.Decode(en.Value)
	require.NoError(t, err)
	delta := lockingDelta(t, cur)
	next, err := rec.Decode(append(append([]byte(nil), en.Value...), delta...))
	require.NoError(t, err)
	return en, next, delta
}

// newCAS rewrites key on addr with the same bytes: a new memcached CAS,
// as another server's write of the same value gives it.
func newCAS(t *testing.T, addr, key string) {
	t.Helper()
	it, err := raw(t, addr).Get(key)
	require.NoError(t, err)
	require.NoError(t, raw(t, addr).Set(it))
}

// TestBackupAppendReachesBothCopies: with the default backup copy, a lock
// and a release are appended as deltas to both copies (the backup copy
// carries the same deltas as the primary, byte for byte), and a failover
// after each serves the lock state acknowledged last.
func TestBackupAppendReachesBothCopies(t *testing.T) {
	e := newAppendEnv(t, false)
	ctx := context.Background()
	for i := range 3 {
		item, err := e.p1.GetItemExclusive(ctx, e.id)
		require.NoError(t, err)
		p, b := e.copies(t)
		require.NotNil(t, p)
		require.NotNil(t, b, "request %d: the backup copy after the lock", i)
		require.Equal(t, i*2+1, p.Deltas, "request %d: the lock was appended to the primary", i)
		require.Equal(t, p.Deltas, b.Deltas, "request %d: the lock was appended to the backup copy", i)
		require.Equal(t, p.Header, b.Header, "request %d: both copies hold the lock", i)
		require.NoError(t, e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID))
		pit, err := raw(t, e.primary).Get(e.key)
		require.NoError(t, err)
		bit, err := raw(t, e.backup).Get(e.bakKey)
		require.NoError(t, err)
		require.Equal(t, pit.Value, bit.Value, "request %d: both copies hold the same bytes", i)
	}
}

// TestBackupAppendDiverged: the backup copy diverges from the pair of
// copies the Store wrote last (the backup node flushed, the backup copy
// evicted, rewritten with the same bytes by another server, or replaced by
// an older copy), so the next lock's backup append is refused; the Store
// completes it with the whole record. The lock acknowledged is then on the
// backup copy: a failover serves it, its holder releases it there, and the
// session's values are intact. The broken variant that does not complete a
// refused backup append (memcached.SetBackupAppendNoWhole) fails every
// case, so the test catches it.
func TestBackupAppendDiverged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		diverge func(t *testing.T, e *appendEnv)
	}{
		{"FlushedBackupNode", func(t *testing.T, e *appendEnv) {
			require.NoError(t, serverAt(t, e.servers, e.backup).FlushAll(ctx))
		}},
		{"EvictedBackupCopy", func(t *testing.T, e *appendEnv) {
			require.NoError(t, raw(t, e.backup).Delete(e.bakKey))
		}},
		{"RewrittenByAnotherServer", func(t *testing.T, e *appendEnv) {
			newCAS(t, e.backup, e.bakKey)
		}},
		{"OlderCopyOnBackup", func(t *testing.T, e *appendEnv) {
			require.NoError(t, raw(t, e.backup).Set(&memcache.Item{Key: e.bakKey, Value: e.firstBackupValue, Expiration: 60}))
		}},
	} {
		for _, broken := range []bool{false, true} {
			name := tc.name
			if broken {
				name += "/BrokenNoWhole"
			}
			t.Run(name, func(t *testing.T) {
				problems := divergedAppend(t, tc.diverge, broken)
				if broken {
					require.NotEmpty(t, problems, "the broken variant passed: the test cannot tell")
					t.Logf("broken variant caught: %v", problems)
					return
				}
				require.Empty(t, problems)
			})
		}
	}
}

// divergedAppend runs one case of TestBackupAppendDiverged and returns
// what went wrong.
func divergedAppend(t *testing.T, diverge func(*testing.T, *appendEnv), broken bool) (problems []string) {
	ctx := context.Background()
	e := newAppendEnv(t, broken)
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	// One request first: s1 wrote both copies last (the pair).
	item, err := e.p1.GetItemExclusive(ctx, e.id)
	require.NoError(t, err)
	require.NoError(t, e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID))
	if p, b := e.copies(t); p == nil || b == nil || p.Deltas != 2 || b.Deltas != 2 {
		t.Fatalf("the lock and release were not appended to both copies: %+v %+v", p, b)
	}

	diverge(t, e)
	item, err = e.p1.GetItemExclusive(ctx, e.id)
	require.NoError(t, err)
	p, b := e.copies(t)
	switch {
	case b == nil:
		fail("after the lock, the backup copy is gone")
	case p == nil:
		fail("after the lock, the primary copy is gone")
	case b.Header != p.Header:
		fail("after the lock, the backup copy (Seq %d, locked %v) differs from the primary (Seq %d, locked %v)", b.Seq, b.Locked, p.Seq, p.Locked)
	}

	// The primary dies: the other server fails over to the backup copy.
	serverAt(t, e.servers, e.primary).Kill()
	if _, err := e.p2.GetItemExclusive(ctx, e.id); !errors.As(err, new(*provider.LockedError)) {
		fail("after failover, the other server does not see the lock acknowledged: %v", err)
	}
	// s1 notices the dead primary on its first operation (a read here:
	// a write in flight at that moment would fail with its outcome unknown).
	_, _ = e.s1.Get(ctx, e.key)
	if err := e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID); err != nil {
		fail("after failover, the holder cannot release its lock: %v", err)
	}
	item2, err := e.p2.GetItemExclusive(ctx, e.id)
	if err != nil {
		fail("after failover and release, the other server cannot lock: %v", err)
		return problems
	}
	var blob string
	if ok, err := item2.Data.Values.Get("blob", &blob); !ok || err != nil || len(blob) != sessionBytes {
		fail("after failover, the session's values are not intact")
	}
	require.NoError(t, e.p2.ReleaseItemExclusive(ctx, e.id, item2.LockID))
	return problems
}

// TestBackupAppendPrimaryLostMidAppend: the backup copy was rewritten
// behind the Store's back, so the backup append of a lock change is
// refused; before the Store completes the backup copy whole, the primary
// loses the key: it is flushed and repaired by the other Store from the
// backup copy (without the lock change), or killed. The change survives
// nowhere now, but it was on the primary, where another process may have
// read it: CompareAndAppend fails with ErrOutcomeUnknown (not success, and
// not ErrCASConflict, which says nothing was written: sixth session, d4;
// the broken variant SetLandedConflict is the code before, which answered
// the conflict): both Stores then serve the record as it was before it,
// never a corrupt or half-applied one.
func TestBackupAppendPrimaryLostMidAppend(t *testing.T) {
	ctx := context.Background()
	for _, v := range []string{"flush", "kill", "flush/broken", "kill/broken"} {
		lose, broken := strings.CutSuffix(v, "/broken")
		t.Run(v, func(t *testing.T) {
			e := newAppendEnv(t, false)
			item, err := e.p1.GetItemExclusive(ctx, e.id) // the pair
			require.NoError(t, err)
			require.NoError(t, e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID))

			en, cur, delta := e.lockDelta(t)
			newCAS(t, e.backup, e.bakKey) // the backup append is refused
			var once sync.Once
			memcached.SetTestHooks(e.s1, func(string) {
				once.Do(func() {
					if lose == "kill" {
						serverAt(t, e.servers, e.primary).Kill()
						return
					}
					require.NoError(t, serverAt(t, e.servers, e.primary).FlushAll(ctx))
					require.Equal(t, cur.Seq, seqOf(t, e.s2, e.key), "the repair restores the copy before the lock")
				})
			}, nil)
			if broken {
				memcached.SetLandedConflict(e.s1) // after SetTestHooks, which resets the hooks
			}
			_, _, err = e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
			require.Error(t, err, "a lock change that survives nowhere was acknowledged")
			if broken {
				require.ErrorIs(t, err, provider.ErrCASConflict)
				require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
			} else {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the lock change was on the primary")
				require.NotErrorIs(t, err, provider.ErrCASConflict, "a conflict says nothing was written")
			}
			for _, s := range []*memcached.Store{e.s1, e.s2} {
				en, err := s.Get(ctx, e.key)
				require.NoError(t, err)
				r, err := rec.Decode(en.Value)
				require.NoError(t, err)
				require.Equal(t, cur.Header, r.Header, "the record before the lock change")
			}
		})
	}
}

// TestConcurrentAppendsBackupNeverDiverges: workers on one or two Stores
// change the lock state of one record with the same token at once, as
// deltas (whole once the record carries record.MaxDeltas, or when the
// Store declines); losers' backup appends may land before the winner's,
// and are undone. After every round the backup copy holds exactly the
// primary's bytes, and every acknowledged change is in the primary's Seq.
func TestConcurrentAppendsBackupNeverDiverges(t *testing.T) {
	servers := startNodes(t, 2)
	for _, procs := range []int{1, 2} {
		t.Run(strconv.Itoa(procs)+"stores", func(t *testing.T) {
			const key = "sl:appendcontended"
			// A node marked down (an operation over Timeout on a loaded
			// machine) may keep a copy this test would flag, noted stale:
			// the Store deletes it before it marks the node up again.
			var downs, ups atomic.Int64
			stores := contendedStores(t, servers, procs, key, memcached.Config{OnEvent: func(e provider.Event) {
				switch e.Kind {
				case provider.EventNodeDown:
					downs.Add(1)
				case provider.EventNodeUp:
					ups.Add(1)
				}
			}})
			ctx := context.Background()
			var err error
			primary, backup := stores[0].Placement(key)
			var won, lost, appended int
			for round := range 40 {
				var wg sync.WaitGroup
				var mu sync.Mutex
				// Every worker reads first, so that they share a token.
				entries := make([]provider.Entry, 6)
				for w := range entries {
					entries[w], err = stores[w%procs].Get(ctx, key)
					require.NoError(t, err)
				}
				for w := range entries {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s, en := stores[w%procs], entries[w]
						cur, err := rec.Decode(en.Value)
						if err != nil {
							t.Error(err)
							return
						}
						next := cur
						next.Seq++
						next.Locked, next.LockID, next.LockedAt = !cur.Locked, cur.LockID+1, time.Unix(0, int64(round*100+w+1))
						err = provider.ErrNoAppend
						if d, ok := rec.Delta(&cur, &next); ok {
							_, _, err = s.CompareAndAppend(ctx, key, d, en.CAS, time.Minute)
						}
						wasAppend := err == nil
						if errors.Is(err, provider.ErrNoAppend) {
							_, err = s.CompareAndSwap(ctx, key, next.Encode(), en.CAS, time.Minute)
						}
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							won++
							if wasAppend {
								appended++
							}
						case errors.Is(err, provider.ErrCASConflict):
							lost++
						default:
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				pit, err := raw(t, primary).Get(key)
				require.NoError(t, err)
				ph, err := rec.Parse(pit.Value)
				require.NoError(t, err)
				require.Equal(t, uint64(1+won), ph.Seq, "round %d: every acknowledged change is in the primary's Seq", round)
				down := downs.Load() > 0
				if down {
					testwait.Until(t, 10*time.Second, "the nodes marked down to be marked up", func() bool { return ups.Load() >= downs.Load() })
					t.Logf("round %d: %d nodes marked down and up again", round, downs.Load())
					downs.Store(0)
					ups.Store(0)
				}
				bit, err := raw(t, backup).Get("bak:" + key)
				if down && errors.Is(err, memcache.ErrCacheMiss) {
					continue // deleted as noted stale: the next write restores it
				}
				require.NoError(t, err)
				require.Equal(t, pit.Value, bit.Value, "round %d: the backup copy differs from the primary", round)
			}
			require.NotZero(t, lost, "the workers contended")
			require.NotZero(t, appended, "changes were appended")
			t.Logf("%d changes acknowledged (%d appended), %d refused", won, appended, lost)
		})
	}
}

// TestRefusedAppendLeavesNoBackupCopy: the primary's copy changed behind
// the Store's back (same bytes, new CAS) while the backup copy did not, so
// a lock change's primary append is refused. The change fails with
// ErrCASConflict and its backup append is never sent: the backup copy
// holds the primary's bytes still. The broken variant that sends it in
// parallel and leaves it there (memcached.SetBackupParallel) is caught.
func TestRefusedAppendLeavesNoBackupCopy(t *testing.T) {
	ctx := context.Background()
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "Store", true: "BrokenNoUndo"}[broken], func(t *testing.T) {
			e := newAppendEnv(t, false)
			if broken {
				memcached.SetBackupParallel(e.s1)
			}
			en, _, delta := e.lockDelta(t)
			newCAS(t, e.primary, e.key)

			_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict)
			pit, err := raw(t, e.primary).Get(e.key)
			require.NoError(t, err)
			bit, err := raw(t, e.backup).Get(e.bakKey)
			require.NoError(t, err)
			if broken {
				require.NotEqual(t, pit.Value, bit.Value, "the broken variant left no refused change on the backup copy: the test cannot tell")
				return
			}
			require.Equal(t, pit.Value, bit.Value, "a refused lock change stayed on the backup copy")
		})
	}
}
