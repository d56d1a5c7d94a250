package middleware

import (
	"fmt"
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
	// Pattern is compared with the request's matched route pattern, as
	// Config.RoutePattern returns it (by default http.Request.Pattern, as
	// the Go 1.22 ServeMux sets it: for example "GET /cart/{id}"; chi's
	// "/api/*", gorilla's "/items/{id}" through the hook); an exact match
	// wins. A Pattern
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

// hasPatternRules reports whether some rule can only match a route
// pattern: it does not start with "/" (a method pattern such as
// "GET /cart", or a host pattern) or has wildcards ("/items/{id}",
// "/static/*"), so that a request whose pattern is not known cannot be
// matched against it.
func (rs rules) hasPatternRules() bool {
	for _, r := range rs {
		if !strings.HasPrefix(r.Pattern, "/") || strings.ContainsAny(r.Pattern, "{*") {
			return true
		}
	}
	return false
}

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
func (rs rules) match(pattern, path string) (mode Mode, found bool) {
	if pattern != "" {
		for _, r := range rs {
			if r.Pattern == pattern {
				return r.Mode, true
			}
		}
	}
	best := -1
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
