package middleware

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// TestASPNETBehaviours is issue 4's table: what ASP.NET's session-state
// module does, checked against the middleware one row at a time.
func TestASPNETBehaviours(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"exclusive requests on one session run one at a time", exclusiveOneAtATime},
		{"an exclusive request waits for the holder and sees its commit", exclusiveWaitsForHolder},
		{"read-only requests run in parallel with each other", readOnlyInParallel},
		{"read-only requests wait for a writer", readOnlyWaitsForWriter},
		{"off routes make no store operations", offMakesNoStoreOps},
		{"lock-free requests never wait and lose no distinct-key writes", lockFreeNeverWaits},
		{"a handler-set 2-minute timeout stays 2 minutes", timeoutStays},
		{"abandon removes the session", abandonRemoves},
		{"regenerate id moves the session and removes the old record", regenerateID},
		{"strict mode refuses an unknown id", strictUnknownID},
		{"malformed cookies never cause a 500 or a store access", malformedCookies},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			row.run(t, newEnv(t, envOptions{}))
		})
	}
}

func exclusiveOneAtATime(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 0}, 0)
	var inside, overlaps atomic.Int32
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer inside.Add(-1)
		incr(w, r)
	}))
	const n = 20
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = serve(h, request("POST", "/", id)).Code })
	}
	wg.Wait()
	for i, c := range codes {
		require.Equal(t, http.StatusOK, c, "request %d", i)
	}
	require.Zero(t, overlaps.Load(), "two exclusive handlers of one session ran at the same time")
	got, _ := e.value(id, "n")
	require.Equal(t, n, got, "every increment survives")
}

func exclusiveWaitsForHolder(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 0}, 0)
	g := newGate()
	g.before = func(s *Session) { assert.NoError(t, s.Set("n", 41)) }
	holder := e.m.WithMode(Exclusive, g)
	second := e.m.WithMode(Exclusive, http.HandlerFunc(incr))

	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(holder, request("POST", "/", id)) }()
	recv(t, g.entered, "the holder to enter")
	res := make(chan string, 1)
	go func() { res <- serve(second, request("POST", "/", id)).Body.String() }()
	waitFor(t, "the second request to queue", func() bool { return e.p.Waiting(id) == 1 })
	select {
	case body := <-res:
		t.Fatalf("second request ran while the lock was held: %q", body)
	default:
	}
	close(g.release)
	require.Equal(t, "42", recv(t, res, "the second request"), "the waiter sees the holder's commit")
	<-holderDone
}

func readOnlyInParallel(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 7}, 0)
	g := newGate()
	h := e.m.WithMode(ReadOnly, g)
	const n = 3
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { serve(h, request("GET", "/", id)) })
	}
	for range n {
		recv(t, g.entered, "every read-only request inside at once")
	}
	close(g.release)
	wg.Wait()
}

func readOnlyWaitsForWriter(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	g.before = func(s *Session) { assert.NoError(t, s.Set("n", 2)) }
	writer := e.m.WithMode(Exclusive, g)
	entered := make(chan struct{}, 1)
	reader := e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		n, _, _ := session.Get[int](FromContext(r.Context()), "n")
		fmt.Fprint(w, n)
	}))
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); serve(writer, request("POST", "/", id)) }()
	recv(t, g.entered, "the writer to enter")
	res := make(chan string, 1)
	go func() { res <- serve(reader, request("GET", "/", id)).Body.String() }()
	waitFor(t, "the reader to queue", func() bool { return e.p.Waiting(id) == 1 })
	select {
	case <-entered:
		t.Fatal("read-only request ran while a writer held the session")
	default:
	}
	close(g.release)
	require.Equal(t, "2", recv(t, res, "the reader"), "the reader sees the writer's commit")
	<-writerDone
}

func offMakesNoStoreOps(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 1}, 0)
	var sawSession atomic.Bool
	h := e.m.WithMode(Off, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawSession.Store(FromContext(r.Context()) != nil)
		assert.ErrorIs(t, FromContext(r.Context()).Set("x", 1), ErrNoSession)
	}))
	before := e.count.Ops()
	for _, cookie := range []string{id, "", "garbage"} {
		w := serve(h, request("GET", "/", cookie))
		require.Equal(t, http.StatusOK, w.Code)
		require.Empty(t, w.Result().Cookies())
	}
	require.False(t, sawSession.Load(), "an Off route has no session")
	require.Equal(t, before, e.count.Ops(), "an Off route made store operations")
}

func lockFreeNeverWaits(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	g.before = func(s *Session) { assert.NoError(t, s.Set("holder", 1)) }
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the exclusive holder")

	lf := e.m.WithMode(LockFree, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set(r.URL.Query().Get("k"), 1))
	}))
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { serve(lf, request("POST", fmt.Sprintf("/?k=k%02d", i), id)) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(t, done, "all lock-free requests to finish while the lock is held")
	close(g.release)
	<-holderDone
	for i := range n {
		_, ok := e.value(id, fmt.Sprintf("k%02d", i))
		require.True(t, ok, "lock-free write k%02d was lost", i)
	}
	_, ok := e.value(id, "holder")
	require.True(t, ok, "the exclusive holder's write was lost")
}

func timeoutStays(t *testing.T, e *env) {
	// A new session whose handler sets a 2-minute timeout under the
	// provider's 20-minute default.
	set := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.SetTimeout(2*time.Minute))
		assert.NoError(t, s.Set("n", 1))
	}))
	c := sessionCookie(serve(set, request("POST", "/", "")).Result(), DefaultCookieName)
	require.NotNil(t, c)
	id := c.Value
	check := func(what string) {
		t.Helper()
		ttl := e.ttl(id)
		require.True(t, ttl > 110*time.Second && ttl <= 2*time.Minute, "%s: TTL %v, want 2 min", what, ttl)
	}
	check("after the request that set it")
	var seen atomic.Int64
	observe := func(write bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			seen.Store(int64(s.Timeout()))
			if write {
				assert.NoError(t, s.Set("k"+r.URL.Query().Get("i"), 1))
			}
		})
	}
	for i, step := range []struct {
		name string
		mode Mode
		w    bool
	}{
		{"exclusive read", Exclusive, false},
		{"exclusive write", Exclusive, true},
		{"read-only", ReadOnly, false},
		{"lock-free write", LockFree, true},
		{"lock-free read", LockFree, false},
	} {
		seen.Store(0)
		w := serve(e.m.WithMode(step.mode, observe(step.w)), request("POST", fmt.Sprintf("/?i=%d", i), id))
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, 2*time.Minute, time.Duration(seen.Load()), step.name)
		check(step.name)
	}
	require.Equal(t, 2*time.Minute, e.header(id).Timeout)
}

func abandonRemoves(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.Abandon())
		n, _, _ := session.Get[int](s, "n")
		assert.Equal(t, 1, n, "values stay readable until the request ends")
	}))
	res := serve(h, request("POST", "/", id)).Result()
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c, "the cookie is deleted")
	require.Negative(t, c.MaxAge)
	_, err := e.inspect.GetItem(context.Background(), id)
	require.ErrorIs(t, err, provider.ErrNotFound)

	var isNew atomic.Bool
	serve(e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isNew.Store(FromContext(r.Context()).IsNew())
	})), request("GET", "/", id))
	require.True(t, isNew.Load(), "the next request starts a new session")
}

func regenerateID(t *testing.T, e *env) {
	id := e.create(map[string]any{"n": 5}, 3*time.Minute)
	var during atomic.Value
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.RegenerateID())
		assert.NoError(t, s.Set("user", 1))
		during.Store(s.ID())
	}))
	res := serve(h, request("POST", "/", id)).Result()
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.NotEqual(t, id, c.Value)
	require.Equal(t, during.Load(), c.Value)
	require.Len(t, res.Header.Values("Set-Cookie"), 1)
	_, err := e.inspect.GetItem(context.Background(), id)
	require.ErrorIs(t, err, provider.ErrNotFound, "the old record is removed")
	n, _ := e.value(c.Value, "n")
	require.Equal(t, 5, n, "values move to the new id")
	_, ok := e.value(c.Value, "user")
	require.True(t, ok)
	require.Equal(t, 3*time.Minute, e.header(c.Value).Timeout, "the timeout moves too")
}

func strictUnknownID(t *testing.T, e *env) {
	unknown, err := session.NewID()
	require.NoError(t, err)
	var isNew atomic.Bool
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		isNew.Store(s.IsNew())
		assert.Empty(t, s.ID(), "an unknown id is not adopted")
		assert.NoError(t, s.Set("n", 1))
	}))
	res := serve(h, request("POST", "/", unknown)).Result()
	require.True(t, isNew.Load())
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.NotEqual(t, unknown, c.Value, "a fresh id is issued")
	_, err = e.inspect.GetItem(context.Background(), unknown)
	require.ErrorIs(t, err, provider.ErrNotFound, "nothing was stored under the unknown id")
	n, _ := e.value(c.Value, "n")
	require.Equal(t, 1, n)
}

func malformedCookies(t *testing.T, e *env) {
	valid := e.create(map[string]any{"n": 1}, 0)
	other := e.create(map[string]any{"n": 2}, 0)
	cases := map[string]string{
		"too long":           valid + "a",
		"far too long":       strings.Repeat("a", 64<<10),
		"too short":          valid[:10],
		"upper case":         strings.ToUpper(valid),
		"bad characters":     valid[:30] + "/.",
		"path traversal":     "../../../../etc/passwd/aaaaaaaaaaaaaaaaaaa",
		"empty":              "",
		"duplicate cookies":  valid + "; " + DefaultCookieName + "=" + other,
		"duplicate same id":  valid + "; " + DefaultCookieName + "=" + valid,
		"quoted":             `"` + valid + `"x`,
		"control characters": "\x01\x02" + valid[2:],
	}
	reader := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.True(t, FromContext(r.Context()).IsNew())
	}))
	writer := e.m.WithMode(Exclusive, http.HandlerFunc(incr))
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			r := cookieRequest("GET", value)
			before := e.count.Ops()
			w := serve(reader, r)
			require.Equal(t, http.StatusOK, w.Code)
			require.Equal(t, before, e.count.Ops(), "a malformed cookie reached the store")
			require.Empty(t, w.Result().Cookies(), "no cookie for a session nothing was written to")

			w = serve(writer, cookieRequest("POST", value))
			require.Equal(t, http.StatusOK, w.Code)
			require.Equal(t, "1", w.Body.String(), "a fresh session")
			c := sessionCookie(w.Result(), DefaultCookieName)
			require.NotNil(t, c)
			require.True(t, session.ValidID(c.Value))
			require.NotEqual(t, valid, c.Value)
			require.NotEqual(t, other, c.Value)
		})
	}
	for _, value := range cases {
		if len(value) > 4 && value != valid {
			require.False(t, e.keys.seen(value), "the store saw the malformed id %.40q", value)
		}
	}
	n, _ := e.value(valid, "n")
	require.Equal(t, 1, n, "the valid session behind a duplicate cookie was not touched")
	n, _ = e.value(other, "n")
	require.Equal(t, 2, n)
}

// cookieRequest builds a request with a raw Cookie header value for the
// session cookie.
func cookieRequest(method, value string) *http.Request {
	r := request(method, "/", "")
	r.Header.Set("Cookie", DefaultCookieName+"="+value)
	return r
}
