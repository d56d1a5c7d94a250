package memcached_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestFlushKeepsIncarnationLabel (R1): flush_all deletes the node's
// incarnation sentinel but keeps its memcached process, its connections
// and its CAS counter. A token read after the flush on a connection
// opened before it names a live item of that one counter: the write with
// it goes out and is stored, also when another operation of the process
// dialled the node meanwhile (its hello made the new sentinel). The code
// before (SetRelabelOnFlush) made the new sentinel a new label and
// refused the token unsent: the call read again (a counted anomaly read
// of the witness scheme's decisions, about 1 call in 10 after a flush in
// the simulation).
func TestFlushKeepsIncarnationLabel(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook func(*memcached.Store)
		// emptyPool: every idle pooled connection is gone before the dial
		// (all lent, as when a dial is made under load): only the probe
		// connection is left to ask.
		emptyPool bool
		keep      bool
	}{
		{"fixed", func(*memcached.Store) {}, false, true},
		{"fixed/empty-pool", func(*memcached.Store) {}, true, true},
		{"code-before", memcached.SetRelabelOnFlush, false, false},
		{"no-probe-conn/empty-pool", memcached.SetNoProbeConn, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers, s, addr, label := labelledNode(t, memcached.Config{}, tc.hook, "label-flush")
			ctx := context.Background()
			require.NoError(t, serverAt(t, servers, addr).FlushAll(ctx))
			// An item made after the flush (as a repair restores a copy),
			// read on a pooled connection opened before it.
			rawSet(t, addr, "label-item", []byte("post-flush"), 60, 1)
			cas, inc, err := memcached.ReadToken(s, addr, "label-item")
			require.NoError(t, err)
			require.NotZero(t, cas)
			require.Equal(t, label, inc, "the rig: read on a connection opened before the flush")
			if tc.emptyPool {
				memcached.DropIdle(s, addr)
			}
			// Another operation of the process dials the node.
			require.NoError(t, memcached.DialNew(s, addr))
			err = memcached.WriteWithToken(s, addr, "label-item", []byte("written"), cas, inc)
			if !tc.keep {
				require.NotEqual(t, label, memcached.IncLabel(s, addr))
				require.ErrorIs(t, err, memcached.ErrOtherIncarnation, "refused unsent")
				require.Equal(t, "post-flush", string(rawGet(t, addr, "label-item").value))
				return
			}
			require.Equal(t, label, memcached.IncLabel(s, addr), "the flushed process keeps its label")
			require.NoError(t, err)
			require.Equal(t, "written", string(rawGet(t, addr, "label-item").value))
			require.True(t, memcached.HasProbeConn(s, addr), "the probe connection kept")
			// The session itself: read and written through the new label.
			e, err := s.Get(ctx, "label-flush")
			require.NoError(t, err)
			require.Equal(t, "v1", string(e.Value))
			_, err = s.CompareAndSwap(ctx, "label-flush", []byte("v2"), e.CAS, time.Minute)
			require.NoError(t, err)
		})
	}
}

// labelledNode returns a witness Store of cfg (hook applied) in which key
// was added, the address of key's secondary and that node's label, with
// two connections opened to it: the second, returned while the first is
// idle, is kept for the label's probe (not with SetNoProbeConn).
func labelledNode(t *testing.T, cfg memcached.Config, hook func(*memcached.Store), key string) (servers []*mcserver.Server, s *memcached.Store, addr string, label uint64) {
	t.Helper()
	servers, s = witnessSetup(t, cfg)
	hook(s)
	_, err := s.Add(context.Background(), key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	addr = memcached.WitnessCandidates(s, key)[1]
	label = memcached.IncLabel(s, addr)
	require.NotZero(t, label)
	require.NoError(t, memcached.DialNew(s, addr))
	return servers, s, addr, label
}

// TestRestartChangesIncarnationLabel (R1): a restart resets memcached's
// CAS counter, so a token read before it can name an item made after it.
// The new process's sentinel is a new label, whether the probe of label
// fails on an older connection (the restart closed it) or finds none to
// ask (every idle one dropped first, as a write's liveConn does), and the
// old token is refused unsent, never stored over the item it collides
// with. The broken variant SetLabelNoProbe (a new sentinel keeps the
// label without the probe) stores it there.
func TestRestartChangesIncarnationLabel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hook      func(*memcached.Store)
		emptyPool bool
		broken    bool
	}{
		{"fixed/probe-fails", func(*memcached.Store) {}, false, false},
		{"fixed/nothing-to-probe", func(*memcached.Store) {}, true, false},
		{"no-probe", memcached.SetLabelNoProbe, false, true},
		{"no-probe/nothing-to-probe", memcached.SetLabelNoProbe, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers, s, addr, label := labelledNode(t, memcached.Config{}, tc.hook, "label-restart")
			ctx := context.Background()
			// Some writes first, so that the token is above what the
			// restarted process's counter starts at.
			for range 10 {
				rawSet(t, addr, "label-pad", []byte("x"), 60, 0)
			}
			rawSet(t, addr, "label-item", []byte("before"), 60, 1)
			cas, inc, err := memcached.ReadToken(s, addr, "label-item")
			require.NoError(t, err)
			require.Equal(t, label, inc)
			require.NoError(t, serverAt(t, servers, addr).Restart(ctx))
			if tc.emptyPool {
				memcached.CloseIdle(s)
			}
			require.NoError(t, memcached.DialNew(s, addr))
			// Another process's item, made after the restart, whose token
			// is the very number (the counter started again).
			for rawGet(t, addr, "label-pad").cas < cas-1 {
				rawSet(t, addr, "label-pad", []byte("x"), 60, 0)
			}
			rawSet(t, addr, "label-item", []byte("another's"), 60, 1)
			require.Equal(t, cas, rawGet(t, addr, "label-item").cas, "the rig: a token of the old process names the new item")
			err = memcached.WriteWithToken(s, addr, "label-item", []byte("stale write"), cas, inc)
			if tc.broken {
				require.Equal(t, label, memcached.IncLabel(s, addr))
				require.NoError(t, err, "the broken variant sends the old token")
				require.Equal(t, "stale write", string(rawGet(t, addr, "label-item").value), "the broken variant overwrote another's item")
				return
			}
			require.NotEqual(t, label, memcached.IncLabel(s, addr), "a restarted process has a new label")
			require.ErrorIs(t, err, memcached.ErrOtherIncarnation)
			require.Equal(t, "another's", string(rawGet(t, addr, "label-item").value))
		})
	}
}

// TestAddRefusedOtherIncReadsAgain (cold review rv-label M2): an Add
// whose data CAS is refused unsent as of another incarnation of its node
// (the label changed between its read and its CAS: here the sentinel
// deleted and the idle connections closed, as a restart or a flush with
// nothing to probe leaves them) undoes its witness and reads again: the
// session is created. The code before (SetAddOtherIncExists) answered
// ErrExists, and a Get then found no session.
func TestAddRefusedOtherIncReadsAgain(t *testing.T) {
	for _, before := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "code-before"}[before], func(t *testing.T) {
			_, s := witnessSetup(t, memcached.Config{})
			if before {
				memcached.SetAddOtherIncExists(s)
			}
			ctx := context.Background()
			const key = "label-add"
			cands := memcached.WitnessCandidates(s, key)
			// Connections to every node first, of their current labels.
			_, err := s.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)
			var once sync.Once
			memcached.SetAfterAddWitness(s, func(string) {
				once.Do(func() {
					rawDelete(t, cands[1], "__sl_inc")
					memcached.CloseIdle(s)
				})
			})
			_, err = s.Add(ctx, key, []byte("v1"), time.Minute)
			if before {
				require.ErrorIs(t, err, provider.ErrExists, "the code before")
				require.ErrorContains(t, err, "token of another incarnation of the node; not sent")
				_, err = s.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrNotFound, "the code before: no session, though Add said it exists")
				return
			}
			require.NoError(t, err)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(e.Value))
		})
	}
}

// TestAddOtherIncTriesBounded (cold review rv-label2 M1): an Add refused
// as of another incarnation at every try reads again at most 3 times and
// answers ErrUnavailable, not ErrExists (nothing written: no record was
// found). The first build wrapped the last try's error, so the answer was
// also ErrExists, which the provider's loop takes for a record found.
func TestAddOtherIncTriesBounded(t *testing.T) {
	_, s := witnessSetup(t, memcached.Config{})
	ctx := context.Background()
	const key = "label-add-tries"
	cands := memcached.WitnessCandidates(s, key)
	tries := 0
	memcached.SetAfterAddWitness(s, func(string) {
		tries++
		rawDelete(t, cands[1], "__sl_inc")
		memcached.CloseIdle(s)
	})
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrExists, "no record was found")
	require.Equal(t, 3, tries)
	memcached.SetAfterAddWitness(s, nil)
	_, err = s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound, "nothing written")
}

// TestLabelWaitEndsWithContext: a new connection whose label waits for
// another's probe (the slot held) returns when its caller's context ends,
// with the context's error (the node not blamed).
func TestLabelWaitEndsWithContext(t *testing.T) {
	_, s := witnessSetup(t, memcached.Config{})
	addr := memcached.WitnessCandidates(s, "label-wait")[0]
	require.NoError(t, memcached.DialNew(s, addr)) // the node labelled
	waiting, release := memcached.HoldLabel(s, addr)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- memcached.DialNewCtx(ctx, s, addr) }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("the label's wait did not end with its context")
	}
}

// TestOneConnectionKeepsNoProbe: a process that never has two
// connections to a node at once (sequential plain reads and writes) keeps
// no connection out of the pool for the label's probe: it never dials
// while one is idle, so a flush never makes it relabel.
func TestOneConnectionKeepsNoProbe(t *testing.T) {
	_, s := witnessSetup(t, memcached.Config{})
	ctx := context.Background()
	const key = "label-one-conn"
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	for range 20 {
		_, err := s.Get(ctx, key)
		require.NoError(t, err)
	}
	for _, addr := range memcached.WitnessCandidates(s, key) {
		require.False(t, memcached.HasProbeConn(s, addr), "%s: no probe connection", addr)
	}
}

// probeTrapConn fails its next Read (as the deadline would) and cancels
// the caller's context first, once armed: the probe of label running
// into the end of its caller's context.
type probeTrapConn struct {
	net.Conn
	trap  *atomic.Pointer[context.CancelFunc] // shared: sprung once
	armed atomic.Bool                         // opened before the trap was set
}

func (c *probeTrapConn) Read(b []byte) (int, error) {
	if !c.armed.Load() {
		return c.Conn.Read(b)
	}
	if cancel := c.trap.Swap(nil); cancel != nil {
		(*cancel)()
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(b)
}

// TestLabelProbeCancelledKeepsLabel (cold review rv-label2 m1): a probe
// that ends with its caller's context learnt nothing: the dial fails with
// the context's error and the node keeps its label and its pool (the
// first build took it for a restart, relabelled the node that was only
// flushed and closed its connections).
func TestLabelProbeCancelledKeepsLabel(t *testing.T) {
	servers := startNodes(t, 3)
	var trap atomic.Pointer[context.CancelFunc]
	var mu sync.Mutex
	var traps []*probeTrapConn
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &probeTrapConn{Conn: c, trap: &trap}
		mu.Lock()
		traps = append(traps, tc)
		mu.Unlock()
		return tc, nil
	}
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, DialContext: dial})
	ctx := context.Background()
	_, err := s.Add(ctx, "label-cancel", []byte("v1"), time.Minute)
	require.NoError(t, err)
	addr := memcached.WitnessCandidates(s, "label-cancel")[1]
	label := memcached.IncLabel(s, addr)
	require.NoError(t, memcached.DialNew(s, addr)) // a probe connection kept
	require.NoError(t, serverAt(t, servers, addr).FlushAll(ctx))
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	trap.Store(&cancel)
	mu.Lock()
	for _, tc := range traps { // every connection open now: the probe's
		tc.armed.Store(true)
	}
	mu.Unlock()
	err = memcached.DialNewCtx(dctx, s, addr)
	require.Nil(t, trap.Load(), "the rig: the probe ran into the context's end")
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, label, memcached.IncLabel(s, addr), "nothing learnt: the label kept")
	require.NoError(t, memcached.DialNew(s, addr))
	require.Equal(t, label, memcached.IncLabel(s, addr), "the next probe finds the same process")
}

// TestLabelProbeComparesSentinel: the probe's answer must be the very
// sentinel the new connection read, not merely an answer. Here the
// node's address leads new connections to another memcached process
// (a load balancer switched over; §11.2 rules it out, the comparison
// guards against it): the older connection still answers, from the first
// process, with its own sentinel, and the node gets a new label, so a
// token of the first process is refused on the second's connections.
func TestLabelProbeComparesSentinel(t *testing.T) {
	servers := startNodes(t, 4)
	var other atomic.Pointer[string] // set: new connections to the node go there
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if o := other.Load(); o != nil && addr == servers[1].Addr() {
			addr = *o
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s := newStore(t, servers[:3], memcached.Config{Backup: memcached.BackupWitness, DialContext: dial})
	addr := servers[1].Addr()
	require.NoError(t, memcached.DialNew(s, addr))
	require.NoError(t, memcached.DialNew(s, addr)) // a probe connection kept
	label := memcached.IncLabel(s, addr)
	require.NotZero(t, label)
	require.True(t, memcached.HasProbeConn(s, addr))
	second := servers[3].Addr()
	other.Store(&second)
	require.NoError(t, memcached.DialNew(s, addr))
	require.NotEqual(t, label, memcached.IncLabel(s, addr), "another process behind the address: a new label")
}

// helloMuteConn, once armed, does not send the incarnation read (the
// hello's, which the label's probe sends again): its peer never answers,
// and the read waits until the connection's deadline or interruption.
// Other commands go out.
type helloMuteConn struct {
	net.Conn
	addr   string
	armed  atomic.Bool
	closed atomic.Bool
	muted  chan<- *helloMuteConn // told of each muted write
}

func (c *helloMuteConn) Write(b []byte) (int, error) {
	if c.armed.Load() && bytes.HasPrefix(b, []byte("mg __sl_inc ")) {
		select {
		case c.muted <- c:
		default:
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *helloMuteConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// helloMute dials helloMuteConns (Config.DialContext) and arms them.
type helloMute struct {
	mu    sync.Mutex
	conns []*helloMuteConn
	muted chan *helloMuteConn
}

func newHelloMute() *helloMute { return &helloMute{muted: make(chan *helloMuteConn, 8)} }

func (m *helloMute) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	hc := &helloMuteConn{Conn: c, addr: addr, muted: m.muted}
	m.mu.Lock()
	m.conns = append(m.conns, hc)
	m.mu.Unlock()
	return hc, nil
}

// arm mutes the incarnation reads of every connection to addr open now
// (the label's probe asks one of them; a new connection's hello is sent).
func (m *helloMute) arm(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		if c.addr == addr {
			c.armed.Store(true)
		}
	}
}

// probeBlocked returns a witness Store (hook applied, Timeout timeout)
// whose node addr, of label, was flushed with a probe connection kept
// (labelledNode) and two or more idle: the next dial's label probes it,
// and every connection to addr open before it leaves the probe's hello
// unanswered.
func probeBlocked(t *testing.T, timeout time.Duration, hook func(*memcached.Store), key string) (s *memcached.Store, addr string, label uint64, m *helloMute) {
	t.Helper()
	m = newHelloMute()
	servers, s, addr, label := labelledNode(t, memcached.Config{Timeout: timeout, DialContext: m.dial}, hook, key)
	require.True(t, memcached.HasProbeConn(s, addr), "the rig: a probe connection kept")
	require.NoError(t, memcached.DialNew(s, addr)) // pooled: the probe slot is full
	require.NoError(t, serverAt(t, servers, addr).FlushAll(context.Background()))
	m.arm(addr)
	return s, addr, label, m
}

// TestLabelProbeEndsWithContext (cold review rv-label2's gap): the
// label's probe after a flush ends with its caller's context, not at
// Timeout, as any other operation (begin): its deadline, or a cancel (no
// deadline) once the probe's hello went out. The probe connection's peer
// does not answer; the dial fails with the context's error well before
// Timeout, the connection asked closed, the label kept (nothing learnt).
// The broken variant SetProbeIgnoresCtx (bounded by Timeout only) waits
// for Timeout past a deadline; the code before (SetProbeNoCancel: the
// caller's deadline set on the connection, no interruption) past a
// cancel.
func TestLabelProbeEndsWithContext(t *testing.T) {
	const timeout = 2 * time.Second
	for _, tc := range []struct {
		name   string
		cancel bool // cancelled, no deadline; else a 200 ms deadline
		hook   func(*memcached.Store)
		broken bool
	}{
		{"deadline/fixed", false, func(*memcached.Store) {}, false},
		{"deadline/code-before", false, memcached.SetProbeNoCancel, false},
		{"deadline/ignores-ctx", false, memcached.SetProbeIgnoresCtx, true},
		{"cancel/fixed", true, func(*memcached.Store) {}, false},
		{"cancel/code-before", true, memcached.SetProbeNoCancel, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr, label, m := probeBlocked(t, timeout, tc.hook, "label-probe-ctx")
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			want := context.DeadlineExceeded
			if tc.cancel {
				cancel()
				ctx, cancel = context.WithCancel(context.Background())
				want = context.Canceled
			}
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- memcached.DialNewCtx(ctx, s, addr) }()
			var probe *helloMuteConn
			select {
			case probe = <-m.muted:
			case <-time.After(timeout):
				t.Fatal("the rig: the probe asked no muted connection")
			}
			if tc.cancel {
				cancel()
				start = time.Now()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(2 * timeout):
				t.Fatal("the dial did not return")
			}
			took := time.Since(start)
			require.ErrorIs(t, err, want)
			require.True(t, probe.closed.Load(), "the probe's connection closed, not kept")
			require.Equal(t, label, memcached.IncLabel(s, addr), "nothing learnt: the label kept")
			if tc.broken {
				require.GreaterOrEqual(t, took, timeout/2, "the broken variant waits for Timeout")
				return
			}
			require.Less(t, took, timeout/2, "the probe ends with its caller's context")
		})
	}
}

// TestRelabelClosesProbeConn: a relabel closes the probe connection with
// the idle ones (closeIdle): a connection of the old label returned while
// the probe waits is parked in the emptied probe slot, and the probe then
// gets no answer (as from a restarted process: a new label). The broken
// variant SetCloseIdleKeepsProbe leaves it there, for the next probe to
// ask a connection of the old label.
func TestRelabelClosesProbeConn(t *testing.T) {
	const timeout = 2 * time.Second
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "closeidle-keeps-probe"}[broken], func(t *testing.T) {
			hook := func(*memcached.Store) {}
			if broken {
				hook = memcached.SetCloseIdleKeepsProbe
			}
			s, addr, label, m := probeBlocked(t, timeout, hook, "label-probe-relabel")
			done := make(chan error, 1)
			go func() { done <- memcached.DialNew(s, addr) }()
			select {
			case <-m.muted:
			case <-time.After(timeout):
				t.Fatal("the rig: the probe asked no muted connection")
			}
			// An operation on a pooled connection of the old label: when
			// it returns, another is idle and the probe slot is empty.
			_, _, err := memcached.ReadToken(s, addr, "label-probe-other")
			require.NoError(t, err)
			require.True(t, memcached.HasProbeConn(s, addr), "the rig: a connection of the old label parked during the probe")
			select {
			case err = <-done:
			case <-time.After(2 * timeout):
				t.Fatal("the probe did not end")
			}
			require.NoError(t, err)
			require.NotEqual(t, label, memcached.IncLabel(s, addr), "no answer: a new label")
			if broken {
				require.True(t, memcached.HasProbeConn(s, addr), "the broken variant keeps the old label's connection")
				return
			}
			require.False(t, memcached.HasProbeConn(s, addr), "the relabel closed the probe connection")
		})
	}
}

// neverEnds has a deadline but never ends (Done is nil): a connection's
// deadline made from it fires while ctx.Err() stays nil, as it may for a
// real context whose timer has not yet run.
type neverEnds struct {
	context.Context
	d time.Time
}

func (c neverEnds) Deadline() (time.Time, bool) { return c.d, true }

// TestLabelProbeDeadlineBeforeTimer (cold review rv-probe m1): the probe
// runs into its caller's deadline while the context has not yet ended (its
// timer not run; here it never ends): that is the caller's deadline, not
// "no answer" from the node, so nothing is learnt and the label is kept.
// The code before took only ctx.Err() as the context's end and relabelled
// the flushed node (closing its pool) whenever the connection's deadline
// fired first; TestLabelProbeEndsWithContext's real contexts hit that only
// now and then (the reviewer: 6 of 8 runs of a mutant).
func TestLabelProbeDeadlineBeforeTimer(t *testing.T) {
	s, addr, label, m := probeBlocked(t, 2*time.Second, func(*memcached.Store) {}, "label-probe-dl")
	ctx := neverEnds{context.Background(), time.Now().Add(200 * time.Millisecond)}
	done := make(chan error, 1)
	go func() { done <- memcached.DialNewCtx(ctx, s, addr) }()
	var probe *helloMuteConn
	select {
	case probe = <-m.muted:
	case <-time.After(2 * time.Second):
		t.Fatal("the rig: the probe asked no muted connection")
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("the dial did not return")
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, probe.closed.Load(), "the probe's connection closed, not kept")
	require.Equal(t, label, memcached.IncLabel(s, addr), "nothing learnt: the label kept")
}
