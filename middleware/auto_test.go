package middleware

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuto(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{
		DefaultMode: Auto,
		Auto:        AutoConfig{QuietRequests: 3},
	}})
	id := e.create(map[string]any{"n": 1}, 0)
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if k := r.URL.Query().Get("write"); k != "" {
			assert.NoError(t, s.Set(k, 1))
		}
		fmt.Fprint(w, s.Mode())
	})
	hold := newGate()
	hold.before = func(s *Session) { assert.NoError(t, s.Set("holder", 1)) }
	mux.Handle("/hold", e.m.WithMode(Exclusive, hold))
	h := e.m.Handler(mux)
	get := func(target string) string { return serve(h, request("GET", target, id)).Body.String() }

	for i := range 3 {
		require.Equal(t, "exclusive", get("/poll"), "request %d: a route starts exclusive", i)
	}
	require.Equal(t, "lockfree", get("/poll"), "after 3 quiet requests the route is lock-free")
	require.Equal(t, "lockfree", get("/poll"))

	// While another request holds the lock, the quiet route does not wait;
	// its first write is merged, not lost, and puts it back to Exclusive.
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(h, request("POST", "/hold", id)) }()
	recv(t, hold.entered, "the holder")
	require.Equal(t, "lockfree", get("/poll?write=auto"), "served without waiting for the holder")
	close(hold.release)
	<-holderDone
	_, ok := e.value(id, "auto")
	require.True(t, ok, "the write that ended the lock-free run was kept")
	_, ok = e.value(id, "holder")
	require.True(t, ok, "the holder's commit kept the lock-free write and its own")
	require.Equal(t, "exclusive", get("/poll"), "the write put the route back to Exclusive")

	// Writes keep it exclusive.
	for range 5 {
		require.Equal(t, "exclusive", get("/poll?write=again"))
	}
}

func TestAutoMemoryIsBounded(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{
		DefaultMode: Auto,
		Auto:        AutoConfig{QuietRequests: 1, MaxRoutes: 4},
	}})
	h := e.m.Handler(http.HandlerFunc(echoMode)) // no pattern: routes are paths
	for i := range 50 {
		serve(h, request("GET", fmt.Sprintf("/item/%d", i), ""))
	}
	require.Equal(t, 4, e.m.auto.len())
	require.Equal(t, "lockfree", serve(h, request("GET", "/item/49", "")).Body.String(), "a remembered quiet route")
	require.Equal(t, "exclusive", serve(h, request("GET", "/item/0", "")).Body.String(), "a forgotten route starts again as Exclusive")
}

func TestAutoUnderExclusiveAccessFalse(t *testing.T) {
	off := false
	e := newEnv(t, envOptions{config: Config{DefaultMode: Auto, ExclusiveAccess: &off}})
	h := e.m.Handler(http.HandlerFunc(echoMode))
	require.Equal(t, "lockfree", serve(h, request("GET", "/", "")).Body.String())
	require.Zero(t, e.m.auto.len(), "nothing to learn without locks")
}
