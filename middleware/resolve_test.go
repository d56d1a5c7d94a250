package middleware

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

// opaque hides the router from the middleware, as any third-party router
// or a wrapper does; it replaces the request as wrappers do.
func opaque(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sessionOf(r.Context()))))
	})
}

// TestExclusiveLocksBeforeTheHandler: an Exclusive route holds the lock
// when its handler starts, whether or not it touches the session.
func TestExclusiveLocksBeforeTheHandler(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{DefaultMode: LockFree}})
	id := e.create(map[string]any{"n": 1}, 0)
	var locked bool
	h := e.m.Handler(opaque(e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := e.inspect.GetItem(context.Background(), id)
		locked = errors.Is(err, provider.ErrLocked)
	}))))
	require.Equal(t, http.StatusOK, serve(h, request("GET", "/", id)).Code)
	require.True(t, locked, "the lock was held before the handler ran")
	_, err := e.inspect.GetItem(context.Background(), id)
	require.NoError(t, err, "and released after")
}

// TestRoutePatternHook: rules see the pattern the hook returns, once the
// handler asks for its session, through an opaque router.
func TestRoutePatternHook(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{
		DefaultMode:  LockFree,
		Rules:        []Rule{{Pattern: "GET /items/{id}", Mode: ReadOnly}, {Pattern: "POST /cart", Mode: Exclusive}},
		RoutePattern: func(r *http.Request) string { return r.Header.Get("X-Route") },
	}})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.Handler(opaque(http.HandlerFunc(echoMode)))
	for route, want := range map[string]string{"GET /items/{id}": "readonly", "POST /cart": "exclusive", "GET /other": "lockfree", "": "exclusive"} {
		r := request("GET", "/x", id)
		r.Header.Set("X-Route", route)
		require.Equal(t, want, serve(h, r).Body.String(), "route %q", route)
	}
	require.Equal(t, 1, strings.Count(e.logs.String(), "no pattern is known"), "the unknown pattern is logged once")
	r := request("GET", "/x", id)
	serve(h, r)
	require.Equal(t, 1, strings.Count(e.logs.String(), "no pattern is known"))
}

// TestModeAfterTheHandlerHadItsSession: a middleware between the Manager
// and the route used the session (default LockFree) before the route's
// WithMode(Exclusive): an unchanged session is reloaded with the lock; a
// changed one fails with ErrModeConflict, storing nothing, never
// lock-free.
func TestModeAfterTheHandlerHadItsSession(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{DefaultMode: LockFree}})
	id := e.create(map[string]any{"n": 1}, 0)
	touch := func(write bool) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				assert.Equal(t, LockFree, s.Mode())
				if write {
					assert.NoError(t, s.Set("mw", 1))
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	route := e.m.WithMode(Exclusive, http.HandlerFunc(incr))
	w := serve(e.m.Handler(touch(false)(route)), request("POST", "/", id))
	require.Equal(t, "2", w.Body.String())
	require.Contains(t, e.logs.String(), "reloaded with the lock")

	w = serve(e.m.Handler(touch(true)(route)), request("POST", "/", id))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Contains(t, e.logs.String(), "not stored")
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n, "nothing stored")
	_, ok := e.value(id, "mw")
	require.False(t, ok)
	_, err := e.inspect.GetItem(context.Background(), id)
	require.NoError(t, err, "not left locked")
}
