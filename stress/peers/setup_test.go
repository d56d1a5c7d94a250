package peers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// sessionBytes is the size of every measured session's values: a 2 KB
// string and a counter.
const sessionBytes = 2 << 10

var blob = strings.Repeat("x", sessionBytes)

// kind is one kind of request, made to both sides: the same path, the
// same handler work (read the counter; increment it where the kind
// writes), the same small answer.
type kind struct {
	name string
	path string
	// cold: our request is served by an app server that did not serve
	// the session's previous request (its written-record cache does not
	// know the session). Otherwise the same server served the previous
	// request, so its cache is fresh.
	cold bool
}

// kinds are the measured requests. scs has no modes: its side of every
// read is a request that reads the counter (one get), of every increment
// one that increments it (get + set).
var kinds = []kind{
	{name: "exclusive-incr", path: "/incr"},
	{name: "exclusive-read/cold", path: "/read", cold: true},
	{name: "exclusive-read/warm", path: "/read"},
	{name: "readonly", path: "/ro"},
	{name: "lockfree-read", path: "/lf-read"},
	{name: "lockfree-incr", path: "/lf-incr"},
}

// startMemcached starts the one memcached node both sides share. With
// PEERS_MEMCACHED_CPU set (a CPU list for taskset, e.g. "1") the node is
// pinned there; run the test binary under `taskset -c 0` to give the
// client side the other core.
func startMemcached(tb testing.TB) *mcserver.Server {
	tb.Helper()
	srv := mcserver.StartForTest(tb, 1, mcserver.Config{})[0]
	if cpus := os.Getenv("PEERS_MEMCACHED_CPU"); cpus != "" {
		st, err := srv.Stats(context.Background())
		require.NoError(tb, err)
		out, err := exec.Command("taskset", "-a", "-cp", cpus, st["pid"]).CombinedOutput()
		require.NoError(tb, err, "taskset: %s", out)
	}
	return srv
}

// ops are memcached's own operation counters on the node.
type ops struct{ get, set, touch, del uint64 }

func countOps(tb testing.TB, srv *mcserver.Server) ops {
	tb.Helper()
	st, err := srv.Stats(context.Background())
	require.NoError(tb, err)
	return ops{
		get:   st.Uint("cmd_get"),
		set:   st.Uint("cmd_set"),
		touch: st.Uint("cmd_touch"),
		del:   st.Uint("delete_hits") + st.Uint("delete_misses"),
	}
}

func (a ops) minus(b ops) ops {
	return ops{get: a.get - b.get, set: a.set - b.set, touch: a.touch - b.touch, del: a.del - b.del}
}

// total counts each memcached command once: an mg that also touches
// counts in cmd_touch only.
func (a ops) total() uint64 { return a.get + a.set + a.touch + a.del }

// side is one session library behind a real HTTP server on loopback.
type side struct {
	name   string
	cookie string // the session cookie's name
	urls   []string
	client *http.Client
}

// do makes one request for session id to the side's i-th server and
// reads the whole answer.
func (s *side) do(i int, path, id string) error {
	req, err := http.NewRequest(http.MethodGet, s.urls[i]+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", s.cookie+"="+id)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		return fmt.Errorf("%s %s: status %d: %s", s.name, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute}}
}

// ours is the middleware, provider and memcached store. Its app servers
// share one Store (one pool of connections to the node); each has its own
// provider (its own written-record cache) and Manager.
type ours struct {
	side
	store *memcached.Store
	// apps are the handlers the servers run, swappable (fresh) so that
	// a request can be served by a server that never saw its session.
	apps []atomic.Pointer[http.Handler]
	// p is the provider of the first server, which creates the sessions.
	p *provider.Provider
}

// newOurs starts n app servers of ours over the node at addr.
func newOurs(tb testing.TB, addr string, n int) *ours {
	tb.Helper()
	// The same operation timeout as the scs adapter's client: on the
	// shared machine under load a loopback round trip can take longer
	// than the default 500 ms, which would mark the node down.
	// PEERS_WHOLE_WRITES=1 writes every lock change whole
	// (memcached.Config.WholeWrites), as before lock changes were
	// appended: the same benchmarks then measure the old write path on
	// today's machine load (the operation-count tests expect appends).
	// PEERS_POOLED=1 gives the store a pool of connections, one
	// operation at a time on each (memcached.ConnsPooled), instead of
	// the default shared, pipelined ones.
	cfg := memcached.Config{
		Nodes:       []string{addr},
		Timeout:     scsTimeout,
		WholeWrites: os.Getenv("PEERS_WHOLE_WRITES") != "",
	}
	if os.Getenv("PEERS_POOLED") != "" {
		cfg.Conns = memcached.ConnsPooled
	}
	st, err := memcached.New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = st.Close() })
	o := &ours{side: side{name: "ours", cookie: middleware.DefaultCookieName, client: newClient()}, store: st}
	o.apps = make([]atomic.Pointer[http.Handler], n)
	for i := range n {
		p := o.fresh(tb, i)
		if i == 0 {
			o.p = p
		}
		app := &o.apps[i]
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*app.Load()).ServeHTTP(w, r)
		}))
		tb.Cleanup(srv.Close)
		o.urls = append(o.urls, srv.URL)
	}
	tb.Cleanup(o.client.CloseIdleConnections)
	return o
}

// fresh makes server i a new app server (provider and Manager) over the
// shared store, and returns its provider.
func (o *ours) fresh(tb testing.TB, i int) *provider.Provider {
	p, err := provider.New(o.store, provider.Config{})
	require.NoError(tb, err)
	m, err := middleware.New(middleware.Config{Provider: p, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	read := func(w http.ResponseWriter, r *http.Request) {
		n, _, err := session.Get[int](middleware.FromContext(r.Context()), "n")
		answer(w, n, err)
	}
	incr := func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		n, _, err := session.Get[int](s, "n")
		if err == nil {
			err = s.Set("n", n+1)
		}
		answer(w, n+1, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/incr", m.WithMode(middleware.Exclusive, http.HandlerFunc(incr)))
	mux.Handle("/read", m.WithMode(middleware.Exclusive, http.HandlerFunc(read)))
	mux.Handle("/ro", m.WithMode(middleware.ReadOnly, http.HandlerFunc(read)))
	mux.Handle("/lf-read", m.WithMode(middleware.LockFree, http.HandlerFunc(read)))
	mux.Handle("/lf-incr", m.WithMode(middleware.LockFree, http.HandlerFunc(incr)))
	var h http.Handler = mux
	o.apps[i].Store(&h)
	return p
}

// create stores a new session of sessionBytes through server 0's
// provider (so that server's cache knows it, as after a request).
func (o *ours) create(tb testing.TB) string {
	tb.Helper()
	id, err := session.NewID()
	require.NoError(tb, err)
	d := o.p.CreateNewStoreData(0)
	require.NoError(tb, d.Values.Set("blob", blob))
	require.NoError(tb, d.Values.Set("n", 0))
	require.NoError(tb, o.p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
	return id
}

// peer is scs over the gomemcache adapter, with scs's defaults (24 h
// lifetime, no idle timeout: a request that only reads writes nothing).
type peer struct {
	side
	sm *scs.SessionManager
}

func newPeer(tb testing.TB, addr string) *peer {
	tb.Helper()
	sm := scs.New()
	sm.Store = newSCSStore(addr)
	sm.ErrorFunc = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	read := func(w http.ResponseWriter, r *http.Request) {
		answer(w, sm.GetInt(r.Context(), "n"), nil)
	}
	incr := func(w http.ResponseWriter, r *http.Request) {
		n := sm.GetInt(r.Context(), "n") + 1
		sm.Put(r.Context(), "n", n)
		answer(w, n, nil)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/incr", incr)
	mux.HandleFunc("/read", read)
	mux.HandleFunc("/ro", read)
	mux.HandleFunc("/lf-read", read)
	mux.HandleFunc("/lf-incr", incr)
	srv := httptest.NewServer(sm.LoadAndSave(mux))
	tb.Cleanup(srv.Close)
	p := &peer{side: side{name: "scs", cookie: sm.Cookie.Name, urls: []string{srv.URL}, client: newClient()}, sm: sm}
	tb.Cleanup(p.client.CloseIdleConnections)
	return p
}

// create stores a new scs session of sessionBytes and returns its token.
func (p *peer) create(tb testing.TB) string {
	tb.Helper()
	ctx, err := p.sm.Load(context.Background(), "")
	require.NoError(tb, err)
	p.sm.Put(ctx, "blob", blob)
	p.sm.Put(ctx, "n", 0)
	token, _, err := p.sm.Commit(ctx)
	require.NoError(tb, err)
	return token
}

// answer writes the counter, or a 500 for err.
func answer(w http.ResponseWriter, n int, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(strconv.AppendInt(nil, int64(n), 10))
}
