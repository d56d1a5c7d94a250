package memcached_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Tests of R11, ballots (docs/replication.md §2.2; the fix of P1), against
// real memcached: a decision promises its new epoch on its w before its
// fence (R11.2), takes an epoch above every record and promise it read
// (R11.1), and no record of a lower epoch is written onto a promised item
// or returned from one (R11.3). Each case also runs the rules before
// (memcached.SetNoPromise, the model's NoPromise) and shows what they do.

// promiseStore is a witness-mode store over servers with short failure
// detection and no background R9 (review-r11 m7: its re-stamps raced the
// tests' own), broken applied to it (nil: none).
func promiseStore(t *testing.T, servers []*mcserver.Server, dial func(ctx context.Context, network, addr string) (net.Conn, error), broken func(*memcached.Store)) *memcached.Store {
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
	memcached.SetRepairQueueOff(s) // the tests run R9 themselves (RepairKey)
	if broken != nil {
		broken(s)
	}
	return s
}

// promiseAt rewrites key's item on addr in place with promise e (the same
// record, flags and expiry): a decision's promise whose fence never came.
func promiseAt(t *testing.T, addr, key string, e uint32) {
	t.Helper()
	it := rawGet(t, addr, key)
	require.True(t, it.found)
	raw, err := envelope.Promised(it.value, e)
	require.NoError(t, err)
	rawSet(t, addr, key, raw, int(it.ttl), it.flags)
}

// envAt decodes key's item on addr, and its promise.
func envAt(t *testing.T, addr, key string) (envelope.Envelope, string, uint32) {
	t.Helper()
	it := rawGet(t, addr, key)
	require.True(t, it.found, "no item on %s", addr)
	env, payload, err := envelope.Decode(it.value)
	require.NoError(t, err)
	return env, string(payload), envelope.PromiseOf(it.value)
}

// configAt is the (E, P, Q) of key's record on addr.
func configAt(t *testing.T, addr, key string) [3]uint32 {
	env, _, _ := envAt(t, addr, key)
	return [3]uint32{env.E, uint32(env.P), uint32(env.Q)}
}

// eachRule runs body over a session written once (writtenSession), once
// under R11 (broken nil) and once under the rules before (broken:
// memcached.SetNoPromise, to apply to the stores it makes).
func eachRule(t *testing.T, key string, body func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string)) {
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
	}{{"R11", nil}, {"no-promise", memcached.SetNoPromise}} {
		t.Run(c.name, func(t *testing.T) {
			servers, _, cands, _ := writtenSession(t, key)
			body(t, c.broken, servers, cands)
		})
	}
}

// TestFailoverPromisesFirst: R7 after the secondary was flushed promises
// epoch 1 on the witness node (its own witness, the promise added) before
// it fences the primary, and the copy then replaces the promised witness
// (no promise left on any copy of the new configuration). The rules before
// promise nothing.
func TestFailoverPromisesFirst(t *testing.T) {
	const key = "promfirst"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		s := promiseStore(t, servers, nil, broken)
		var mu sync.Mutex
		var seen []uint32
		memcached.SetAfterPromise(s, func(string) {
			it := rawGet(t, cands[2], key)
			env, _, err := envelope.Decode(it.value)
			require.NoError(t, err)
			require.Equal(t, uint32(2), it.flags, "the promise keeps the witness a witness")
			require.Equal(t, [3]uint32{0, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "the witness's own record")
			require.Equal(t, [3]uint32{0, 0, 1}, configAt(t, cands[0], key), "no fence before the promise")
			mu.Lock()
			seen = append(seen, envelope.PromiseOf(it.value))
			mu.Unlock()
		})
		require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(context.Background()))
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(e.Value))
		for _, a := range []string{cands[0], cands[2]} {
			require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, a, key), "failed over to epoch 1 on %s", a)
			_, _, prom := envAt(t, a, key)
			require.Zero(t, prom, "no copy of the new configuration carries a promise")
		}
		mu.Lock()
		defer mu.Unlock()
		if broken != nil {
			require.Empty(t, seen, "the rules before promise nothing")
			return
		}
		require.Equal(t, []uint32{1}, seen, "epoch 1 promised on the witness node, once")
	})
}

// TestFailoverEpochAbovePromise: a dead decision's promise of epoch 5 on
// the witness node: R7 takes epoch 6 (R11.1), where the rules before took
// the base's epoch plus one, below the promise.
func TestFailoverEpochAbovePromise(t *testing.T) {
	const key = "promabove"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		promiseAt(t, cands[2], key, 5)
		require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(context.Background()))
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(e.Value))
		want := uint32(6)
		if broken != nil {
			want = 1
		}
		require.Equal(t, [3]uint32{want, 0, 2}, configAt(t, cands[0], key))
		require.Equal(t, [3]uint32{want, 0, 2}, configAt(t, cands[2], key))
	})
}

// TestPromiseP1 is review-silentp's P1 (B1b's shape) against real
// memcached, from the state its chained failovers leave under R11: c0
// holds a reader's fence of epoch 2 (P = c0, Q = c1, pending, "v0"), whose
// promise of epoch 2 is on c1 ("v5", a writer's version, the newest) and
// whose copy onto c1 never came; c2 holds the witness of epoch 0. A third
// process that holds c0 failed (a wrong suspicion, no fault) fails over
// from c1 and returns "v5". R11: it read the promise, so its epoch is 3,
// above the fence, and "v5" stays the session. The rules before (epoch 1,
// the promise unread) leave the fence of epoch 2 the highest, and the next
// read completes it over c1: "v0", an observed value lost.
func TestPromiseP1(t *testing.T) {
	const key = "p1"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		base, _, _ := envAt(t, cands[1], key)
		fence := base
		fence.E, fence.Pending, fence.Nonce = 2, true, base.Nonce^0x0f0f0f0f
		rawSet(t, cands[0], key, fence.Wrap([]byte("v0")), 60, 1)
		newer := base.Next(base.Nonce^0x3c3c3c3c, base.Timeout)
		newer.Digest = base.Digest
		raw, err := envelope.Promised(newer.Wrap([]byte("v5")), 2)
		require.NoError(t, err)
		rawSet(t, cands[1], key, raw, 60, 1)

		var refuse atomic.Bool
		refuse.Store(true)
		suspects := promiseStore(t, servers, refusingDial(cands[0], &refuse, nil), broken)
		e, err := suspects.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v5", string(e.Value), "the process that holds c0 failed returns c1's version")

		s := promiseStore(t, servers, nil, broken)
		e, err = s.Get(context.Background(), key)
		require.NoError(t, err)
		if broken != nil {
			require.Equal(t, "v0", string(e.Value), "the rules before: the epoch-2 fence completed over the value returned")
			return
		}
		require.Equal(t, "v5", string(e.Value), "the value returned stays the session")
		require.Equal(t, [3]uint32{3, 1, 2}, configAt(t, cands[1], key), "the failover took epoch 3, above the promise")
		requireSessionIs(t, servers, key, "v5", "another app server reads the same")
	})
}

// TestPromisedCopyReballoted: both copies hold the session, and c1 carries
// a dead decision's promise of epoch 4 (its fence never came). R11.3: the
// read returns nothing from the promised copy; it re-ballots the session
// onto the same two nodes at epoch 5 (promise on c1, fence on c0, copy on
// c1), then returns it; R9 then makes c2 the new configuration's witness.
// The rules before return it from the promised copy, unchanged.
func TestPromisedCopyReballoted(t *testing.T) {
	const key = "reballot"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		promiseAt(t, cands[1], key, 4)
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(e.Value))
		if broken != nil {
			require.Equal(t, [3]uint32{0, 0, 1}, configAt(t, cands[0], key), "the rules before: returned as it was")
			_, _, prom := envAt(t, cands[1], key)
			require.Equal(t, uint32(4), prom)
			return
		}
		for _, a := range cands[:2] {
			env, payload, prom := envAt(t, a, key)
			require.Equal(t, [3]uint32{5, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "re-balloted on %s", a)
			require.False(t, env.Pending)
			require.Equal(t, "v2", payload)
			require.Zero(t, prom, "the promise went with the re-ballot's copy")
		}
		memcached.RepairKey(s, key)
		env, _, _ := envAt(t, cands[2], key)
		require.Equal(t, [3]uint32{5, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "R9: the witness of epoch 5")
		e, err = s.Get(context.Background(), key)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
		require.NoError(t, err, "the re-balloted session takes writes")
		requireSessionIs(t, servers, key, "v3", "the write is the session")
	})
}

// TestWriteCompletionOverPromiseUnknown (review-ballot M1): a write whose
// secondary a decision promised epoch 3 after the write's read: P stores
// it, Q refuses it (the promise changed its token), and R3's completion
// reads Q promised above the write. R11.3: the write is not put over the
// promise: ErrOutcomeUnknown (it is on P). The rules before CAS it over
// the promise and acknowledge.
func TestWriteCompletionOverPromiseUnknown(t *testing.T) {
	const key = "m1"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		promiseAt(t, cands[1], key, 3)
		_, err = s.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
		if broken != nil {
			require.NoError(t, err, "the rules before: completed over the promise")
			_, _, prom := envAt(t, cands[1], key)
			require.Zero(t, prom, "the promise erased by a record of epoch 0")
			return
		}
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
		_, payload, prom := envAt(t, cands[1], key)
		require.Equal(t, uint32(3), prom, "the promise stays")
		require.Equal(t, "v2", payload)
	})
}

// TestWriteFailoverPromises: R3's write failover (P stored, Q silent)
// promises its epoch on the witness node before it fences P, above the
// witness node's own promise (a dead decision's, epoch 5): the write is
// acknowledged on epoch 6. The rules before take epoch 1 and promise
// nothing.
func TestWriteFailoverPromises(t *testing.T) {
	const key = "wfo"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		promiseAt(t, cands[2], key, 5)
		var refuse atomic.Bool
		dial := refusingDial(cands[1], &refuse, func(c net.Conn) net.Conn { return &cutConn{Conn: c, cut: &refuse} })
		s := promiseStore(t, servers, dial, broken)
		var promised atomic.Int32
		memcached.SetAfterPromise(s, func(string) {
			_, _, prom := envAt(t, cands[2], key)
			require.Equal(t, uint32(6), prom)
			require.Equal(t, [3]uint32{0, 0, 1}, configAt(t, cands[0], key), "no fence before the promise")
			promised.Add(1)
		})
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		refuse.Store(true)
		_, err = s.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
		require.NoError(t, err, "acknowledged by the write failover")
		refuse.Store(false)
		want := uint32(6)
		if broken != nil {
			want = 1
		}
		require.Equal(t, [3]uint32{want, 0, 2}, configAt(t, cands[0], key))
		require.Equal(t, [3]uint32{want, 0, 2}, configAt(t, cands[2], key))
		if broken == nil {
			require.Equal(t, int32(1), promised.Load(), "one promise, before the fence")
		} else {
			require.Zero(t, promised.Load())
		}
		requireSessionIs(t, servers, key, "v3", "the acknowledged write is the session")
	})
}

// TestPromisedPrimaryReballoted (review-r11 M2): R4.3 with the primary's
// copy promised (epoch 4): the re-ballot goes the other way, fenced on c1
// and copied to c0, at epoch 5 with c1 the primary. The rules before
// return the session from the promised copy, unchanged.
func TestPromisedPrimaryReballoted(t *testing.T) {
	const key = "pprom"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		promiseAt(t, cands[0], key, 4)
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(e.Value))
		want := [3]uint32{5, 1, 0}
		if broken != nil {
			want = [3]uint32{0, 0, 1}
		}
		for _, a := range cands[:2] {
			env, payload, _ := envAt(t, a, key)
			require.Equal(t, want, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "on %s", a)
			require.Equal(t, "v2", payload)
		}
	})
}

// TestPendingFenceOverPromisedCopyReballoted (review-r11 M2): a fence of
// epoch 1 pending on c0, and c1 promised epoch 3. R11.3: the fence is not
// completed over the promise (R4.4); the read re-ballots it at epoch 4 on
// the same nodes. The rules before complete it at epoch 1 over c1.
func TestPendingFenceOverPromisedCopyReballoted(t *testing.T) {
	const key = "r44"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		base, _, _ := envAt(t, cands[1], key)
		fence := base
		fence.E, fence.Pending, fence.Nonce = 1, true, base.Nonce^0x5a5a
		rawSet(t, cands[0], key, fence.Wrap([]byte("v2")), 60, 1)
		promiseAt(t, cands[1], key, 3)
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(e.Value))
		want := uint32(4)
		if broken != nil {
			want = 1
		}
		for _, a := range cands[:2] {
			env, _, prom := envAt(t, a, key)
			require.Equal(t, want, env.E, "on %s", a)
			require.Zero(t, prom)
		}
	})
}

// TestFirstSightPromisedParent (review-r11 M2): c0 holds a write in flight
// (V3), c1 its parent (V2) promised epoch 3. The first-sight rule would
// return the parent from c1; R11.3 returns nothing from a promised copy:
// the read re-ballots the write at epoch 4 and returns it. The rules
// before return the parent.
func TestFirstSightPromisedParent(t *testing.T) {
	const key = "firstsight"
	eachRule(t, key, func(t *testing.T, broken func(*memcached.Store), servers []*mcserver.Server, cands []string) {
		base, _, _ := envAt(t, cands[1], key)
		child := base.Next(base.Nonce^0x77, base.Timeout)
		child.Digest = base.Digest
		rawSet(t, cands[0], key, child.Wrap([]byte("v3")), 60, 1)
		promiseAt(t, cands[1], key, 3)
		s := promiseStore(t, servers, nil, broken)
		e, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		if broken != nil {
			require.Equal(t, "v2", string(e.Value), "the rules before: the parent, from the promised copy")
			return
		}
		require.Equal(t, "v3", string(e.Value), "not the parent from a promised copy")
		env, _, _ := envAt(t, cands[1], key)
		require.Equal(t, uint32(4), env.E)
	})
}

// TestDeadWitnessPromiseRepaired (review-r11 m2): a dead decision's
// promise on the witness node of the session's configuration. R2 ignores
// it (the session reads and writes as before), its witness touch queues
// the key, and R9 rewrites the witness after re-stamping both copies: the
// promise is gone and the item is version 2 again (which earlier releases
// decode). Before, R9 kept a same-configuration witness as it was, and
// the promise lived as long as the witness.
func TestDeadWitnessPromiseRepaired(t *testing.T) {
	const key = "witprom"
	servers, _, cands, _ := writtenSession(t, key)
	promiseAt(t, cands[2], key, 5)
	s := promiseStore(t, servers, nil, nil)
	e, err := s.GetAndTouch(context.Background(), key, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "v2", string(e.Value), "R2 ignores the witness node's promise")
	memcached.RepairKey(s, key)
	it := rawGet(t, cands[2], key)
	require.Equal(t, uint32(2), it.flags)
	require.Equal(t, byte(envelope.Version), it.value[0], "R9 rewrote the witness: version 2")
	require.Zero(t, envelope.PromiseOf(it.value))
	env, _, _ := envAt(t, cands[2], key)
	require.Equal(t, [3]uint32{0, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "the witness of the session's configuration")
	requireSessionIs(t, servers, key, "v2", "the session is unchanged")
}

// TestBeatenUndoKeepsPromise (review-r11 M1, the reviewer's schedule): W1
// holds a handle on V2; a competitor's V3 is on c0; W1's CAS: c0 refuses,
// c1 stores W1's V3; completeOwn finds c0 beaten; a decision's promise of
// epoch 9 lands on c1 before the undo's first CAS, which is refused; the
// undo reads c1 (W1's V3, promised 9). R11.3: the base is not put back
// over the promise: ErrOutcomeUnknown, c1 keeps W1's write and the
// promise. The code before re-undid it with that read's token: a record of
// epoch 0 over a promise of 9, answered ErrCASConflict.
func TestBeatenUndoKeepsPromise(t *testing.T) {
	const key = "beatenundo"
	servers, _, cands, _ := writtenSession(t, key)
	// The second `ms` on c1, the undo's first CAS: a decision's promise
	// lands first (the first is W1's CAS, stored).
	dial := hookedDialNth(&cands[1], key, 2, func() { promiseAt(t, cands[1], key, 9) })
	s := promiseStore(t, servers, dial, nil)
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	base, _, _ := envAt(t, cands[0], key)
	w2 := base.Next(base.Nonce^0x9999, base.Timeout)
	w2.Digest = base.Digest
	rawSet(t, cands[0], key, w2.Wrap([]byte("w2")), 60, 1)
	_, err = s.CompareAndSwap(context.Background(), key, []byte("w1"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.NotErrorIs(t, err, provider.ErrCASConflict)
	env, payload, prom := envAt(t, cands[1], key)
	require.Equal(t, uint32(9), prom, "rule 3: no record of epoch %d written over c1's promise of 9", env.E)
	require.Equal(t, "w1", payload)
}

// TestPromiseKeepsExpiry (review-r11 M2): the promise keeps its item's
// expiry: a witness its own t (about TW, not capped at the session's T),
// a data copy its own t (not TW, not more).
func TestPromiseKeepsExpiry(t *testing.T) {
	t.Run("witness", func(t *testing.T) {
		const key = "ttlw"
		servers, _, cands, _ := writtenSession(t, key)
		before := rawGet(t, cands[2], key)
		s := promiseStore(t, servers, nil, nil)
		var got atomic.Int64
		got.Store(-1)
		memcached.SetAfterPromise(s, func(string) { got.Store(rawGet(t, cands[2], key).ttl) })
		require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(context.Background()))
		_, err := s.Get(context.Background(), key)
		require.NoError(t, err)
		require.InDelta(t, before.ttl, got.Load(), 2, "the promised witness keeps its t (%d)", before.ttl)
	})
	t.Run("data", func(t *testing.T) {
		const key = "ttld"
		servers, _, cands, _ := writtenSession(t, key)
		it := rawGet(t, cands[1], key)
		raw, err := envelope.Promised(it.value, 4)
		require.NoError(t, err)
		rawSet(t, cands[1], key, raw, 30, it.flags) // 30 s left on c1
		s := promiseStore(t, servers, nil, nil)
		var got atomic.Int64
		got.Store(-1)
		memcached.SetAfterPromise(s, func(string) { got.Store(rawGet(t, cands[1], key).ttl) })
		_, err = s.Get(context.Background(), key)
		require.NoError(t, err)
		require.InDelta(t, 30, got.Load(), 2, "the promised data copy keeps its t")
	})
}
