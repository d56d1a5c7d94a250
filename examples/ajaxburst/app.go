package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

//go:embed page.html
var page []byte

// appConfig configures the example.
type appConfig struct {
	// Work is how long each call works: an exclusive one while it holds
	// the session's lock, the others beside it (so that the page's
	// waterfall shows them overlap).
	Work time.Duration
}

// app is the example's HTTP handler with its store.
type app struct {
	http.Handler
	store *memstore.Store
	work  time.Duration

	mu      sync.Mutex
	overlap map[string]*overlap // per session id, for sessions started by reset
}

// maxTracked bounds the sessions whose overlap the example tracks.
const maxTracked = 1000

// overlap tracks how many exclusive calls of one session run at once.
type overlap struct {
	now, max atomic.Int32
}

// newApp builds the example: a memory store, a provider, the session
// middleware and four endpoints, one per mode.
func newApp(cfg appConfig) (*app, error) {
	store := memstore.New(memstore.Config{})
	p, err := provider.New(store, provider.Config{})
	if err != nil {
		store.Close()
		return nil, err
	}
	mgr, err := middleware.New(middleware.Config{
		Provider: p,
		Rules: []middleware.Rule{
			{Pattern: "GET /{$}", Mode: middleware.Off},
			{Pattern: "GET /api/readonly", Mode: middleware.ReadOnly},
			{Pattern: "GET /api/summary", Mode: middleware.ReadOnly},
			{Pattern: "POST /api/lockfree/{n}", Mode: middleware.LockFree},
		},
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	a := &app{store: store, work: cfg.Work, overlap: make(map[string]*overlap)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("POST /api/reset", a.reset)
	mux.HandleFunc("POST /api/exclusive", a.exclusive)
	mux.HandleFunc("GET /api/readonly", a.readOnly)
	mux.HandleFunc("POST /api/lockfree/{n}", a.lockFree)
	mux.HandleFunc("GET /api/summary", a.summary)
	a.Handler = stamp(mgr.Handler(mux))
	return a, nil
}

// arrivedKey keys the time a request reached the server in its context.
type arrivedKey struct{}

// stamp records when each request reached the server, before the session
// middleware made it wait for its session's lock.
func stamp(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), arrivedKey{}, time.Now())))
	})
}

// unixMs is t in milliseconds since the Unix epoch, to the microsecond.
func unixMs(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

// timed adds the server's times of the call to its answer: arrived (it
// reached the server), started (its handler ran: it had the session) and
// ended (its handler returned; the commit and release follow), in ms since
// the Unix epoch. The page draws its waterfall from them.
func timed(r *http.Request, started time.Time, v map[string]any) map[string]any {
	if arrived, ok := r.Context().Value(arrivedKey{}).(time.Time); ok {
		v["arrived"] = unixMs(arrived)
	}
	v["started"] = unixMs(started)
	v["ended"] = unixMs(time.Now())
	return v
}

// Close releases the store.
func (a *app) Close() error { return a.store.Close() }

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(page)
}

// reset starts the session afresh: counter 0, no lock-free keys.
func (a *app) reset(w http.ResponseWriter, r *http.Request) {
	s := middleware.FromContext(r.Context())
	if err := errors.Join(s.Clear(), s.Set("counter", 0)); err != nil {
		fail(w, err)
		return
	}
	a.mu.Lock()
	if len(a.overlap) >= maxTracked {
		clear(a.overlap) // an example's bound on memory, not a policy
	}
	a.overlap[s.ID()] = &overlap{}
	a.mu.Unlock()
	reply(w, map[string]any{"counter": 0})
}

// exclusive increments the counter, holding the session's lock for a
// while; it measures how many exclusive calls of the session overlap.
func (a *app) exclusive(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	s := middleware.FromContext(r.Context())
	o := a.overlapOf(s.ID())
	now := o.now.Add(1)
	defer o.now.Add(-1)
	for {
		m := o.max.Load()
		if now <= m || o.max.CompareAndSwap(m, now) {
			break
		}
	}
	n, _, err := session.Get[int](s, "counter")
	if err != nil {
		fail(w, err)
		return
	}
	time.Sleep(a.work) // the request's work, done while it holds the lock
	if err := s.Set("counter", n+1); err != nil {
		fail(w, err)
		return
	}
	reply(w, timed(r, started, map[string]any{"counter": n + 1}))
}

// readOnly reads the counter; its attempt to write is refused.
func (a *app) readOnly(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	s := middleware.FromContext(r.Context())
	n, _, err := session.Get[int](s, "counter")
	if err != nil {
		fail(w, err)
		return
	}
	time.Sleep(a.work) // the request's work; read-only calls overlap
	refused := errors.Is(s.Set("counter", -1), middleware.ErrReadOnly)
	reply(w, timed(r, started, map[string]any{"counter": n, "write_refused": refused}))
}

// lockFree stores its own key without waiting for the lock.
func (a *app) lockFree(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	s := middleware.FromContext(r.Context())
	key := "lf-" + r.PathValue("n")
	time.Sleep(a.work) // the request's work, never behind the lock
	if err := s.Set(key, true); err != nil {
		fail(w, err)
		return
	}
	reply(w, timed(r, started, map[string]any{"key": key}))
}

// summary reports the session's state after the burst.
func (a *app) summary(w http.ResponseWriter, r *http.Request) {
	s := middleware.FromContext(r.Context())
	n, _, err := session.Get[int](s, "counter")
	if err != nil {
		fail(w, err)
		return
	}
	keys := 0
	for _, k := range s.Keys() {
		if strings.HasPrefix(k, "lf-") {
			keys++
		}
	}
	reply(w, map[string]any{
		"counter":       n,
		"lockfree_keys": keys,
		"max_overlap":   a.overlapOf(s.ID()).max.Load(),
	})
}

func (a *app) overlapOf(id string) *overlap {
	a.mu.Lock()
	defer a.mu.Unlock()
	if o := a.overlap[id]; o != nil {
		return o
	}
	return &overlap{} // a session that did not start with reset: not tracked

}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	http.Error(w, fmt.Sprintf("session: %v", err), http.StatusInternalServerError)
}
