package routers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/logcheck"
	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestMain fails the package when a whole session id reached a log.
func TestMain(m *testing.M) { os.Exit(logcheck.Main(m)) }

// bound is how long a test waits for something that should happen at once.
const bound = 10 * time.Second

// The routes every router serves (paths as the client asks for them):
//
//	POST /incr        WithMode(Exclusive): n++ with a pause between read and write
//	POST /count       no WithMode; a pattern Rule makes it Exclusive: m++ likewise
//	GET  /items/{id}  no WithMode; a pattern Rule makes it ReadOnly
//	GET  /ro          WithMode(ReadOnly), waits at a gate: shows parallelism
//	GET  /mode        no WithMode, no rule: DefaultMode (LockFree)
//
// DefaultMode is LockFree, the dangerous direction: a route that silently
// falls back to the default loses increments.
type app struct {
	m    *middleware.Manager
	gate *gate
}

// increment returns a handler that adds one to key with a pause between
// its read and its write, and writes the mode it saw.
func increment(key string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		n, _, err := session.Get[int](s, key)
		if err == nil {
			time.Sleep(2 * time.Millisecond) // widen the read-modify-write window
			err = s.Set(key, n+1)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %d", s.Mode(), n+1)
	}
}

func mode(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, middleware.FromContext(r.Context()).Mode())
}

// gate lets the read-only handlers in and holds them until all of them
// are inside at once.
type gate struct {
	want    int
	mu      sync.Mutex
	in      int
	all     chan struct{}
	entered chan struct{}
}

func newGate(want int) *gate {
	return &gate{want: want, all: make(chan struct{}), entered: make(chan struct{}, want)}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.in++
	if g.in == g.want {
		close(g.all)
	}
	g.mu.Unlock()
	select {
	case <-g.all:
		fmt.Fprint(w, middleware.FromContext(r.Context()).Mode(), " parallel")
	case <-time.After(bound):
		fmt.Fprint(w, middleware.FromContext(r.Context()).Mode(), " alone")
	}
}

// setup is one router configuration: the pattern syntax its rules use,
// the hook that reads its matched pattern, and how it mounts the routes.
type setup struct {
	name      string
	count     string // the router's pattern of POST /count
	items     string // the router's pattern of GET /items/{id}
	hook      func(*http.Request) string
	build     func(a *app) http.Handler
	wantItems string // the mode GET /items/{id} gets
	wantMode  string // the mode GET /mode gets
}

// logged is a wrapper that replaces the request, as logging and tracing
// middlewares do.
type ctxKey struct{}

func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, "trace")))
	})
}

func gorillaPattern(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		t, _ := rt.GetPathTemplate()
		return t
	}
	return ""
}

func chiPattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		return rc.RoutePattern()
	}
	return ""
}

func gorillaRoutes(a *app, r *mux.Router) {
	r.Handle("/incr", a.m.WithMode(middleware.Exclusive, increment("n"))).Methods("POST")
	r.Handle("/count", increment("m")).Methods("POST")
	r.HandleFunc("/items/{id}", mode).Methods("GET")
	r.Handle("/ro", a.m.WithMode(middleware.ReadOnly, a.gate)).Methods("GET")
	r.HandleFunc("/mode", mode).Methods("GET")
}

func serveMuxRoutes(a *app, m *http.ServeMux, prefix string) {
	m.Handle("POST "+prefix+"/incr", a.m.WithMode(middleware.Exclusive, increment("n")))
	m.Handle("POST "+prefix+"/count", increment("m"))
	m.HandleFunc("GET "+prefix+"/items/{id}", mode)
	m.Handle("GET "+prefix+"/ro", a.m.WithMode(middleware.ReadOnly, a.gate))
	m.HandleFunc("GET "+prefix+"/mode", mode)
}

var setups = []setup{
	{
		name: "servemux", count: "POST /count", items: "GET /items/{id}",
		build: func(a *app) http.Handler {
			m := http.NewServeMux()
			serveMuxRoutes(a, m, "")
			return a.m.Handler(m)
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
	{
		// A wrapper between the Manager and the mux: the mux's pattern is
		// set on the wrapper's copy of the request, out of the default
		// hook's sight; pattern rules cannot match, so those routes are
		// served Exclusive (fail safe) and that is logged once.
		name: "servemux behind a wrapper", count: "POST /count", items: "GET /items/{id}",
		build: func(a *app) http.Handler {
			m := http.NewServeMux()
			serveMuxRoutes(a, m, "")
			return a.m.Handler(logged(m))
		},
		wantItems: "exclusive", wantMode: "exclusive",
	},
	{
		// Nested muxes behind http.StripPrefix: the outer mux routes
		// "/app/", the inner one the routes. The pattern the Manager sees
		// is the outer "/app/", a subtree that may route further: pattern
		// rules cannot match below it, so those routes are served
		// Exclusive (fail safe), logged once. WithMode still wins.
		name: "nested servemux, StripPrefix", count: "POST /count", items: "GET /items/{id}",
		build: func(a *app) http.Handler {
			inner := http.NewServeMux()
			serveMuxRoutes(a, inner, "")
			outer := http.NewServeMux()
			outer.Handle("/app/", http.StripPrefix("/app", logged(inner)))
			return a.m.Handler(outer)
		},
		wantItems: "exclusive", wantMode: "exclusive",
	},
	{
		name: "gorilla/mux, Manager around the router", count: "/count", items: "/items/{id}", hook: gorillaPattern,
		build: func(a *app) http.Handler {
			r := mux.NewRouter()
			gorillaRoutes(a, r)
			return logged(a.m.Handler(r))
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
	{
		name: "gorilla/mux, r.Use", count: "/count", items: "/items/{id}", hook: gorillaPattern,
		build: func(a *app) http.Handler {
			r := mux.NewRouter()
			r.Use(a.m.Handler)
			gorillaRoutes(a, r)
			return r
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
	{
		name: "chi, r.Use r.With r.Group", count: "/count", items: "/items/{id}", hook: chiPattern,
		build: func(a *app) http.Handler {
			r := chi.NewRouter()
			r.Use(a.m.Handler) // before routing
			r.With(a.m.Middleware(middleware.Exclusive)).Post("/incr", increment("n"))
			r.Post("/count", increment("m"))
			r.Get("/items/{id}", mode)
			r.Group(func(r chi.Router) {
				r.Use(a.m.Middleware(middleware.ReadOnly))
				r.Method("GET", "/ro", a.gate)
			})
			r.Get("/mode", mode)
			return r
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
	{
		name: "echo, WrapMiddleware and WrapHandler", count: "/count", items: "/items/:id",
		build: func(a *app) http.Handler {
			e := echo.New()
			e.Use(echo.WrapMiddleware(a.m.Handler))
			e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
				return func(c echo.Context) error {
					c.Request().Pattern = c.Path() // the pattern hook's default reads it
					return next(c)
				}
			})
			e.POST("/incr", echo.WrapHandler(a.m.WithMode(middleware.Exclusive, increment("n"))))
			e.POST("/count", echo.WrapHandler(increment("m")))
			e.GET("/items/:id", echo.WrapHandler(http.HandlerFunc(mode)))
			e.GET("/ro", echo.WrapHandler(a.m.WithMode(middleware.ReadOnly, a.gate)))
			e.GET("/mode", echo.WrapHandler(http.HandlerFunc(mode)))
			return e
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
	{
		name: "gin, Manager around the engine, gin.WrapH", count: "/count", items: "/items/:id",
		build: func(a *app) http.Handler {
			gin.SetMode(gin.ReleaseMode)
			g := gin.New()
			g.Use(func(c *gin.Context) { c.Request.Pattern = c.FullPath() })
			g.POST("/incr", gin.WrapH(a.m.WithMode(middleware.Exclusive, increment("n"))))
			g.POST("/count", gin.WrapH(increment("m")))
			g.GET("/items/:id", gin.WrapH(http.HandlerFunc(mode)))
			g.GET("/ro", gin.WrapH(a.m.WithMode(middleware.ReadOnly, a.gate)))
			g.GET("/mode", gin.WrapH(http.HandlerFunc(mode)))
			return a.m.Handler(g)
		},
		wantItems: "readonly", wantMode: "lockfree",
	},
}

const parallel = 20

func TestRouterMatrix(t *testing.T) {
	for _, st := range setups {
		t.Run(st.name, func(t *testing.T) {
			store := memstore.New(memstore.Config{})
			t.Cleanup(func() { _ = store.Close() })
			p, err := provider.New(store, provider.Config{})
			require.NoError(t, err)
			logs := &strings.Builder{}
			var logMu sync.Mutex
			a := &app{gate: newGate(5)}
			a.m, err = middleware.New(middleware.Config{
				Provider:     p,
				DefaultMode:  middleware.LockFree,
				RoutePattern: st.hook,
				Rules: []middleware.Rule{
					{Pattern: st.count, Mode: middleware.Exclusive},
					{Pattern: st.items, Mode: middleware.ReadOnly},
				},
				Logger: slog.New(logcheck.Wrap(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
					logMu.Lock()
					defer logMu.Unlock()
					return logs.Write(b)
				}), nil))),
			})
			require.NoError(t, err)
			srv := httptest.NewServer(st.build(a))
			defer srv.Close()
			prefix := srv.URL
			if strings.HasPrefix(st.name, "nested") {
				prefix += "/app"
			}
			c := client(t)

			for _, route := range []struct{ path, mode string }{{"/incr", "exclusive"}, {"/count", "exclusive"}} {
				require.Equal(t, route.mode+" 1", do(t, c, "POST", prefix+route.path), route.path)
				modes, missing := burst(t, c, prefix+route.path)
				require.Equal(t, map[string]int{route.mode: parallel}, modes, "%s: the mode every handler saw", route.path)
				require.Zero(t, missing, "%s: 1 + %d parallel increments must end at %d", route.path, parallel, parallel+1)
				t.Logf("%s: counter %d after 1 + %d parallel increments, every handler saw %s", route.path, parallel+1, parallel, route.mode)
			}

			require.Equal(t, st.wantItems, do(t, c, "GET", prefix+"/items/7"), "/items/{id} by its pattern rule")
			require.Equal(t, st.wantMode, do(t, c, "GET", prefix+"/mode"), "/mode by DefaultMode")

			var wg sync.WaitGroup
			ro := make(chan string, a.gate.want)
			for range a.gate.want {
				wg.Go(func() { ro <- do(t, c, "GET", prefix+"/ro") })
			}
			wg.Wait()
			close(ro)
			for got := range ro {
				require.Equal(t, "readonly parallel", got, "read-only requests of one session run at once")
			}
			t.Logf("modes: /items/{id} %s, /mode %s, /ro readonly (%d in parallel)", st.wantItems, st.wantMode, a.gate.want)
			if st.wantMode == "exclusive" {
				logMu.Lock()
				require.Equal(t, 1, strings.Count(logs.String(), "no pattern is known"), "the fallback is logged once")
				logMu.Unlock()
			}
		})
	}
}

// burst fires parallel increments at url, after the first one, and
// returns the modes the handlers saw and how many increments were lost:
// each of 2 .. parallel+1 must be seen exactly once.
func burst(t *testing.T, c *http.Client, url string) (modes map[string]int, missing int) {
	t.Helper()
	var wg sync.WaitGroup
	answers := make(chan string, parallel)
	for range parallel {
		wg.Go(func() { answers <- do(t, c, "POST", url) })
	}
	wg.Wait()
	close(answers)
	modes = map[string]int{}
	seen := map[int]bool{}
	for a := range answers {
		var m string
		var n int
		_, err := fmt.Sscanf(a, "%s %d", &m, &n)
		require.NoError(t, err, a)
		modes[m]++
		seen[n] = true
	}
	for n := 2; n <= parallel+1; n++ {
		if !seen[n] {
			missing++
		}
	}
	return modes, missing
}

// TestBurstCatchesLostUpdates: the check the matrix makes fails on a
// route served lock-free, as every WithMode(Exclusive) route was under
// gorilla/mux with DefaultMode LockFree before the state rode in the
// context (the report: counter 2 after 1 + 20).
func TestBurstCatchesLostUpdates(t *testing.T) {
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { _ = store.Close() })
	p, err := provider.New(store, provider.Config{})
	require.NoError(t, err)
	m, err := middleware.New(middleware.Config{Provider: p})
	require.NoError(t, err)
	r := mux.NewRouter()
	r.Handle("/incr", m.WithMode(middleware.LockFree, increment("n"))).Methods("POST") // the broken variant
	srv := httptest.NewServer(m.Handler(r))
	defer srv.Close()
	c := client(t)
	require.Equal(t, "lockfree 1", do(t, c, "POST", srv.URL+"/incr"))
	_, missing := burst(t, c, srv.URL+"/incr")
	require.Positive(t, missing, "lock-free increments with a pause between read and write lose updates")
	t.Logf("lock-free: %d of %d increments lost", missing, parallel)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, Timeout: bound}
}

func do(t *testing.T, c *http.Client, method, url string) string {
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
