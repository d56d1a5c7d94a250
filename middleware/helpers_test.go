package middleware

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/logcheck"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// bound is how long a test waits for something that should happen at once.
const bound = 10 * time.Second

// keyRecorder records every key that reaches the store.
type keyRecorder struct {
	provider.Store
	mu   sync.Mutex
	keys map[string]int
}

func (k *keyRecorder) note(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]int)
	}
	k.keys[key]++
}

// seen reports whether any key containing sub reached the store.
func (k *keyRecorder) seen(sub string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range k.keys {
		if strings.Contains(key, sub) {
			return true
		}
	}
	return false
}

func (k *keyRecorder) Get(ctx context.Context, key string) (provider.Entry, error) {
	k.note(key)
	return k.Store.Get(ctx, key)
}

func (k *keyRecorder) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	k.note(key)
	return k.Store.Add(ctx, key, v, ttl)
}

func (k *keyRecorder) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	k.note(key)
	return k.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

func (k *keyRecorder) Touch(ctx context.Context, key string, ttl time.Duration) error {
	k.note(key)
	return k.Store.Touch(ctx, key, ttl)
}

func (k *keyRecorder) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	k.note(key)
	return k.Store.(provider.GetAndToucher).GetAndTouch(ctx, key, ttl)
}

func (k *keyRecorder) Delete(ctx context.Context, key string) error {
	k.note(key)
	return k.Store.Delete(ctx, key)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (a log sink).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a Manager over a counting, key-recording memory store.
type env struct {
	t       testing.TB
	mem     *memstore.Store
	count   *providertest.CountingStore
	keys    *keyRecorder
	p       *provider.Provider // the Manager's provider
	inspect *provider.Provider // another provider on the same store, for checks
	m       *Manager
	obs     *recorder // the Manager's Observer (with Config.Observer, if set)
	logs    *syncBuffer
}

type envOptions struct {
	provider provider.Config
	config   Config
	memNow   func() time.Time
	wrap     func(provider.Store) provider.Store // wraps the counting store
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}, obs: &recorder{}}
	e.mem = memstore.New(memstore.Config{SweepInterval: -1, Now: opts.memNow})
	t.Cleanup(func() { _ = e.mem.Close() })
	e.count = &providertest.CountingStore{Store: e.mem}
	e.keys = &keyRecorder{Store: e.count}
	var store provider.Store = e.keys
	if opts.wrap != nil {
		store = opts.wrap(store)
	}
	var err error
	e.p, err = provider.New(store, opts.provider)
	require.NoError(t, err)
	e.inspect, err = provider.New(e.mem, opts.provider)
	require.NoError(t, err)
	cfg := opts.config
	cfg.Provider = e.p
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logcheck.Wrap(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	cfg.Observer = Observers(e.obs, cfg.Observer)
	e.m, err = New(cfg)
	require.NoError(t, err)
	return e
}

// create stores a session with values and timeout (0: default) and
// returns its id. It makes no operation on the counting store.
func (e *env) create(values map[string]any, timeout time.Duration) string {
	e.t.Helper()
	id, err := session.NewID()
	require.NoError(e.t, err)
	data := e.inspect.CreateNewStoreData(timeout)
	for k, v := range values {
		require.NoError(e.t, data.Values.Set(k, v))
	}
	require.NoError(e.t, e.inspect.SetAndReleaseItemExclusive(context.Background(), id, data, 0, true))
	return id
}

// value reads key of session id as an int; the session must exist and be
// unlocked.
func (e *env) value(id, key string) (int, bool) {
	e.t.Helper()
	item, err := e.inspect.GetItem(context.Background(), id)
	require.NoError(e.t, err)
	n, ok, err := session.Get[int](item.Data.Values, key)
	require.NoError(e.t, err)
	return n, ok
}

// header returns the stored record header of session id.
func (e *env) header(id string) record.Header {
	e.t.Helper()
	key, err := e.p.Key(id)
	require.NoError(e.t, err)
	ent, err := e.mem.Get(context.Background(), key)
	require.NoError(e.t, err)
	h, err := record.Parse(ent.Value)
	require.NoError(e.t, err)
	return h
}

// ttl returns the remaining TTL of session id in the store.
func (e *env) ttl(id string) time.Duration {
	e.t.Helper()
	key, err := e.p.Key(id)
	require.NoError(e.t, err)
	d, err := e.mem.TTL(context.Background(), key)
	require.NoError(e.t, err)
	return d
}

// request builds a request carrying session id in the default cookie.
func request(method, target, id string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if id != "" {
		r.Header.Set("Cookie", DefaultCookieName+"="+id)
	}
	return r
}

// serve runs one request through h and returns the recorded response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// sessionCookie returns the session cookie set by a response, or nil.
func sessionCookie(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// waitFor polls cond until it holds or bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, bound, what, cond)
}

// recv receives from ch within bound.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// gate is a handler that announces it entered and waits to be let go.
type gate struct {
	entered chan string // receives the session id when a request enters
	release chan struct{}
	before  func(*Session) // runs on entry, before the wait
	after   func(*Session) // runs after the wait
}

func newGate() *gate {
	return &gate{entered: make(chan string, 100), release: make(chan struct{})}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := FromContext(r.Context())
	if g.before != nil {
		g.before(s)
	}
	g.entered <- s.ID()
	<-g.release
	if g.after != nil {
		g.after(s)
	}
	fmt.Fprint(w, "gate done")
}

// incr is a handler that adds 1 to the session's int "n" and writes the
// new value.
func incr(w http.ResponseWriter, r *http.Request) {
	s := FromContext(r.Context())
	n, _, err := session.Get[int](s, "n")
	if err == nil {
		err = s.Set("n", n+1)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, n+1)
}

// echoMode writes the mode the request was served in.
func echoMode(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, FromContext(r.Context()).Mode())
}

// recorder is an Observer that counts what it is told, by series:
// "request/<mode>", "lock_wait", "lock_hold", "lease_renewals",
// "invalid_id/<reason>", "store_error/<ErrorKind>", "store_event/<kind>",
// and the providers it was handed.
type recorder struct {
	mu        sync.Mutex
	n         map[string]float64
	providers []*provider.Provider
}

func (r *recorder) add(key string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]float64{}
	}
	r.n[key] += v
}

// get returns the count of series key.
func (r *recorder) get(key string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[key]
}

func (r *recorder) Request(mode Mode)           { r.add("request/"+mode.String(), 1) }
func (r *recorder) LockWait(time.Duration)      { r.add("lock_wait", 1) }
func (r *recorder) LockHold(time.Duration)      { r.add("lock_hold", 1) }
func (r *recorder) LeaseRenewals(n int64)       { r.add("lease_renewals", float64(n)) }
func (r *recorder) InvalidID(reason string)     { r.add("invalid_id/"+reason, 1) }
func (r *recorder) StoreError(err error)        { r.add("store_error/"+ErrorKind(err), 1) }
func (r *recorder) StoreEvent(e provider.Event) { r.add("store_event/"+e.Kind.String(), 1) }
func (r *recorder) WatchProvider(p *provider.Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.providers = append(r.providers, p)
}
