package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// Errors returned by Session methods. Match them with errors.Is.
var (
	// ErrReadOnly: the request's session is read-only (a ReadOnly route);
	// nothing was changed and nothing will be stored.
	ErrReadOnly = errors.New("middleware: session is read-only on this route")
	// ErrNoSession: there is no session (a nil *Session: an Off route, or
	// no middleware).
	ErrNoSession = errors.New("middleware: no session on this request")
	// ErrCommitted: the session was already committed (Commit, the
	// response began to stream, or the request ended); it can still be
	// read but no longer changed.
	ErrCommitted = errors.New("middleware: session already committed")
	// ErrAbandoned: the session was abandoned in this request.
	ErrAbandoned = errors.New("middleware: session abandoned")
	// ErrHeadersSent: a new session id had to be sent in a cookie, but the
	// response headers had already gone out. It happens only when the
	// response is not buffered (Config.Unbuffered): touch the session
	// before writing the response body there. Nothing was changed.
	ErrHeadersSent = errors.New("middleware: response headers already sent; cannot send the new session cookie")
	// ErrNotStored wraps the error of a commit (or removal) that failed
	// while the handler's response was still held back: the response was
	// dropped and the ErrorHandler answered this error instead, so that
	// the client is never told of changes that were not stored. The
	// writer's Write, Flush and Hijack return it afterwards.
	ErrNotStored = errors.New("middleware: session changes not stored; response dropped")
)

// ctxKey is the context key of the request's *Session.
type ctxKey struct{}

// FromContext returns the session of the request whose context is ctx, or
// nil on an Off route or without the middleware. The methods of a nil
// *Session return ErrNoSession or zero values and never panic.
//
// The first call of a request, unless WithMode decided its mode, matches
// the rules once more with the route pattern Config.RoutePattern finds
// now that the router has routed; a mode that differs from the one the
// session was loaded in takes over before the session is returned (see
// "How a request's mode is decided" in the package documentation). If
// loading the session failed, its methods return the error and the
// request is answered by the ErrorHandler when the handler returns.
func FromContext(ctx context.Context) *Session {
	s := sessionOf(ctx)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if !s.handed {
		if !s.fixed && !s.done && s.mode != unset {
			r := s.req
			if r.Context() != ctx {
				r = r.WithContext(ctx)
			}
			if pattern := s.m.pattern(r); pattern != "" {
				s.use(ctx, s.m.byRules(pattern, true, r))
			}
		}
		s.handed = true
	}
	off := s.mode == Off || s.mode == unset
	s.mu.Unlock()
	if off {
		return nil
	}
	return s
}

// sessionOf returns the *Session in ctx, whatever its mode, or nil.
func sessionOf(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// Session is the session of one request. Its methods are safe for
// concurrent use by the handler's goroutines; after the request ends (or
// Commit) it can still be read, and changes fail with ErrCommitted.
type Session struct {
	ctx      context.Context // the request's context
	m        *Manager
	w        *responseWriter
	src      idSource // where the request's id came from
	cookieIn bool     // the request carried a session cookie

	mu          sync.Mutex
	mode        Mode               // effective: Exclusive, ReadOnly, LockFree or Off; unset before the first decision
	prov        *provider.Provider // the provider of mode (locking or lock-free)
	route       string             // the route Auto tracks, "" when not Auto
	req         *http.Request      // the request as the innermost handler of the Manager saw it
	fixed       bool               // WithMode decided the mode
	fallback    bool               // Exclusive because the route pattern was not known
	handed      bool               // FromContext has returned the session
	loadErr     error              // why the session could not be loaded (or its mode taken)
	secureReq   bool               // the request came over TLS (or a trusted proxy says so)
	id          string             // current id; "" for a new session not written yet
	storedID    string             // the id the session was loaded under; "" if new
	data        *session.Data
	lockID      uint64
	lease       *provider.Lease
	acquired    time.Time
	abandoned   bool
	regenerated bool
	done        bool
	lost        error // why the request's changes were not stored, or nil
	told        bool  // lost was returned to the handler by Commit
}

// ID returns the session id, or "" for a new session that nothing has been
// written to yet (lazy sessions: it gets an id, and a cookie, on its first
// write).
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// IsNew reports whether the session did not exist in the store when the
// request began (no id, or an id the store did not know).
func (s *Session) IsNew() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storedID == ""
}

// ReadOnly reports whether the session is read-only (a ReadOnly route).
func (s *Session) ReadOnly() bool { return s.Mode() == ReadOnly }

// Mode returns the mode the request is served in: Exclusive, ReadOnly or
// LockFree (an Auto route reports the mode Auto chose).
func (s *Session) Mode() Mode {
	if s == nil {
		return Off
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// Get decodes the value stored under key into dst, a non-nil pointer, and
// reports whether key was present.
func (s *Session) Get(key string, dst any) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		return false, s.loadErr
	}
	return s.data.Values.Get(key, dst)
}

// GetAs returns the value stored under key decoded as a T, and whether key
// was present. An absent key returns T's zero value, false and nil.
func GetAs[T any](s *Session, key string) (T, bool, error) {
	if s == nil {
		var zero T
		return zero, false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		var zero T
		return zero, false, s.loadErr
	}
	return session.Get[T](s.data.Values, key)
}

// Has reports whether key has a value.
func (s *Session) Has(key string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.Values.Has(key)
}

// Keys returns the keys that have values, sorted.
func (s *Session) Keys() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.Values.Keys()
}

// Len returns the number of values.
func (s *Session) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.Values.Len()
}

// Set stores value under key, encoded at once with the provider's codec;
// the session is committed when the request ends. A new session gets its
// id (and its cookie) now. Errors: ErrReadOnly, ErrAbandoned,
// ErrCommitted, ErrHeadersSent, session.ErrInvalidKey, codec errors; on
// error nothing changed.
func (s *Session) Set(key string, value any) error {
	return s.change(func() error {
		if s.id == "" {
			// Check key and value before a new session is created for them.
			if err := session.NewValues(s.data.Values.Codec()).Set(key, value); err != nil {
				return err
			}
			if err := s.assignID(); err != nil {
				return err
			}
		}
		return s.data.Values.Set(key, value)
	})
}

// Delete removes key's value. Deleting from a new session that has no
// id yet creates nothing.
func (s *Session) Delete(key string) error {
	return s.change(func() error {
		if s.id == "" {
			return nil // nothing stored, nothing to delete
		}
		s.data.Values.Delete(key)
		return nil
	})
}

// Clear removes every value (ASP.NET's Session.Clear; the session itself
// lives on).
func (s *Session) Clear() error {
	return s.change(func() error {
		if s.id == "" {
			return nil
		}
		s.data.Values.Clear()
		return nil
	})
}

// Timeout returns the session's own timeout: how long it lives after its
// last request.
func (s *Session) Timeout() time.Duration {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.Timeout()
}

// SetTimeout changes the session's timeout (ASP.NET's Session.Timeout),
// stored when the request ends and kept by later requests. It must lie in
// [session.MinTimeout, session.MaxTimeout] (else an error wrapping
// session.ErrInvalidTimeout). Setting the current timeout changes nothing.
func (s *Session) SetTimeout(d time.Duration) error {
	return s.change(func() error {
		if err := session.CheckTimeout(d); err != nil {
			return err
		}
		if d == s.data.Timeout() {
			return nil
		}
		if s.id == "" {
			if err := s.assignID(); err != nil {
				return err
			}
		}
		return s.data.SetTimeout(d)
	})
}

// Abandon removes the session (ASP.NET's Session.Abandon) when the request
// ends, and tells the browser to drop its cookie if the headers have not
// gone out. Its values stay readable until then; changes fail with
// ErrAbandoned. The next request starts a new session.
func (s *Session) Abandon() error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.loadErr != nil:
		return s.loadErr
	case s.mode == ReadOnly:
		return ErrReadOnly
	case s.done:
		return ErrCommitted
	case s.abandoned:
		return nil
	}
	s.abandoned = true
	if !s.m.cfg.Cookieless && (s.cookieIn || s.id != "") && !s.w.headersSent() {
		setCookie(s.w.Header(), s.m.cookie(s.secureReq, "", -1))
	}
	s.id = ""
	return nil
}

// RegenerateID gives the session a new id and, when the request ends,
// stores it under the new id and removes the record under the old one
// (session fixation protection: call it when the user signs in). The new
// cookie is sent now. On a new session with no id yet it does nothing.
// Errors: ErrReadOnly, ErrAbandoned, ErrCommitted, ErrHeadersSent.
func (s *Session) RegenerateID() error {
	return s.change(func() error {
		if s.id == "" {
			return nil
		}
		if err := s.assignID(); err != nil {
			return err
		}
		s.regenerated = s.storedID != ""
		return nil
	})
}

// Commit stores the session now and releases its lock, instead of when
// the handler returns: long-polling and streaming handlers call it before
// they start waiting, so other requests of the session are not held up.
// Afterwards the session stays readable and changes fail with
// ErrCommitted. Calling it again returns nil.
//
// When the response is buffered (the default), it stays buffered after
// Commit. If Commit fails to store the changes, the handler may answer
// the error itself with a status of 400 or above; a success status is
// replaced by the ErrorHandler's answer (see ErrNotStored).
func (s *Session) Commit() error {
	if s == nil {
		return ErrNoSession
	}
	return s.finish(s.ctx, true)
}

// URL returns path (an absolute path such as "/cart?x=1") as a link for
// this session: in cookieless mode with the session's id in front, else
// unchanged. For a new session without an id yet, path is unchanged.
func (s *Session) URL(path string) string {
	if s == nil || !s.m.cfg.Cookieless {
		return path
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == "" {
		return path
	}
	return cookielessPath(s.id, path)
}

// change runs fn with the session locked, once the session exists and
// passes the checks every change must pass (writable).
func (s *Session) change(fn func() error) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return fn()
}

// writable returns why the session cannot be changed, or nil.
func (s *Session) writable() error {
	switch {
	case s.loadErr != nil:
		return s.loadErr
	case s.mode == ReadOnly:
		return ErrReadOnly
	case s.done:
		return ErrCommitted
	case s.abandoned:
		return ErrAbandoned
	}
	return nil
}

// assignID gives the session a fresh id and sends it in the cookie.
func (s *Session) assignID() error {
	if !s.m.cfg.Cookieless && s.w.headersSent() {
		return ErrHeadersSent
	}
	id, err := session.NewID()
	if err != nil {
		return err
	}
	s.id = id
	if !s.m.cfg.Cookieless {
		setCookie(s.w.Header(), s.m.cookie(s.secureReq, id, 0))
	}
	return nil
}

// finish ends the session's part in the request, once: it stops the lease
// and then removes, stores or only releases the session, whichever the
// handler asked for. It uses a context that the client's disconnect does
// not cancel, bounded by Config.CommitTimeout. A failure to store or
// remove is kept for notStored; told says the caller is the handler
// (Commit), which gets the error.
func (s *Session) finish(ctx context.Context, told bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
	defer cancel()
	if s.loadErr != nil {
		s.unload(ctx) // nothing is stored; a lock taken is released
		return s.loadErr
	}
	s.stopLease()

	changed := true
	var err error
	switch {
	case s.abandoned:
		if s.storedID != "" {
			err = s.prov.RemoveItem(ctx, s.storedID, s.lockID)
		}
	case s.storedID == "":
		if s.id != "" {
			err = s.prov.SetAndReleaseItemExclusive(ctx, s.id, s.data, 0, true)
		} else {
			changed = false
		}
	case s.regenerated:
		err = s.prov.SetAndReleaseItemExclusive(ctx, s.id, s.data, 0, true)
		if err != nil {
			// The changes are lost; the old record keeps the old values.
			if rerr := s.prov.ReleaseItemExclusive(ctx, s.storedID, s.lockID); rerr != nil {
				s.m.opError(ctx, "releasing the session after its new id failed", rerr, s.storedID, s.id)
			}
			break
		}
		err = s.prov.RemoveItem(ctx, s.storedID, s.lockID)
	case s.data.Dirty():
		err = s.prov.SetAndReleaseItemExclusive(ctx, s.storedID, s.data, s.lockID, false)
	default:
		changed = false
		err = s.prov.ReleaseItemExclusive(ctx, s.storedID, s.lockID)
	}
	if err == nil {
		s.data.MarkClean()
	}
	s.heldFor()
	if s.route != "" {
		s.m.auto.record(s.route, changed)
	}
	if err != nil {
		s.m.opError(ctx, "ending the request's session", err, s.storedID, s.id)
		if changed {
			// A release that failed lost nothing: the handler only read.
			s.lost, s.told = err, told
		}
	}
	return err
}

// notStored returns why the request's response must not be sent: its
// changes could not be stored, and the handler either was not told (the
// commit ran after it, or because its response began to stream) or it
// answered with a success status (below 400) anyway. Nil when the
// response may go out.
func (s *Session) notStored(status int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		return s.loadErr
	}
	if s.lost == nil || (s.told && status >= 400) {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotStored, s.lost)
}

// loadError returns why the request's session could not be loaded, or nil.
func (s *Session) loadError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadErr
}

// abort ends the session's part in a request whose handler did not
// return (it panicked): the lock is released and nothing is stored.
func (s *Session) abort(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
	defer cancel()
	s.stopLease()
	if s.lockID != 0 {
		if err := s.prov.ReleaseItemExclusive(ctx, s.storedID, s.lockID); err != nil {
			s.m.opError(ctx, "releasing the session of a handler that did not return", err, s.storedID)
		}
	}
	s.heldFor()
}

func (s *Session) stopLease() {
	if s.lease != nil {
		s.lease.Stop()
		s.m.metrics.LeaseRenewals(s.lease.Renewals())
		s.lease = nil
	}
}

func (s *Session) heldFor() {
	if s.lockID != 0 {
		s.m.metrics.LockHold(time.Since(s.acquired))
	}
}
