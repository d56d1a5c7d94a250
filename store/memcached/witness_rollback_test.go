package memcached_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// rolledBackDetail is the detail of the repair event of R4.4′'s roll-back
// (store/memcached's rolledBack).
const rolledBackDetail = "a write on its secondary alone rolled back"

// rollBackCounter counts the roll-back events of one Store.
type rollBackCounter struct{ n atomic.Int32 }

func (c *rollBackCounter) observe(e provider.Event) {
	if e.Kind == provider.EventRepair && e.Detail == rolledBackDetail {
		c.n.Add(1)
	}
}

// twoAppServers starts three memcached processes and two Stores over
// them (app servers A and B), B's roll-backs counted and its repair queue
// off (the tests run its repair client themselves: RepairKey).
func twoAppServers(t *testing.T) (servers []*mcserver.Server, a, b *memcached.Store, rolled *rollBackCounter) {
	t.Helper()
	servers = startNodes(t, 3)
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond}
	a = newStore(t, servers, cfg)
	rolled = &rollBackCounter{}
	cfg.OnEvent = rolled.observe
	b = newStore(t, servers, cfg)
	memcached.SetRepairQueueOff(b)
	return servers, a, b, rolled
}

// heldWriter holds a Store's writer on key at its own completion's read
// of P (SetBeforeCompleteOwn) while armed, one write at a time.
type heldWriter struct {
	key     string
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func newHeldWriter(s *memcached.Store, key string) *heldWriter {
	return newHeldWriterAt(key, func(hold func(string)) { memcached.SetBeforeCompleteOwn(s, hold) })
}

// newHeldWriterAt is newHeldWriter at another hook of the writer's: set
// installs hold there (e.g. SetUndoStart).
func newHeldWriterAt(key string, set func(hold func(key string))) *heldWriter {
	h := &heldWriter{key: key}
	set(func(k string) {
		if k == key && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
	})
	return h
}

// arm holds the next write on key; the returned function releases it
// (once; cleanup releases it too).
func (h *heldWriter) arm(t *testing.T) (release func()) {
	h.held, h.release = make(chan struct{}), make(chan struct{})
	h.armed.Store(true)
	var once sync.Once
	release = func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(release)
	return release
}

// restampP rewrites key's item on P (cands[0]) with its own bytes and
// flags, exp seconds left: R9's re-stamp (a new token), so that a write
// holding the old token is refused there.
func restampP(t *testing.T, cands []string, key string, exp int) []byte {
	t.Helper()
	it := rawGet(t, cands[0], key)
	require.True(t, it.found)
	rawSet(t, cands[0], key, it.value, exp, it.flags)
	return it.value
}

// TestSplitRolledBack is §16 item 1 (R4.4′): a write W on Store A (one app
// server) that P refused (re-stamped by R9) and Q stored, W held before
// its own completion reads P: a Q-ahead plain split. Store B (another
// process) sees it:
//   - get: B's first Get returns the parent with handle 0 (first sight);
//     its second rolls the split back (P re-stamped, Q CASed to P's exact
//     bytes, with P's t less the clock slack) and returns the parent with a
//     usable handle; released, W finds both copies holding the parent:
//     ErrCASConflict (not applied); B's handle then writes;
//   - get/code-before (SetSplitCompletes): B's second Get completes W onto
//     P and returns it; W answers success;
//   - repair: B's repair client puts the split off at first sight (nothing
//     written) and rolls it back at the next; W answers ErrCASConflict
//     (repair/code-before: completed, W answers success);
//   - race: W released between the roll-back's re-stamp of P and its CAS
//     of Q: W's own completion (read P, re-stamp Q, CAS P) stores, the
//     roll-back's CAS of Q is refused (each CASes the copy the other
//     re-stamps, with a token read before its own first CAS): W answers
//     success and B reads W;
//   - promised: Q promised above W's epoch: no record of that epoch goes
//     onto Q (R11.3): B re-ballots W into a greater epoch (promise on Q, fence
//     on P, copy to Q) and returns it; W answers success (§17: the
//     re-ballot's record carries W; promised/code-before, SetCarriesOff:
//     ErrOutcomeUnknown, rv-build n3), never a conflict;
//   - p-ahead: a write on P whose Q still holds its parent (no writer
//     left) is completed as before (no roll-back), and returned.
func TestSplitRolledBack(t *testing.T) {
	const key = "rollback"
	type rig struct {
		servers []*mcserver.Server
		cands   []string
		a, b    *memcached.Store
		rolled  *rollBackCounter
		parent  []byte // P's bytes before W
		wrote   chan error
		release func()
	}
	// split makes the held Q-ahead split; hook sets B up first.
	split := func(t *testing.T, hook func(*memcached.Store)) rig {
		servers, a, b, rolled := twoAppServers(t)
		if hook != nil {
			hook(b)
		}
		cands := memcached.WitnessCandidates(a, key)
		e := writtenOnce(t, a, key)
		hw := newHeldWriter(a, key)
		release := hw.arm(t)
		// P re-stamped with 20 s left: the roll-back's copy gets P's t
		// less the clock slack, not Q's minute.
		parent := restampP(t, cands, key, 20)
		wrote := make(chan error, 1)
		go func() {
			_, err := a.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
			wrote <- err
		}()
		recvWithin(t, hw.held, "the writer held before its own completion reads P")
		_, payload, err := envelope.Decode(rawGet(t, cands[1], key).value)
		require.NoError(t, err)
		require.Equal(t, "v3", string(payload), "the rig: Q holds the write")
		return rig{servers, cands, a, b, rolled, parent, wrote, release}
	}
	firstSight := func(t *testing.T, r rig) {
		t.Helper()
		got, err := r.b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value), "first sight: the parent")
		require.Zero(t, got.CAS, "first sight: no usable handle")
	}
	rolledBack := func(t *testing.T, r rig) {
		t.Helper()
		p, q := rawGet(t, r.cands[0], key), rawGet(t, r.cands[1], key)
		require.Equal(t, r.parent, p.value, "P keeps the parent's bytes")
		require.Equal(t, r.parent, q.value, "Q holds the parent's exact bytes")
		require.Equal(t, p.flags, q.flags)
		require.LessOrEqual(t, q.ttl, p.ttl, "Q's copy does not outlive P's")
		require.GreaterOrEqual(t, q.ttl, p.ttl-3, "Q gets P's t less the clock slack")
		require.EqualValues(t, 1, r.rolled.n.Load(), "one roll-back reported")
	}
	notApplied := func(t *testing.T, r rig) {
		t.Helper()
		r.release()
		err := recvWithin(t, r.wrote, "the writer's answer")
		require.ErrorIs(t, err, provider.ErrCASConflict, "rolled back: the write was not applied")
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	}
	applied := func(t *testing.T, r rig) {
		t.Helper()
		r.release()
		require.NoError(t, recvWithin(t, r.wrote, "the writer's answer"), "completed: applied")
		requireSessionIs(t, r.servers, key, "v3", "the write is the session")
		require.Zero(t, r.rolled.n.Load(), "nothing rolled back")
	}

	t.Run("get", func(t *testing.T) {
		r := split(t, nil)
		firstSight(t, r)
		got, err := r.b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value), "rolled back: the parent")
		require.NotZero(t, got.CAS, "rolled back: a usable handle")
		rolledBack(t, r)
		notApplied(t, r)
		_, err = r.b.CompareAndSwap(context.Background(), key, []byte("v4"), got.CAS, time.Minute)
		require.NoError(t, err, "a write through B after the roll-back")
		requireSessionIs(t, r.servers, key, "v4", "B's write is the session")
	})
	t.Run("get/code-before", func(t *testing.T) {
		r := split(t, memcached.SetSplitCompletes)
		firstSight(t, r)
		got, err := r.b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v3", string(got.Value), "the code before: the second sight completes the write")
		applied(t, r)
	})
	repair := func(t *testing.T, r rig) {
		t.Helper()
		q := rawGet(t, r.cands[1], key).value
		memcached.RepairKey(r.b, key)
		require.Equal(t, q, rawGet(t, r.cands[1], key).value, "the repair client's first sight writes nothing")
		require.Equal(t, r.parent, rawGet(t, r.cands[0], key).value, "the repair client's first sight writes nothing")
		memcached.RepairKey(r.b, key)
	}
	t.Run("repair", func(t *testing.T) {
		r := split(t, nil)
		repair(t, r)
		rolledBack(t, r)
		notApplied(t, r)
		requireSessionIs(t, r.servers, key, "v2", "rolled back: the parent is the session")
	})
	t.Run("repair/code-before", func(t *testing.T) {
		r := split(t, memcached.SetSplitCompletes)
		repair(t, r)
		applied(t, r)
	})
	t.Run("race", func(t *testing.T) {
		var r rig
		var once sync.Once
		r = split(t, func(b *memcached.Store) {
			memcached.SetRollBackRestamped(b, func(k string) {
				if k == key {
					once.Do(func() {
						r.release()
						require.NoError(t, recvWithin(t, r.wrote, "the writer's answer"), "the writer's own completion stores")
					})
				}
			})
		})
		firstSight(t, r)
		got, err := r.b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v3", string(got.Value), "the writer's completion won: its write")
		require.Zero(t, r.rolled.n.Load(), "the roll-back's CAS of Q refused")
		requireSessionIs(t, r.servers, key, "v3", "the write is the session")
	})
	for _, before := range []bool{false, true} {
		name := "promised"
		if before {
			name += "/code-before"
		}
		t.Run(name, func(t *testing.T) {
			r := split(t, nil)
			if before {
				memcached.SetCarriesOff(r.a) // the writer is held: set before its release
			}
			promiseAt(t, r.cands[1], key, 5)
			firstSight(t, r)
			got, err := r.b.Get(context.Background(), key)
			require.NoError(t, err)
			require.Equal(t, "v3", string(got.Value), "re-balloted: the write")
			for _, c := range r.cands[:2] {
				require.Equal(t, [3]uint32{6, 0, 1}, configAt(t, c, key), "the write carried into epoch 6 (above Q's promise), P and Q kept")
			}
			require.Zero(t, r.rolled.n.Load(), "nothing rolled back")
			r.release()
			err = recvWithin(t, r.wrote, "the writer's answer")
			require.NotErrorIs(t, err, provider.ErrCASConflict, "the write was returned: never not applied")
			if before {
				// rv-build n3: the re-ballot's record hid which write it
				// carried ("may be built on this write").
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before §17")
				return
			}
			// §17: the re-ballot's record carries the write (Carries),
			// established on both copies: applied.
			require.NoError(t, err, "the re-ballot carries the write: applied")
			requireSessionIs(t, r.servers, key, "v3", "the write is the session")
		})
	}
	t.Run("p-ahead", func(t *testing.T) {
		_, a, b, rolled := twoAppServers(t)
		cands := memcached.WitnessCandidates(a, key)
		e := writtenOnce(t, a, key)
		parent := rawGet(t, cands[1], key)
		_, err := a.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
		require.NoError(t, err)
		rawSet(t, cands[1], key, parent.value, int(parent.ttl), parent.flags)
		got, err := b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value), "first sight: the parent")
		got, err = b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v3", string(got.Value), "a P-ahead split is completed")
		require.Equal(t, rawGet(t, cands[0], key).value, rawGet(t, cands[1], key).value, "Q completed from P")
		require.Zero(t, rolled.n.Load(), "nothing rolled back")
	})
}

// conflictCounter counts the writes its Store answered ErrCASConflict
// (not of unknown outcome): the provider retries them.
type conflictCounter struct {
	*memcached.Store
	n atomic.Int32
}

func (c *conflictCounter) count(err error) {
	if errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrOutcomeUnknown) {
		c.n.Add(1)
	}
}

func (c *conflictCounter) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	n, err := c.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	c.count(err)
	return n, err
}

func (c *conflictCounter) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (uint64, uint64, error) {
	n, touched, err := c.Store.CompareAndAppend(ctx, key, delta, cas, ttl)
	c.count(err)
	return n, touched, err
}

// TestSplitRolledBackProviderRetries is §16 item 1 at the provider: a
// lock acquire, and then its release, each written by app server A from
// its cached token after R9 re-stamped P (P refuses, Q stores), held
// before A's own completion; app server B's second Get rolls each split
// back. A's Store answers ErrCASConflict (not applied), and the provider
// retries: the acquire takes the lock (B's provider finds it locked), the
// release releases it (B's provider then takes it). Before R4.4′
// (SetSplitCompletes on B) B's Get completes each write and no retry is
// needed.
func TestSplitRolledBackProviderRetries(t *testing.T) {
	for _, codeBefore := range []bool{false, true} {
		t.Run(map[bool]string{false: "rolled-back", true: "code-before"}[codeBefore], func(t *testing.T) {
			_, a, sb, rolled := twoAppServers(t)
			sa := &conflictCounter{Store: a}
			if codeBefore {
				memcached.SetSplitCompletes(sb)
			}
			pa, err := provider.New(sa, provider.Config{})
			require.NoError(t, err)
			pb, err := provider.New(sb, provider.Config{})
			require.NoError(t, err)
			ctx := context.Background()
			id, err := session.NewID()
			require.NoError(t, err)
			d := pa.CreateNewStoreData(0)
			require.NoError(t, d.Values.Set("n", 1))
			require.NoError(t, pa.SetAndReleaseItemExclusive(ctx, id, d, 0, true))
			key, err := pa.Key(id)
			require.NoError(t, err)
			cands := memcached.WitnessCandidates(sb, key)
			hw := newHeldWriter(sa.Store, key)
			// splitThen runs write on A with P re-stamped, holds it before
			// its own completion, lets B read twice and releases it.
			splitThen := func(what string, write func() error) {
				release := hw.arm(t)
				restampP(t, cands, key, 60)
				done := make(chan error, 1)
				go func() { done <- write() }()
				recvWithin(t, hw.held, what+": held before its own completion")
				for i := range 2 {
					_, err := sb.Get(ctx, key)
					require.NoError(t, err, "%s: B's Get %d", what, i)
				}
				release()
				require.NoError(t, recvWithin(t, done, what), what)
			}
			var item *provider.Item
			splitThen("the acquire", func() (err error) {
				item, err = pa.GetItemExclusive(ctx, id)
				return err
			})
			conflicts, rolls := sa.n.Load(), rolled.n.Load()
			_, err = pb.GetItemExclusive(ctx, id)
			require.ErrorIs(t, err, provider.ErrLocked, "A holds the lock")
			splitThen("the release", func() error { return pa.ReleaseItemExclusive(ctx, id, item.LockID) })
			got, err := pb.GetItemExclusive(ctx, id)
			require.NoError(t, err, "released: B takes the lock")
			var n int
			ok, err := got.Data.Values.Get("n", &n)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, 1, n, "the session's data kept")
			t.Logf("acquire: %d conflicts, %d roll-backs; with the release: %d, %d", conflicts, rolls, sa.n.Load(), rolled.n.Load())
			if codeBefore {
				require.Zero(t, sa.n.Load(), "the code before: completed, nothing retried")
				require.Zero(t, rolled.n.Load())
				return
			}
			require.EqualValues(t, 1, conflicts, "the acquire rolled back: one conflict, retried")
			require.EqualValues(t, 1, rolls)
			require.EqualValues(t, 2, sa.n.Load(), "the release rolled back: one more conflict, retried")
			require.EqualValues(t, 2, rolled.n.Load())
		})
	}
}

// TestSplitRolledBackParentTimeout is cold review rv-build m1: the
// roll-back puts the parent back on Q, so Q's copy gets the parent's t
// (less the clock slack), capped by the parent's own timeout, not by the
// rolled-back write's. The parent lives a minute (requireWritable's
// write), the write would have lived 10 s: before the fix (copyExp with
// the write's timeout) Q's copy kept about 10 s while P's kept a minute,
// the same bytes, so Q expired early and the next read paid a failover.
func TestSplitRolledBackParentTimeout(t *testing.T) {
	const key = "rollttl"
	_, a, b, rolled := twoAppServers(t)
	ctx := context.Background()
	_, err := a.Add(ctx, key, []byte("v1"), 30*time.Minute)
	require.NoError(t, err)
	requireWritable(t, a, key)
	e, err := a.Get(ctx, key)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(a, key)
	hw := newHeldWriter(a, key)
	release := hw.arm(t)
	restampP(t, cands, key, int(rawGet(t, cands[0], key).ttl)) // its own expiry kept
	wrote := make(chan error, 1)
	go func() {
		_, err := a.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, 10*time.Second)
		wrote <- err
	}()
	recvWithin(t, hw.held, "the writer held before its own completion reads P")
	for range 2 { // the first sight returns the parent; the second rolls back
		got, err := b.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value))
	}
	require.EqualValues(t, 1, rolled.n.Load(), "one roll-back")
	p, q := rawGet(t, cands[0], key), rawGet(t, cands[1], key)
	require.Equal(t, p.value, q.value, "Q holds P's bytes")
	require.GreaterOrEqual(t, q.ttl, p.ttl-3, "Q gets the parent's t less the clock slack, not the write's 10 s")
	release()
	require.ErrorIs(t, recvWithin(t, wrote, "the writer's answer"), provider.ErrCASConflict)
}
