package middleware

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Mode is how a route uses its session.
type Mode int

const (
	// Exclusive (the default, ASP.NET's EnableSessionState=true): the
	// session's lock is taken before the handler runs, waiting while
	// another request holds it, and the session is committed (or only
	// released, when nothing changed) after the handler, before its
	// buffered response is sent.
	Exclusive Mode = iota
	// ReadOnly (EnableSessionState=ReadOnly): no lock is taken. By default
	// the request waits while an exclusive request holds the session, then
	// reads the committed values; Config.ReadOnlyNoWait reads the last
	// committed values at once instead. Writes fail with ErrReadOnly.
	ReadOnly
	// Off (EnableSessionState=false): the session is not loaded at all and
	// FromContext returns nil. No store operation is made.
	Off
	// LockFree: read and write without the lock, never waiting (ASP.NET's
	// exclusiveAccess=false for one route). At the end only the keys the
	// request changed are merged into the stored session, so concurrent
	// requests that change different keys all keep their change; on the
	// same key the last writer wins.
	LockFree
	// Auto: per route (matched pattern), Exclusive until the route's recent
	// requests have not changed the session, then LockFree until one of
	// them writes, which puts the route back to Exclusive. See the package
	// documentation for its risk.
	Auto
)

// String returns the mode's name as ParseMode accepts it.
func (m Mode) String() string {
	switch m {
	case Exclusive:
		return "exclusive"
	case ReadOnly:
		return "readonly"
	case Off:
		return "off"
	case LockFree:
		return "lockfree"
	case Auto:
		return "auto"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode returns the Mode named name: "exclusive", "readonly", "off",
// "lockfree" or "auto".
func ParseMode(name string) (Mode, error) {
	for m := Exclusive; m <= Auto; m++ {
		if m.String() == name {
			return m, nil
		}
	}
	return 0, fmt.Errorf("middleware: unknown mode %q (want exclusive, readonly, off, lockfree or auto)", name)
}

func (m Mode) valid() bool { return m >= Exclusive && m <= Auto }

// Rule sets the mode of the requests a pattern matches.
type Rule struct {
	// Pattern is compared with the request's matched route pattern
	// (http.Request.Pattern as set by the Go 1.22 ServeMux or by chi, for
	// example "GET /cart/{id}" or "/api/*"); an exact match wins. A Pattern
	// that starts with "/" also matches, as a path prefix, every request
	// path equal to it or below it ("/static" and "/static/" both match
	// "/static/app.js", neither matches "/staticx"); the longest such prefix
	// wins.
	Pattern string
	// Mode is the mode of the requests the rule matches.
	Mode Mode
}

// rules is a validated rule set.
type rules []Rule

func (rs rules) check() error {
	for i, r := range rs {
		if r.Pattern == "" {
			return fmt.Errorf("middleware: rule %d: empty pattern", i)
		}
		if !r.Mode.valid() {
			return fmt.Errorf("middleware: rule %d (%q): invalid mode %v", i, r.Pattern, r.Mode)
		}
	}
	return nil
}

// match returns the mode of the first rule whose pattern is pattern, else
// of the longest path-prefix rule matching path.
func (rs rules) match(pattern, path string) (Mode, bool) {
	if pattern != "" {
		for _, r := range rs {
			if r.Pattern == pattern {
				return r.Mode, true
			}
		}
	}
	best, found := -1, false
	var mode Mode
	for _, r := range rs {
		if len(r.Pattern) > best && pathHasPrefix(path, r.Pattern) {
			best, mode, found = len(r.Pattern), r.Mode, true
		}
	}
	return mode, found
}

// pathHasPrefix reports whether path is prefix or lies below it.
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(prefix, "/") || !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// handler is the middleware around one http.Handler.
type handler struct {
	m     *Manager
	next  http.Handler
	mode  Mode
	fixed bool // mode was given by WithMode; otherwise rules and default decide
}

// resolve returns the configured mode of r (before ExclusiveAccess and Auto
// are applied) and the route key Auto tracks.
func (h *handler) resolve(r *http.Request) (Mode, string) {
	pattern := r.Pattern
	var inner http.Handler
	if mux, ok := h.next.(*http.ServeMux); ok && pattern == "" {
		inner, pattern = mux.Handler(r)
	}
	route := pattern
	if route == "" {
		route = r.URL.Path
	}
	if h.fixed {
		return h.mode, route
	}
	// A ServeMux wrapped as a whole: the matched route's own WithMode wins.
	if ih, ok := inner.(*handler); ok && ih.m == h.m && ih.fixed {
		return ih.mode, route
	}
	if mode, ok := h.m.rules.match(pattern, r.URL.Path); ok {
		return mode, route
	}
	return h.m.cfg.DefaultMode, route
}
