package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrModeConflict: a WithMode handler asked for Exclusive after the
// request had already changed its session in another mode (a middleware
// between the Manager and the route wrote to the session). The changes
// cannot be made safe after the fact: nothing is stored and the request
// is answered with an error (500) instead of running lock-free.
var ErrModeConflict = errors.New("middleware: Exclusive asked for after the session was changed in another mode")

// handler is the middleware around one http.Handler.
type handler struct {
	m     *Manager
	next  http.Handler
	mode  Mode
	fixed bool // mode was given by WithMode; otherwise rules and default decide
}

// choice is a mode decided for a request, and where it came from.
type choice struct {
	mode     Mode
	route    string // the route Auto tracks: the pattern if known, else the path
	fixed    bool   // from WithMode
	fallback bool   // Exclusive because pattern rules exist and no pattern was known
}

// resolve decides r's mode from what this handler knows: its own WithMode;
// around a whole *http.ServeMux, the matched route's WithMode or pattern;
// else the rules with the pattern Config.RoutePattern finds (none before
// the router has routed), else DefaultMode.
func (h *handler) resolve(r *http.Request) choice {
	pattern := h.m.pattern(r)
	known := pattern != ""
	if mux, ok := h.next.(*http.ServeMux); ok && !known && !h.fixed {
		var inner http.Handler
		inner, pattern = mux.Handler(r)
		known = true // the mux said which route (or none) will run
		if ih, ok := inner.(*handler); ok && ih.m == h.m && ih.fixed {
			return choice{mode: ih.mode, route: routeKey(pattern, r), fixed: true}
		}
	}
	if h.fixed {
		return choice{mode: h.mode, route: routeKey(pattern, r), fixed: true}
	}
	return h.m.byRules(pattern, known, r)
}

// byRules decides the mode from the rules and the default. Rules that
// only a route pattern can match (see Rule) cannot match a request whose
// pattern is not known: before routing, behind a wrapper that hides the
// pattern, or below a subtree route ("/app/", "/app/*") that may route
// further (a nested mux). Such a request, when no path rule matches it
// either, is served Exclusive (fail safe) instead of a ReadOnly, LockFree
// or Auto DefaultMode: a pattern rule might have asked for the lock.
func (m *Manager) byRules(pattern string, known bool, r *http.Request) choice {
	c := choice{route: routeKey(pattern, r)}
	mode, found := m.rules.match(pattern, r.URL.Path)
	if !found {
		mode = m.cfg.DefaultMode
	}
	known = known && !strings.HasSuffix(pattern, "/") && !strings.HasSuffix(pattern, "*")
	if !found && !known && m.patternRules && mode != Off {
		mode, c.fallback = Exclusive, true
	}
	c.mode = mode
	return c
}

func routeKey(pattern string, r *http.Request) string {
	if pattern != "" {
		return pattern
	}
	return r.URL.Path
}

// pattern returns r's matched route pattern through Config.RoutePattern,
// "" when none is known.
func (m *Manager) pattern(r *http.Request) string {
	if m.cfg.RoutePattern != nil {
		return m.cfg.RoutePattern(r)
	}
	return r.Pattern
}

// ServeHTTP runs one request. The outermost handler of the Manager a
// request meets sets the request up (its session id, the buffered
// writer, the session in the context) and decides its mode from what it
// knows, loading the session at once (and taking the lock on an
// Exclusive route) before anything below it runs. Any handler of the same
// Manager further in (WithMode on the route, Handler inside the router)
// decides again with what it knows then; see Session.use for how a
// different mode takes over. After next returns, the outermost handler
// commits or releases the session and only then sends the response (or,
// if the commit failed, the error).
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	if s := sessionOf(r.Context()); s != nil && s.m == m {
		// Inner: an outer handler of this Manager set the request up.
		c := h.resolve(r)
		s.mu.Lock()
		s.req = r
		s.use(r.Context(), c)
		failed := s.loadErr != nil
		s.mu.Unlock()
		if !failed {
			h.next.ServeHTTP(w, r)
		}
		return
	}

	var src idSource
	if m.cfg.Cookieless {
		r, src = stripURLID(r)
	} else {
		src = m.cookieID(r)
	}
	if src.reason != "" {
		m.metrics.InvalidID(src.reason)
	}
	c := h.resolve(r)
	s := &Session{m: m, src: src, cookieIn: src.present, secureReq: m.secure(r), mode: unset}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, s))
	s.ctx, s.req = r.Context(), r
	s.w = newResponseWriter(w, r, s, !m.cfg.Unbuffered, m.cfg.ResponseBufferLimit)

	s.mu.Lock()
	s.use(r.Context(), c)
	failed := s.loadErr != nil
	s.mu.Unlock()

	returned := false
	defer func() {
		if !returned {
			// next panicked: drop its buffered response, release, store
			// nothing, let the panic go on.
			s.w.discard()
			s.abort(r.Context())
		}
	}()
	if !failed {
		h.next.ServeHTTP(s.w, r)
	}
	returned = true
	s.end()
	// Errors are logged and counted where they happen. Buffered: commit,
	// then send the response or the error. Unbuffered: commit after the
	// response.
	_ = s.w.stream()
	_ = s.finish(r.Context(), false)
}

// unset is the mode of a Session no handler has decided yet.
const unset Mode = -1

// use makes c the request's mode, called with s.mu held by every handler
// of the Manager the request passes and by the first FromContext. The
// first decision loads the session in its mode. A later one that differs
// takes over as long as the session has not been handed to the handler
// (FromContext): the session is released and loaded again in the new
// mode. A WithMode decision is not overridden by rules; a rule decision
// never overrides WithMode. Once the handler has the session, only a
// WithMode Exclusive still takes over (fail safe: never lock-free where
// the route asks for the lock), reloading an unchanged session with the
// lock, or failing with ErrModeConflict when it was changed; a request
// for a weaker mode is logged once and the request keeps its mode.
//
// A failure (the load failed, ErrModeConflict, an invalid mode) is kept in
// s.loadErr: the handler does not run (or its session fails), and its
// response is replaced by the ErrorHandler's answer.
func (s *Session) use(ctx context.Context, c choice) {
	if s.loadErr != nil {
		return
	}
	if err := s.decide(ctx, c); err != nil {
		s.loadErr = err
	}
	if s.data == nil {
		s.data = s.m.p.CreateNewStoreData(0)
	}
}

func (s *Session) decide(ctx context.Context, c choice) error {
	m := s.m
	if !c.mode.valid() {
		err := fmt.Errorf("middleware: invalid mode %v for %s", c.mode, c.route)
		m.log.ErrorContext(ctx, "invalid mode", "route", c.route, "err", err)
		return err
	}
	if s.fixed && !c.fixed {
		return nil // WithMode decided; rules do not override it
	}
	eff, route := m.effective(c.mode, c.route)
	if s.mode != unset && eff == s.mode {
		s.fixed = s.fixed || c.fixed
		s.fallback = s.fallback && c.fallback
		if route != "" {
			s.route = route // Auto learns by the best route key known
		}
		return nil
	}
	if s.mode != unset && s.handed {
		switch {
		case eff != Exclusive || !c.fixed:
			m.logOnce(ctx, "mode", "middleware: a mode was asked for after the handler had its session; the request keeps its mode",
				"route", c.route, "asked", eff, "kept", s.mode)
			return nil
		case s.data != nil && s.data.Dirty() || s.abandoned || s.regenerated:
			m.logOnce(ctx, "conflict", "middleware: WithMode(Exclusive) after the session was changed in another mode; not stored",
				"route", c.route, "was", s.mode)
			s.lost = ErrModeConflict
			return ErrModeConflict
		}
		m.logOnce(ctx, "upgrade", "middleware: WithMode(Exclusive) after the handler had its session; reloaded with the lock",
			"route", c.route, "was", s.mode)
	}
	if s.mode != unset {
		s.unload(ctx)
	}
	s.fixed = s.fixed || c.fixed
	s.fallback = c.fallback
	s.mode, s.route = eff, route
	s.prov = m.p
	if eff == LockFree || !m.exclusive {
		s.prov = m.lf
	}
	s.w.setBuffered(!m.cfg.Unbuffered && eff != ReadOnly && eff != Off)
	if eff == Off || s.src.id == "" {
		return nil
	}
	return s.load(ctx, s.src.id)
}

// effective applies ExclusiveAccess and Auto to a configured mode; route
// is the route Auto tracks, or "".
func (m *Manager) effective(mode Mode, route string) (Mode, string) {
	switch {
	case mode == Auto && m.exclusive && !m.auto.lockFree(route):
		return Exclusive, route
	case mode == Auto && m.exclusive:
		return LockFree, route
	case mode == Auto, mode == Exclusive && !m.exclusive:
		return LockFree, ""
	}
	return mode, ""
}

// unload gives up the session loaded in the previous mode before another
// mode takes over: the lock is released (nothing was changed), and the
// session is as if nothing had been loaded.
func (s *Session) unload(ctx context.Context) {
	lease := s.lease
	s.lease = nil
	s.stopLease(lease)
	if s.lockID != 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
		if err := s.prov.ReleaseItemExclusive(rctx, s.storedID, s.lockID); err != nil {
			s.m.opError(rctx, "releasing the session for another mode", err, s.storedID)
		}
		cancel()
		s.heldFor()
	}
	s.id, s.storedID, s.data, s.lockID = "", "", nil, 0
}

// end counts the request under its final mode, and notes a mode decided
// without a route pattern while rules need one (logged once).
func (s *Session) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode != unset {
		s.m.metrics.Request(s.mode)
	}
	if s.fallback {
		s.m.logOnce(s.ctx, "nopattern", "middleware: rules match route patterns, but no pattern is known for this request; served Exclusive (set Config.RoutePattern for this router, or wrap the route with WithMode)",
			"path", s.req.URL.Path)
	}
}

// logOnce logs msg at ERROR level the first time key is seen by m.
func (m *Manager) logOnce(ctx context.Context, key, msg string, args ...any) {
	if _, seen := m.logged.LoadOrStore(key, true); !seen {
		m.log.ErrorContext(ctx, msg, args...)
	}
}
