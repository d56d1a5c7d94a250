package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// Session keys the app server uses.
const (
	keyCounter  = "n"
	keyList     = "list"
	keyBorn     = "born"
	keyFreePref = "f:" // + the request's unique key
)

// Control endpoints of an app server, outside the session middleware.
const (
	pathState   = "/_stress/state"
	pathTimings = "/_stress/timings"
)

// appConfig configures one app server. It is JSON so that a harness can
// hand it to an app server process.
type appConfig struct {
	Proc     int           `json:"proc"`
	Store    storeSpec     `json:"store"`
	Lease    time.Duration `json:"lease"`
	Wait     string        `json:"wait"`
	PollCap  time.Duration `json:"poll_cap"`
	SlowTime time.Duration `json:"slow_time"`
	ReadTime time.Duration `json:"read_time"`
	// LateCommit turns the middleware's response buffering off
	// (middleware.Config.Unbuffered): the answer goes out before the
	// commit, so a commit that fails loses an acknowledged write.
	LateCommit bool `json:"late_commit,omitempty"`
}

// providerConfig is the provider configuration every app server and the
// checks share.
func (c appConfig) providerConfig() (provider.Config, error) {
	strategy, err := lock.ParseStrategy(c.Wait)
	if err != nil {
		return provider.Config{}, err
	}
	return provider.Config{
		Lease: c.Lease,
		Wait:  lock.Config{Strategy: strategy, PollCap: c.PollCap},
	}, nil
}

// appState is what an app server reports on its control endpoint.
type appState struct {
	// InFlight counts requests inside the session middleware.
	InFlight int64 `json:"in_flight"`
	// Holding lists the sessions whose exclusive handlers run now.
	Holding []string `json:"holding"`
	// Fenced counts commits refused because the lock had been taken over
	// and answered 409 Conflict by the middleware (only counted while it
	// buffers responses).
	Fenced int64 `json:"fenced"`
}

// app is one app server: the session middleware over a Provider of its
// own, serving the workload's routes, and a record of every request's
// timing.
type app struct {
	cfg   appConfig
	prov  *provider.Provider
	mgr   *middleware.Manager
	mux   *http.ServeMux
	store provider.Store

	inFlight atomic.Int64
	fenced   atomic.Int64
	log      *slog.Logger // LogDirEnv's log; nil: none

	mu      sync.Mutex
	timings []timing
	holding map[uint64]string // request id -> session, exclusive handlers running
}

// newApp builds an app server over store; closing the app does not close
// the store.
func newApp(cfg appConfig, store provider.Store, logger *slog.Logger) (*app, error) {
	pcfg, err := cfg.providerConfig()
	if err != nil {
		return nil, err
	}
	p, err := provider.New(stamped(store), pcfg)
	if err != nil {
		return nil, err
	}
	mgr, err := middleware.New(middleware.Config{
		Provider: p,
		// The middleware holds each answer back until the session is
		// committed, and answers the error instead when the commit fails:
		// no handler needs to commit before it answers. LateCommit shows
		// what happens without that.
		Unbuffered: cfg.LateCommit,
		// Failures are counted by the harness; the log would only repeat
		// them, thousands of times under faults.
		// LogDirEnv sets one for a diagnosis. Either way a failed
		// request's errors are kept in its timing (errNotes).
		Logger: slog.New(errNotes{cmp.Or(logger, slog.New(slog.NewTextHandler(io.Discard, nil))).Handler()}),
	})
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, prov: p, mgr: mgr, mux: http.NewServeMux(), store: store, holding: map[uint64]string{}, log: logger}
	modes := map[string]middleware.Mode{}
	for name, ri := range routes {
		switch {
		case ri.exclusive:
			modes[name] = middleware.Exclusive
		case ri.readOnly:
			modes[name] = middleware.ReadOnly
		default:
			modes[name] = middleware.LockFree
		}
	}
	for name, ri := range routes {
		h := a.handler(name)
		a.mux.Handle(ri.method+" "+ri.path, a.track(name, mgr.WithMode(modes[name], h)))
	}
	a.mux.HandleFunc("GET "+pathState, a.serveState)
	a.mux.HandleFunc("GET "+pathTimings, a.serveTimings)
	return a, nil
}

// timingKey is the context key of a request's *timing.
type timingKey struct{}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// track wraps the middleware: it notes the request's arrival before the
// middleware and its end after the middleware committed and released.
func (a *app) track(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseUint(r.Header.Get(headerRequestID), 10, 64)
		t := &timing{ID: id, Proc: a.cfg.Proc, Route: route, Arrive: time.Now().UnixNano()}
		a.inFlight.Add(1)
		defer a.inFlight.Add(-1)
		w.Header().Set(headerProc, strconv.Itoa(a.cfg.Proc))
		sw := &statusWriter{ResponseWriter: w}
		notes := &errNote{}
		epoch := &lockEpoch{}
		own := &stamps{}
		ctx := context.WithValue(context.WithValue(r.Context(), timingKey{}, t), errNoteKey{}, notes)
		ctx = context.WithValue(context.WithValue(ctx, lockEpochKey{}, epoch), stampsKey{}, own)
		next.ServeHTTP(sw, r.WithContext(ctx))
		t.Done = time.Now().UnixNano()
		t.Status = sw.status
		t.Err = notes.String()
		if routes[route].exclusive && t.ran() && t.SID != "" {
			// The lock's and the renewals' writes, made with this
			// request's context: its lease (checkLocks).
			t.Stamps = own.within(t.Arrive, t.End)
			t.LockEpoch, t.LockEpochSeen = epoch.get()
		}
		if sw.status == http.StatusConflict {
			// Only the middleware answers 409: its commit was fenced
			// because the lock had been taken over.
			a.fenced.Add(1)
		}
		if a.log != nil {
			a.log.Debug("request", "id", id, "route", route, "sid", sidTag(t.SID), "status", t.Status,
				"arrive", t.Arrive, "start", t.Start, "end", t.End, "done", t.Done)
		}
		if id != 0 {
			a.mu.Lock()
			a.timings = append(a.timings, *t)
			a.mu.Unlock()
		}
	})
}

// errNoteKey is the context key of a request's *errNote.
type errNoteKey struct{}

// errNote collects the errors the middleware logged (at warning level or
// above) for one request: the store's error behind a 500 or 503, which
// the answer's body does not carry (timing.Err). The middleware shortens
// the session ids in them.
type errNote struct {
	mu   sync.Mutex
	msgs []string
}

// String returns the errors noted, in order, joined by "; ".
func (n *errNote) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "; ")
}

// add notes msg, up to maxErrNotes.
func (n *errNote) add(msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.msgs) < maxErrNotes {
		n.msgs = append(n.msgs, msg)
	}
}

// noteErr notes msg in the errNote of ctx, if it has one.
func noteErr(ctx context.Context, msg string) {
	if n, ok := ctx.Value(errNoteKey{}).(*errNote); ok {
		n.add(msg)
	}
}

// maxErrNotes bounds the errors noted for one request.
const maxErrNotes = 4

// errNotes is a slog.Handler that notes each warning or error logged with
// a request's context in that request's errNote, and passes every record
// on to next (the app server's logger).
type errNotes struct{ next slog.Handler }

func (h errNotes) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h errNotes) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelWarn {
		msg := rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				msg += ": " + a.Value.String()
			}
			return true
		})
		noteErr(ctx, msg)
	}
	if !h.next.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.next.Handle(ctx, rec)
}

func (h errNotes) WithAttrs(as []slog.Attr) slog.Handler { return errNotes{h.next.WithAttrs(as)} }
func (h errNotes) WithGroup(g string) slog.Handler       { return errNotes{h.next.WithGroup(g)} }

// handler returns the route's handler, which runs inside the middleware.
func (a *app) handler(route string) http.Handler {
	ri := routes[route]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _ := r.Context().Value(timingKey{}).(*timing)
		if t == nil {
			t = &timing{} // not reached: every route is tracked
		}
		t.Start = time.Now().UnixNano()
		s := middleware.FromContext(r.Context())
		if ri.exclusive {
			a.mu.Lock()
			a.holding[t.ID] = s.ID()
			a.mu.Unlock()
			defer func() {
				a.mu.Lock()
				delete(a.holding, t.ID)
				a.mu.Unlock()
			}()
		}
		rep, code, err := a.serve(r, route, s)
		t.SID = s.ID()
		t.Counter, t.CounterRead = rep.from, rep.read
		// The handler's work ends here; what follows is the commit, which
		// releases the lock, after which the next holder may start at
		// once. The middleware sends the answer written below only once
		// the commit has stored the session (unless LateCommit).
		t.End = time.Now().UnixNano()
		if err != nil {
			if code == 0 {
				code = http.StatusInternalServerError
			}
			noteErr(r.Context(), "handler: "+err.Error())
			http.Error(w, err.Error(), code)
			return
		}
		rep.SID = s.ID()
		rep.New = s.IsNew()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// serve does the route's work on session s.
func (a *app) serve(r *http.Request, route string, s *middleware.Session) (reply, int, error) {
	var rep reply
	n, _, err := session.Get[int](s, keyCounter)
	if err != nil {
		return rep, 0, fmt.Errorf("read counter: %w", err)
	}
	rep.Value, rep.from, rep.read = n, n, true
	if q := r.URL.Query().Get("timeout"); q != "" {
		// An expiry probe's request (Config.ExpiryProbes): its session
		// has this short own timeout, a session created in its place too
		// (setting the current timeout changes nothing).
		d, err := time.ParseDuration(q)
		if err != nil {
			return rep, http.StatusBadRequest, fmt.Errorf("timeout: %w", err)
		}
		if err := s.SetTimeout(d); err != nil {
			return rep, http.StatusBadRequest, err
		}
	}
	switch route {
	case RouteInit:
		if err := s.Set(keyBorn, time.Now().UnixNano()); err != nil {
			return rep, 0, err
		}
	case RouteIncr, RouteSlow, RouteHold:
		rep.Value = n + 1
		if err := s.Set(keyCounter, n+1); err != nil {
			return rep, 0, err
		}
		switch route {
		case RouteSlow:
			if err := pause(r.Context(), a.cfg.SlowTime); err != nil {
				return rep, http.StatusServiceUnavailable, err
			}
		case RouteHold:
			// Hold the lock until the client goes away (or the process
			// is killed, which is what this route is for).
			_ = pause(r.Context(), 10*time.Minute)
			return rep, http.StatusServiceUnavailable, errors.New("hold ended")
		}
	case RouteAppend:
		item := r.URL.Query().Get("item")
		list, _, err := session.Get[[]string](s, keyList)
		if err != nil {
			return rep, 0, fmt.Errorf("read list: %w", err)
		}
		list = append(list, item)
		if err := s.Set(keyList, list); err != nil {
			return rep, 0, err
		}
		rep.Len = len(list)
	case RouteFree:
		if err := s.Set(keyFreePref+r.URL.Query().Get("item"), 1); err != nil {
			return rep, 0, err
		}
	case RouteRead:
		list, _, err := session.Get[[]string](s, keyList)
		if err != nil {
			return rep, 0, fmt.Errorf("read list: %w", err)
		}
		rep.Len = len(list)
		if err := pause(r.Context(), a.cfg.ReadTime); err != nil {
			return rep, http.StatusServiceUnavailable, err
		}
	}
	return rep, 0, nil
}

// pause simulates handler work of duration d; it ends early with ctx.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *app) state() appState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := appState{InFlight: a.inFlight.Load(), Fenced: a.fenced.Load(), Holding: []string{}}
	for _, sid := range a.holding {
		st.Holding = append(st.Holding, sid)
	}
	sort.Strings(st.Holding)
	return st
}

func (a *app) serveState(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.state())
}

func (a *app) serveTimings(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ts := append([]timing(nil), a.timings...)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ts)
}

// appServer is an app server listening on 127.0.0.1 in this process.
type appServer struct {
	app *app
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

func startAppServer(a *app) (*appServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("harness: app server: %w", err)
	}
	s := &appServer{app: a, ln: ln, srv: &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *appServer) addr() string { return s.ln.Addr().String() }

// close stops the server, waiting up to a bound for requests to finish.
func (s *appServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	s.wg.Wait()
	return err
}

// getJSON fetches a control endpoint of the app server at addr.
func getJSON(ctx context.Context, client *http.Client, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("harness: %s%s: %s: %s", addr, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
