package middleware

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sessionlock/sessionlock/session"
)

// DefaultCookieName is the session cookie's name unless CookieConfig.Name
// says otherwise.
const DefaultCookieName = "session_id"

// CookieConfig sets the session cookie up. The zero value gives a cookie
// named "session_id" for path "/", host-only, HttpOnly, Secure on TLS
// requests, SameSite=Lax, without an expiry (it ends with the browser
// session; the server-side timeout bounds the session itself).
type CookieConfig struct {
	// Name of the cookie. Default "session_id".
	Name string
	// Path of the cookie. Default "/".
	Path string
	// Domain of the cookie. Default none: the cookie is sent to this host
	// only.
	Domain string
	// HttpOnly hides the cookie from scripts. Default (nil) on; set it to
	// a false value only if scripts must read the id.
	HttpOnly *bool
	// Secure restricts the cookie to HTTPS. Default (nil): on for requests
	// that came over TLS, off otherwise. Set it to a true value behind a
	// proxy that terminates TLS (or set TrustForwardedProto). Partitioned
	// and SameSite=None cookies, and cookies named "__Secure-…" or
	// "__Host-…", are always Secure, as browsers require; a false Secure
	// with such a name is an error in New.
	Secure *bool
	// TrustForwardedProto makes the default Secure follow what a proxy in
	// front says: a request whose X-Forwarded-Proto is "https", or whose
	// Forwarded header says proto=https, counts as a TLS request. Set it
	// only when every request comes through a proxy that sets (or strips)
	// those headers: a client could send them itself.
	TrustForwardedProto bool
	// SameSite of the cookie. Default (zero) http.SameSiteLaxMode;
	// http.SameSiteDefaultMode leaves the attribute out.
	SameSite http.SameSite
	// Partitioned adds the Partitioned attribute (CHIPS): in a third-party
	// context the browser keeps a separate cookie per top-level site.
	Partitioned bool
	// Persistent makes every session's cookie persistent ("remember me"
	// for everyone): it survives a browser restart. Session.RememberMe
	// decides per session instead. See Session.RememberMe for the cookie's
	// Max-Age and when it is sent.
	Persistent bool
}

// withDefaults fills in the defaults and checks the settings.
func (c CookieConfig) withDefaults() (CookieConfig, error) {
	if c.Name == "" {
		c.Name = DefaultCookieName
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	probe := &http.Cookie{Name: c.Name, Value: "x", Path: c.Path, Domain: c.Domain}
	if err := probe.Valid(); err != nil {
		return c, fmt.Errorf("middleware: cookie settings: %w", err)
	}
	// Browsers drop prefixed cookies that break the prefix's rules.
	host, secure := strings.HasPrefix(c.Name, "__Host-"), strings.HasPrefix(c.Name, "__Secure-")
	switch {
	case (host || secure) && c.Secure != nil && !*c.Secure:
		return c, fmt.Errorf("middleware: cookie %q must be Secure", c.Name)
	case host && c.Path != "/":
		return c, fmt.Errorf("middleware: cookie %q must have Path=/, not %q", c.Name, c.Path)
	case host && c.Domain != "":
		return c, fmt.Errorf("middleware: cookie %q must not have a Domain (%q)", c.Name, c.Domain)
	}
	return c, nil
}

// secure reports whether r came over TLS, or, with TrustForwardedProto,
// whether the proxy in front says it did.
func (m *Manager) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !m.cookieCfg.TrustForwardedProto {
		return false
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		first, _, _ := strings.Cut(p, ",")
		return strings.EqualFold(strings.TrimSpace(first), "https")
	}
	// Forwarded (RFC 7239): "for=...;proto=https, ..."; the first element
	// is the one the client-facing proxy wrote.
	first, _, _ := strings.Cut(r.Header.Get("Forwarded"), ",")
	for pair := range strings.SplitSeq(first, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if strings.EqualFold(k, "proto") {
			return strings.EqualFold(strings.Trim(v, `"`), "https")
		}
	}
	return false
}

// cookie returns the session cookie carrying id; maxAge < 0 deletes it.
// overTLS tells whether the request came over TLS.
func (m *Manager) cookie(overTLS bool, id string, maxAge int) *http.Cookie {
	c := m.cookieCfg
	secure := overTLS
	if c.Secure != nil {
		secure = *c.Secure
	}
	if c.Partitioned || c.SameSite == http.SameSiteNoneMode ||
		strings.HasPrefix(c.Name, "__Host-") || strings.HasPrefix(c.Name, "__Secure-") {
		secure = true
	}
	return &http.Cookie{
		Name:        c.Name,
		Value:       id,
		Path:        c.Path,
		Domain:      c.Domain,
		MaxAge:      maxAge,
		HttpOnly:    c.HttpOnly == nil || *c.HttpOnly,
		Secure:      secure,
		SameSite:    c.SameSite,
		Partitioned: c.Partitioned,
	}
}

// setCookie puts c in h, replacing a session cookie set earlier in the same
// response (after RegenerateID, say), and keeps shared caches from
// storing the response (see noSharedCache).
func setCookie(h http.Header, c *http.Cookie) {
	prefix := c.Name + "="
	kept := h.Values("Set-Cookie")[:0:0]
	for _, v := range h.Values("Set-Cookie") {
		if !strings.HasPrefix(v, prefix) {
			kept = append(kept, v)
		}
	}
	h.Del("Set-Cookie")
	for _, v := range kept {
		h.Add("Set-Cookie", v)
	}
	h.Add("Set-Cookie", c.String())
	noSharedCache(h)
}

// sessionCacheControl is the Cache-Control of a response that sets the
// session cookie: a shared cache must never hand one user's session id to
// another.
const sessionCacheControl = `private, no-cache="Set-Cookie"`

// noSharedCache marks a response that sets the session cookie as private,
// with Vary: Cookie, keeping a stricter Cache-Control (no-store, private)
// the handler set and replacing a public one.
func noSharedCache(h http.Header) {
	cc := strings.ToLower(h.Get("Cache-Control"))
	if !strings.Contains(cc, "no-store") && !strings.Contains(cc, "private") {
		h.Set("Cache-Control", sessionCacheControl)
	}
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Cookie") {
				return
			}
		}
	}
	h.Add("Vary", "Cookie")
}

// setsCookie reports whether h sets the cookie named name.
func setsCookie(h http.Header, name string) bool {
	for _, v := range h.Values("Set-Cookie") {
		if strings.HasPrefix(v, name+"=") {
			return true
		}
	}
	return false
}

// idSource is where a request's session id came from.
type idSource struct {
	id      string // a well-formed id, or ""
	present bool   // the request carried something in place of an id
	reason  string // why a present id was refused: malformed or duplicate
}

// cookieID reads the session id from the request's cookie. Only a single,
// well-formed id is accepted; anything else never reaches the store.
func (m *Manager) cookieID(r *http.Request) idSource {
	cs := r.CookiesNamed(m.cookieCfg.Name)
	switch {
	case len(cs) == 0:
		return idSource{}
	case len(cs) > 1:
		return idSource{present: true, reason: ReasonDuplicate}
	case !session.ValidID(cs[0].Value):
		return idSource{present: true, reason: ReasonMalformed}
	}
	return idSource{id: cs[0].Value, present: true}
}

// Cookieless URLs carry the id as the first path segment, as ASP.NET's
// cookieless="true" does: /(S(<id>))/rest/of/path.
const (
	urlIDPrefix = "/(S("
	urlIDSuffix = "))"
)

// urlIDKey is the context key of the id a cookieless request carried, kept
// for a nested middleware after the outer one stripped it from the path.
type urlIDKey struct{}

// stripURLID removes the session segment from a cookieless request's path
// and returns the request to route with and the id found.
func stripURLID(r *http.Request) (*http.Request, idSource) {
	if src, ok := r.Context().Value(urlIDKey{}).(idSource); ok {
		return r, src
	}
	path := r.URL.Path
	if !strings.HasPrefix(path, urlIDPrefix) {
		return r, idSource{}
	}
	end := strings.Index(path[len(urlIDPrefix):], urlIDSuffix)
	if end < 0 || end > 2*session.IDLength {
		return r, idSource{}
	}
	raw := path[len(urlIDPrefix) : len(urlIDPrefix)+end]
	rest := path[len(urlIDPrefix)+end+len(urlIDSuffix):]
	if rest != "" && rest[0] != '/' {
		return r, idSource{}
	}
	src := idSource{id: raw, present: true}
	if !session.ValidID(raw) {
		src = idSource{present: true, reason: ReasonMalformed}
	}
	if rest == "" {
		rest = "/"
	}
	r2 := r.WithContext(context.WithValue(r.Context(), urlIDKey{}, src))
	u := *r.URL
	u.Path = rest
	u.RawPath = stripRawPrefix(r.URL.RawPath, raw)
	r2.URL = &u
	return r2, src
}

// stripRawPrefix removes the session segment from a raw (escaped) path.
// It returns "" when it finds none; url.URL ignores a RawPath that does not
// match Path anyway.
func stripRawPrefix(rawPath, id string) string {
	for _, p := range []string{urlIDPrefix + id + urlIDSuffix, "/%28S%28" + id + "%29%29"} {
		if rest, ok := strings.CutPrefix(rawPath, p); ok && rest != "" && rest[0] == '/' {
			return rest
		}
	}
	return ""
}

// keepIDInRedirect puts the session segment in front of the Location of a
// cookieless redirect to a path on this site that lacks it: the ServeMux's
// own redirects ("/dir" to "/dir/", cleaned paths) and http.Redirect with
// a path are built from the path the middleware stripped.
func (s *Session) keepIDInRedirect(h http.Header, code int) {
	if !s.m.cfg.Cookieless || code < 300 || code > 399 {
		return
	}
	loc := h.Get("Location")
	if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, urlIDPrefix) {
		return
	}
	s.mu.Lock()
	id := s.id
	if id == "" && !s.abandoned && s.storedID == "" {
		id = s.src.id // an Off route: the id the request carried
	}
	s.mu.Unlock()
	if id != "" {
		h.Set("Location", cookielessPath(id, loc))
	}
}

// cookielessPath returns path with the session segment for id in front.
func cookielessPath(id, path string) string {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return urlIDPrefix + id + urlIDSuffix + path
}

// Link returns the link to path (an absolute path such as "/cart?x=1")
// for the session of r: in cookieless mode with the session's id in front
// of it, otherwise path unchanged. Use it for every link and redirect a
// cookieless page emits.
func Link(r *http.Request, path string) string {
	return FromContext(r.Context()).URL(path)
}
