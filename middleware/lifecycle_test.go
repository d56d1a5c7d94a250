package middleware

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

func TestLazySessions(t *testing.T) {
	e := newEnv(t, envOptions{})
	h := e.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.True(t, s.IsNew())
		assert.Empty(t, s.ID())
		_, ok, err := session.Get[string](s, "user")
		assert.NoError(t, err)
		assert.False(t, ok)
		assert.Empty(t, s.Keys())
		assert.NoError(t, s.Delete("user"))
		assert.NoError(t, s.Clear())
		assert.NoError(t, s.SetTimeout(s.Timeout()), "setting the same timeout is no change")
		assert.NoError(t, s.RegenerateID())
		assert.Equal(t, "/x", s.URL("/x"))
		fmt.Fprint(w, "hello")
	}))
	for range 3 {
		w := serve(h, request("GET", "/", ""))
		require.Equal(t, "hello", w.Body.String())
		require.Empty(t, w.Header().Values("Set-Cookie"), "a visitor who never writes gets no cookie")
	}
	require.Zero(t, e.count.Ops(), "a visitor who never writes causes no store operations")
}

func TestCommitOnlyWhenChanged(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := newEnv(t, envOptions{memNow: clock})
	id := e.create(map[string]any{"n": 1}, 0)
	reader := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, _ := session.Get[int](FromContext(r.Context()), "n")
		fmt.Fprint(w, n)
	}))
	writer := e.m.WithMode(Exclusive, http.HandlerFunc(incr))

	h0 := e.header(id)
	now.Add(int64(5 * time.Minute))
	require.Equal(t, 15*time.Minute, e.ttl(id).Round(time.Minute))
	adds, cases := e.count.Adds.Load(), e.count.CASes.Load()
	w := serve(reader, request("GET", "/", id))
	require.Equal(t, "1", w.Body.String())
	h1 := e.header(id)
	require.Equal(t, h0.DataSeq, h1.DataSeq, "a request that changed nothing committed data")
	require.False(t, h1.Locked)
	require.Equal(t, int64(2), e.count.CASes.Load()-cases, "one CAS to lock, one to release")
	require.Equal(t, adds, e.count.Adds.Load())
	require.Equal(t, provider.DefaultTimeout, e.ttl(id), "the release slid the expiry by the session's timeout")
	require.Empty(t, w.Header().Values("Set-Cookie"), "an existing session's cookie is not sent again")

	now.Add(int64(5 * time.Minute))
	serve(e.m.WithMode(ReadOnly, reader), request("GET", "/", id))
	require.Equal(t, provider.DefaultTimeout, e.ttl(id), "a read-only request slides the expiry")

	require.Equal(t, "2", serve(writer, request("POST", "/", id)).Body.String())
	h2 := e.header(id)
	require.Equal(t, h1.DataSeq+1, h2.DataSeq, "a change is committed")
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n)
}

func TestPanicReleasesWithoutCommit(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	type boom struct{ msg string }
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.Set("n", 2))
		assert.NoError(t, s.SetTimeout(time.Hour))
		panic(boom{"handler failed"})
	}))
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		serve(h, request("POST", "/", id))
	}()
	require.Equal(t, boom{"handler failed"}, recovered, "the panic goes on to the server")
	n, _ := e.value(id, "n") // fails if the session is still locked
	require.Equal(t, 1, n, "partial changes are not committed")
	require.Equal(t, provider.DefaultTimeout, e.header(id).Timeout)
	require.False(t, e.header(id).Locked)

	// A new session written to before the panic is not stored at all.
	newSession := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 1))
		panic(http.ErrAbortHandler)
	}))
	adds := e.count.Adds.Load()
	func() {
		defer func() { recovered = recover() }()
		serve(newSession, request("POST", "/", ""))
	}()
	require.Equal(t, http.ErrAbortHandler, recovered)
	require.Equal(t, adds, e.count.Adds.Load(), "nothing stored for a panicking new session")
}

func TestCancelledWaiterLeavesQueue(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	baseline := runtime.NumGoroutine()

	var ran atomic.Bool
	waiter := e.m.WithMode(Exclusive, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran.Store(true) }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- serve(waiter, request("POST", "/", id).WithContext(ctx)).Body.Len() }()
	waitFor(t, "the request to queue", func() bool { return e.p.Waiting(id) == 1 })
	cancel()
	require.Zero(t, recv(t, done, "the cancelled request to return"), "nothing is written to a client that left")
	require.Zero(t, e.p.Waiting(id), "the cancelled request left the queue")
	require.False(t, ran.Load(), "the handler of a cancelled wait never runs")
	waitFor(t, "no goroutine left behind", func() bool { return runtime.NumGoroutine() <= baseline })

	close(g.release)
	<-holderDone
	require.False(t, e.header(id).Locked)
}

func TestLeaseKeepsLockForThreeLeases(t *testing.T) {
	const lease = 100 * time.Millisecond
	e := newEnv(t, envOptions{provider: provider.Config{Lease: lease}})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	g.before = func(s *Session) { assert.NoError(t, s.Set("n", 10)) }
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	seq0 := e.header(id).Seq
	cas0 := e.count.CASes.Load()

	res := make(chan string, 1)
	go func() {
		res <- serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id)).Body.String()
	}()
	waitFor(t, "the second request to queue", func() bool { return e.p.Waiting(id) == 1 })

	// Renewals come every third of a lease: nine of them span three leases.
	waitFor(t, "nine lease renewals", func() bool { return e.header(id).Seq-seq0 >= 9 })
	require.Equal(t, e.header(id).Seq-seq0, uint64(e.count.CASes.Load()-cas0), "every change of the record was a renewal")
	select {
	case body := <-res:
		t.Fatalf("another request got in while the holder renewed its lease: %q", body)
	default:
	}
	require.True(t, e.header(id).Locked)
	require.Zero(t, e.p.WaitStats().Expirations, "no takeover of a living holder")

	close(g.release)
	require.Equal(t, "11", recv(t, res, "the second request"))
	<-holderDone
	require.GreaterOrEqual(t, e.obs.get("lease_renewals"), 9.0)
}

func TestClientDisconnectAfterHandlerStillCommits(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 2))
		cancel() // the client goes away while the handler runs
		<-r.Context().Done()
	}))
	serve(h, request("POST", "/", id).WithContext(ctx))
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n, "the commit ran although the client left")
	require.False(t, e.header(id).Locked)
}

func TestCommitEarly(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	committed := make(chan struct{})
	release := make(chan struct{})
	var afterCommit atomic.Value
	poll := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.Set("n", 5))
		assert.NoError(t, s.Commit(r.Context()))
		assert.NoError(t, s.Commit(r.Context()), "a second Commit is a no-op")
		close(committed)
		<-release // long poll
		afterCommit.Store(s.Set("n", 6))
		n, _, _ := session.Get[int](s, "n")
		fmt.Fprint(w, n)
	}))
	pollRes := make(chan string, 1)
	go func() { pollRes <- serve(poll, request("GET", "/", id)).Body.String() }()
	recv(t, committed, "the early commit")
	// The lock is free while the long poll goes on.
	require.Equal(t, "6", serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id)).Body.String())
	close(release)
	require.Equal(t, "5", recv(t, pollRes, "the long poll"))
	require.ErrorIs(t, afterCommit.Load().(error), ErrCommitted)
	n, _ := e.value(id, "n")
	require.Equal(t, 6, n)
}

// TestNewSessionAfterHeadersSent: without buffering, a new session's
// cookie cannot follow the body (TestNewSessionCookieAfterBody is the
// buffered case).
func TestNewSessionAfterHeadersSent(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Unbuffered: true}})
	h := e.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "body first")
		assert.ErrorIs(t, FromContext(r.Context()).Set("n", 1), ErrHeadersSent)
	}))
	w := serve(h, request("GET", "/", ""))
	require.Empty(t, w.Header().Values("Set-Cookie"))
	require.Zero(t, e.count.Ops())
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.True(t, s.ReadOnly())
		assert.Equal(t, ReadOnly, s.Mode())
		assert.ErrorIs(t, s.Set("n", 2), ErrReadOnly)
		assert.ErrorIs(t, s.Delete("n"), ErrReadOnly)
		assert.ErrorIs(t, s.Clear(), ErrReadOnly)
		assert.ErrorIs(t, s.SetTimeout(2*time.Minute), ErrReadOnly)
		assert.ErrorIs(t, s.Abandon(), ErrReadOnly)
		assert.ErrorIs(t, s.RegenerateID(), ErrReadOnly)
		n, _, _ := session.Get[int](s, "n")
		fmt.Fprint(w, n)
	}))
	h0, cas := e.header(id), e.count.CASes.Load()
	w := serve(h, request("GET", "/", id))
	require.Equal(t, "1", w.Body.String())
	require.Empty(t, w.Header().Values("Set-Cookie"))
	require.Equal(t, cas, e.count.CASes.Load(), "a read-only request wrote to the store")
	require.Equal(t, h0.Seq, e.header(id).Seq)
	n, _ := e.value(id, "n")
	require.Equal(t, 1, n)
}

func TestReadOnlyNoWait(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{ReadOnlyNoWait: true}})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	g.before = func(s *Session) { assert.NoError(t, s.Set("n", 2)) }
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	reader := e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, _ := session.Get[int](FromContext(r.Context()), "n")
		fmt.Fprint(w, n)
	}))
	require.Equal(t, "1", serve(reader, request("GET", "/", id)).Body.String(), "the last committed value, at once")
	close(g.release)
	<-holderDone
	require.Equal(t, "2", serve(reader, request("GET", "/", id)).Body.String())
}

func TestExclusiveAccessFalse(t *testing.T) {
	off := false
	e := newEnv(t, envOptions{config: Config{ExclusiveAccess: &off}})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the first request")
	require.False(t, e.header(id).Locked, "no lock is taken")
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			serve(e.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				assert.Equal(t, LockFree, s.Mode())
				assert.NoError(t, s.Set(fmt.Sprintf("k%d", i), i))
			})), request("POST", "/", id))
		})
	}
	wg.Wait() // would hang behind the first request if Exclusive locked
	close(g.release)
	<-holderDone
	for i := range n {
		got, ok := e.value(id, fmt.Sprintf("k%d", i))
		require.True(t, ok)
		require.Equal(t, i, got)
	}
}

func TestNestedMiddleware(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Rules: []Rule{{Pattern: "/off/", Mode: Off}}}})
	id := e.create(map[string]any{"n": 1}, 0)
	var loads atomic.Int32
	inner := e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loads.Add(1)
		echoMode(w, r)
	}))
	outer := e.m.Handler(inner)
	require.Equal(t, "readonly", serve(outer, request("GET", "/x", id)).Body.String(), "WithMode on the route wins over the outer default")
	_, err := e.p.GetItem(context.Background(), id)
	require.NoError(t, err, "the outer middleware's lock was released")
	require.Equal(t, "readonly", serve(outer, request("GET", "/off/x", id)).Body.String(), "below an outer Off the inner one decides")
	require.Equal(t, int32(2), loads.Load())
}

func TestBadConfig(t *testing.T) {
	e := newEnv(t, envOptions{})
	for name, cfg := range map[string]Config{
		"no provider":       {},
		"bad default mode":  {Provider: e.p, DefaultMode: Mode(42)},
		"empty rule":        {Provider: e.p, Rules: []Rule{{Mode: Off}}},
		"bad rule mode":     {Provider: e.p, Rules: []Rule{{Pattern: "/", Mode: -1}}},
		"bad cookie name":   {Provider: e.p, Cookie: CookieConfig{Name: "a b;"}},
		"bad cookie domain": {Provider: e.p, Cookie: CookieConfig{Domain: "exa mple.com"}},
		"negative buffer":   {Provider: e.p, ResponseBufferLimit: -1},
	} {
		_, err := New(cfg)
		require.Error(t, err, name)
	}
	for m := Exclusive; m <= Auto; m++ {
		got, err := ParseMode(m.String())
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := ParseMode("sometimes")
	require.Error(t, err)
	require.Equal(t, "Mode(9)", Mode(9).String())

	w := serve(e.m.WithMode(Mode(9), http.NotFoundHandler()), request("GET", "/", ""))
	require.Equal(t, http.StatusInternalServerError, w.Code, "an invalid mode fails clearly")
	require.Zero(t, e.count.Ops())
}

func TestNilSession(t *testing.T) {
	var s *Session
	require.ErrorIs(t, s.Set("k", 1), ErrNoSession)
	require.ErrorIs(t, s.Delete("k"), ErrNoSession)
	require.ErrorIs(t, s.Clear(), ErrNoSession)
	require.ErrorIs(t, s.SetTimeout(time.Minute), ErrNoSession)
	require.ErrorIs(t, s.Abandon(), ErrNoSession)
	require.ErrorIs(t, s.RegenerateID(), ErrNoSession)
	require.ErrorIs(t, s.Commit(context.Background()), ErrNoSession)
	_, err := s.Get("k", new(int))
	require.ErrorIs(t, err, ErrNoSession)
	_, _, err = session.Get[int](s, "k")
	require.ErrorIs(t, err, ErrNoSession)
	require.Empty(t, s.ID())
	require.Empty(t, s.Keys())
	require.Zero(t, s.Len())
	require.False(t, s.Has("k"))
	require.False(t, s.IsNew())
	require.False(t, s.ReadOnly())
	require.Equal(t, Off, s.Mode())
	require.Zero(t, s.Timeout())
	require.Equal(t, "/a", s.URL("/a"))
	require.Nil(t, FromContext(context.Background()))
}

func TestBadValues(t *testing.T) {
	e := newEnv(t, envOptions{})
	h := e.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.ErrorIs(t, s.Set("", 1), session.ErrInvalidKey)
		assert.Error(t, s.Set("ch", make(chan int)), "an unencodable value")
		assert.ErrorIs(t, s.SetTimeout(time.Millisecond), session.ErrInvalidTimeout)
		assert.Empty(t, s.ID(), "a refused write creates no session")
	}))
	w := serve(h, request("POST", "/", ""))
	require.Equal(t, http.StatusOK, w.Code)
	require.Empty(t, w.Header().Values("Set-Cookie"))
	require.Zero(t, e.count.Ops())
}

func TestRequestDeadlineWhileWaitingIs503(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id).WithContext(ctx))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Equal(t, 1.0, e.obs.get("store_error/wait_timeout"))
	close(g.release)
	<-holderDone
}
