package middleware

import "time"

// RememberKey is the session value in which RememberMe records a
// session's choice (a bool). Clear removes it with every other value; the
// session's cookie then follows CookieConfig.Persistent again.
const RememberKey = "sessionlock.remember"

// RememberMe makes the session's cookie persistent (on) or a browser-session
// cookie (off), whatever CookieConfig.Persistent says: call it at sign-in
// with the user's "remember me" choice. The choice is stored in the session
// (under RememberKey), like Set, so it is a change: it gives a new session
// its id, and fails like Set (ErrReadOnly, ErrCommitted, ErrHeadersSent).
//
// A persistent cookie's Max-Age is the session's timeout (Timeout; it
// follows SetTimeout), or what remains of its absolute lifetime
// (provider.Config.Lifetime) when that is less. Because every request that
// loads the session slides its expiry in the store by that much, the
// middleware sends the cookie again on each such response (Exclusive,
// LockFree and ReadOnly routes; not on Off routes, which do not touch the
// store), so the browser forgets the cookie when the store forgets the
// session, and not before. Without a Lifetime a session kept alive by
// requests lives, with its cookie, as long as requests keep coming within
// its timeout; with one, never past its lifetime.
func (s *Session) RememberMe(on bool) error {
	if err := s.Set(RememberKey, on); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.cfg.Cookieless || s.id == "" {
		return nil
	}
	if s.w.headersSent() {
		return ErrHeadersSent
	}
	setCookie(s.w.Header(), s.m.cookie(s.secureReq, s.id, s.cookieMaxAge()))
	return nil
}

// persistent reports whether the session's cookie is persistent: the
// session's own choice (RememberMe), else CookieConfig.Persistent.
func (s *Session) persistent() bool {
	if !s.data.Values.Has(RememberKey) { // no decoding (and no allocation) on most requests
		return s.m.cookieCfg.Persistent
	}
	var on bool
	if ok, err := s.data.Values.Get(RememberKey, &on); ok && err == nil {
		return on
	}
	return s.m.cookieCfg.Persistent
}

// cookieMaxAge is the Max-Age of the session's cookie when persistent:
// min(timeout, remaining lifetime) in whole seconds (rounded up, at least
// 1), else 0 (no Max-Age: the cookie ends with the browser session). A
// session not loaded from the store (new, restarted after Abandon, or
// under a new id) has its whole lifetime ahead.
func (s *Session) cookieMaxAge() int {
	if !s.persistent() {
		return 0
	}
	d := s.data.Timeout()
	if cfg := s.m.p.Config(); cfg.Lifetime > 0 {
		left := cfg.Lifetime
		if !s.deadline.IsZero() && !s.restarted && !s.regenerated {
			left = s.deadline.Sub(cfg.Now())
		}
		d = max(min(d, left), time.Second)
	}
	return int((d + time.Second - 1) / time.Second)
}

// resendPersistentCookie sends a persistent session cookie again with a
// fresh Max-Age, when there is one to send and the headers have not gone
// out. s.mu must be held, or the request not yet handed to the handler.
func (s *Session) resendPersistentCookie() {
	if s.m.cfg.Cookieless || s.id == "" || s.w.headersSent() || !s.persistent() {
		return
	}
	setCookie(s.w.Header(), s.m.cookie(s.secureReq, s.id, s.cookieMaxAge()))
}
