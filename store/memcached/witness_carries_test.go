package memcached_test

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Tests of docs/replication.md §17 (which write a decision carries) on
// real memcached: a writer whose write failover loses to another
// process's R7 of the same write answers from the record that carries it.

// carriesRig is a session written once (c0 its primary, c1 its
// secondary, c2 the witness node) and a writer, Store A, whose write
// (v3, CompareAndSwap or CompareAndAppend) P stores and Q never gets (A's
// connections to c1 cut once its handle is read): R3's write failover,
// held at SetWriteFailoverHold's point read (before its read of the
// witness node, or after it).
type carriesRig struct {
	a       *memcached.Store // the writer's Store
	servers []*mcserver.Server
	cands   []string
	wrote   chan error
	release func()
	refused *atomic.Int32 // the write failover's refusals that read again
	cut     *atomic.Bool  // A's connections to c1 cut
}

// heldWriteFailover starts the rig's write, set applied to A first, and
// returns once A is held.
func heldWriteFailover(t *testing.T, key string, read, appended bool, set func(*memcached.Store)) carriesRig {
	t.Helper()
	servers, _, cands, _ := writtenSession(t, key)
	var cut atomic.Bool
	dial := refusingDial(cands[1], &cut, func(c net.Conn) net.Conn { return &cutConn{Conn: c, cut: &cut} })
	a := promiseStore(t, servers, dial, set)
	held, release := make(chan struct{}), make(chan struct{})
	var once, rel sync.Once
	memcached.SetWriteFailoverHold(a, func(k string, r bool) {
		if k == key && r == read {
			once.Do(func() {
				close(held)
				<-release
			})
		}
	})
	var refused atomic.Int32
	memcached.SetWriteFailoverRefused(a, func(k string) {
		if k == key {
			refused.Add(1)
		}
	})
	r := carriesRig{a: a, servers: servers, cands: cands, wrote: make(chan error, 1), refused: &refused, cut: &cut}
	r.release = func() { rel.Do(func() { close(release) }) }
	t.Cleanup(r.release)
	e, err := a.Get(context.Background(), key)
	require.NoError(t, err)
	cut.Store(true)
	go func() {
		var err error
		if appended {
			_, _, err = a.CompareAndAppend(context.Background(), key, []byte("3"), e.CAS, time.Minute)
		} else {
			_, err = a.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
		}
		r.wrote <- err
	}()
	recvWithin(t, held, "the writer held in its write failover")
	return r
}

// eachVariant runs body as name, and as brokenName with broken (a hook
// setter for the writer's Store) and isBroken true.
func eachVariant(t *testing.T, name, brokenName string, broken func(*memcached.Store), body func(t *testing.T, isBroken bool, set func(*memcached.Store))) {
	for _, b := range []bool{false, true} {
		n, set := name, (func(*memcached.Store))(nil)
		if b {
			n, set = brokenName, broken
		}
		t.Run(n, func(t *testing.T) { body(t, b, set) })
	}
}

// otherR7 is another app server's read of the session with Q (c1)
// flushed: it finds the write on P alone and fails it over (R7: promise
// on c2, fence on c0, copy to c2), and returns want.
func otherR7(t *testing.T, r carriesRig, key, want string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, serverAt(t, r.servers, r.cands[1]).FlushAll(ctx))
	got, err := promiseStore(t, r.servers, nil, nil).Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, want, string(got.Value), "the other process returns the write")
	for _, c := range []string{r.cands[0], r.cands[2]} {
		env, _, _ := envAt(t, c, key)
		require.Equal(t, [3]uint32{1, 0, 2}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "its failover on %s", c)
		require.False(t, env.Pending, "established on %s", c)
	}
}

// TestCarriesWriteFailoverOvertaken is §17's case: a Store's write
// failover (Q lost) races another Store's R7 of the same write, which is
// established first. witness: the writer, held before its read of the
// witness node, finds there the other failover's copy (epoch 1, at the
// write's version), which carries its write: success. promise: held
// after that read (the witness then), its promise on c2 is refused; it
// resolves the session (M1), which returns the other failover's record,
// carrying the write: success. The code before (SetCarriesOff):
// ErrOutcomeUnknown in both ("the witness node holds no record to fail
// over to"; "promising on the witness node").
func TestCarriesWriteFailoverOvertaken(t *testing.T) {
	for _, c := range []struct {
		name         string
		read, before bool
	}{{"witness", false, false}, {"witness/code-before", false, true}, {"promise", true, false}, {"promise/code-before", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			const key = "carries"
			var set func(*memcached.Store)
			if c.before {
				set = memcached.SetCarriesOff
			}
			r := heldWriteFailover(t, key, c.read, false, set)
			otherR7(t, r, key, "v3")
			r.release()
			err := recvWithin(t, r.wrote, "the writer's answer")
			if c.before {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before §17")
				require.Zero(t, r.refused.Load())
				return
			}
			require.NoError(t, err, "the other failover carries the write: applied")
			if c.read {
				require.EqualValues(t, 1, r.refused.Load(), "the promise refused, then resolved")
			}
			requireSessionIs(t, r.servers, key, "v3", "the write is the session")
		})
	}
}

// TestCarriesPendingNotTrusted is rvcarry B1: a record of a greater epoch
// at the write's version that carries it counts only when established.
// The writer, held before its read of the witness node, finds there a
// pending fence (epoch 1, primary c2, secondary c0) that carries its
// write (Carries its nonce), c0 still holding the write itself (epoch 0):
// the fence's other copy holds no established record after it, so the
// answer is unknown (the fence may yet lose to an opposite failover from
// Q with the parent). The broken variant SetCarriesPending answers
// success from the fence alone. A constructed state (no protocol step
// makes this fence: the cold review rvcarries2, R4): a unit test of the
// guard; the natural paths that reach it hold the write or a decision
// carrying it on every copy.
func TestCarriesPendingNotTrusted(t *testing.T) {
	eachVariant(t, "B1", "pending-trusted", memcached.SetCarriesPending, func(t *testing.T, broken bool, set func(*memcached.Store)) {
		const key = "carriespending"
		r := heldWriteFailover(t, key, false, false, set)
		it := rawGet(t, r.cands[0], key)
		env, payload, err := envelope.Decode(it.value)
		require.NoError(t, err)
		require.Equal(t, "v3", string(payload), "the rig: P holds the write")
		fence := env.Decision(rand.Uint64())
		fence.E, fence.P, fence.Q, fence.Pending = 1, 2, 0, true
		require.Equal(t, env.Nonce, fence.Carries, "the rig: the fence carries the write")
		rawSet(t, r.cands[2], key, fence.Wrap(payload), 60, it.flags)
		r.release()
		err = recvWithin(t, r.wrote, "the writer's answer")
		if broken {
			require.NoError(t, err, "the broken variant: success from a pending fence")
			return
		}
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a pending fence carrying the write shows nothing")
		require.ErrorContains(t, err, "its other copy no established record after it")
	})
}

// TestCarriesOppositeChain is rvcarry M2: A fails the session over from
// c0 (c1 cut off from it): D_A (epoch 1, c0 and c2), carrying the base
// X. B, with c0 cut off, fails D_A over from c2 onto c1: D_B (epoch 2,
// c2 and c1), which carries X too, and writes twice on it. A's write
// built on D_A (its parent slot X, as D_B's writes') is stored by c0 and
// refused by c2; c2's record, two versions past D_B, has B's first write
// in the slot of A's write's version: certainly not built on it,
// ErrCASConflict. Without the negative slot rule (SetCarriesNoNegSlot)
// the parent-slot rule no longer tells (both chains' parent slot is X):
// ErrOutcomeUnknown, where the code before §17 answered the conflict.
func TestCarriesOppositeChain(t *testing.T) {
	eachVariant(t, "M2", "no-negative-slot", memcached.SetCarriesNoNegSlot, func(t *testing.T, broken bool, set func(*memcached.Store)) {
		const key = "carriesopposite"
		servers, _, cands, _ := writtenSession(t, key)
		ctx := context.Background()
		var refuseA, refuseB atomic.Bool
		refuseA.Store(true)
		refuseB.Store(true)
		a := promiseStore(t, servers, refusingDial(cands[1], &refuseA, nil), set)
		b := promiseStore(t, servers, refusingDial(cands[0], &refuseB, nil), nil)
		testwait.Until(t, 10*time.Second, "A to hold c1 failed", func() bool {
			_, _ = a.Get(ctx, "warm")
			return memcached.NodeFailed(a, cands[1])
		})
		testwait.Until(t, 10*time.Second, "B to hold c0 failed", func() bool {
			_, _ = b.Get(ctx, "warm")
			return memcached.NodeFailed(b, cands[0])
		})
		ea, err := a.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[2], key), "the rig: D_A")
		eb, err := b.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, [3]uint32{2, 2, 1}, configAt(t, cands[2], key), "the rig: D_B")
		for _, v := range []string{"b1", "b2"} {
			eb.CAS, err = b.CompareAndSwap(ctx, key, []byte(v), eb.CAS, time.Minute)
			require.NoError(t, err)
		}
		dA, _, _ := envAt(t, cands[0], key)
		dB, _, _ := envAt(t, cands[2], key)
		require.Equal(t, dA.Carried(), dB.Ancestors[1], "the rig: D_A and D_B carry one write")
		_, err = a.CompareAndSwap(ctx, key, []byte("a"), ea.CAS, time.Minute)
		if broken {
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "without the negative slot rule")
			require.ErrorContains(t, err, "may be built on this write")
			return
		}
		require.ErrorIs(t, err, provider.ErrCASConflict)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
		require.ErrorContains(t, err, "not built on this write", "decided by c2's chain (overtaken)")
	})
}

// TestCarriesAppendTouched is rvcarry M5: the writer's write is an append
// (CompareAndAppend), its write failover held before its read of the
// witness node while another Store fails it over (R7). The rig then gives
// both copies of that decision 5 s left: a decision made of the appended
// item before the append's touch copies its old life (copyExp). Before
// acknowledging the append from the decision that carries it, the writer
// touches both its copies with the write's T (a minute). The broken
// variant SetCarriesNoTouch acknowledges it with the copies' 5 s left.
func TestCarriesAppendTouched(t *testing.T) {
	eachVariant(t, "M5", "no-touch", memcached.SetCarriesNoTouch, func(t *testing.T, broken bool, set func(*memcached.Store)) {
		const key = "carriesappend"
		r := heldWriteFailover(t, key, false, true, set)
		otherR7(t, r, key, "v23")
		for _, c := range []string{r.cands[0], r.cands[2]} {
			it := rawGet(t, c, key)
			rawSet(t, c, key, it.value, 5, it.flags)
		}
		r.release()
		require.NoError(t, recvWithin(t, r.wrote, "the writer's answer"), "the decision carries the append: applied")
		requireTouched(t, key, broken, r.cands[0], r.cands[2])
		requireSessionIs(t, r.servers, key, "v23", "the append is the session")
	})
}

// TestCarriesReclaimedAppendTouched: the writer's append is on P alone
// (Q cut for it), its write failover held after its read of the witness
// node; the rig completes the append onto Q as a reader's R4.4 would,
// with the old life (5 s: a completion copied before the append's
// touch; a constructed state: another process's read returns the parent
// of a write in flight). The writer's fence on P is refused (the
// completion's re-stamp), it resolves the session to this very append in its own
// configuration (reclaimed) and must touch both copies with T before
// acknowledging it. SetCarriesNoTouch: acknowledged with the old life.
func TestCarriesReclaimedAppendTouched(t *testing.T) {
	eachVariant(t, "own-config", "no-touch", memcached.SetCarriesNoTouch, func(t *testing.T, broken bool, set func(*memcached.Store)) {
		const key = "carriesreclaim"
		r := heldWriteFailover(t, key, true, true, set)
		// A reader's completion (R4.4), as the rig makes it: P's item
		// copied onto Q and P rewritten (a new token), both with the
		// old life.
		p := rawGet(t, r.cands[0], key)
		for _, c := range []string{r.cands[0], r.cands[1]} {
			rawSet(t, c, key, p.value, 5, p.flags)
		}
		r.cut.Store(false) // Q answers the writer's resolution again
		r.release()
		require.NoError(t, recvWithin(t, r.wrote, "the writer's answer"), "the append is the session: applied")
		require.Equal(t, int32(1), r.refused.Load(), "the write failover was refused and resolved the session")
		for _, c := range []string{r.cands[0], r.cands[1]} {
			env, _, _ := envAt(t, c, key)
			require.Equal(t, uint32(0), env.E, "no decision since on %s: resolved in the append's own configuration", c)
		}
		requireTouched(t, key, broken, r.cands[0], r.cands[1])
		requireSessionIs(t, r.servers, key, "v23", "the append is the session")
	})
}

// requireTouched: the copies of key on cands were touched with the
// append's T (1 min: more than 50 s left), or, broken, kept the rig's old
// life (5 s at most).
func requireTouched(t *testing.T, key string, broken bool, cands ...string) {
	t.Helper()
	for _, c := range cands {
		ttl := rawGet(t, c, key).ttl
		if broken {
			require.LessOrEqual(t, ttl, int64(5), "the broken variant: the old life kept on %s", c)
			continue
		}
		require.Greater(t, ttl, int64(50), "touched with T on %s", c)
	}
}
