package middleware

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

// TestTooLargeSessionIs413AndUnlocked: a commit over the size limit is
// answered 413 while the response is still held back, stores nothing, and
// leaves the session unlocked: the next request does not wait a lease.
func TestTooLargeSessionIs413AndUnlocked(t *testing.T) {
	e := newEnv(t, envOptions{provider: provider.Config{MaxValuesSize: 1 << 10}})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("big", strings.Repeat("x", 4<<10)))
		fmt.Fprint(w, "response dropped")
	}))
	w := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, "a too-large session is answered 413, never 2xx")
	require.NotContains(t, w.Body.String(), "response dropped")
	require.False(t, e.header(id).Locked, "the refused commit released the lock")
	n, _ := e.value(id, "n")
	require.Equal(t, 1, n, "the stored values are unchanged")
}
