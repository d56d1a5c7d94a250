package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
)

// Defaults of Config.
const (
	DefaultRetryAfter          = time.Second
	DefaultCommitTimeout       = 10 * time.Second
	DefaultResponseBufferLimit = 1 << 20 // 1 MiB
)

// Config configures a Manager. Only Provider is required; every other zero
// field means its documented default.
type Config struct {
	// Provider loads, locks and stores the sessions. Required.
	Provider *provider.Provider
	// DefaultMode is the mode of routes that neither WithMode nor a rule
	// sets. Default Exclusive.
	DefaultMode Mode
	// ExclusiveAccess is ASP.NET's exclusiveAccess switch. Nil or true:
	// Exclusive routes lock. False: every Exclusive (and Auto) route is
	// served LockFree, without locks, merging each request's changed keys
	// (the provider's lock-free mode).
	ExclusiveAccess *bool
	// Rules set modes by route pattern or path prefix (see Rule). WithMode
	// overrides them; DefaultMode applies where none matches.
	Rules []Rule
	// ReadOnlyNoWait makes read-only requests read the last committed
	// session at once instead of waiting while an exclusive request holds
	// it (ASP.NET's behaviour, the default).
	ReadOnlyNoWait bool
	// Auto tunes the Auto mode.
	Auto AutoConfig
	// Cookie sets the session cookie up.
	Cookie CookieConfig
	// Cookieless carries the session id in the URL path instead of a
	// cookie, as ASP.NET's cookieless="true": /(S(<id>))/path. Off by
	// default: ids in URLs leak (see the package documentation).
	Cookieless bool
	// ErrorHandler answers a request whose session could not be loaded,
	// and one whose changes could not be stored while its response was
	// still buffered (err wraps ErrNotStored; the handler's response was
	// dropped). Default: 503 Service Unavailable with a Retry-After header
	// when the wait for the lock timed out or the session's queue was full
	// (Overloaded) or the store was unavailable while loading
	// (provider.ErrUnavailable; nothing was written); 500 without
	// Retry-After when a commit's outcome is unknown
	// (provider.ErrOutcomeUnknown); 409 Conflict when a commit was fenced
	// because the lock had been taken over (provider.ErrLockLost); 500
	// otherwise.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// RetryAfter is the Retry-After the default ErrorHandler sends with a
	// 503, rounded up to whole seconds. Default 1 s.
	RetryAfter time.Duration
	// CommitTimeout bounds the commit or release after the handler; it
	// runs even when the client has gone away. Default 10 s.
	CommitTimeout time.Duration
	// Unbuffered turns response buffering off: the handler's response
	// goes to the client as it is written, and the session is committed
	// after the handler returns, when the client may already have its
	// answer (the behaviour before buffering). The risk: a commit that
	// then fails (a store node dies, the lock was taken over) cannot
	// change the answer, so a client can get a 2xx for a change that was
	// never stored; the failure is only logged and counted. Handlers can
	// avoid that by calling Session.Commit before they answer. Without
	// buffering a new session's first write must also come before the
	// response body (else ErrHeadersSent).
	Unbuffered bool
	// ResponseBufferLimit is how many bytes of response body a request
	// holds back while its session is not committed yet. A body that
	// grows beyond it commits the session early and then streams, as
	// Flush does. It bounds the memory of each request in flight.
	// Default 1 MiB; negative is an error.
	ResponseBufferLimit int
	// RoutePattern returns the pattern of the route r matched, or "" when
	// none is known (yet): the one hook through which Rules see the routes
	// of any router. It is called with the request as a handler of the
	// Manager, or the first FromContext, sees it. Default: r.Pattern, as
	// the Go 1.22 ServeMux sets it. For other routers:
	//
	//	gorilla/mux: if rt := mux.CurrentRoute(r); rt != nil { t, _ := rt.GetPathTemplate(); return t }
	//	chi:         if rc := chi.RouteContext(r.Context()); rc != nil { return rc.RoutePattern() }
	//	Echo, gin:   a router middleware sets r.Pattern = c.Path() (gin: c.FullPath())
	//
	// (then return r.Pattern as the fallback). See "How a request's mode is
	// decided" in the package documentation.
	RoutePattern func(r *http.Request) string
	// Logger receives errors (warnings for fenced commits). Default
	// slog.Default(). Session ids are shortened in everything logged.
	Logger *slog.Logger
	// Observer, when set, is told what the middleware does: request modes,
	// lock waits and holds, store errors, refused ids (nil: off). Store
	// events reach it through its StoreEvent method plugged into the
	// stores' Config.OnEvent. The Prometheus collector
	// (module github.com/sessionlock/sessionlock/middleware/prometheus) is
	// one; LogEvents another; Observers combines several.
	Observer Observer
}

// Manager is the session middleware: ASP.NET's session-state module for
// net/http. Create one with New and wrap handlers with Handler, WithMode or
// Middleware. It is safe for concurrent use.
type Manager struct {
	cfg           Config
	p, lf         *provider.Provider // locking and lock-free views of cfg.Provider
	exclusive     bool
	rules         rules
	cookieCfg     CookieConfig
	auto          *autoTracker
	log           *slog.Logger
	metrics       multiObserver
	commitTimeout time.Duration
	retryAfter    string
	patternRules  bool     // some rule can only match a route pattern
	logged        sync.Map // keys of the errors logged once
}

// New returns a Manager configured by cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.Provider == nil {
		return nil, errors.New("middleware: Config.Provider is required")
	}
	if !cfg.DefaultMode.valid() {
		return nil, fmt.Errorf("middleware: invalid DefaultMode %v", cfg.DefaultMode)
	}
	rs := rules(append([]Rule(nil), cfg.Rules...))
	if err := rs.check(); err != nil {
		return nil, err
	}
	cookie, err := cfg.Cookie.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	switch {
	case cfg.ResponseBufferLimit < 0:
		return nil, fmt.Errorf("middleware: negative ResponseBufferLimit %d", cfg.ResponseBufferLimit)
	case cfg.ResponseBufferLimit == 0:
		cfg.ResponseBufferLimit = DefaultResponseBufferLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:           cfg,
		p:             cfg.Provider,
		lf:            cfg.Provider.LockFree(),
		exclusive:     cfg.ExclusiveAccess == nil || *cfg.ExclusiveAccess,
		rules:         rs,
		cookieCfg:     cookie,
		auto:          newAutoTracker(cfg.Auto),
		log:           cfg.Logger,
		metrics:       Observers(cfg.Observer).(multiObserver),
		commitTimeout: cfg.CommitTimeout,
		patternRules:  rs.hasPatternRules(),
		retryAfter:    strconv.FormatInt(int64((cfg.RetryAfter+time.Second-1)/time.Second), 10),
	}
	if cfg.Provider.Config().LockFree {
		m.exclusive = false // the provider cannot lock
	}
	m.metrics.WatchProvider(cfg.Provider)
	return m, nil
}

// Handler returns next wrapped by the middleware, with the mode each
// request gets from WithMode on the matched route (when next is an
// *http.ServeMux), else from the rules, else DefaultMode. Wrap a whole
// router with it, or single routes.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return &handler{m: m, next: next}
}

// WithMode returns next wrapped by the middleware in the given mode,
// whatever the rules say. An invalid mode fails every request through the
// ErrorHandler.
func (m *Manager) WithMode(mode Mode, next http.Handler) http.Handler {
	return &handler{m: m, next: next, mode: mode, fixed: true}
}

// Middleware returns WithMode(mode, ·) as a router middleware, for
// example chi's r.With(mgr.Middleware(middleware.ReadOnly)).
func (m *Manager) Middleware(mode Mode) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return m.WithMode(mode, next) }
}

// Overloaded reports whether err is a refusal to wait any longer for a
// session's lock (lock.ErrWaitTimeout or lock.ErrQueueFull): the request
// may be retried later.
func Overloaded(err error) bool {
	return errors.Is(err, lock.ErrWaitTimeout) || errors.Is(err, lock.ErrQueueFull)
}

// load reads (and in Exclusive mode locks) the stored session id. An id
// the store does not know leaves the session new: ids are never adopted.
func (s *Session) load(ctx context.Context, id string) error {
	m := s.m
	start := time.Now()
	var item *provider.Item
	var err error
	switch {
	case s.mode == ReadOnly && (m.cfg.ReadOnlyNoWait || !m.exclusive):
		item, err = m.lf.GetItem(ctx, id)
	case s.mode == ReadOnly:
		item, err = m.p.ReadItem(ctx, id)
	default:
		item, err = s.prov.AcquireItem(ctx, id)
	}
	if errors.Is(err, provider.ErrNotFound) {
		m.metrics.InvalidID(ReasonUnknown)
		return nil
	}
	if err != nil {
		switch ctxErr := ctx.Err(); {
		case errors.Is(ctxErr, context.Canceled):
			return err // the client left while waiting; nothing to answer
		case ctxErr != nil:
			// The request's own deadline ended the wait.
			err = fmt.Errorf("%w: %w", lock.ErrWaitTimeout, err)
		}
		m.metrics.StoreError(err)
		if Overloaded(err) {
			m.log.DebugContext(ctx, "session busy", "session", idPrefix(id), "err", redact(err, id))
		} else {
			m.log.ErrorContext(ctx, "loading session", "session", idPrefix(id), "err", redact(err, id))
		}
		return err
	}
	s.acquired = time.Now()
	if s.prov == m.p && !(s.mode == ReadOnly && m.cfg.ReadOnlyNoWait) {
		m.metrics.LockWait(s.acquired.Sub(start))
	}
	s.id, s.storedID, s.data, s.lockID, s.deadline = id, id, item.Data, item.LockID, item.Deadline
	s.resendPersistentCookie() // remember-me: the cookie's life slides with the session's
	if s.lockID != 0 {
		s.lease = s.prov.KeepLease(s.ctx, s.storedID, s.lockID)
	}
	return nil
}

// answerFailed answers a request whose session could not be loaded, or
// whose changes could not be stored while its response was held back (err
// wraps ErrNotStored). The failure itself was logged and counted when it
// happened.
func (m *Manager) answerFailed(w http.ResponseWriter, r *http.Request, err error) {
	m.log.DebugContext(r.Context(), "response replaced by the error answer", "path", r.URL.Path)
	m.answer(w, r, err)
}

// answer writes err's answer through the ErrorHandler, or the default:
// 503 with Retry-After when the session was busy, or the store could not
// be reached while loading (nothing was written); 500 without Retry-After
// when a commit's outcome is unknown (provider.ErrOutcomeUnknown: the
// change may have been applied, a blind retry may apply it twice), or a
// load's (its lock acquisition may have landed: the session may stay
// locked, by no request, for up to a lease; rv-d4 m4); 409
// Conflict when a write was fenced (the lock had been taken over: the
// request lost the session to another one and its change was not
// applied; the client may reload and retry); 413 when the session's values
// grew over the size limit (nothing stored, the lock released); 500 for
// anything else.
func (m *Manager) answer(w http.ResponseWriter, r *http.Request, err error) {
	if m.cfg.ErrorHandler != nil {
		m.cfg.ErrorHandler(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case Overloaded(err):
		w.Header().Set("Retry-After", m.retryAfter)
		http.Error(w, "session busy, retry later", http.StatusServiceUnavailable)
	case errors.Is(err, provider.ErrTooLarge):
		http.Error(w, "session too large; changes not stored", http.StatusRequestEntityTooLarge)
	case errors.Is(err, provider.ErrOutcomeUnknown) && !errors.Is(err, ErrNotStored):
		// Loading: the lock's acquisition may have landed, a lock no
		// request holds, which others wait out (up to a lease).
		http.Error(w, "session not loaded: the store's outcome is unknown (the session may stay locked for up to a lease)", http.StatusInternalServerError)
	case errors.Is(err, provider.ErrOutcomeUnknown):
		http.Error(w, "session changes may not have been stored", http.StatusInternalServerError)
	case errors.Is(err, provider.ErrUnavailable) && !errors.Is(err, ErrNotStored):
		w.Header().Set("Retry-After", m.retryAfter)
		http.Error(w, "session store unavailable, retry later", http.StatusServiceUnavailable)
	case errors.Is(err, provider.ErrLockLost):
		http.Error(w, "session changed by another request; changes not stored", http.StatusConflict)
	case errors.Is(err, ErrNotStored):
		http.Error(w, "session changes not stored", http.StatusInternalServerError)
	default:
		http.Error(w, "session unavailable", http.StatusInternalServerError)
	}
}

// opError logs and counts the failure of a store operation at the end of a
// request; a fenced write is a warning. ids are the session's ids (the
// stored one and a new one, either may be ""): shortened wherever they
// appear, the error strings of the stores included.
func (m *Manager) opError(ctx context.Context, what string, err error, ids ...string) {
	m.metrics.StoreError(err)
	id := ""
	for _, i := range ids {
		if i != "" {
			id = i
			break
		}
	}
	if errors.Is(err, provider.ErrLockLost) {
		m.log.WarnContext(ctx, what+": lock was taken over; changes discarded", "session", idPrefix(id), "err", redact(err, ids...))
		return
	}
	m.log.ErrorContext(ctx, what, "session", idPrefix(id), "err", redact(err, ids...))
}

// redact returns err's message with the session ids shortened.
func redact(err error, ids ...string) string {
	msg := err.Error()
	for _, id := range ids {
		if id != "" {
			msg = strings.ReplaceAll(msg, id, idPrefix(id))
		}
	}
	return msg
}

// idPrefix returns the start of id, enough to correlate log lines without
// putting a usable session id in the logs.
func idPrefix(id string) string {
	if len(id) > 6 {
		return id[:6] + "…"
	}
	return id
}
