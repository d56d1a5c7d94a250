package middleware

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
)

// Observer is told what the middleware and the stores do. The Prometheus
// collector of module github.com/sessionlock/sessionlock/middleware/prometheus
// implements it, LogEvents logs the store events; Observers combines
// several. Config.Observer takes one (nil: off). Methods are called from
// request goroutines and store goroutines and must not block.
//
// Store events reach an Observer through its StoreEvent method, a
// provider.EventFunc, plugged into the store's Config.OnEvent (the store
// exists before the Manager); every store of this module has one:
//
//	obs := middleware.Observers(metrics, middleware.LogEvents(logger))
//	store, err := somestore.New(somestore.Config{..., OnEvent: obs.StoreEvent})
//	p, err := provider.New(store, provider.Config{})
//	mgr, err := middleware.New(middleware.Config{Provider: p, Observer: obs})
//
// An Observer that also has a method WatchProvider(*provider.Provider) is
// handed the Manager's provider by New (the Prometheus collector reads its
// lock takeovers).
type Observer interface {
	// Request: a request ended, served in mode (Exclusive, ReadOnly, Off,
	// LockFree; an Auto route reports the mode Auto chose).
	Request(mode Mode)
	// LockWait: a session was loaded in a mode that waits for the lock
	// (Exclusive, or ReadOnly without ReadOnlyNoWait), taking d.
	LockWait(d time.Duration)
	// LockHold: an exclusive request held the lock for d.
	LockHold(d time.Duration)
	// LeaseRenewals: n lease renewals were made while a handler ran.
	LeaseRenewals(n int64)
	// InvalidID: a session id was refused without a store access
	// (ReasonMalformed, ReasonDuplicate) or the store did not know it
	// (ReasonUnknown).
	InvalidID(reason string)
	// StoreError: a store operation failed (ErrorKind names its kind).
	// Errors that are not failures (not found, the client leaving) are
	// not reported.
	StoreError(err error)
	// StoreEvent: a store reported an event about its nodes. Its method
	// value is a provider.EventFunc, for the store's Config.OnEvent.
	StoreEvent(e provider.Event)
}

// Reasons passed to Observer.InvalidID.
const (
	ReasonMalformed = "malformed" // wrong length or alphabet
	ReasonDuplicate = "duplicate" // several session cookies
	ReasonUnknown   = "unknown"   // well-formed, but not in the store
)

// Observers returns an Observer that tells each of obs (nil ones left
// out) in turn.
func Observers(obs ...Observer) Observer {
	var all multiObserver
	for _, o := range obs {
		switch o := o.(type) {
		case nil:
		case multiObserver:
			all = append(all, o...)
		default:
			all = append(all, o)
		}
	}
	return all
}

type multiObserver []Observer

func (os multiObserver) Request(mode Mode) {
	for _, o := range os {
		o.Request(mode)
	}
}

func (os multiObserver) LockWait(d time.Duration) {
	for _, o := range os {
		o.LockWait(d)
	}
}

func (os multiObserver) LockHold(d time.Duration) {
	for _, o := range os {
		o.LockHold(d)
	}
}

func (os multiObserver) LeaseRenewals(n int64) {
	for _, o := range os {
		o.LeaseRenewals(n)
	}
}

func (os multiObserver) InvalidID(reason string) {
	for _, o := range os {
		o.InvalidID(reason)
	}
}

// StoreError reports err unless it is not a failure (nil, not found, the
// client leaving).
func (os multiObserver) StoreError(err error) {
	if err == nil || errors.Is(err, provider.ErrNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	for _, o := range os {
		o.StoreError(err)
	}
}

func (os multiObserver) StoreEvent(e provider.Event) {
	for _, o := range os {
		o.StoreEvent(e)
	}
}

// WatchProvider hands p to the observers that watch providers.
func (os multiObserver) WatchProvider(p *provider.Provider) {
	for _, o := range os {
		if w, ok := o.(interface{ WatchProvider(*provider.Provider) }); ok {
			w.WatchProvider(p)
		}
	}
}

// LogEvents returns an Observer that logs the store events to l (nil:
// slog.Default()): a node down or a failover as a warning, a node back up,
// a repair or a fallback as information. The other methods do nothing
// (the Manager logs its own errors).
func LogEvents(l *slog.Logger) Observer {
	if l == nil {
		l = slog.Default()
	}
	return eventLog{l}
}

type eventLog struct{ l *slog.Logger }

func (eventLog) Request(Mode)           {}
func (eventLog) LockWait(time.Duration) {}
func (eventLog) LockHold(time.Duration) {}
func (eventLog) LeaseRenewals(int64)    {}
func (eventLog) InvalidID(string)       {}
func (eventLog) StoreError(error)       {}
func (l eventLog) StoreEvent(e provider.Event) {
	level := slog.LevelInfo
	if e.Kind == provider.EventNodeDown || e.Kind == provider.EventFailover {
		level = slog.LevelWarn
	}
	l.l.Log(context.Background(), level, "session store event", eventAttrs(e)...)
}

// ErrorKind names the kind of a store error, for labels: unavailable,
// outcome_unknown, server, corrupt, too_large, cas_conflict, closed,
// exists, lock_lost, queue_full, wait_timeout, timeout or other.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, provider.ErrLockLost):
		return "lock_lost"
	case errors.Is(err, lock.ErrQueueFull):
		return "queue_full"
	case errors.Is(err, lock.ErrWaitTimeout):
		return "wait_timeout"
	case errors.Is(err, provider.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, provider.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, provider.ErrServer):
		return "server"
	case errors.Is(err, provider.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, provider.ErrTooLarge):
		return "too_large"
	case errors.Is(err, provider.ErrCASConflict):
		return "cas_conflict"
	case errors.Is(err, provider.ErrClosed):
		return "closed"
	case errors.Is(err, provider.ErrExists):
		return "exists"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

func eventAttrs(e provider.Event) []any {
	attrs := []any{"kind", e.Kind.String()}
	if e.Node != "" {
		attrs = append(attrs, "node", e.Node)
	}
	if e.Detail != "" {
		attrs = append(attrs, "detail", e.Detail)
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	return attrs
}
