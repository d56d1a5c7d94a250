package middleware

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func TestCookieDefaults(t *testing.T) {
	e := newEnv(t, envOptions{})
	srv := httptest.NewServer(e.m.Handler(http.HandlerFunc(incr)))
	defer srv.Close()
	res, err := http.Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	res.Body.Close()
	raw := res.Header.Values("Set-Cookie")
	require.Len(t, raw, 1)
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.True(t, session.ValidID(c.Value))
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)
	require.Equal(t, "/", c.Path)
	require.Empty(t, c.Domain)
	require.False(t, c.Secure, "no Secure on plain HTTP")
	require.Zero(t, c.MaxAge, "a browser-session cookie")
	require.NotContains(t, raw[0], "Expires")
	require.NotContains(t, raw[0], "Partitioned")
}

func TestCookieSecureOnTLS(t *testing.T) {
	e := newEnv(t, envOptions{})
	srv := httptest.NewTLSServer(e.m.Handler(http.HandlerFunc(incr)))
	defer srv.Close()
	res, err := srv.Client().Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	res.Body.Close()
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.True(t, c.Secure, "Secure on a TLS request")
}

func TestCookieSettings(t *testing.T) {
	yes, no := true, false
	for name, tc := range map[string]struct {
		cfg   CookieConfig
		tls   bool
		check func(t *testing.T, c *http.Cookie, raw string)
	}{
		"name, path, domain": {
			cfg: CookieConfig{Name: "sid", Path: "/app", Domain: "example.test"},
			check: func(t *testing.T, c *http.Cookie, raw string) {
				require.Equal(t, "sid", c.Name)
				require.Equal(t, "/app", c.Path)
				require.Equal(t, "example.test", c.Domain)
			},
		},
		"partitioned implies secure": {
			cfg: CookieConfig{Partitioned: true},
			check: func(t *testing.T, c *http.Cookie, raw string) {
				require.Contains(t, raw, "; Partitioned")
				require.True(t, c.Secure)
			},
		},
		"secure forced behind a proxy": {
			cfg:   CookieConfig{Secure: &yes},
			check: func(t *testing.T, c *http.Cookie, raw string) { require.True(t, c.Secure) },
		},
		"secure off even on TLS": {
			cfg: CookieConfig{Secure: &no}, tls: true,
			check: func(t *testing.T, c *http.Cookie, raw string) { require.False(t, c.Secure) },
		},
		"scripts may read it": {
			cfg:   CookieConfig{HttpOnly: &no},
			check: func(t *testing.T, c *http.Cookie, raw string) { require.False(t, c.HttpOnly) },
		},
		"strict same-site": {
			cfg:   CookieConfig{SameSite: http.SameSiteStrictMode},
			check: func(t *testing.T, c *http.Cookie, raw string) { require.Equal(t, http.SameSiteStrictMode, c.SameSite) },
		},
		"same-site none implies secure": {
			cfg: CookieConfig{SameSite: http.SameSiteNoneMode},
			check: func(t *testing.T, c *http.Cookie, raw string) {
				require.Equal(t, http.SameSiteNoneMode, c.SameSite)
				require.True(t, c.Secure)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: Config{Cookie: tc.cfg}})
			r := request("POST", "/", "")
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			res := serve(e.m.Handler(http.HandlerFunc(incr)), r).Result()
			raw := res.Header.Values("Set-Cookie")
			require.Len(t, raw, 1)
			cs := res.Cookies()
			require.Len(t, cs, 1)
			tc.check(t, cs[0], raw[0])

			// The configured name is the one read back.
			r2 := request("POST", "/", "")
			r2.Header.Set("Cookie", cs[0].Name+"="+cs[0].Value)
			require.Equal(t, "2", serve(e.m.Handler(http.HandlerFunc(incr)), r2).Body.String())
		})
	}
}

func TestCookieless(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Cookieless: true}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		n, _, _ := session.Get[int](s, "n")
		assert.NoError(t, s.Set("n", n+1))
		fmt.Fprintf(w, "%d <a href=%q>next</a>", n+1, Link(r, "/page?x=1"))
	})
	mux.HandleFunc("GET /look", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.URL.Path, FromContext(r.Context()).URL("/look"))
	})
	srv := httptest.NewServer(e.m.Handler(mux))
	defer srv.Close()
	get := func(path string) string {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Empty(t, res.Header.Values("Set-Cookie"), "no cookies in cookieless mode")
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return string(b)
	}
	link := regexp.MustCompile(`^(\d+) <a href="(/\(S\(([a-z2-7]{32})\)\)/page\?x=1)">`)
	m := link.FindStringSubmatch(get("/page"))
	require.NotNil(t, m, "the first page links with the new id")
	require.Equal(t, "1", m[1])
	id := m[3]
	m2 := link.FindStringSubmatch(get(m[2]))
	require.NotNil(t, m2)
	require.Equal(t, "2", m2[1], "the id in the path carries the session")
	require.Equal(t, id, m2[3])

	require.Equal(t, "/look /(S("+id+"))/look", get("/(S("+id+"))/look"), "routes see the path without the id")
	require.Equal(t, "/look /look", get("/look"), "no id, no session, plain links")

	ops := e.count.Ops()
	require.Equal(t, "/look /look", get("/(S("+strings.Repeat("A", 32)+"))/look"), "a malformed id gives a fresh session")
	require.Equal(t, "/look /look", get("/(S(../../x))/look"))
	require.Equal(t, ops, e.count.Ops(), "malformed ids never reach the store")
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n)
}
