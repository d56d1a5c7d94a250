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
	deadline    time.Time // the loaded session's lifetime end (provider.Item.Deadline)
	lease       *provider.Lease
	acquired    time.Time
	abandoned   bool // the stored session (storedID) is removed at the end
	restarted   bool // a change after Abandon started a new session in data
	regenerated bool
	done        bool
	ending      sync.WaitGroup    // counts the finish (or abort) under way
	pops        map[string][]byte // ReadOnly: keys popped, with the bytes read
	lost        error             // why the request's changes were not stored, or nil
	told        bool              // lost was returned to the handler by Commit
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
// id (and its cookie) now; so does a Set after Abandon (see Abandon).
// Errors: ErrReadOnly, ErrCommitted, ErrHeadersSent,
// session.ErrInvalidKey, codec errors; on error nothing changed.
func (s *Session) Set(key string, value any) error {
	return s.change(func() error {
		if s.id == "" {
			// Check key and value before a new session is created for them.
			if err := session.NewValues(s.data.Values.Codec()).Set(key, value); err != nil {
				return err
			}
			s.startOver()
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
		s.startOver()
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
		s.startOver()
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
		s.startOver()
		if d == s.data.Timeout() {
			return nil
		}
		if s.id == "" {
			if err := s.assignID(); err != nil {
				return err
			}
		}
		if err := s.data.SetTimeout(d); err != nil {
			return err
		}
		s.resendPersistentCookie() // its Max-Age follows the timeout
		return nil
	})
}

// Abandon removes the session (ASP.NET's Session.Abandon) when the request
// ends, and tells the browser to drop its cookie if the headers have not
// gone out. Its values stay readable until the next change; the next
// request starts a new session.
//
// A change after Abandon in the same request (Set, SetTimeout, Delete,
// Clear, Pop) starts that new session at once: it begins empty, with the
// default timeout, and like any new session gets an id and a cookie on its
// first Set. So "sign out and say so" is two calls:
//
//	s.Abandon()
//	s.Set("flash", "You have been signed out.")
//
// When the request ends the old session is removed and the new one
// stored. Abandon again drops the new session too.
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
	case s.abandoned && s.id == "":
		return nil
	}
	s.abandoned, s.restarted = true, false
	if !s.m.cfg.Cookieless && (s.cookieIn || s.id != "") && !s.w.headersSent() {
		setCookie(s.w.Header(), s.m.cookie(s.secureReq, "", -1))
	}
	s.id = ""
	return nil
}

// startOver replaces an abandoned session's data, once, by a new empty
// session's: the first change after Abandon starts the new session.
func (s *Session) startOver() {
	if s.abandoned && !s.restarted {
		s.data = s.m.p.CreateNewStoreData(0)
		s.restarted = true
	}
}

// RegenerateID gives the session a new id and, when the request ends,
// stores it under the new id and removes the record under the old one
// (session fixation protection: call it when the user signs in). The new
// cookie is sent now. On a new session with no id yet it does nothing.
// Errors: ErrReadOnly, ErrCommitted, ErrHeadersSent.
func (s *Session) RegenerateID() error {
	return s.change(func() error {
		if s.id == "" {
			return nil
		}
		if err := s.assignID(); err != nil {
			return err
		}
		s.regenerated = s.storedID != "" && !s.abandoned
		return nil
	})
}

// Commit stores the session now and releases its lock, instead of when
// the handler returns: long-polling and streaming handlers call it before
// they start waiting, so other requests of the session are not held up.
// Afterwards the session stays readable and changes fail with
// ErrCommitted. Calling it again returns nil, once the first call is done.
//
// ctx bounds the store operations, together with Config.CommitTimeout; its
// values reach the store. A ctx that is cancelled while the commit runs
// (r.Context() when the client disconnects) may leave the changes not
// stored or their outcome unknown: pass context.WithoutCancel(r.Context())
// to commit whatever the client does, as the middleware itself does when
// the handler returns.
//
// The session is not locked while the store works: other goroutines of
// the handler can read it meanwhile.
//
// When the response is buffered (the default), it stays buffered after
// Commit. If Commit fails to store the changes, the handler may answer
// the error itself with a status of 400 or above; a success status is
// replaced by the ErrorHandler's answer (see ErrNotStored).
func (s *Session) Commit(ctx context.Context) error {
	if s == nil {
		return ErrNoSession
	}
	if ctx == nil {
		ctx = context.WithoutCancel(s.ctx)
	}
	return s.finish(ctx, true)
}

// Pop decodes the value stored under key into dst, a non-nil pointer, and
// deletes key: a flash message, shown once. It reports whether key was
// present; session.Pop[T](s, key) is its typed form.
//
// On Exclusive and LockFree routes the deletion is a change like Delete,
// stored when the request ends (on a LockFree route it is a lock-free
// write: the last writer of the key wins).
//
// On a ReadOnly route, where every other change is refused, Pop deletes
// too: the key is gone for the rest of the request, and when the request
// ends it is deleted from the stored session without the lock, and only if
// it still holds the value this request read (provider.DeleteValuesIf), so
// a message set meanwhile by another request is never lost. Two read-only
// requests that pop the same message at the same moment may both show it;
// a failed deletion is logged and the message shows again on a later
// request. Nothing else of the session is written.
//
// Errors: ErrCommitted, session.ErrInvalidKey, the codec's error (then key
// is not deleted).
func (s *Session) Pop(key string, dst any) (bool, error) {
	if s == nil {
		return false, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false, ErrCommitted
	}
	if s.mode != ReadOnly {
		s.startOver()
		return s.data.Values.Pop(key, dst)
	}
	b, _ := s.data.Values.Encoded(key)
	ok, err := s.data.Values.Pop(key, dst)
	if ok && err == nil && s.storedID != "" {
		if s.pops == nil {
			s.pops = make(map[string][]byte)
		}
		s.pops[key] = b
	}
	return ok, err
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
		setCookie(s.w.Header(), s.m.cookie(s.secureReq, id, s.cookieMaxAge()))
	}
	return nil
}

// finish ends the session's part in the request, once: it stops the lease
// and then removes, stores or only releases the session, whichever the
// handler asked for. Unless told (the handler's Commit, which passes its
// own context), it uses a context that the client's disconnect does not
// cancel; either way bounded by Config.CommitTimeout. A failure to store
// or remove is kept for notStored; told says the caller is the handler,
// which gets the error.
//
// s.mu is not held while the lease stops and the store works: once done
// is set nothing changes the session's state but finish itself, and the
// store only reads data, so readers go on meanwhile. A second caller waits
// for the first to end, so that notStored sees its outcome.
func (s *Session) finish(ctx context.Context, told bool) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		s.ending.Wait()
		return nil
	}
	s.done = true
	s.ending.Add(1)
	defer s.ending.Done()
	if s.loadErr != nil {
		// Nothing is stored; a lock taken is released.
		defer s.mu.Unlock()
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
		defer ucancel()
		s.unload(uctx)
		return s.loadErr
	}
	lease := s.lease
	s.lease = nil
	end := endPlan{
		abandoned: s.abandoned, regenerated: s.regenerated,
		id: s.id, storedID: s.storedID, lockID: s.lockID,
		data: s.data, dirty: s.data.Dirty(), pops: s.pops,
	}
	s.mu.Unlock()

	if !told {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, s.m.commitTimeout)
	defer cancel()
	s.stopLease(lease)
	changed, err := s.store(ctx, end)
	if err != nil && end.lockID != 0 && (told && ctx.Err() != nil || errors.Is(err, provider.ErrOutcomeUnknown) || errors.Is(err, provider.ErrUnavailable)) {
		// The handler's context ended the commit, or the store could not
		// say whether it landed (the provider resolves what one read can
		// tell; this is what it could not): do not leave the session
		// locked for a lease. If the write landed after all, the lock is
		// no longer ours and this changes nothing; if this release
		// succeeds, the write did not land, but the answer stays what
		// err says (an unknown outcome is still answered as one).
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
		rerr := s.prov.ReleaseItemExclusive(rctx, end.storedID, end.lockID)
		rcancel()
		if rerr != nil {
			s.m.log.DebugContext(ctx, "releasing the lock after a failed commit", "session", idPrefix(end.storedID), "err", redact(rerr, end.storedID))
		} else {
			s.m.log.DebugContext(ctx, "released the lock after a failed commit", "session", idPrefix(end.storedID))
		}
	}
	s.heldFor()
	if s.route != "" {
		s.m.auto.record(s.route, changed)
	}
	if err != nil {
		s.m.opError(ctx, "ending the request's session", err, end.storedID, end.id)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.data.MarkClean()
	}
	if err != nil && changed {
		// A release that failed lost nothing: the handler only read.
		s.lost, s.told = err, told
	}
	return err
}

// endPlan is what finish must do, taken from the session under s.mu.
type endPlan struct {
	abandoned, regenerated bool
	id, storedID           string
	lockID                 uint64
	data                   *session.Data
	dirty                  bool
	pops                   map[string][]byte
}

// store makes the store operations that end the request: remove, store,
// release, or (read-only) delete popped values. changed reports whether
// the request changed the session, so that a failure lost something.
func (s *Session) store(ctx context.Context, e endPlan) (changed bool, err error) {
	switch {
	case s.mode == ReadOnly:
		if len(e.pops) > 0 {
			if _, err := s.m.lf.DeleteValuesIf(ctx, e.storedID, e.pops); err != nil && !errors.Is(err, provider.ErrNotFound) {
				// Logged and counted; the message shows again later.
				s.m.opError(ctx, "deleting popped values of a read-only request", err, e.storedID)
			}
		}
		return false, nil
	case e.abandoned:
		if e.storedID != "" {
			err = s.prov.RemoveItem(ctx, e.storedID, e.lockID)
		}
		if e.id != "" {
			// A change after Abandon started a new session.
			if ierr := s.prov.SetAndReleaseItemExclusive(ctx, e.id, e.data, 0, true); err == nil {
				err = ierr
			}
		}
		return true, err
	case e.storedID == "":
		if e.id == "" {
			return false, nil
		}
		return true, s.prov.SetAndReleaseItemExclusive(ctx, e.id, e.data, 0, true)
	case e.regenerated:
		err = s.prov.SetAndReleaseItemExclusive(ctx, e.id, e.data, 0, true)
		if err != nil {
			// The changes are lost; the old record keeps the old values.
			if rerr := s.prov.ReleaseItemExclusive(ctx, e.storedID, e.lockID); rerr != nil {
				s.m.opError(ctx, "releasing the session after its new id failed", rerr, e.storedID, e.id)
			}
			return true, err
		}
		return true, s.prov.RemoveItem(ctx, e.storedID, e.lockID)
	case e.dirty:
		return true, s.prov.SetAndReleaseItemExclusive(ctx, e.storedID, e.data, e.lockID, false)
	default:
		return false, s.prov.ReleaseItemExclusive(ctx, e.storedID, e.lockID)
	}
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
// return (it panicked): the lock is released and nothing is stored. As in
// finish, s.mu is not held while the store works.
func (s *Session) abort(ctx context.Context) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	s.ending.Add(1)
	defer s.ending.Done()
	lease := s.lease
	s.lease = nil
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.commitTimeout)
	defer cancel()
	s.stopLease(lease)
	if s.lockID != 0 {
		if err := s.prov.ReleaseItemExclusive(ctx, s.storedID, s.lockID); err != nil {
			s.m.opError(ctx, "releasing the session of a handler that did not return", err, s.storedID)
		}
	}
	s.heldFor()
}

// stopLease stops the renewal of the lock's lease, if there is one.
func (s *Session) stopLease(lease *provider.Lease) {
	if lease != nil {
		lease.Stop()
		s.m.metrics.LeaseRenewals(lease.Renewals())
	}
}

// heldFor records how long the lock was held. lockID and acquired are set
// before the handler runs and never change afterwards.
func (s *Session) heldFor() {
	if s.lockID != 0 {
		s.m.metrics.LockHold(time.Since(s.acquired))
	}
}
