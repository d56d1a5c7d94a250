package middleware

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

// client returns an HTTP client with a cookie jar.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
}

func fetch(t *testing.T, c *http.Client, method, url string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s %s: %s", method, url, b)
	return string(b)
}

// modeAndCount writes the request's mode and increments "n" when the mode
// allows it, so the test sees modes and that one session spans routes.
func modeAndCount(w http.ResponseWriter, r *http.Request) {
	s := FromContext(r.Context())
	if s == nil {
		fmt.Fprint(w, "off")
		return
	}
	n, _, _ := session.Get[int](s, "n")
	if !s.ReadOnly() {
		n++
		if err := s.Set("n", n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	fmt.Fprintf(w, "%s %d", s.Mode(), n)
}

func TestServeMux(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Rules: []Rule{
		{Pattern: "GET /items/{id}", Mode: ReadOnly},
		{Pattern: "/static", Mode: Off},
		{Pattern: "/static/live", Mode: LockFree}, // the longest prefix wins
		{Pattern: "/static/exact/", Mode: Exclusive},
	}}})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /items", modeAndCount)
	mux.HandleFunc("GET /items/{id}", modeAndCount)
	mux.HandleFunc("/static/", modeAndCount)
	mux.HandleFunc("/static/exact/", modeAndCount)
	mux.HandleFunc("/staticx", modeAndCount)
	mux.Handle("POST /fast", e.m.WithMode(LockFree, http.HandlerFunc(modeAndCount)))
	srv := httptest.NewServer(e.m.Handler(mux))
	defer srv.Close()
	c := client(t)

	require.Equal(t, "exclusive 1", fetch(t, c, "POST", srv.URL+"/items"), "default mode")
	require.Equal(t, "readonly 1", fetch(t, c, "GET", srv.URL+"/items/7"), "rule on the matched pattern")
	ops := e.count.Ops()
	require.Equal(t, "off", fetch(t, c, "GET", srv.URL+"/static/app.js"), "path-prefix rule")
	require.Equal(t, ops, e.count.Ops())
	require.Equal(t, "lockfree 2", fetch(t, c, "GET", srv.URL+"/static/live/feed"))
	require.Equal(t, "exclusive 3", fetch(t, c, "GET", srv.URL+"/staticx"), "a prefix ends at a slash")
	require.Equal(t, "exclusive 4", fetch(t, c, "GET", srv.URL+"/static/exact/live"), "an exact pattern beats prefixes")
	require.Equal(t, "lockfree 5", fetch(t, c, "POST", srv.URL+"/fast"), "WithMode of the matched route")
	require.Equal(t, "exclusive 6", fetch(t, c, "POST", srv.URL+"/items"))

	// Wrapping single routes: the middleware sees r.Pattern.
	mux2 := http.NewServeMux()
	mux2.Handle("GET /items/{id}", e.m.Handler(http.HandlerFunc(modeAndCount)))
	mux2.Handle("POST /items", e.m.Handler(http.HandlerFunc(modeAndCount)))
	srv2 := httptest.NewServer(mux2)
	defer srv2.Close()
	c2 := client(t)
	require.Equal(t, "exclusive 1", fetch(t, c2, "POST", srv2.URL+"/items"))
	require.Equal(t, "readonly 1", fetch(t, c2, "GET", srv2.URL+"/items/3"))
}
