package memcached_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestRestartedCopyReadAgain: a call in flight when a data copy's node
// restarts (empty) reads that copy as silent (its connection reset, the
// node refusing while it starts) and waits for the node's verdict (§9);
// when the node answers again before FailoverAfter, the copy is read
// again, found empty, and the session fails over to its third node: the
// call succeeds. Before the fix, the wait ran to FailoverAfter regardless
// and the call failed ErrUnavailable ("one copy and nothing to fail over
// to"): restart-node's 503s, every request in flight at the restart
// failing a failover time after it.
func TestRestartedCopyReadAgain(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "restarted"
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 2500 * time.Millisecond})
	ctx := context.Background()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(s, key)
	q := serverAt(t, servers, cands[1])
	// other: a session with a data copy on Q's node, whose read makes the
	// node answer once it is back.
	other := ""
	for i := 0; other == ""; i++ {
		k := "restarted-other-" + strconv.Itoa(i)
		if c := memcached.WitnessCandidates(s, k); c[0] == q.Addr() {
			other = k
		}
	}
	waiting := make(chan struct{}, 1)
	memcached.SetWaitingFailed(s, q.Addr(), func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})

	q.Kill()
	done := make(chan error, 1)
	go func() {
		got, err := s.Get(ctx, key)
		if err == nil && string(got.Value) != string(e.Value) {
			err = fmt.Errorf("read %q, want %q", got.Value, e.Value)
		}
		done <- err
	}()
	select {
	case <-waiting: // the call read Q as silent and waits for its verdict
	case err := <-done:
		t.Fatalf("the call ended without waiting for Q's verdict: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the call never waited for Q's verdict")
	}
	require.NoError(t, q.Restart(ctx))
	_, _ = s.Get(ctx, other) // Q answers (a miss)
	select {
	case err := <-done:
		require.NoError(t, err, "a call in flight at a data copy's restart, the node back within FailoverAfter")
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end")
	}
}

// TestWriteAfterRestartOnDeadPooledConn: a node restarted (empty) between
// a read and the write that uses its handle. This process's pooled
// connections to the node lead to the killed process: a write sent on
// one got no reply, and a new connection found a new incarnation, so the
// write's outcome was unknown ("the write may have run") although the
// connection was dead before the send and nothing could have run. A
// pooled connection closed by its peer is now dropped before use (a
// non-blocking read finds its end): the write goes out on a new
// connection, where the handle's token, of the old incarnation, is
// refused without sending, and the write's outcome is known.
func TestWriteAfterRestartOnDeadPooledConn(t *testing.T) {
	servers := startNodes(t, 3)
	const key = "deadpooled"
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	ctx := context.Background()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	p := serverAt(t, servers, memcached.WitnessCandidates(s, key)[0])
	require.NoError(t, p.Restart(ctx))
	_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "a write on a connection its peer had closed before the send")
	t.Logf("the write: %v", err)
	// Known either way; the session reads back as one of the two.
	got, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Contains(t, []string{"v1", "v2"}, string(got.Value))
}

// refusingConn fails the first Write once armed, taking no byte: a
// connection its node had closed (EPIPE).
type refusingConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c *refusingConn) Write(b []byte) (int, error) {
	if c.armed.CompareAndSwap(true, false) {
		return 0, syscall.EPIPE
	}
	return c.Conn.Write(b)
}

// TestWriteNotTakenSentAgain: a write whose connection took no byte of it
// (the send failed at once: the node had closed the connection) was not
// sent, and goes out again on a new connection. Before, it counted as
// sent with no reply: the write's outcome was unknown (P silent, Q
// stored), although nothing of it reached P.
func TestWriteNotTakenSentAgain(t *testing.T) {
	servers := startNodes(t, 3)
	s0 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	const key = "nottaken"
	var armed atomic.Bool
	refusing := func(c net.Conn) net.Conn { return &refusingConn{Conn: c, armed: &armed} }
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness,
		DialContext: wrapDialsTo(memcached.WitnessCandidates(s0, key)[0], refusing)})
	ctx := context.Background()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	armed.Store(true)
	_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
	require.NoError(t, err, "a write the connection took no byte of, sent again on a new one")
	require.False(t, armed.Load(), "the write was not tried on the refusing connection")
	got, err := s0.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(got.Value))
}

// wrapDialsTo returns a DialContext whose connections to addr are wrapped.
func wrapDialsTo(addr string, wrap func(net.Conn) net.Conn) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != addr {
			return c, err
		}
		return wrap(c), nil
	}
}

// A write after the node's pooled connections sat idle longer than
// Timeout takes one of them (connCheck passes on a live connection whose
// last deadline has passed), not a new connection and its incarnation
// read: a check through RawConn.Read failed on every such connection and
// emptied the pool (the review of 2026-11-30, M3).
func TestIdlePooledConnKeptForWrite(t *testing.T) {
	servers := startNodes(t, 3)
	w := newWire()
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: 150 * time.Millisecond, FailoverAfter: 700 * time.Millisecond, DialContext: w.dial})
	ctx := context.Background()
	const key = "idlewrite"
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	primary := memcached.WitnessCandidates(s, key)[0]
	dials := w.at(primary).dials
	time.Sleep(400 * time.Millisecond) // idle past Timeout: the case itself, not a wait for an event
	_, err = s.CompareAndSwap(ctx, key, []byte("v2"), e.CAS, time.Minute)
	require.NoError(t, err)
	require.Equal(t, dials, w.at(primary).dials, "the write after an idle spell opened a new connection to the primary")
}

// touchRefuser fails, once armed, the first write of a touch ("mg <key>
// c f T") to addr with no byte taken (EPIPE), as a connection whose
// deadline passed or whose node reset it does.
type touchRefuser struct {
	mu          sync.Mutex
	addr, key   string
	armed, shot bool
}

type touchRefuserConn struct {
	net.Conn
	f    *touchRefuser
	addr string
}

func (c *touchRefuserConn) Write(b []byte) (int, error) {
	c.f.mu.Lock()
	hit := c.f.armed && c.addr == c.f.addr && strings.HasPrefix(string(b), "mg "+c.f.key+" c f T")
	if hit {
		c.f.armed, c.f.shot = false, true
	}
	c.f.mu.Unlock()
	if hit {
		return 0, syscall.EPIPE
	}
	return c.Conn.Write(b)
}

// An append stored on the primary whose touch (sent after it, the second
// round trip) went out with no byte is stored: the call succeeds and
// both copies hold the change. Before (the review of 2026-11-30, B1) the
// operation was judged "not sent" by its touch alone, sent again on a new
// connection, refused there by its own new token, undone on the
// secondary and reported ErrCASConflict, while the primary kept it (the
// next read completed it: a lock reported failed became the record).
func TestAppendTouchUnsentStillStored(t *testing.T) {
	const key = "touchunsent"
	f := &touchRefuser{key: key}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &touchRefuserConn{Conn: c, f: f, addr: addr}, nil
	}
	_, s := witnessSetup(t, memcached.Config{DialContext: dial})
	memcached.SetAppendTwoTrips(s)
	ctx := context.Background()
	cands := memcached.WitnessCandidates(s, key)
	f.addr = cands[0] // the primary
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	f.mu.Lock()
	f.armed = true
	f.mu.Unlock()
	_, _, err = s.CompareAndAppend(ctx, key, []byte("LOCK"), e.CAS, time.Minute)
	require.True(t, f.shot, "the touch's write was not refused")
	require.NoError(t, err, "an append stored on both copies reported failed")
	for _, a := range cands[:2] {
		_, payload, derr := envelope.Decode(rawGet(t, a, key).value)
		require.NoError(t, derr)
		require.Equal(t, "v1LOCK", string(payload), "copy on %s", a)
	}
}
