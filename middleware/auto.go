package middleware

import (
	"container/list"
	"sync"
)

// Defaults of AutoConfig.
const (
	DefaultAutoQuietRequests = 20
	DefaultAutoMaxRoutes     = 1024
)

// AutoConfig tunes the Auto mode. The zero value means the defaults.
type AutoConfig struct {
	// QuietRequests is how many requests in a row must end without changing
	// the session before a route is served without the lock. Default 20.
	QuietRequests int
	// MaxRoutes bounds the routes Auto remembers; the least recently
	// finished one is forgotten first and starts again as Exclusive.
	// Default 1024.
	MaxRoutes int
}

// autoTracker remembers, per route, how many requests in a row left the
// session unchanged. Its memory is bounded by MaxRoutes entries.
type autoTracker struct {
	quiet, max int

	mu     sync.Mutex
	routes map[string]*list.Element // route -> element holding *autoRoute
	lru    *list.List               // front: most recently finished
}

type autoRoute struct {
	route string
	quiet int // requests in a row that did not change the session, capped
}

func newAutoTracker(cfg AutoConfig) *autoTracker {
	if cfg.QuietRequests <= 0 {
		cfg.QuietRequests = DefaultAutoQuietRequests
	}
	if cfg.MaxRoutes <= 0 {
		cfg.MaxRoutes = DefaultAutoMaxRoutes
	}
	return &autoTracker{quiet: cfg.QuietRequests, max: cfg.MaxRoutes, routes: make(map[string]*list.Element), lru: list.New()}
}

// lockFree reports whether route is currently served without the lock.
func (a *autoTracker) lockFree(route string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.routes[route]
	return e != nil && e.Value.(*autoRoute).quiet >= a.quiet
}

// record notes that a request of route finished, having changed the
// session or not.
func (a *autoTracker) record(route string, changed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.routes[route]
	if e == nil {
		if a.lru.Len() >= a.max {
			old := a.lru.Back()
			a.lru.Remove(old)
			delete(a.routes, old.Value.(*autoRoute).route)
		}
		e = a.lru.PushFront(&autoRoute{route: route})
		a.routes[route] = e
	} else {
		a.lru.MoveToFront(e)
	}
	ar := e.Value.(*autoRoute)
	switch {
	case changed:
		ar.quiet = 0
	case ar.quiet < a.quiet:
		ar.quiet++
	}
}

// len returns the number of routes remembered.
func (a *autoTracker) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}
