package middleware

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

func setN(w http.ResponseWriter, r *http.Request) {
	if err := FromContext(r.Context()).Set("n", 1); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// TestCookieResponsesAreNotShared: a response that sets the session
// cookie is private to its user and varies by Cookie, even when the
// handler asked for public caching; other responses are left alone.
func TestCookieResponsesAreNotShared(t *testing.T) {
	for _, unbuffered := range []bool{false, true} {
		e := newEnv(t, envOptions{config: Config{Unbuffered: unbuffered}})
		public := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.Header().Set("Vary", "Accept-Encoding")
			setN(w, r)
		}
		w := serve(e.m.Handler(http.HandlerFunc(public)), request("POST", "/", ""))
		require.NotEmpty(t, w.Header().Get("Set-Cookie"))
		if !unbuffered { // unbuffered: the handler's later header wins; buffered: checked again before sending
			require.Equal(t, sessionCacheControl, w.Header().Get("Cache-Control"))
		}
		require.Equal(t, []string{"Accept-Encoding", "Cookie"}, w.Header().Values("Vary"))

		w = serve(e.m.Handler(http.HandlerFunc(setN)), request("POST", "/", ""))
		require.Equal(t, sessionCacheControl, w.Header().Get("Cache-Control"))
		require.Equal(t, "Cookie", w.Header().Get("Vary"))

		id := e.create(map[string]any{"n": 0}, 0)
		w = serve(e.m.Handler(http.HandlerFunc(setN)), request("POST", "/", id))
		require.Empty(t, w.Header().Get("Set-Cookie"), "a known session sets no cookie")
		require.Empty(t, w.Header().Get("Cache-Control"))

		abandon := func(w http.ResponseWriter, r *http.Request) { assert.NoError(t, FromContext(r.Context()).Abandon()) }
		w = serve(e.m.Handler(http.HandlerFunc(abandon)), request("POST", "/", id))
		require.Contains(t, w.Header().Get("Set-Cookie"), "Max-Age=0")
		require.Equal(t, sessionCacheControl, w.Header().Get("Cache-Control"), "deleting the cookie too")
	}
}

func TestCookiePrefixes(t *testing.T) {
	e := newEnv(t, envOptions{})
	no := false
	for name, c := range map[string]CookieConfig{
		"__Host- not Secure":   {Name: "__Host-sid", Secure: &no},
		"__Host- with Path":    {Name: "__Host-sid", Path: "/app"},
		"__Host- with Domain":  {Name: "__Host-sid", Domain: "example.com"},
		"__Secure- not Secure": {Name: "__Secure-sid", Secure: &no},
	} {
		_, err := New(Config{Provider: e.p, Cookie: c})
		require.Error(t, err, name)
	}
	for _, name := range []string{"__Host-sid", "__Secure-sid"} {
		m, err := New(Config{Provider: e.p, Cookie: CookieConfig{Name: name}})
		require.NoError(t, err)
		w := serve(m.Handler(http.HandlerFunc(setN)), request("POST", "/", "")) // plain HTTP
		c := sessionCookie(&http.Response{Header: w.Header()}, name)
		require.NotNil(t, c)
		require.True(t, c.Secure, "%s forces Secure", name)
		require.Equal(t, "/", c.Path)
		require.Empty(t, c.Domain)
	}
}

func TestTrustForwardedProto(t *testing.T) {
	e := newEnv(t, envOptions{})
	trusting, err := New(Config{Provider: e.p, Cookie: CookieConfig{TrustForwardedProto: true}})
	require.NoError(t, err)
	secure := func(m *Manager, header, value string, overTLS bool) bool {
		r := request("POST", "/", "")
		if header != "" {
			r.Header.Set(header, value)
		}
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		w := serve(m.Handler(http.HandlerFunc(setN)), r)
		return sessionCookie(&http.Response{Header: w.Header()}, DefaultCookieName).Secure
	}
	require.True(t, secure(trusting, "X-Forwarded-Proto", "https", false))
	require.True(t, secure(trusting, "X-Forwarded-Proto", "HTTPS, http", false))
	require.True(t, secure(trusting, "Forwarded", `for=1.2.3.4;proto="https", for=5.6.7.8;proto=http`, false))
	require.False(t, secure(trusting, "X-Forwarded-Proto", "http", false))
	require.False(t, secure(trusting, "Forwarded", "for=1.2.3.4", false))
	require.True(t, secure(trusting, "", "", true))
	require.False(t, secure(e.m, "X-Forwarded-Proto", "https", false), "not trusted by default")
}

// TestCookielessMuxRedirect: the ServeMux redirects /dir to /dir/ with a
// Location built from the path the middleware stripped; the id stays.
func TestCookielessMuxRedirect(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Cookieless: true, Rules: []Rule{{Pattern: "/static/", Mode: Off}}}})
	id := e.create(map[string]any{"n": 1}, 0)
	mux := http.NewServeMux()
	mux.HandleFunc("/dir/", echoMode)
	mux.HandleFunc("/static/", echoMode)
	mux.HandleFunc("/go", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/dir/x?a=1", http.StatusFound) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://example.com/", http.StatusFound)
	})
	h := e.m.Handler(mux)
	for path, want := range map[string]string{
		"/dir":      "/(S(" + id + "))/dir/",
		"/static":   "/(S(" + id + "))/static/",
		"/go":       "/(S(" + id + "))/dir/x?a=1",
		"/away":     "https://example.com/",
		"/a/../dir": "/(S(" + id + "))/dir/",
	} {
		w := serve(h, httptest.NewRequest("GET", "/(S("+id+"))"+path, nil))
		require.Equal(t, want, w.Header().Get("Location"), path)
	}
}

// outcomeStore answers CAS writes with ErrOutcomeUnknown once armed.
type outcomeStore struct {
	provider.Store
	armed atomic.Bool
}

func (s *outcomeStore) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if s.armed.Load() {
		return 0, fmt.Errorf("cas: %w: %w", provider.ErrOutcomeUnknown, provider.ErrUnavailable)
	}
	return s.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

// TestUnknownCommitOutcome: a commit whose outcome is unknown is an error
// without Retry-After: the change may have been applied.
func TestUnknownCommitOutcome(t *testing.T) {
	st := &outcomeStore{}
	e := newEnv(t, envOptions{wrap: func(s provider.Store) provider.Store { st.Store = s; return st }})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.armed.Store(true) // the lock was taken; the commit's write is lost in the network
		incr(w, r)
	}))
	w := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Empty(t, w.Header().Get("Retry-After"))
	require.Equal(t, "session changes may not have been stored\n", w.Body.String())
	require.Equal(t, 1.0, e.obs.get("store_error/outcome_unknown"))
}

// TestUnknownLoadOutcome (rv-d4 m4): a load whose lock acquisition has an
// unknown outcome (it may have landed: a lock no request holds, until its
// lease ends) is a 500 without Retry-After that says so; the handler does
// not run. Before, it was answered as a commit's: "session changes may
// not have been stored", though the request had changed nothing.
func TestUnknownLoadOutcome(t *testing.T) {
	st := &outcomeStore{}
	e := newEnv(t, envOptions{wrap: func(s provider.Store) provider.Store { st.Store = s; return st }})
	id := e.create(map[string]any{"n": 1}, 0)
	ran := false
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = true
		incr(w, r)
	}))
	st.armed.Store(true) // the acquisition's write is lost in the network
	w := serve(h, request("POST", "/", id))
	require.False(t, ran, "the session was not loaded")
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Empty(t, w.Header().Get("Retry-After"))
	require.Equal(t, "session not loaded: the store's outcome is unknown (the session may stay locked for up to a lease)\n", w.Body.String())
	require.Equal(t, 1.0, e.obs.get("store_error/outcome_unknown"))
}

// lostCommitStore loses every commit (a write of changed data) once
// armed: not written, reported as err. Other writes (the release) pass.
type lostCommitStore struct {
	provider.Store
	err   error
	land  bool // the commit is written, only its answer is lost
	armed atomic.Bool
}

func (s *lostCommitStore) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if s.armed.Load() {
		next, err := record.Decode(v)
		cur, gerr := s.Store.Get(ctx, key)
		if err == nil && gerr == nil {
			if prev, err := record.Decode(cur.Value); err == nil && prev.DataSeq != next.DataSeq {
				if s.land {
					_, _ = s.Store.CompareAndSwap(ctx, key, v, cas, ttl)
				}
				return 0, fmt.Errorf("cas: %w", s.err)
			}
		}
	}
	return s.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

// lostCommit serves an Exclusive request that increments n (1) of a new
// session over st, armed once the lock is taken.
func lostCommit(t *testing.T, st *lostCommitStore) (*env, string, *httptest.ResponseRecorder) {
	t.Helper()
	e := newEnv(t, envOptions{wrap: func(s provider.Store) provider.Store { st.Store = s; return st }})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.armed.Store(true)
		incr(w, r)
	}))
	return e, id, serve(h, request("POST", "/", id))
}

// TestFailedCommitLeavesNoLock: a commit whose outcome stays unknown
// (the provider's resolving read shows it did not land, but every
// attempt to write it again is unknown too), or that found the store
// unavailable, is answered as before, and its lock is released at once:
// the user's next request does not wait a lease. (Before the release:
// the session stayed locked by the failed request.)
func TestFailedCommitLeavesNoLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unknown", provider.ErrOutcomeUnknown},
		{"unavailable", provider.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, id, w := lostCommit(t, &lostCommitStore{err: tc.err})
			require.GreaterOrEqual(t, w.Code, 500)
			if tc.name == "unknown" {
				require.Equal(t, http.StatusInternalServerError, w.Code)
				require.Empty(t, w.Header().Get("Retry-After"), "an unknown outcome is not retried blindly")
			}
			item, err := e.inspect.GetItem(context.Background(), id)
			require.NoError(t, err, "the failed request's lock was released")
			n, _, err := session.Get[int](item.Data.Values, "n")
			require.NoError(t, err)
			require.Equal(t, 1, n, "the lost commit is not stored")
		})
	}
}

// TestLandedUnknownCommitKept: a commit that landed but whose outcome the
// provider could not resolve (this store's wrapper does not vouch for its
// reads) is answered as unknown (500, no Retry-After); the release after
// it finds the lock gone and changes nothing: the data is kept and the
// next request proceeds at once.
func TestLandedUnknownCommitKept(t *testing.T) {
	st := &lostCommitStore{err: provider.ErrOutcomeUnknown, land: true}
	e, id, w := lostCommit(t, st)
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Empty(t, w.Header().Get("Retry-After"))
	item, err := e.inspect.GetItem(context.Background(), id)
	require.NoError(t, err, "unlocked: the commit landed")
	n, _, err := session.Get[int](item.Data.Values, "n")
	require.NoError(t, err)
	require.Equal(t, 2, n, "the landed commit is kept")
	st.armed.Store(false)
	require.Equal(t, http.StatusOK, serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id)).Code, "the next request proceeds")
}
