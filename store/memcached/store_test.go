package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]memcached.Config{
		"no nodes":      {},
		"duplicate":     {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"}},
		"no port":       {Nodes: []string{"127.0.0.1"}},
		"backup mode":   {Nodes: []string{"127.0.0.1:1"}, Backup: 7},
		"negative mode": {Nodes: []string{"127.0.0.1:1"}, Backup: -1},
		"empty string":  {Nodes: []string{""}},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := memcached.New(cfg)
			require.Error(t, err)
			require.Nil(t, s)
		})
	}
	many := make([]string, memcached.MaxNodes+1)
	for i := range many {
		many[i] = net.JoinHostPort("10.0.0.1", strconv.Itoa(1000+i))
	}
	_, err := memcached.New(memcached.Config{Nodes: many})
	require.Error(t, err)
	s, err := memcached.New(memcached.Config{Nodes: many[:memcached.MaxNodes]})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// TestBackupDefault: the zero Config.Backup runs the witness scheme with
// three or more nodes, a backup copy with two, one copy with one or on the
// text path; explicit modes are kept (BackupOn reported off where it has
// no effect), and the witness scheme with fewer than three nodes or on the
// text path is refused. New does not contact the nodes.
func TestBackupDefault(t *testing.T) {
	nodes := func(n int) []string {
		addrs := make([]string, n)
		for i := range addrs {
			addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(1+i))
		}
		return addrs
	}
	for _, tc := range []struct {
		nodes int
		text  bool
		mode  memcached.BackupMode
		want  memcached.BackupMode
	}{
		{1, false, memcached.BackupDefault, memcached.BackupOff},
		{2, false, memcached.BackupDefault, memcached.BackupOn},
		{3, false, memcached.BackupDefault, memcached.BackupWitness},
		{5, false, memcached.BackupDefault, memcached.BackupWitness},
		{1, true, memcached.BackupDefault, memcached.BackupOff},
		{3, true, memcached.BackupDefault, memcached.BackupOff},
		{3, false, memcached.BackupOn, memcached.BackupOn},
		{3, false, memcached.BackupOff, memcached.BackupOff},
		{2, false, memcached.BackupOff, memcached.BackupOff},
		{1, false, memcached.BackupOn, memcached.BackupOff},
		{3, true, memcached.BackupOn, memcached.BackupOff},
		{3, false, memcached.BackupWitness, memcached.BackupWitness},
	} {
		t.Run(fmt.Sprintf("%d-nodes-text=%v-%v", tc.nodes, tc.text, tc.mode), func(t *testing.T) {
			s, err := memcached.New(memcached.Config{Nodes: nodes(tc.nodes), TextProtocol: tc.text, Backup: tc.mode})
			require.NoError(t, err)
			defer s.Close()
			require.Equal(t, tc.want, s.Backup())
			// Pipelined connections by default, pooled with the witness
			// scheme and on the text path (Config.Conns).
			require.Equal(t, tc.want != memcached.BackupWitness && !tc.text, memcached.Pipelined(s))
		})
	}
	for _, cfg := range []memcached.Config{
		{Nodes: nodes(2), Backup: memcached.BackupWitness},
		{Nodes: nodes(3), Backup: memcached.BackupWitness, TextProtocol: true},
	} {
		_, err := memcached.New(cfg)
		require.ErrorContains(t, err, "BackupWitness needs")
	}
	require.Equal(t, "default", memcached.BackupDefault.String())
	require.Equal(t, "witness", memcached.BackupWitness.String())
	require.Equal(t, "BackupMode(9)", memcached.BackupMode(9).String())
}

// TestContract checks Store semantics on one node, three nodes with a
// backup copy (BackupOn), and three nodes without backup.
func TestContract(t *testing.T) {
	servers := startNodes(t, 3)
	for _, tc := range []struct {
		name  string
		nodes int
		cfg   memcached.Config
	}{
		{"OneNode", 1, memcached.Config{}},
		// BackupOn: its tokens are memcached CAS values (the witness
		// scheme's are handles: witness_test.go checks its contract).
		{"ThreeNodes", 3, memcached.Config{Backup: memcached.BackupOn}},
		{"ThreeNodesNoBackup", 3, memcached.Config{Backup: memcached.BackupOff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flush(t, servers)
			s := newStore(t, servers[:tc.nodes], tc.cfg)
			ctx := context.Background()
			const key = "sl:contract"
			v1, v2, v3 := record(1, "one"), record(2, "two"), record(3, "three")

			_, err := s.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)
			_, err = s.TTL(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)
			require.ErrorIs(t, s.Touch(ctx, key, time.Minute), provider.ErrNotFound)
			require.ErrorIs(t, s.Delete(ctx, key), provider.ErrNotFound)

			addCAS, err := s.Add(ctx, key, v1, time.Minute)
			require.NoError(t, err)
			_, err = s.Add(ctx, key, v2, time.Minute)
			require.ErrorIs(t, err, provider.ErrExists)

			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, v1, e.Value)
			require.NotZero(t, e.CAS)
			require.Equal(t, e.CAS, addCAS, "Add returns the new token (ms ... c)")

			newCAS, err := s.CompareAndSwap(ctx, key, v2, e.CAS, 2*time.Minute)
			require.NoError(t, err)
			require.NotZero(t, newCAS, "CompareAndSwap returns the new token (ms ... c)")
			_, err = s.CompareAndSwap(ctx, key, v3, e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict, "a used token must conflict")
			_, err = s.CompareAndSwap(ctx, key, v3, 0, time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict, "a token from no node must conflict")

			e2, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, v2, e2.Value)
			require.NotEqual(t, e.CAS, e2.CAS)
			require.Equal(t, newCAS, e2.CAS, "the token returned by the write is the one Get reads")
			ttl, err := s.TTL(ctx, key)
			require.NoError(t, err)
			require.InDelta(t, (2 * time.Minute).Seconds(), ttl.Seconds(), 2)

			// Touch sets the TTL and keeps the CAS (memcached's touch).
			require.NoError(t, s.Touch(ctx, key, 90*time.Second))
			ttl, err = s.TTL(ctx, key)
			require.NoError(t, err)
			require.InDelta(t, 90, ttl.Seconds(), 2)
			e3, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, e2.CAS, e3.CAS)

			// TTLs beyond memcached's 30-day relative limit are sent as
			// absolute times, not misread as 1970.
			require.NoError(t, s.Touch(ctx, key, 40*24*time.Hour))
			ttl, err = s.TTL(ctx, key)
			require.NoError(t, err)
			require.InDelta(t, (40 * 24 * time.Hour).Seconds(), ttl.Seconds(), 5)
			_, err = s.Get(ctx, key)
			require.NoError(t, err)

			require.NoError(t, s.Delete(ctx, key))
			_, err = s.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)
			_, err = s.CompareAndSwap(ctx, key, v3, e3.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrNotFound)
			for _, srv := range servers[:tc.nodes] {
				for _, k := range []string{key, "bak:" + key} {
					_, err := raw(t, srv.Addr()).Get(k)
					require.ErrorIs(t, err, memcache.ErrCacheMiss, "Delete removes every copy")
				}
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	_, err := s.Add(ctx, "sl:short", record(1, "x"), 1500*time.Millisecond)
	require.NoError(t, err)
	ttl, err := s.TTL(ctx, "sl:short")
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, 4*time.Second, "1.5 s rounds up to 2 s, plus the two seconds memcached's clock may lag")
	require.GreaterOrEqual(t, ttl, 1500*time.Millisecond, "never below the TTL asked for")
	waitUntil(t, 10*time.Second, "the key to expire", func() bool {
		_, err := s.Get(ctx, "sl:short")
		return errors.Is(err, provider.ErrNotFound)
	})
	// Neither copy lingers.
	for _, srv := range servers {
		_, err := raw(t, srv.Addr()).Get("bak:sl:short")
		require.ErrorIs(t, err, memcache.ErrCacheMiss)
	}
}

func TestBadInput(t *testing.T) {
	servers := startNodes(t, 1)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	for _, key := range []string{"", "a b", "a\nb", "a\x7fb", "a\x00", strings.Repeat("k", memcached.MaxKeyLen+1)} {
		_, err := s.Get(ctx, key)
		require.ErrorIs(t, err, memcached.ErrInvalidKey, "%q", key)
		_, err = s.Add(ctx, key, []byte("v"), time.Minute)
		require.ErrorIs(t, err, memcached.ErrInvalidKey, "%q", key)
		require.ErrorIs(t, s.Delete(ctx, key), memcached.ErrInvalidKey)
	}
	long := strings.Repeat("k", memcached.MaxKeyLen)
	_, err := s.Add(ctx, long, []byte("v"), time.Minute)
	require.NoError(t, err, "a key of MaxKeyLen bytes is fine")

	for _, ttl := range []time.Duration{0, -time.Second, 100 * 365 * 24 * time.Hour} {
		_, err := s.Add(ctx, "sl:ttl", []byte("v"), ttl)
		require.ErrorIs(t, err, memcached.ErrInvalidTTL, "%v", ttl)
		require.ErrorIs(t, s.Touch(ctx, "sl:ttl", ttl), memcached.ErrInvalidTTL)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(canceled, "sl:ttl")
	require.ErrorIs(t, err, context.Canceled)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Get(ctx, "sl:ttl")
	require.ErrorIs(t, err, provider.ErrClosed)
	_, err = s.Add(ctx, "sl:ttl", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrClosed)
}

// TestTooLarge: a value over MaxItemSize fails before anything is written;
// the default limit really fits memcached's default item size.
func TestTooLarge(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	key := "sl:" + strings.Repeat("k", memcached.MaxKeyLen-3)

	_, err := s.Add(ctx, key, make([]byte, memcached.DefaultMaxItemSize+1), time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	for _, srv := range servers {
		for _, k := range []string{key, "bak:" + key} {
			_, err := raw(t, srv.Addr()).Get(k)
			require.ErrorIs(t, err, memcache.ErrCacheMiss, "nothing written")
		}
	}

	_, err = s.Add(ctx, key, make([]byte, memcached.DefaultMaxItemSize), time.Minute)
	require.NoError(t, err, "the default limit fits a default memcached, longest key and backup prefix included")
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, key, make([]byte, memcached.DefaultMaxItemSize+1), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	e2, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, e.CAS, e2.CAS, "nothing written")

	// A server with a smaller item limit than the Store's: its
	// SERVER_ERROR maps to ErrTooLarge too, and the node stays up.
	small := mcserver.StartForTest(t, 1, mcserver.Config{MaxItemSize: 512 << 10})
	s2 := newStore(t, small, memcached.Config{})
	_, err = s2.Add(ctx, "sl:big", make([]byte, 600<<10), time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	require.True(t, s2.Nodes()[0].Up)
}

// TestServerErrorIsErrServer: SERVER_ERROR replies (here memcached -M out
// of memory) map to ErrServer and do not mark the node down.
func TestServerErrorIsErrServer(t *testing.T) {
	srv := mcserver.StartForTest(t, 1, mcserver.Config{MemoryMB: 4, Args: []string{"-M"}})
	s := newStore(t, srv, memcached.Config{})
	ctx := context.Background()
	value := make([]byte, 100<<10)
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = s.Add(ctx, "sl:fill"+strconv.Itoa(i), value, time.Minute)
	}
	require.ErrorIs(t, err, provider.ErrServer)
	require.Contains(t, err.Error(), srv[0].Addr(), "errors name the node")
	require.True(t, s.Nodes()[0].Up, "a server error is an answer: the node stays up")
}

// TestUnreachableIsErrUnavailable: refused connections map to
// ErrUnavailable and mark the node down.
func TestUnreachableIsErrUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	s, err := memcached.New(memcached.Config{Nodes: []string{addr}, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	_, err = s.Get(ctx, "sl:k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.Contains(t, err.Error(), addr)
	st := s.Nodes()[0]
	require.False(t, st.Up)
	require.False(t, st.DownSince.IsZero())
	_, err = s.Add(ctx, "sl:k", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable, "a down node without backup fails fast")
	_, err = s.TTL(ctx, "sl:k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
}

// TestCorruptBackupCopy: where the backend parses records (choosing the
// copy to restore), undecodable bytes give ErrCorrupt and are not spread.
func TestCorruptBackupCopy(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	const key = "sl:corrupt"
	primary, backup := s.Placement(key)
	require.NoError(t, raw(t, backup).Set(&memcache.Item{Key: "bak:" + key, Value: []byte("not a record"), Expiration: 60}))

	_, err := s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	require.Contains(t, err.Error(), backup)
	_, err = raw(t, primary).Get(key)
	require.ErrorIs(t, err, memcache.ErrCacheMiss, "a corrupt copy is never restored")

	// A corrupt record with a valid sibling: the valid one wins.
	good := record(5, "good")
	require.NoError(t, raw(t, primary).Set(&memcache.Item{Key: "bak:" + key, Value: good, Expiration: 60}))
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, good, e.Value)

	// The primary copy is passed through as stored; the provider, which
	// decodes it, reports ErrCorrupt.
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	pkey, err := p.Key(id)
	require.NoError(t, err)
	pprimary, _ := s.Placement(pkey)
	require.NoError(t, raw(t, pprimary).Set(&memcache.Item{Key: pkey, Value: []byte("SL garbage"), Expiration: 60}))
	_, err = p.GetItem(ctx, id)
	require.ErrorIs(t, err, provider.ErrCorrupt)
}

// TestCloseLeavesNoGoroutine: the health check and every parallel backup
// write are gone after Close.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	servers := startNodes(t, 3)
	before := runtime.NumGoroutine()
	s, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers), HealthCheckInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 50 {
		key := "sl:g" + strconv.Itoa(i)
		_, err := s.Add(ctx, key, record(1, "x"), time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, key, record(2, "y"), e.CAS, time.Minute)
		require.NoError(t, err)
	}
	servers[0].Kill() // leave a node down so the health check is busy
	for i := range 50 {
		_, _ = s.Get(ctx, "sl:g"+strconv.Itoa(i))
	}
	require.NoError(t, s.Close())
	waitUntil(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// waitUntil polls cond until it holds or bound passes.
func waitUntil(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, bound, what, cond)
}

func TestProbeMeta(t *testing.T) {
	servers := startNodes(t, 1)
	ok, err := memcached.ProbeMeta(context.Background(), servers[0].Addr(), nil)
	require.NoError(t, err)
	require.True(t, ok, "memcached >= 1.6 answers mn")

	// A server that answers ERROR to mn (memcached before 1.6).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte("ERROR\r\n"))
		}
	}()
	ok, err = memcached.ProbeMeta(context.Background(), ln.Addr().String(), nil)
	require.NoError(t, err)
	require.False(t, ok)
}

// TestContextDeadlineOnSocket: the context's deadline bounds the read of a
// reply (not only the start of an operation), and a context that ends is
// not the node's fault: the node stays up.
func TestContextDeadlineOnSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // hangs: reads, never answers
		}
	}()
	s, err := memcached.New(memcached.Config{Nodes: []string{ln.Addr().String()}, Timeout: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = s.Get(ctx, "sl:k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, provider.ErrUnavailable)

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel2)
	_, err = s.CompareAndSwap(ctx2, "sl:k", []byte("v"), 1<<56|1, time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a write interrupted after it was sent has an unknown outcome")
	require.True(t, s.Nodes()[0].Up, "a context that ends does not mark the node down")
}

// TestTokenAcrossRestart: a token kept from before a node restart (as the
// provider's written cache keeps them) never matches after it, even when
// the restarted memcached, counting CAS values from 1 again, gives the key
// the same CAS value.
func TestTokenAcrossRestart(t *testing.T) {
	servers := startNodes(t, 1)
	s := newStore(t, servers, memcached.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const key = "sl:restart"
	old, err := s.Add(ctx, key, record(1, "before"), time.Minute)
	require.NoError(t, err)
	require.NotZero(t, old)
	oldCAS := old & (1<<48 - 1)

	require.NoError(t, servers[0].Restart(ctx))
	for s.Nodes()[0].Up {
		require.NoError(t, ctx.Err(), "the restart was never noticed")
		_, _ = s.Get(ctx, key) // the failed read marks the node down
	}
	for !s.Nodes()[0].Up {
		require.NoError(t, ctx.Err(), "the node never came back")
		time.Sleep(10 * time.Millisecond) // polling the health check, bounded by ctx
	}
	// The new process gives the key the CAS value the token holds.
	c := raw(t, servers[0].Addr())
	for {
		require.NoError(t, c.Set(&memcache.Item{Key: key, Value: record(1, "after"), Expiration: 60}))
		it, err := c.Get(key)
		require.NoError(t, err)
		if it.CasID == oldCAS {
			break
		}
		require.Less(t, it.CasID, oldCAS, "CAS values passed the token's")
	}
	_, err = s.CompareAndSwap(ctx, key, record(2, "lost update"), old, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a token from before the restart must not match")
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, record(1, "after"), e.Value)
}

// TestTextPath: what the text path (Config.TextProtocol) guarantees and
// does not: one copy whatever Backup says, writes return 0 as the token,
// no TTL reads, GetAndTouch through Get and CompareAndSwap.
func TestTextPath(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{TextProtocol: true})
	ctx := context.Background()
	const key = "sl:text"
	cas, err := s.Add(ctx, key, record(1, "one"), time.Minute)
	require.NoError(t, err)
	require.Zero(t, cas, "gomemcache cannot report the new CAS")
	primary, backup := s.Placement(key)
	require.Empty(t, backup, "one copy")
	other := servers[0].Addr()
	if other == primary {
		other = servers[1].Addr()
	}
	for _, k := range []string{key, "bak:" + key} {
		_, err := raw(t, other).Get(k)
		require.ErrorIs(t, err, memcache.ErrCacheMiss, "no copy on the other node")
	}
	e, err := s.GetAndTouch(ctx, key, 2*time.Minute)
	require.NoError(t, err)
	require.Equal(t, record(1, "one"), e.Value)
	cas, err = s.CompareAndSwap(ctx, key, record(2, "two"), e.CAS, time.Minute)
	require.NoError(t, err)
	require.Zero(t, cas)
	_, err = s.TTL(ctx, key)
	require.ErrorIs(t, err, provider.ErrServer, "no TTL reads without meta commands")
	require.True(t, s.Nodes()[0].Up && s.Nodes()[1].Up)
}
