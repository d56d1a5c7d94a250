package memcached_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
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

// Regression tests of cold review 13e (B1, B2, M1), each against real
// memcached.

// armedConn notes (saw) the first `ms <key>` written once armed, and
// disarms.
type armedConn struct {
	net.Conn
	mu    *sync.Mutex
	armed *bool
	key   string
	saw   bool
}

func (c *armedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if *c.armed && strings.HasPrefix(string(b), "ms "+c.key+" ") {
		c.saw = true
		*c.armed = false
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// lostReplyConn executes commands but, once armed and an `ms <key>` was
// written, swallows that command's reply, runs hook, and reports a
// timeout: a write that was applied and whose reply was lost.
type lostReplyConn struct {
	armedConn
	hook func()
}

func (c *lostReplyConn) Read(b []byte) (int, error) {
	if c.saw {
		c.saw = false
		_, _ = c.Conn.Read(b) // the reply: the command executed
		c.hook()
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(b)
}

// B1: a write sent to P whose reply is lost, observed by another process,
// and then P is flushed (a new incarnation) before the writer reconnects.
// The writer must not report it refused (ErrCASConflict, undo): it was
// applied and observed; the outcome is unknown, and the observed value
// stays the session.
func TestWriteLostReplyNewIncarnationNotRefused(t *testing.T) {
	servers := startNodes(t, 3)
	var mu sync.Mutex
	armed := false
	const key = "lostreply"
	var s2 *memcached.Store
	var pAddr, qAddr string
	var observed string
	var observeErr error
	hook := func() {
		// Wait until Q holds the write too (a bounded wait on a condition).
		for range 100 {
			if strings.Contains(string(rawGet(t, qAddr, key).value), "v2") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		e, err := s2.Get(context.Background(), key)
		observeErr = err
		observed = string(e.Value)
		require.NoError(t, serverAt(t, servers, pAddr).FlushAll(context.Background()))
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || addr != pAddr {
			return c, err
		}
		return &lostReplyConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, hook: hook}, nil
	}
	s2 = newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
	cands := memcached.WitnessCandidates(s2, key)
	pAddr, qAddr = cands[0], cands[1] // before the dialling store exists
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
	ctx := context.Background()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	cerr := casArmed(t, s, &mu, &armed, key)
	require.NoError(t, observeErr)
	require.Equal(t, "v2", observed, "another process observes the write while its reply is lost")
	require.False(t, errors.Is(cerr, provider.ErrCASConflict), "an applied, observed write reported refused: %v", cerr)
	require.ErrorIs(t, cerr, provider.ErrOutcomeUnknown)
	e2, err := s2.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(e2.Value), "the observed write was lost")
}

// casArmed reads key, arms the dialled connections (armedConn), and
// writes "v2" with the token read; it returns the write's error.
func casArmed(t *testing.T, s *memcached.Store, mu *sync.Mutex, armed *bool, key string) error {
	t.Helper()
	ctx := context.Background()
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	mu.Lock()
	*armed = true
	mu.Unlock()
	_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
	return err
}

// hookConn runs hook before the nth `ms <key>` written on the
// connections that share its count (once in all).
type hookConn struct {
	net.Conn
	count *atomic.Int32
	nth   int32
	key   string
	hook  func()
}

func (c *hookConn) Write(b []byte) (int, error) {
	if strings.HasPrefix(string(b), "ms "+c.key+" ") && c.count.Add(1) == c.nth {
		c.hook()
	}
	return c.Conn.Write(b)
}

// hookedDial returns a dialer whose connections to *addr (read at each
// dial) run hook, once in all, before the first `ms <key>` they write.
func hookedDial(addr *string, key string, hook func()) func(context.Context, string, string) (net.Conn, error) {
	return hookedDialNth(addr, key, 1, hook)
}

// hookedDialNth is hookedDial before the nth `ms <key>` instead.
func hookedDialNth(addr *string, key string, nth int32, hook func()) func(context.Context, string, string) (net.Conn, error) {
	var count atomic.Int32
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != *addr {
			return c, err
		}
		return &hookConn{Conn: c, count: &count, nth: nth, key: key, hook: hook}, nil
	}
}

// B2: an Add stored the witness and the secondary; the witness node is
// flushed and a reader sees one data copy and two empties. A creation's
// record is never buried (review-lonewit m4): the reader answers
// ErrUnavailable and writes nothing, and the Add is acknowledged and
// read. The code before (SetBuryCreation) fenced both empties and buried
// the copy: the reader answered not found and the Add's CAS of the
// primary's blank was refused (review 13e B2: never an acknowledged Add
// on one copy that the next read reports not found), so no creation
// survived a reader that overlapped it with the witness flushed.
func TestBuryFencesEmptiesFirst(t *testing.T) {
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
	}{{"creation not buried", nil}, {"code-before", memcached.SetBuryCreation}} {
		t.Run(c.name, func(t *testing.T) {
			servers := startNodes(t, 3)
			const key = "bury"
			var s2 *memcached.Store
			var cands []string
			var readerErr error
			hook := func() {
				require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(context.Background()))
				_, readerErr = s2.Get(context.Background(), key)
			}
			var pAddr string
			dial := hookedDial(&pAddr, key, hook)
			s2 = newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			if c.broken != nil {
				c.broken(s2)
			}
			cands = memcached.WitnessCandidates(s2, key)
			pAddr = cands[0] // before the dialling store exists
			s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
			ctx := context.Background()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			t.Logf("concurrent reader during the Add: %v; Add: %v", readerErr, err)
			e, gerr := s.Get(ctx, key)
			if err == nil {
				require.NoError(t, gerr, "acknowledged Add lost")
				require.Equal(t, "v1", string(e.Value))
			}
			if c.broken != nil {
				require.ErrorIs(t, readerErr, provider.ErrNotFound, "the code before buried the creation's copy")
				require.Error(t, err, "the code before: the Add's primary CAS refused by the fence")
				return
			}
			require.ErrorIs(t, readerErr, provider.ErrUnavailable, "a creation's lone copy is not buried")
			require.NoError(t, err, "the Add, not fenced, is acknowledged")
		})
	}
}

// M1: a stale-configuration witness touch hits a data copy with TW; the
// repair (R9) must not carry that TTL onto the copies: no internal write
// gives a copy more than the session's own timeout.
func TestInternalTTLCappedAtSessionTimeout(t *testing.T) {
	servers, s, cands := addedSession(t, "ttlcap")
	fresh := int64(memcached.TimeoutExp(60)) // what a client write of 60 s gets
	s2 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
	ctx := context.Background()
	const key = "ttlcap"
	e2, err := s2.Get(ctx, key)
	require.NoError(t, err)
	c1 := serverAt(t, servers, cands[1])
	require.NoError(t, c1.Pause())
	_, err = s.Get(ctx, key)
	t.Logf("get with c1 paused: %v", err)
	_, err = s.Get(ctx, key)
	t.Logf("get again: %v", err)
	require.NoError(t, c1.Resume())
	_, err = s2.CompareAndSwap(ctx, key, []byte("v2"), e2.CAS, time.Minute)
	// Refused on P; on Q (still the old record) it may store, and its undo
	// may race the repair client's R9 turning Q into the witness: conflict
	// or unknown, never success.
	require.Error(t, err)
	require.True(t, errors.Is(err, provider.ErrCASConflict) || errors.Is(err, provider.ErrOutcomeUnknown), "a CAS with a handle of the old configuration: %v", err)
	// The repair client runs R9 in the background: wait (bounded) until
	// the third node holds the witness again, then look at every TTL.
	deadline := time.Now().Add(10 * time.Second)
	for {
		its := make([]rawItem, len(cands))
		witnesses, data := 0, 0
		for i, a := range cands {
			its[i] = rawGet(t, a, key)
			switch its[i].flags {
			case 1:
				data++
			case 2:
				witnesses++
			}
		}
		if (witnesses == 1 && data == 2) || time.Now().After(deadline) {
			for i, it := range its {
				t.Logf("c%d: flags %d ttl %d len %d", i, it.flags, it.ttl, len(it.value))
				if it.flags == 1 {
					require.LessOrEqual(t, it.ttl, fresh, "data copy c%d outlives what a write of the session's 60 s timeout gives it", i)
				}
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// m3: a failover that finds the replaced copy blank marks the new
// configuration nowit and makes that blank its witness (D4); once the
// witness is stored, nowit is cleared on both copies (never left set: a
// lone copy would then be unavailable instead of buried).
func TestNoWitClearedAfterD4Witness(t *testing.T) {
	servers, s, cands := addedSession(t, "d4nowit")
	failOverToWitness(t, servers, s, cands, "d4nowit")
	requireWritable(t, s, "d4nowit")
}

// failOverToWitness flushes key's secondary c1, reads key ("v1") through
// s, which fails it over onto c2, and waits until the blank c1 is the
// witness and nowit is cleared on both copies.
func failOverToWitness(t *testing.T, servers []*mcserver.Server, s *memcached.Store, cands []string, key string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(ctx))
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v1", string(e.Value))
	testwait.Until(t, 10*time.Second, "the blank secondary to become the witness and nowit to be cleared on both copies", func() bool {
		return rawGet(t, cands[1], key).flags == 2 && noWitCleared(t, key, []string{cands[0], cands[2]})
	})
}

// noWitCleared reports whether every one of addrs holds a data record of
// key without the nowit mark.
func noWitCleared(t testing.TB, key string, addrs []string) bool {
	for _, a := range addrs {
		env, _, err := envelope.Decode(rawGet(t, a, key).value)
		if err != nil || env.NoWit {
			return false
		}
	}
	return true
}

// requireWritable reads key and writes it with the handle read.
func requireWritable(t testing.TB, s *memcached.Store, key string) {
	t.Helper()
	ctx := context.Background()
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
	require.NoError(t, err)
}

// m1 (review 4's D2, first half): a common read that finds the two copies'
// remaining TTLs more than 2 s apart (a touch reached one copy only)
// queues the key, and R9 re-stamps both with the larger.
func TestTTLSplitRepaired(t *testing.T) {
	_, s, cands := addedSession(t, "ttlsplit")
	const key = "ttlsplit"
	fresh := int64(memcached.TimeoutExp(60)) // what a client write of 60 s gets
	require.NoError(t, raw(t, cands[1]).Touch(key, 10))
	require.LessOrEqual(t, rawGet(t, cands[1], key).ttl, int64(10))
	_, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	testwait.Until(t, 10*time.Second, "the short copy re-stamped with the larger TTL", func() bool {
		return rawGet(t, cands[1], key).ttl > 50
	})
	for _, a := range cands[:2] {
		require.LessOrEqual(t, rawGet(t, a, key).ttl, fresh)
	}
}

// addedSession starts three nodes and a witness-mode store, and adds key
// ("v1", one minute); it returns the nodes, the store and key's
// candidates.
func addedSession(t *testing.T, key string) ([]*mcserver.Server, *memcached.Store, []string) {
	servers, s := witnessSetup(t, memcached.Config{})
	_, err := s.Add(context.Background(), key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	return servers, s, memcached.WitnessCandidates(s, key)
}

// The lead's (b) (the model's CreationFailoverUnmarked): a failover of a
// creation's record (epoch 0, version 1: never written since its Add)
// marks the new configuration nowit even when the replaced copy is silent
// (not empty), until R9 stores the witness and clears it.
func TestCreationFailoverMarkedNoWit(t *testing.T) {
	servers, s, cands := addedSession(t, "creation")
	const key = "creation"
	c1 := serverAt(t, servers, cands[1])
	require.NoError(t, c1.Pause())
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, "v1", string(e.Value))
	for _, a := range []string{cands[0], cands[2]} {
		env, _, err := envelope.Decode(rawGet(t, a, key).value)
		require.NoError(t, err)
		require.Equal(t, uint32(1), env.E, "failed over")
		require.True(t, env.NoWit, "a creation failed over: nowit")
	}
	require.NoError(t, c1.Resume())
	testwait.Until(t, 15*time.Second, "the returned node to become the witness, nowit cleared", func() bool {
		// A touching read touches the third node and queues R9.
		_, _ = s.GetAndTouch(context.Background(), key, time.Minute)
		return rawGet(t, cands[1], key).flags == 2 && noWitCleared(t, key, []string{cands[0], cands[2]})
	})
	requireWritable(t, s, key)
}

// stallConn, once armed and an `ms <key>` was written, reads that
// command's reply only once the connection's deadline has passed by
// stall: the command ran and its reply came in time, but the goroutine
// waiting for it did not run until after its deadline, as when the app
// server's process is stopped (SIGSTOP) and continued.
type stallConn struct {
	armedConn
	stall time.Duration
	dl    time.Time
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.dl = t
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) Read(b []byte) (int, error) {
	if c.saw {
		c.saw = false
		// The stop itself (not a wait for a condition): this goroutine
		// does not run past its deadline.
		time.Sleep(time.Until(c.dl) + c.stall)
	}
	return c.Conn.Read(b)
}

// The real-process pause-app run (stress/internal/harness, -backup
// witness): an app server stopped past the failover time and continued
// counted its own stop against every node it had a command in flight to
// (no reply for FailoverAfter), so it failed them, and its anomaly reads
// skipped them and failed over healthy sessions (R7 with y "silent"). One
// such failover took another server's lock acquisition in flight and made
// it the truth while its writer's undo was refused: that writer reported
// ErrOutcomeUnknown, nobody held the lock, and the session's waiters
// waited a lease past the failover time (stuck locks). A missing reply the
// process read only well past the command's deadline is no evidence
// against the node (§9): it must not fail it.
func TestOwnStopDoesNotFailNodes(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "ownstop"
	var mu sync.Mutex
	armed := false
	var down []string
	var qAddr string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || addr != qAddr {
			return c, err
		}
		return &stallConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, stall: time.Second}, nil
	}
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond,
		OnEvent: func(e provider.Event) {
			if e.Kind == provider.EventNodeDown {
				mu.Lock()
				down = append(down, e.Node)
				mu.Unlock()
			}
		}}
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	cands := memcached.WitnessCandidates(s0, key)
	qAddr = cands[1] // before the dialling store exists
	// other: a session whose data copies are on Q's node too.
	other := ""
	for i := 0; other == ""; i++ {
		k := "ownstop-other-" + strconv.Itoa(i)
		if c := memcached.WitnessCandidates(s0, k); c[0] == qAddr || c[1] == qAddr {
			other = k
		}
	}
	cfg.DialContext = dial
	s := newStore(t, servers, cfg)
	ctx := context.Background()
	for _, k := range []string{key, other} {
		_, err := s.Add(ctx, k, []byte("v1"), time.Minute)
		require.NoError(t, err)
	}
	// Q's reply is read late: the write fails over (R3, Q silent) or is
	// unknown; either is allowed. The node is not to blame.
	cerr := casArmed(t, s, &mu, &armed, key)
	t.Logf("the write whose reply was read late: %v", cerr)
	mu.Lock()
	require.Empty(t, down, "this process's own stop failed a node")
	mu.Unlock()
	// Nor does it fail over the other session: its copies stay where
	// they were (epoch 0 on its home copies).
	e2, err := s.Get(ctx, other)
	require.NoError(t, err)
	require.Equal(t, "v1", string(e2.Value))
	oc := memcached.WitnessCandidates(s, other)
	for _, a := range oc[:2] {
		env, _, err := envelope.Decode(rawGet(t, a, other).value)
		require.NoError(t, err)
		require.Zero(t, env.E, "the other session was failed over")
	}
}

// Regression tests of issue 13's M2 (review 5): calls that ended
// ErrOutcomeUnknown under contention or a partition though their outcome
// was knowable.

// rawRestamp CASes key on addr to the very same bytes, flags and TTL: the
// re-stamp of R4.4 and R9 (only the token changes), as another process's
// decision would send it.
func rawRestamp(t testing.TB, addr, key string) {
	t.Helper()
	it := rawGet(t, addr, key)
	require.True(t, it.found, "nothing to re-stamp on %s", addr)
	require.True(t, rawCAS(t, addr, key, it.value, it.ttl, it.flags, it.cas), "re-stamp on %s refused", addr)
}

// nthConn calls hook before every `ms <key>` it writes.
type nthConn struct {
	net.Conn
	key  string
	hook func()
}

func (c *nthConn) Write(b []byte) (int, error) {
	if strings.HasPrefix(string(b), "ms "+c.key+" ") {
		c.hook()
	}
	return c.Conn.Write(b)
}

// hookedStore returns a witness store whose connections to addr run
// hook(n) before the n-th `ms <key>` (from 1) they write while armed is
// set.
func hookedStore(t *testing.T, servers []*mcserver.Server, addr, key string, armed *atomic.Bool, hook func(n int32)) *memcached.Store {
	var n atomic.Int32
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != addr {
			return c, err
		}
		return &nthConn{Conn: c, key: key, hook: func() {
			if armed.Load() {
				hook(n.Add(1))
			}
		}}, nil
	}
	return newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
}

// M2, no fault: P refused a write only because a reader re-stamped it
// (its record unchanged) and Q stored it; the writer completes its own
// split (completeOwn): Q's re-stamp is stored, and P, re-stamped once more
// meanwhile, refuses the CAS. The undo must use the token of the writer's
// own re-stamp: with the token of its first store it was refused by that
// very re-stamp and the call ended unknown, though the write is certainly
// on no node but Q and nobody else touched Q.
func TestOwnRestampThenUndoKnown(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "ownrestamp"
	var armed atomic.Bool
	var pAddr string
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	cands := memcached.WitnessCandidates(s0, key)
	pAddr = cands[0]
	s := hookedStore(t, servers, pAddr, key, &armed, func(n int32) {
		if n <= 2 { // before the write's CAS of P, and before completeOwn's
			rawRestamp(t, pAddr, key)
		}
	})
	ctx := context.Background()
	e := writtenOnce(t, s, key)
	armed.Store(true)
	_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	armed.Store(false)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a write certainly on no node but Q, undone: %v", err)
	got, err := s0.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(got.Value), "the refused write must not be applied")
}

// M2, partition (the sim's partition seeds 11, 92, 106, 228): while a
// write is in flight, another app server cut off from P fails the session
// over to {Q, W} (epoch 1, built on the write's base). The write is stored
// on P and refused on Q, whose read then shows a record of epoch 1 whose
// chain does not hold the write (its version is below the write's). Once
// the failover's copy on W is established (Q's record established, or
// Q's fence with W's copy read), no decision can take the write again: a
// certain conflict, not an unknown outcome, and the failed-over record
// stays the session. Q's fence with W not yet written stays unknown: an
// opposite failover built on the write may still win W.
func TestWriteOverFailoverKnownConflict(t *testing.T) {
	for _, c := range []struct {
		name      string
		qPending  bool
		wFailedTo bool
		wantKnown bool
	}{
		{"established", false, true, true},
		{"fence, copy on W", true, true, true},
		{"fence only", true, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "overfailover"
			servers, s, cands, e := writtenSession(t, key)
			ctx := context.Background()
			// The other app server's failover (R7 and its completion), as
			// its CASes leave the nodes: epoch 1, P = c1, Q = c2, the
			// base's version and bytes under a new nonce.
			env, payload, err := envelope.Decode(rawGet(t, cands[1], key).value)
			require.NoError(t, err)
			env.E, env.P, env.Q, env.Pending, env.Nonce = 1, 1, 2, false, env.Nonce^0x5a5a5a5a
			if c.wFailedTo {
				rawSet(t, cands[2], key, env.Wrap(payload), 60, 1)
			}
			env.Pending = c.qPending
			rawSet(t, cands[1], key, env.Wrap(payload), 60, 1)
			_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			if !c.wantKnown {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "an opposite failover may still win W: %v", err)
				return
			}
			require.ErrorIs(t, err, provider.ErrCASConflict, "a write stored on P only, not in the failed-over chain: %v", err)
			requireSessionIs(t, servers, key, "v2", "the failed-over record is the session")
		})
	}
}

// The simulation's pause seeds 1249, 1319 and 3727 of 4000 (issue 13,
// review of 2026-11-30 M1): an app server that had not yet found a node
// paused wrote to it with a cached handle, a failover time after the
// pause began, while another server had failed the session over: one copy
// gave no reply (it may store the write when it resumes) and the other
// refused it, holding the failover's record (a greater epoch). That
// record, when established and not built on the write, outranks the write
// on two nodes for good: a certain conflict, not an unknown outcome (R3's
// table said unknown). A failover at the write's own version carries its
// base's payload: another payload is not this write; the same payload
// could not be told apart and stayed unknown, until §17: the failover
// names the write it carries (Carries), another write: a conflict.
func TestWriteRefusedOverFailoverWithCopySilent(t *testing.T) {
	for _, c := range []struct {
		name    string
		silent  int    // the candidate paused: 0 (P) or 1 (Q)
		version bool   // the failover is at the write's own version (of another write with payload)
		payload string // that other write's payload
		want    error
	}{
		{"P silent, failover of the base", 0, false, "", provider.ErrCASConflict},
		{"Q silent, failover of the base", 1, false, "", provider.ErrCASConflict},
		{"P silent, failover of another write of its version", 0, true, "other", provider.ErrCASConflict},
		// §17: the failover carries the other write (Carries), not this
		// one: a certain conflict.
		{"P silent, failover of a write of its version and payload", 0, true, "v3", provider.ErrCASConflict},
		// The code before §17 (SetCarriesOff): the same payload cannot
		// be told apart.
		{"P silent, failover of a write of its version and payload/code-before", 0, true, "v3", provider.ErrOutcomeUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "silentover"
			servers, s, cands, e := writtenSession(t, key)
			if strings.HasSuffix(c.name, "/code-before") {
				memcached.SetCarriesOff(s)
			}
			ctx := context.Background()
			// The other app server's failover from the answering copy x
			// onto the witness node, established on both (R7 and its
			// completion).
			x := 1 - c.silent
			env, payload, err := envelope.Decode(rawGet(t, cands[x], key).value)
			require.NoError(t, err)
			if c.version {
				env, payload = env.Next(0x0c0c0c0c, env.Timeout), []byte(c.payload)
			}
			env.E, env.P, env.Q, env.Nonce = 1, uint8(x), 2, env.Nonce^0x5a5a5a5a
			for _, a := range []string{cands[x], cands[2]} {
				rawSet(t, a, key, env.Wrap(payload), 60, 1)
			}
			paused := serverAt(t, servers, cands[c.silent])
			require.NoError(t, paused.Pause())
			t.Cleanup(func() { _ = paused.Resume() })
			_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			require.NoError(t, paused.Resume())
			require.ErrorIs(t, err, c.want)
			if c.want == provider.ErrOutcomeUnknown {
				require.ErrorContains(t, err, "may be built on this write")
				return
			}
			// The paused copy may store the write now: it never becomes
			// the session.
			requireSessionIs(t, servers, key, string(payload), "the failed-over record is the session")
		})
	}
}

// afterReplyConn reads, once armed and an `ms <key>` was written, that
// command's reply and then runs hook before returning it: something else
// writes the item right after the command ran.
type afterReplyConn struct {
	armedConn
	hook func()
}

func (c *afterReplyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.saw {
		c.saw = false
		c.hook()
	}
	return n, err
}

// armedStore starts three nodes and a witness-mode Store (FailoverAfter
// failoverAfter) whose connections to key's candidate cand are wrapped by
// wrap, given an armedConn that arm switches on (the Store is built by
// the time any connection is dialled).
func armedStore(t *testing.T, key string, cand int, failoverAfter time.Duration, wrap func(armedConn) net.Conn) (servers []*mcserver.Server, s *memcached.Store, cands []string, arm func()) {
	servers = startNodes(t, 3)
	cands = memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
	var mu sync.Mutex
	armed := false
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != cands[cand] {
			return c, err
		}
		return wrap(armedConn{Conn: c, mu: &mu, armed: &armed, key: key}), nil
	}
	s = newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: failoverAfter, DialContext: dial})
	arm = func() {
		mu.Lock()
		armed = true
		mu.Unlock()
	}
	return servers, s, cands, arm
}

// afterReplyStore is armedStore whose connections to key's candidate cand
// run hook (given the Store) right after the reply of the first
// `ms <key>` written once arm was called.
func afterReplyStore(t *testing.T, key string, cand int, hook func(*memcached.Store)) (servers []*mcserver.Server, s *memcached.Store, cands []string, arm func()) {
	servers, s, cands, arm = armedStore(t, key, cand, 700*time.Millisecond, func(c armedConn) net.Conn {
		return &afterReplyConn{armedConn: c, hook: func() { hook(s) }}
	})
	return servers, s, cands, arm
}

// The simulation's partition seed 592 (issue 13, review of 2026-11-30
// M1: a final request's outcome unknown after the faults healed): a
// write with a handle cached from before a failover (epoch 0 on c0, c1)
// found P (c0) refusing it (it holds the failover's record, epoch 1 on
// c0 and c2) and Q (c1, the failover's old copy, still the stale record)
// storing it; R9, queued by the write's own witness touch, then made that
// stale copy the new configuration's witness, so the undo was refused and
// the outcome reported unknown. P holds an established record of a
// greater epoch not built on the write, on two nodes: the write can never
// be the session, a certain conflict.
func TestUndoRefusedOverFailoverKnown(t *testing.T) {
	const key = "undoover"
	var witness []byte
	var stale string
	// R9's witness CAS on the stale copy, landing right after the write
	// was stored there.
	servers, s, cands, arm := afterReplyStore(t, key, 1, func(*memcached.Store) { rawSet(t, stale, key, witness, 600, 2) })
	stale = cands[1]
	ctx := context.Background()
	e := writtenOnce(t, s, key)
	// Another app server's failover from c0 onto the witness node c2
	// (epoch 1), completed; c1 (partitioned) keeps its record.
	env, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
	require.NoError(t, err)
	env.E, env.P, env.Q, env.Nonce = 1, 0, 2, env.Nonce^0x5a5a5a5a
	for _, a := range []string{cands[0], cands[2]} {
		rawSet(t, a, key, env.Wrap(payload), 60, 1)
	}
	witness = env.Append(nil)
	arm()
	_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a write of the configuration before a failover, at most on its old copy: %v", err)
	requireSessionIs(t, servers, key, "v2", "the failed-over record is the session")
}

// The simulation's opposite seed 3428 (review of 2026-11-30, M1): a
// write stored on P with Q gone (flushed) goes on to its write failover;
// meanwhile this process's repair client (queued by the write's own
// witness touch) read P holding the write, Q empty, and failed the write
// over itself (R7), so the writer's fence was refused (or the witness
// node already held the new copy) and its outcome was unknown, though the
// failover was of this very write. The repair client now decides nothing
// on a write of its own process in flight.
func TestRepairLeavesOwnWriteInFlight(t *testing.T) {
	const key = "ownwrite"
	// The repair client's turn, right after P stored the write.
	servers, s, cands, arm := afterReplyStore(t, key, 0, func(s *memcached.Store) { memcached.RepairKey(s, key) })
	ctx := context.Background()
	e := writtenOnce(t, s, key)
	require.NoError(t, raw(t, cands[1]).Delete(key)) // Q flushed
	arm()
	_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	require.NoError(t, err, "the write failed over by its own writer")
	requireSessionIs(t, servers, key, "v3", "the write is the session")
}

// The witness cache's Add wedge (found by the tiered simulation): after
// flush_all the pool keeps connections opened before it, labelled with
// the old incarnation, and a newer connection makes and learns a new one.
// An Add whose blanks were read (and witness stored) on old connections
// had its secondary's CAS and then the undo of its witness refused as of
// another incarnation, unsent: the witness stayed alone, and every Add of
// the key found a record (every Get a lost session) until it expired
// (TW, hours). The undo now reads the witness again and, the item
// unchanged, sends it under the current label: the Add is a certain
// ErrExists and the next one succeeds. (Since cold review rv-label M2 the
// Add itself reads again after such a refusal and succeeds; the undo is
// checked with SetAddOtherIncExists, which answers the ErrExists as
// before, and the read again in "reads-again".)
func TestAddUndoAfterFlushNotWedged(t *testing.T) {
	for _, readsAgain := range []bool{false, true} {
		t.Run(map[bool]string{false: "undo", true: "reads-again"}[readsAgain], func(t *testing.T) {
			const key = "addwedge"
			ctx := context.Background()
			// Right after the witness CAS was stored: a new connection to
			// every node (another key's Add), which learns the flushed
			// nodes' new incarnation.
			servers, s, _, arm := afterReplyStore(t, key, 2, func(s *memcached.Store) {
				memcached.CloseIdle(s)
				_, _ = s.Add(ctx, "addwedge-other", []byte("x"), time.Minute)
			})
			if !readsAgain {
				memcached.SetAddOtherIncExists(s)
			}
			_, err := s.Add(ctx, "addwedge-warm", []byte("x"), time.Minute) // pooled connections to every node
			require.NoError(t, err)
			for _, srv := range servers {
				require.NoError(t, srv.FlushAll(ctx))
			}
			arm()
			_, err = s.Add(ctx, key, []byte("v1"), time.Minute)
			if readsAgain {
				require.NoError(t, err, "the refusal wrote nothing: the Add reads again")
				e, err := s.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "v1", string(e.Value))
				return
			}
			require.ErrorIs(t, err, provider.ErrExists, "the secondary's blank read on a connection of the old label: nothing left")
			_, err = s.Add(ctx, key, []byte("v1"), time.Minute)
			require.NoError(t, err, "a lone witness left by the first Add")
		})
	}
}

// M2, unreachable primary: a write whose primary could not even be dialled
// (nothing sent) and whose secondary stored it is undone like a refusal:
// a certain conflict, not an unknown outcome.
func TestPrimaryNotSentUndone(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "notsent"
	var unreachable atomic.Bool
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	pAddr := memcached.WitnessCandidates(s0, key)[0]
	dial := refusingDial(pAddr, &unreachable, nil)
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
	ctx := context.Background()
	e := writtenOnce(t, s, key)
	unreachable.Store(true)
	memcached.CloseIdle(s)
	_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	unreachable.Store(false)
	require.ErrorIs(t, err, provider.ErrCASConflict, "nothing on P, the write undone on Q: %v", err)
	got, err := s0.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(got.Value))
}

// M2's not-sent outcome, its guard: a write sent on a pooled connection to
// P whose reply is lost, and whose check on a new connection cannot be
// made (the dial fails), was sent: it must not count as "not sent" (which
// TestPrimaryNotSentUndone undoes as a refusal): the write is on P, so the
// outcome is unknown, never a conflict.
func TestSentWriteNotCountedUnsent(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "sentlost"
	var mu sync.Mutex
	armed := false
	var unreachable atomic.Bool
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	pAddr := memcached.WitnessCandidates(s0, key)[0]
	dial := refusingDial(pAddr, &unreachable, func(c net.Conn) net.Conn {
		return &lostReplyConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, hook: func() { unreachable.Store(true) }}
	})
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
	ctx := context.Background()
	e := writtenOnce(t, s, key)
	mu.Lock()
	armed = true
	mu.Unlock()
	_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
	unreachable.Store(false)
	require.False(t, errors.Is(err, provider.ErrCASConflict), "a write applied on P reported refused: %v", err)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
}

// writtenSession is addedSession with key written once ("v2": no longer
// a creation's record); it also returns a fresh read of it.
func writtenSession(t *testing.T, key string) ([]*mcserver.Server, *memcached.Store, []string, provider.Entry) {
	servers, s, cands := addedSession(t, key)
	requireWritable(t, s, key)
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	return servers, s, cands, e
}

// requireSessionIs reads key through a new Store (another app server's)
// and requires want.
func requireSessionIs(t *testing.T, servers []*mcserver.Server, key, want, why string) {
	t.Helper()
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
	got, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, want, string(got.Value), why)
}

// writtenOnce adds key ("v1") on s, writes it once ("v2": no longer a
// creation's record) and returns a fresh read of it.
func writtenOnce(t *testing.T, s *memcached.Store, key string) provider.Entry {
	t.Helper()
	ctx := context.Background()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	requireWritable(t, s, key)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	return e
}

// Issue 13, the sim's early expiry (TestSimWitness, expiry seeds 136 and
// 192): internal writes re-stamped a copy with the t of their read less
// a second (and capped at T, a second below what a client write sets),
// so each decision on the same node shortened the session by a second; a
// failover and the R4.4 completion, R9's re-stamps and its nowit clear
// that follow it took 4 s off a session within milliseconds. A re-stamp
// on the node the record was read from keeps its expiry.
func TestFailoverKeepsExpiry(t *testing.T) {
	servers, s, cands := addedSession(t, "keepexp")
	const key = "keepexp"
	before := rawGet(t, cands[0], key).ttl
	start := time.Now()
	failOverToWitness(t, servers, s, cands, key)
	// memcached's clock ticks at most floor(elapsed)+1 times meanwhile.
	ticks := int64(time.Since(start)/time.Second) + 1
	own, moved := rawGet(t, cands[0], key).ttl, rawGet(t, cands[2], key).ttl
	t.Logf("c0's TTL %d before, %d after (%d ticks at most); the copy moved to c2: %d", before, own, ticks, moved)
	require.GreaterOrEqual(t, own, before-ticks, "re-stamps on c0 shortened the session")
	slack := int64(memcached.TimeoutExp(60)) - 60 // memcached's clock lag that expiration allows for
	require.GreaterOrEqual(t, moved, before-ticks-slack, "the copy moved to c2 lives less than its source less another clock's lag")
}

// Issue 13: a client touch that lands between R9's read and its re-stamp
// of the copies (memcached's touch keeps the CAS token, so the CAS is not
// refused) must survive the re-stamp: seed 136's probe touched the
// session and the repair its own call had queued set the read's t back.
func TestRestampKeepsConcurrentTouch(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "touchrace"
	var cands []string
	var touchErr error
	// A client's touch of both copies (as GetAndTouch's, without the
	// repair its own Store would queue).
	hook := func() {
		for _, a := range cands[:2] {
			touchErr = errors.Join(touchErr, raw(t, a).Touch(key, 60))
		}
	}
	var pAddr string
	dial := hookedDial(&pAddr, key, hook)
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond}
	s2 := newStore(t, servers, cfg)
	cands = memcached.WitnessCandidates(s2, key)
	pAddr = cands[0]
	ctx := context.Background()
	_, err := s2.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	// An aging session (10 s left on both copies) whose witness is gone.
	for _, a := range cands[:2] {
		require.NoError(t, raw(t, a).Touch(key, 10))
	}
	require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx))
	cfg.DialContext = dial
	s := newStore(t, servers, cfg)
	// R9 reads (t = 10), the touch lands (the hook, before R9's first
	// write on c0), then R9 re-stamps both copies and writes the witness.
	memcached.RepairKey(s, key)
	require.NoError(t, touchErr)
	require.Equal(t, uint32(2), rawGet(t, cands[2], key).flags, "R9 wrote the witness")
	for _, a := range cands[:2] {
		ttl := rawGet(t, a, key).ttl
		t.Logf("%s: TTL %d after the touch and R9", a, ttl)
		require.Greater(t, ttl, int64(55), "R9's re-stamp undid a touch that landed after its read")
	}
}

// Review 5's m2 (review 4's D5 on the follow-up touch): a cold read (the
// session's timeout not yet cached) touches both data copies with the
// session's timeout after its read; if a failover made one of those nodes
// the witness in between, the touch must give the witness its TW back,
// not leave it with the session's timeout (it would then expire before
// the data it witnesses). SetTouchNoFlags, the code before, must fail.
func TestFollowUpTouchKeepsWitnessTTL(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "broken"}[broken], func(t *testing.T) {
			servers, _, cands := addedSession(t, "touchwit")
			const key = "touchwit"
			fresh := int64(memcached.TimeoutExp(60)) // a data copy's TTL for a 60 s session
			s2 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			if broken {
				memcached.SetTouchNoFlags(s2)
			}
			var once sync.Once
			memcached.SetBeforeTouchCopies(s2, func(string) {
				// The secondary's node becomes a witness of the key, with
				// 100 s left, between the read and its touch.
				once.Do(func() { rawSet(t, cands[1], key, []byte("w"), 100, 2) })
			})
			_, err := s2.GetAndTouch(context.Background(), key, time.Minute)
			require.NoError(t, err)
			it := rawGet(t, cands[1], key)
			require.Equal(t, uint32(2), it.flags)
			if broken {
				require.LessOrEqual(t, it.ttl, fresh, "the broken variant leaves the witness with the session's timeout")
				return
			}
			require.Greater(t, it.ttl, int64(100), "the witness touched by a data-copy touch got TW (2 × MaxTimeout) back (data TTL %d)", fresh)
		})
	}
}

// Review 5's m4: the repair client keeps the readers' first-sight rule for
// a write in flight (one copy holds the write, the other exactly its
// parent). It writes nothing the first time, so a live writer's second
// CAS is not refused by it, and completes the split when it looks again
// (an abandoned write). The split is made by putting the secondary's
// parent back with raw memcached after a committed write. The broken
// variant SetRepairCompletesInFlight (the code before) completes at once.
func TestRepairLeavesWriteInFlight(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "broken"}[broken], func(t *testing.T) {
			servers, s, cands := addedSession(t, "inflight")
			const key = "inflight"
			ctx := context.Background()
			parent := rawGet(t, cands[1], key)
			require.Equal(t, uint32(1), parent.flags)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
			require.NoError(t, err)
			written := rawGet(t, cands[0], key)
			rawSet(t, cands[1], key, parent.value, int(parent.ttl), 1)
			s2 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			if broken {
				memcached.SetRepairCompletesInFlight(s2)
			}
			memcached.RepairKey(s2, key)
			got := rawGet(t, cands[1], key)
			if broken {
				require.Equal(t, written.value, got.value, "the broken variant completes the write in flight at once")
				return
			}
			require.Equal(t, parent.value, got.value, "the repair client wrote on a write in flight the first time it saw it")
			// Seen again (the put-off repair, a Timeout later, or this
			// call): the split is completed.
			testwait.Until(t, 5*time.Second, "the split to be completed on the second sight", func() bool {
				if bytes.Equal(rawGet(t, cands[1], key).value, written.value) {
					return true
				}
				memcached.RepairKey(s2, key)
				return false
			})
		})
	}
}

// A touching read (GetAndTouch with the session's timeout cached) must
// keep the remaining TTL its touch left, not the one before: memcached
// handles a meta command's flags in order, so `t` before `T` reports the
// TTL before the touch. The handle's base TTL is what an undo restores:
// here the copies had 10 s left, the read touched them to the session's
// 60 s, the write was refused on the primary (re-stamped by another
// process) and stored on the secondary, and the undo must give the
// secondary back its 60 s, not 10. The broken variant SetTTLBeforeTouch
// (the flags before) must restore the 10 s.
func TestTouchingReadKeepsTouchedTTL(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "broken"}[broken], func(t *testing.T) {
			_, s, cands := addedSession(t, "touchttl")
			const key = "touchttl"
			ctx := context.Background()
			if broken {
				memcached.SetTTLBeforeTouch(s)
			}
			for _, a := range cands[:2] {
				require.NoError(t, raw(t, a).Touch(key, 10))
			}
			e, err := s.GetAndTouch(ctx, key, time.Minute)
			require.NoError(t, err)
			require.Greater(t, rawGet(t, cands[1], key).ttl, int64(50), "the read touched the secondary")
			// Another write reached the primary only: a later version of
			// the same configuration, not this call's.
			p := rawGet(t, cands[0], key)
			env, _, err := envelope.Decode(p.value)
			require.NoError(t, err)
			rawSet(t, cands[0], key, env.Next(0x5eed, env.Timeout).Wrap([]byte("other")), int(p.ttl), p.flags)
			_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict)
			it := rawGet(t, cands[1], key)
			_, payload, err := envelope.Decode(it.value)
			require.NoError(t, err)
			require.Equal(t, "v1", string(payload), "the undo restored the base")
			if broken {
				require.LessOrEqual(t, it.ttl, int64(10), "the broken variant restores the TTL from before the touch")
				return
			}
			require.Greater(t, it.ttl, int64(50), "the undo gave the secondary back the TTL before the write (60 s), not the one before the read's touch")
		})
	}
}
