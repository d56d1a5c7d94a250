package middleware

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

// cookieAfter serves one request through h and returns the session
// cookie it set, or nil.
func cookieAfter(t *testing.T, h http.Handler, method, id string) *http.Cookie {
	t.Helper()
	res := serve(h, request(method, "/", id)).Result()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.LessOrEqual(t, len(res.Header.Values("Set-Cookie")), 1)
	return sessionCookie(res, DefaultCookieName)
}

// TestPersistentCookieFollowsTheTimeout: with CookieConfig.Persistent the
// cookie's Max-Age is the session's timeout, sent again on every request
// that loads the session (which slides its expiry), and it follows
// SetTimeout. Off routes, which do not touch the store, send nothing.
func TestPersistentCookieFollowsTheTimeout(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Cookie: CookieConfig{Persistent: true}}})
	write := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, FromContext(r.Context()).Set("n", 1))
	}))
	c := cookieAfter(t, write, "POST", "")
	require.NotNil(t, c)
	require.Equal(t, 20*60, c.MaxAge, "a new session's cookie lives one default timeout")
	id := c.Value

	for _, mode := range []Mode{ReadOnly, Exclusive, LockFree} {
		c = cookieAfter(t, e.m.WithMode(mode, http.HandlerFunc(echoMode)), "GET", id)
		require.NotNil(t, c, "%v: the cookie is sent again", mode)
		require.Equal(t, id, c.Value)
		require.Equal(t, 20*60, c.MaxAge, mode)
	}
	require.Nil(t, cookieAfter(t, e.m.WithMode(Off, http.HandlerFunc(echoMode)), "GET", id))

	shorten := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, FromContext(r.Context()).SetTimeout(5*time.Minute))
	}))
	c = cookieAfter(t, shorten, "POST", id)
	require.NotNil(t, c)
	require.Equal(t, 5*60, c.MaxAge, "Max-Age follows SetTimeout")
	c = cookieAfter(t, e.m.WithMode(ReadOnly, http.HandlerFunc(echoMode)), "GET", id)
	require.Equal(t, 5*60, c.MaxAge, "and the stored timeout afterwards")
}

// TestRememberMe: by default the cookie has no Max-Age and is sent only
// when the id changes; RememberMe(true) makes it persistent for that
// session from then on, RememberMe(false) a browser-session cookie again.
func TestRememberMe(t *testing.T) {
	e := newEnv(t, envOptions{})
	remember := func(on bool) http.Handler {
		return e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			assert.NoError(t, FromContext(r.Context()).RememberMe(on))
		}))
	}
	read := e.m.WithMode(ReadOnly, http.HandlerFunc(echoMode))

	id := e.create(map[string]any{"user": "ann"}, 0)
	require.Nil(t, cookieAfter(t, read, "GET", id), "a browser-session cookie is not sent again")

	c := cookieAfter(t, remember(true), "POST", id)
	require.NotNil(t, c)
	require.Equal(t, id, c.Value)
	require.Equal(t, 20*60, c.MaxAge)
	c = cookieAfter(t, read, "GET", id)
	require.NotNil(t, c, "a remembered session's cookie is refreshed")
	require.Equal(t, 20*60, c.MaxAge)

	c = cookieAfter(t, remember(false), "POST", id)
	require.NotNil(t, c)
	require.Zero(t, c.MaxAge, "no Max-Age: the cookie ends with the browser")
	require.Nil(t, cookieAfter(t, read, "GET", id))

	// On a new session RememberMe gives it its id.
	c = cookieAfter(t, remember(true), "POST", "")
	require.NotNil(t, c)
	require.NotEmpty(t, c.Value)
	require.Equal(t, 20*60, c.MaxAge)

	// Read-only routes refuse it, like every change.
	c = cookieAfter(t, e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.ErrorIs(t, FromContext(r.Context()).RememberMe(true), ErrReadOnly)
	})), "GET", id)
	require.Nil(t, c)
}

// TestRememberMeAfterAbandon: the new session started after Abandon gets
// its own persistent cookie, and its Max-Age follows SetTimeout.
func TestRememberMeAfterAbandon(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"user": "ann"}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Abandon())
		require.NoError(t, s.RememberMe(true))
		require.NoError(t, s.SetTimeout(time.Hour))
	}))
	c := cookieAfter(t, h, "POST", id)
	require.NotNil(t, c)
	require.NotEqual(t, id, c.Value)
	require.Equal(t, 3600, c.MaxAge)
}

// TestPersistentCookieFollowsTheLifetime: with provider.Config.Lifetime a
// persistent cookie's Max-Age is min(timeout, remaining lifetime): a new
// session's is the timeout, and in the session's last stretch what
// remains of its lifetime, so the browser never keeps the cookie past the
// session's end. On the code before lifetimes it stayed the timeout.
func TestPersistentCookieFollowsTheLifetime(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newEnv(t, envOptions{
		provider: provider.Config{Lifetime: time.Hour, Now: now},
		config:   Config{Cookie: CookieConfig{Persistent: true}},
		memNow:   now,
	})
	write := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, FromContext(r.Context()).Set("n", 1))
	}))
	c := cookieAfter(t, write, "POST", "")
	require.NotNil(t, c)
	require.Equal(t, 20*60, c.MaxAge, "a new session: the timeout, less than the lifetime")
	id := c.Value
	for _, min := range []int{15, 30, 45} { // used within its timeout
		offset.Store(int64(time.Duration(min) * time.Minute))
		c = cookieAfter(t, e.m.WithMode(ReadOnly, http.HandlerFunc(echoMode)), "GET", id)
		require.NotNil(t, c, min)
		assert.InDelta(t, 60*(60-max(min, 40)), c.MaxAge, 2, "after %d min", min)
	}
	offset.Store(int64(50 * time.Minute))
	for _, mode := range []Mode{ReadOnly, Exclusive, LockFree} {
		c = cookieAfter(t, e.m.WithMode(mode, http.HandlerFunc(echoMode)), "GET", id)
		require.NotNil(t, c, mode)
		assert.InDelta(t, 10*60, c.MaxAge, 2, "%v: what remains of the lifetime", mode)
	}
	offset.Store(int64(61 * time.Minute))
	c = cookieAfter(t, e.m.WithMode(Exclusive, http.HandlerFunc(echoMode)), "GET", id)
	assert.Nil(t, c, "past its lifetime the session is not loaded: no cookie for it")
}
