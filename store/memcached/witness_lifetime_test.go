package memcached_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
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

// Tests of the lifetime nonce (docs/replication.md §16 item 5): R8's Add
// draws a lifetime, every record derived from the session's carries it
// (envelope version 4), witnesses carry none, records written before
// lifetimes keep their versions, and the undo's rows of certain conflict
// answer unknown from a record of another lifetime.

// lifetimeAt is the lifetime of key's data record on addr, which must be
// a version 5 item (version 4's lifetime and §17's Carries).
func lifetimeAt(t *testing.T, addr, key string) uint64 {
	t.Helper()
	it := rawGet(t, addr, key)
	require.True(t, it.found, "no item on %s", addr)
	require.Equal(t, byte(envelope.VersionCarries), it.value[0], "a version 5 item on %s", addr)
	env, _, err := envelope.Decode(it.value)
	require.NoError(t, err)
	require.NotZero(t, env.Lifetime)
	return env.Lifetime
}

// TestLifetimeCarried: an Add gives both data copies one lifetime L ≠ 0
// (version 4) and a witness of Size bytes with none; every operation that
// derives records from the session's keeps L on the copies it leaves: a
// CAS, an append, another Store's completion (R4.4), a failover (R7), a
// re-ballot (R11.3), R9 after a witness flush, and a write failover (R3).
// Delete and Add again give a new L. The broken variant
// (SetDecisionNewLifetime: a decision's configuration draws a new
// lifetime) leaves another L after the failover and the re-ballot.
func TestLifetimeCarried(t *testing.T) {
	const key = "lifetime"
	// Each op acts on a session written once (s wrote it; e is a fresh
	// read of it) and returns the addresses of its data copies after.
	type op func(t *testing.T, servers []*mcserver.Server, s *memcached.Store, cands []string, e provider.Entry, broken func(*memcached.Store)) []string
	failover := func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, cands []string, _ provider.Entry, broken func(*memcached.Store)) []string {
		require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(context.Background()))
		b := promiseStore(t, servers, nil, broken)
		got, err := b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value))
		require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[0], key), "the rig: failed over")
		require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[2], key), "the rig: failed over")
		return []string{cands[0], cands[2]}
	}
	reballot := func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, cands []string, _ provider.Entry, broken func(*memcached.Store)) []string {
		promiseAt(t, cands[1], key, 4)
		b := promiseStore(t, servers, nil, broken)
		got, err := b.Get(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, "v2", string(got.Value))
		require.Equal(t, [3]uint32{5, 0, 1}, configAt(t, cands[0], key), "the rig: re-balloted")
		require.Equal(t, [3]uint32{5, 0, 1}, configAt(t, cands[1], key), "the rig: re-balloted")
		return cands[:2]
	}
	for _, c := range []struct {
		name   string
		op     op
		broken func(*memcached.Store)
	}{
		{name: "cas", op: func(t *testing.T, _ []*mcserver.Server, s *memcached.Store, cands []string, e provider.Entry, _ func(*memcached.Store)) []string {
			_, err := s.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
			require.NoError(t, err)
			return cands[:2]
		}},
		{name: "append", op: func(t *testing.T, _ []*mcserver.Server, s *memcached.Store, cands []string, e provider.Entry, _ func(*memcached.Store)) []string {
			_, _, err := s.CompareAndAppend(context.Background(), key, []byte("x"), e.CAS, time.Minute)
			require.NoError(t, err)
			for _, a := range cands[:2] {
				n, ok := envelope.Trailers(rawGet(t, a, key).value)
				require.True(t, ok && n == 1, "the rig: appended on %s (%d trailers)", a, n)
			}
			return cands[:2]
		}},
		{name: "completion", op: func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, cands []string, _ provider.Entry, _ func(*memcached.Store)) []string {
			// A write on P alone (derived from P's record: it carries L),
			// Q re-stamped: the split another Store's R4.4 completes (a
			// write on Q alone is rolled back instead: R4.4′).
			x, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
			require.NoError(t, err)
			next := x.Next(rand.Uint64(), x.Timeout)
			rawSet(t, cands[0], key, next.Wrap(append(payload, "+c"...)), 60, 1)
			rawSet(t, cands[1], key, rawGet(t, cands[1], key).value, 60, 1)
			b := promiseStore(t, servers, nil, nil)
			for range 3 { // the first sight returns the parent; the next completes
				_, err := b.Get(context.Background(), key)
				require.NoError(t, err)
			}
			q, _, _ := envAt(t, cands[1], key)
			require.Equal(t, next.ID(), q.ID(), "the rig: completed onto Q")
			return cands[:2]
		}},
		{name: "failover", op: failover},
		{name: "failover/new-lifetime", op: failover, broken: memcached.SetDecisionNewLifetime},
		{name: "reballot", op: reballot},
		{name: "reballot/new-lifetime", op: reballot, broken: memcached.SetDecisionNewLifetime},
		{name: "r9-after-witness-flush", op: func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, cands []string, _ provider.Entry, _ func(*memcached.Store)) []string {
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(context.Background()))
			b := promiseStore(t, servers, nil, nil)
			memcached.RepairKey(b, key)
			w := rawGet(t, cands[2], key)
			require.Equal(t, uint32(2), w.flags, "the rig: R9 made the witness again")
			require.Len(t, w.value, envelope.Size, "a witness carries no lifetime")
			return cands[:2]
		}},
		{name: "write-failover", op: func(t *testing.T, servers []*mcserver.Server, _ *memcached.Store, cands []string, _ provider.Entry, _ func(*memcached.Store)) []string {
			var refuse atomic.Bool
			dial := refusingDial(cands[1], &refuse, func(c net.Conn) net.Conn { return &cutConn{Conn: c, cut: &refuse} })
			b := promiseStore(t, servers, dial, nil)
			e, err := b.Get(context.Background(), key)
			require.NoError(t, err)
			refuse.Store(true)
			_, err = b.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
			require.NoError(t, err, "the rig: acknowledged by the write failover")
			refuse.Store(false)
			require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[0], key), "the rig: the write failed over")
			return []string{cands[0], cands[2]}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			servers, s, cands, e := writtenSession(t, key)
			l := lifetimeAt(t, cands[0], key)
			require.Equal(t, l, lifetimeAt(t, cands[1], key), "one lifetime on both copies")
			w := rawGet(t, cands[2], key)
			require.Len(t, w.value, envelope.Size, "the witness: version 2, no lifetime")
			for _, a := range c.op(t, servers, s, cands, e, c.broken) {
				got := lifetimeAt(t, a, key)
				if c.broken != nil {
					require.NotEqual(t, l, got, "the broken variant: a new lifetime on %s", a)
					continue
				}
				require.Equal(t, l, got, "the session's lifetime carried to %s", a)
			}
		})
	}
	t.Run("delete-and-add", func(t *testing.T) {
		_, s, cands, _ := writtenSession(t, key)
		l := lifetimeAt(t, cands[0], key)
		ctx := context.Background()
		require.NoError(t, s.Delete(ctx, key))
		_, err := s.Add(ctx, key, []byte("again"), time.Minute)
		require.NoError(t, err)
		l2 := lifetimeAt(t, cands[0], key)
		require.NotEqual(t, l, l2, "a session created again has a new lifetime")
		require.Equal(t, l2, lifetimeAt(t, cands[1], key))
	})
}

// TestLifetimeOldRecords: a session whose data records were written
// before lifetimes and Carries (version 2, lifetime 0) stays version 2
// through a read, and declines an append over that head (§17, rvcarry
// M4: ErrNoAppend, nothing sent); a write makes it version 5 with
// lifetime 0 (the write it carries named, no lifetime drawn), and an
// append and a failover keep it so: nothing derived from it carries a
// lifetime.
func TestLifetimeOldRecords(t *testing.T) {
	const key = "oldrecords"
	servers, _, cands, _ := writtenSession(t, key)
	for _, a := range cands[:2] {
		it := rawGet(t, a, key)
		env, payload, err := envelope.Decode(it.value)
		require.NoError(t, err)
		env.Lifetime, env.Carries = 0, 0
		rawSet(t, a, key, env.Wrap(payload), int(it.ttl), it.flags)
	}
	noLifetime := func(why string, version byte, addrs ...string) {
		t.Helper()
		for _, a := range addrs {
			it := rawGet(t, a, key)
			require.True(t, it.found)
			require.Equal(t, version, it.value[0], "%s: version %d on %s", why, version, a)
			env, _, err := envelope.Decode(it.value)
			require.NoError(t, err)
			require.Zero(t, env.Lifetime)
		}
	}
	noLifetime("the rig", envelope.Version, cands[:2]...)
	ctx := context.Background()
	s := promiseStore(t, servers, nil, nil)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(e.Value))
	noLifetime("a read", envelope.Version, cands[:2]...)
	_, _, err = s.CompareAndAppend(ctx, key, []byte("x"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNoAppend, "an append over a version 2 head")
	noLifetime("an append declined", envelope.Version, cands[:2]...)
	_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	require.NoError(t, err)
	noLifetime("a write", envelope.VersionCarries, cands[:2]...)
	e, err = s.Get(ctx, key)
	require.NoError(t, err)
	_, _, err = s.CompareAndAppend(ctx, key, []byte("x"), e.CAS, time.Minute)
	require.NoError(t, err)
	noLifetime("an append", envelope.VersionCarries, cands[:2]...)
	for _, a := range cands[:2] {
		n, ok := envelope.Trailers(rawGet(t, a, key).value)
		require.True(t, ok && n == 1, "appended to the version 5 record on %s", a)
	}
	require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(ctx))
	got, err := promiseStore(t, servers, nil, nil).Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v3x", string(got.Value))
	require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[0], key), "the rig: failed over")
	noLifetime("a failover", envelope.VersionCarries, cands[0], cands[2])
}

// TestStalledWriterRecreatedAfterExpiry is rv-roll2 B1 (docs/replication.md
// §16 item 5), with the provider's default configuration (no Created):
// the writer's CAS is refused by P (re-stamped) and stored by Q, and the
// writer is held before its own completion reads P. Another app server,
// P cut off from it (its Config.DialContext), returns the write by R7
// (a failover from Q: not R4.4, which §16's item 1 is to make roll such a
// split back). The session's data items then expire; the id is added
// again and written k times, in the home configuration, the write's own.
// Released, the writer finds records of that configuration that are not
// its write: by one chain of versions, a certain conflict ("replaced on
// both copies" for k = 1; for k = 2 P holds a record of the write's
// version: "another write of this version won"; for k = 3, with lifetimes,
// "later versions were built on another write"; failed-over: the new
// session failed over from the write's Q, P holds a greater epoch not
// built on the write: overtaken), though a read returned the write. They are of another lifetime: ErrOutcomeUnknown,
// never ErrCASConflict. The code before (SetLifetimeIgnored) answers
// ErrCASConflict. The control (nothing created again: the writer released
// while the failed-over session lives) keeps today's answer, unknown,
// with or without lifetimes. far (k = envelope.Lineage+4, §16 item 4):
// past the write's version the undo's "not applied, however far" (L7″)
// looks at Q's record, of the write's configuration but another
// lifetime: unknown (the stalled writer's reason); the code before item
// 5 (SetLifetimeIgnored) answers ErrCASConflict there too. (A conflict within one lifetime is still
// answered: TestUndoStalledAfterPrimaryHeld's "beaten" and
// "below-the-write", whose records carry the session's lifetime.)
func TestStalledWriterRecreatedAfterExpiry(t *testing.T) {
	const key = "recreated"
	// The session's TTL: short, so that its data items expire (memcached
	// keeps them 2 s more: expiration), long enough for R7 (copyExp).
	const ttl = 3 * time.Second
	cfg := func(dial func(ctx context.Context, network, addr string) (net.Conn, error)) memcached.Config {
		return memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial}
	}
	for _, c := range []struct {
		name     string
		k        int  // writes of the session created again (0: not created again)
		ignored  bool // SetLifetimeIgnored: the code before
		failover bool // the session created again then fails over (its Q flushed), R9 after
	}{
		{"k1", 1, false, false},
		{"k2", 2, false, false},
		{"k3", 3, false, false},
		{"k1/code-before", 1, true, false},
		{"k2/code-before", 2, true, false},
		{"k1/failed-over", 1, false, true},
		{"k1/failed-over/code-before", 1, true, true},
		{"far", envelope.Lineage + 4, false, false},
		{"far/code-before", envelope.Lineage + 4, true, false},
		{"not-recreated", 0, false, false},
		{"not-recreated/code-before", 0, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each case waits for its own session's expiry, on its own nodes
			servers := startNodes(t, 3)
			s := newStore(t, servers, cfg(nil))
			memcached.SetRepairQueueOff(s)
			if c.ignored {
				memcached.SetLifetimeIgnored(s)
			}
			cands := memcached.WitnessCandidates(s, key)
			ctx := context.Background()
			_, err := s.Add(ctx, key, []byte("v1"), ttl)
			require.NoError(t, err)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, ttl)
			require.NoError(t, err)
			e, err = s.Get(ctx, key)
			require.NoError(t, err)

			// The other app server, P cut off from it, holding P failed
			// before the write (its R7 then needs no wait).
			var cut atomic.Bool
			cut.Store(true)
			other := newStore(t, servers, cfg(refusingDial(cands[0], &cut, nil)))
			memcached.SetRepairQueueOff(other)
			testwait.Until(t, 10*time.Second, "the other app server holds P failed", func() bool {
				_, _ = other.Get(ctx, "probe")
				return memcached.NodeFailed(other, cands[0])
			})

			hw := newHeldWriter(s, key)
			release := hw.arm(t)
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token, Q stores it.
			it := rawGet(t, cands[0], key)
			rawSet(t, cands[0], key, it.value, int(it.ttl), it.flags)
			wrote := make(chan error, 1)
			go func() {
				_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, ttl)
				wrote <- err
			}()
			recvWithin(t, hw.held, "the writer held before its own completion reads P")

			got, err := other.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v3", string(got.Value), "R7: the other app server returns the write")
			require.Equal(t, [3]uint32{1, 1, 2}, configAt(t, cands[1], key), "the rig: failed over from Q")

			if c.k > 0 {
				testwait.Until(t, 20*time.Second, "the session's data items expire", func() bool {
					for _, a := range cands {
						if rawGet(t, a, key).flags == 1 {
							return false
						}
					}
					return true
				})
				again := newStore(t, servers, cfg(nil))
				memcached.SetRepairQueueOff(again)
				_, err := again.Add(ctx, key, []byte("n"), time.Minute)
				require.NoError(t, err, "the id is created again")
				for i := range c.k {
					cur, err := again.Get(ctx, key)
					require.NoError(t, err)
					_, err = again.CompareAndSwap(ctx, key, fmt.Appendf(cur.Value, "+%d", i), cur.CAS, time.Minute)
					require.NoError(t, err)
				}
				for _, a := range cands[:2] {
					env, _, _ := envAt(t, a, key)
					require.Equal(t, [3]uint32{0, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "the rig: the new session in the write's configuration")
					require.Equal(t, uint64(1+c.k), env.V, "the rig: the new session's version")
				}
				if c.failover {
					require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(ctx))
					_, err := again.Get(ctx, key)
					require.NoError(t, err)
					memcached.RepairKey(again, key)
					require.Equal(t, [3]uint32{1, 0, 2}, configAt(t, cands[0], key), "the rig: the new session failed over")
					require.Equal(t, uint32(2), rawGet(t, cands[1], key).flags, "the rig: R9's witness on the write's Q")
				}
			}

			release()
			err = recvWithin(t, wrote, "the writer's answer")
			t.Logf("the writer's answer: %v", err)
			switch {
			case c.k == 0:
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the control: today's answer")
			case c.ignored:
				require.ErrorIs(t, err, provider.ErrCASConflict, "the code before: a write a read returned reported not applied")
			default:
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a write a read returned")
				require.NotErrorIs(t, err, provider.ErrCASConflict)
			}
		})
	}
}
