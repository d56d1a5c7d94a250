package memcached_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// Review-3 m2 (a refused write failover over a lost fence), against real
// memcached. Opposite failovers, two wrong suspicions and no fault: A holds
// c1 failed and fails the session over onto (c0, c2); B holds c0 failed
// and fails it over onto (c1, c2); B wins c2, and A's fence on c0, if it
// was stored, is a lost fence on the third node of B's configuration.
// Then c2 is flushed, and B writes with the handle of its read: c1 stores
// the write, c2 refuses it, and R3's write failover reads c0. It fails
// over only onto the witness of B's configuration or data of a lower
// epoch; review 3 found it refusing A's lost fence (the same epoch as B's
// configuration), ErrOutcomeUnknown long after the failover time.
//
// Under R11 (ballots) the two decisions cannot share an epoch: both write
// c2 (promise, copy), so the later one read the earlier one's promise and
// took a higher epoch, or its promise was refused and it fenced nothing.
// So A's fence, when stored, is below B's epoch, and the write failover
// takes it; and any touch of c0 (R2's GetAndTouch, R3's witness touch,
// an anomaly read's R4.3) or the repair scan queues the key for R9, which
// turns that lower-rank record into B's witness. The rules before R11
// (memcached.SetNoPromise, the model's NoPromise) still make review 3's
// state, and the write failover still refuses it: the case "no-promise".

// lostFenceRig is the state the opposite failovers left: B, the winner's
// Store (c0 its failed node until the test clears it), its read of the
// session (e: a handle of B's configuration), and the epochs on c0 (A's
// fence, or the base where A fenced nothing) and on B's copies.
type lostFenceRig struct {
	servers []*mcserver.Server
	cands   []string
	b       *memcached.Store
	e       provider.Entry
}

// lostFence runs A's and B's failovers of key ("v2", epoch 0, c0 primary)
// with B's whole failover before A's nth `ms <key>` (1: before A's first
// write; 2: after A's promise, before its fence, under R11), broken
// applied to both Stores (nil: none) and setB to B, both before they
// start. B's repair client runs when repair is set (its repair queue is
// off otherwise); neither scans.
func lostFence(t *testing.T, key string, nth int32, broken, setB func(*memcached.Store), repair bool) lostFenceRig {
	servers := startNodes(t, 3)
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, RepairEvery: -1})
	writtenOnce(t, s0, key)
	cands := memcached.WitnessCandidates(s0, key)
	cfg := func(dial func(context.Context, string, string) (net.Conn, error), set ...func(*memcached.Store)) memcached.Config {
		return memcached.WithHooks(memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, RepairEvery: -1, DialContext: dial}, func(s *memcached.Store) {
			for _, f := range append(set, broken) {
				if f != nil {
					f(s)
				}
			}
		})
	}

	// B holds c0 failed (its dials there refused) before A decides, so
	// that its failover runs at once inside A's decision.
	var refuseB atomic.Bool
	refuseB.Store(true)
	queueOff := memcached.SetRepairQueueOff
	if repair {
		queueOff = nil
	}
	b := newStore(t, servers, cfg(refusingDial(cands[0], &refuseB, nil), queueOff, setB))
	testwait.Until(t, 10*time.Second, "B to hold c0 failed", func() bool {
		_, _ = b.Get(context.Background(), "warm")
		return memcached.NodeFailed(b, cands[0])
	})

	var e provider.Entry
	var errB error
	var ran atomic.Bool
	var count atomic.Int32
	dialA := func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == cands[1] {
			return nil, errors.New("connection refused (test)") // A's wrong suspicion
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		return &hookConn{Conn: c, count: &count, nth: nth, key: key, hook: func() {
			ran.Store(true)
			e, errB = b.Get(context.Background(), key)
		}}, nil
	}
	// A's decision, refused on c2, is followed by a back-off: A stops
	// there (its call cancelled), as a process that paused or died would.
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := newStore(t, servers, cfg(dialA, memcached.SetRepairQueueOff, func(a *memcached.Store) {
		memcached.SetBackoffHook(a, func(string, int, time.Duration) { cancelA() })
	}))
	_, errA := a.Get(ctxA, key)
	require.True(t, ran.Load(), "B's failover ran inside A's decision")
	require.Error(t, errA, "A's decision was refused, its call stopped")
	require.NoError(t, errB, "B's read, which failed the session over")
	require.Equal(t, "v2", string(e.Value))

	// B's wrong suspicion ends.
	refuseB.Store(false)
	testwait.Until(t, 10*time.Second, "B to hear c0 again", func() bool { return !memcached.NodeFailed(b, cands[0]) })
	return lostFenceRig{servers: servers, cands: cands, b: b, e: e}
}

// requirePending requires addr to hold a fence (pending) of configuration
// want ({E, P, Q}).
func requirePending(t *testing.T, addr, key string, want [3]uint32, why string) {
	t.Helper()
	env, payload, _ := envAt(t, addr, key)
	require.Equal(t, want, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, why)
	require.True(t, env.Pending, why)
	require.Equal(t, "v2", payload)
}

// requireWitnessOf waits (bounded) until addr holds the witness of
// configuration want.
func requireWitnessOf(t *testing.T, addr, key string, want [3]uint32, why string) {
	t.Helper()
	testwait.Until(t, 10*time.Second, why, func() bool {
		it := rawGet(t, addr, key)
		return it.found && it.flags == 2 && configAt(t, addr, key) == want
	})
}

// TestLostFenceWriteFailover: the write failover after opposite failovers
// and a flush of the winner's secondary, with the handle of the winner's
// read (review-3 m2), under R11 and under the rules before
// (SetNoPromise): R11 leaves no fence of the loser, or one of a lower
// epoch, and the write is acknowledged; the rules before leave review 3's
// same-epoch lost fence, and the write failover refuses it.
func TestLostFenceWriteFailover(t *testing.T) {
	for _, c := range []struct {
		name   string
		nth    int32
		broken func(*memcached.Store)
	}{
		// B between A's read and A's first write: A's promise on c2 is
		// refused and A fences nothing (c0 keeps the base, epoch 0).
		{"R11-opposite", 1, nil},
		// B between A's promise (epoch 1 on c2) and its fence: B read
		// the promise and took epoch 2; A's fence on c0 is stored, its
		// copy on c2 refused: a lost fence of epoch 1, below B's.
		{"R11-after-promise", 2, nil},
		// The rules before R11: B between A's read and its first write,
		// A's fence (epoch 1): both epoch 1, review 3's state.
		{"no-promise", 1, memcached.SetNoPromise},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "lostfence"
			r := lostFence(t, key, c.nth, c.broken, nil, false)
			won := uint32(1)
			switch c.name {
			case "R11-opposite":
				env, _, _ := envAt(t, r.cands[0], key)
				require.Equal(t, [3]uint32{0, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "A fenced nothing: c0 holds the base")
				require.False(t, env.Pending)
			case "R11-after-promise":
				won = 2
				requirePending(t, r.cands[0], key, [3]uint32{1, 0, 2}, "A's lost fence, epoch 1")
			case "no-promise":
				requirePending(t, r.cands[0], key, [3]uint32{1, 0, 2}, "A's lost fence, epoch 1")
			}
			for _, addr := range r.cands[1:] {
				env, _, _ := envAt(t, addr, key)
				require.Equal(t, [3]uint32{won, 1, 2}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "B's configuration on %s", addr)
				require.False(t, env.Pending)
			}

			require.NoError(t, serverAt(t, r.servers, r.cands[2]).FlushAll(context.Background()))
			_, err := r.b.CompareAndSwap(context.Background(), key, []byte("v3"), r.e.CAS, time.Minute)
			if c.broken != nil {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the rules before: the same-epoch lost fence refused (review-3 m2)")
				requirePending(t, r.cands[0], key, [3]uint32{1, 0, 2}, "the write failover wrote nothing on c0")
				// Needlessly unknown: the write is the session (a reader
				// fails over from c1 onto c0).
				requireSessionIs(t, r.servers, key, "v3", "the write on c1 is the newest record")
				return
			}
			require.NoError(t, err, "the write failover takes c0 (review-3 m2 does not arise)")
			for _, addr := range []string{r.cands[1], r.cands[0]} {
				env, payload, _ := envAt(t, addr, key)
				require.Equal(t, [3]uint32{won + 1, 1, 0}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "failed over onto c0, on %s", addr)
				require.Equal(t, "v3", payload)
			}
			requireSessionIs(t, r.servers, key, "v3", "the acknowledged write is the session")
		})
	}
}

// TestLostFenceRepaired: the lost fence on the winner's third node does
// not outlast a touch of that node, or a repair scan: R9 turns it (a data
// record ranked below the configuration's: the same epoch, pending below
// established, or a lower epoch) into the winner's witness, under the
// rules before R11 too, and the write after the flush then fails over
// onto it. "touch": B's GetAndTouch touches c0, which queues the key in
// B's repair client; "scan": a third process's repair scan, with no call
// at all. "code-before": B's R9 leaves data on the third node
// (SetR9KeepsData, the code before review-3 B1): after the touch and B's
// visit the lost fence is still there; under the rules before R11 too
// (review 3's code) the write is then unknown, under R11 acknowledged
// (the fence's epoch is lower).
func TestLostFenceRepaired(t *testing.T) {
	for _, c := range []struct {
		name   string
		nth    int32
		broken func(*memcached.Store)
		won    uint32
	}{
		{"R11-after-promise", 2, nil, 2},
		{"no-promise", 1, memcached.SetNoPromise, 1},
	} {
		for _, by := range []string{"touch", "scan", "code-before"} {
			t.Run(c.name+"/"+by, func(t *testing.T) {
				if by == "scan" && scanEvery() < 0 {
					t.Skip("SESSIONLOCK_SCAN_OFF")
				}
				const key = "lostfence"
				var visited, ticked atomic.Bool
				var setB func(*memcached.Store)
				if by == "code-before" {
					setB = func(s *memcached.Store) {
						memcached.SetR9KeepsData(s)
						memcached.SetLoopVisit(s, func(k string) { visited.Store(visited.Load() || k == key) })
						memcached.SetAfterTick(s, func() { ticked.Store(visited.Load()) })
					}
				}
				r := lostFence(t, key, c.nth, c.broken, setB, by != "scan")
				requirePending(t, r.cands[0], key, [3]uint32{1, 0, 2}, "A's lost fence")
				if by == "scan" {
					newStore(t, r.servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, RepairEvery: scanEvery()})
				} else {
					_, err := r.b.GetAndTouch(context.Background(), key, time.Minute)
					require.NoError(t, err)
				}
				if by == "code-before" {
					// B's loop visited the key (queued by the touch) and
					// then ended a tick: the visit is over.
					testwait.Until(t, 10*time.Second, "B's repair visit of the key", ticked.Load)
					requirePending(t, r.cands[0], key, [3]uint32{1, 0, 2}, "the code before: R9 left the lost fence")
				} else {
					requireWitnessOf(t, r.cands[0], key, [3]uint32{c.won, 1, 2}, "R9 to make the lost fence B's witness")
				}
				e, err := r.b.Get(context.Background(), key) // R9 may have re-stamped both copies
				require.NoError(t, err)
				require.NoError(t, serverAt(t, r.servers, r.cands[2]).FlushAll(context.Background()))
				_, err = r.b.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
				if by == "code-before" && c.broken != nil {
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "review 3's code: the same-epoch lost fence refused")
					return
				}
				require.NoError(t, err, "the write failover onto c0")
				require.Equal(t, [3]uint32{c.won + 1, 1, 0}, configAt(t, r.cands[0], key))
				requireSessionIs(t, r.servers, key, "v3", "the acknowledged write is the session")
			})
		}
	}
}
