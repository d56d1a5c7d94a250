// Package prometheus exports what the session middleware and the session
// stores report as Prometheus metrics: Metrics is a middleware.Observer and
// a prometheus.Collector. It is its own module, so that only its users
// depend on client_golang:
//
//	go get github.com/sessionlock/sessionlock/middleware/prometheus
package prometheus

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
)

// Metrics counts what the middleware does, as a prometheus.Collector that
// users register themselves, and the events the stores report:
//
//	m := sessionprom.New() // import sessionprom "github.com/sessionlock/sessionlock/middleware/prometheus"
//	prometheus.MustRegister(m)
//	store, err := memcached.New(memcached.Config{Nodes: nodes, OnEvent: m.StoreEvent})
//	mgr, err := middleware.New(middleware.Config{Provider: p, Observer: m})
//
// With a logger too, pass middleware.Observers(m, middleware.LogEvents(l))
// as the Observer and its StoreEvent as the stores' OnEvent.
//
// One Metrics may serve several Managers. Its series (all prefixed
// sessionlock_):
//
//   - requests_total{mode}: requests by the mode they were served in
//     (exclusive, readonly, off, lockfree; Auto routes count as the mode
//     Auto chose).
//   - lock_wait_seconds: histogram of the time it took to load a session
//     in the modes that wait for the lock (Exclusive, and ReadOnly unless
//     ReadOnlyNoWait), waiting included; successful loads only.
//   - lock_hold_seconds: histogram of the time exclusive requests held the
//     lock, from acquiring it to releasing or committing it.
//   - lock_takeovers_total: locks found abandoned (unchanged for a lease)
//     and broken by a waiter of the watched providers.
//   - lease_renewals_total: successful lease renewals made while handlers
//     ran (added when the request releases the lock).
//   - fenced_writes_total: commits, releases and removals refused because
//     the request's lock had been taken over (provider.ErrLockLost).
//   - wait_rejections_total{reason}: loads refused because the queue was
//     full (queue_full) or the wait lasted too long (wait_timeout).
//   - store_errors_total{kind}: failed store operations by kind
//     (unavailable, server, corrupt, too_large, cas_conflict, closed,
//     exists, outcome_unknown, timeout, other; see middleware.ErrorKind).
//   - invalid_ids_total{reason}: session ids refused without a store
//     access (malformed, duplicate) and ids the store did not know
//     (unknown).
//   - store_events_total{kind}: events the stores reported through
//     StoreEvent plugged into their Config.OnEvent (node_down, node_up,
//     failover, repair, fallback).
//
// The names pass promlint (the package's tests check them).
type Metrics struct {
	requests      *prometheus.CounterVec
	lockWait      prometheus.Histogram
	lockHold      prometheus.Histogram
	takeovers     *prometheus.Desc
	leaseRenewals prometheus.Counter
	fencedWrites  prometheus.Counter
	rejections    *prometheus.CounterVec
	storeErrors   *prometheus.CounterVec
	invalidIDs    *prometheus.CounterVec
	storeEvents   *prometheus.CounterVec

	mu        sync.Mutex
	providers []*provider.Provider // watched for takeovers
}

const namespace = "sessionlock"

var _ middleware.Observer = (*Metrics)(nil)

// New returns a Metrics with all series at zero.
func New() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Requests served by the session middleware, by session mode.",
		}, []string{"mode"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "lock_wait_seconds",
			Help:    "Time to load a session in the modes that wait for its lock, waiting included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		lockHold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "lock_hold_seconds",
			Help:    "Time exclusive requests held the session lock.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		takeovers: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "lock_takeovers_total"),
			"Locks found abandoned and broken by a waiter.", nil, nil),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "lease_renewals_total",
			Help: "Successful lease renewals while handlers ran.",
		}),
		fencedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "fenced_writes_total",
			Help: "Commits, releases and removals refused because the lock had been taken over.",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "wait_rejections_total",
			Help: "Requests refused while waiting for a session lock, by reason.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_errors_total",
			Help: "Failed session store operations, by kind.",
		}, []string{"kind"}),
		invalidIDs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invalid_ids_total",
			Help: "Session ids refused (malformed, duplicate) or not known to the store (unknown).",
		}, []string{"reason"}),
		storeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_events_total",
			Help: "Events the session stores reported about their nodes, by kind.",
		}, []string{"kind"}),
	}
	for _, r := range []string{reasonQueueFull, reasonWaitTimeout} {
		m.rejections.WithLabelValues(r)
	}
	for k := provider.EventNodeDown; k <= provider.EventWarning; k++ {
		m.storeEvents.WithLabelValues(k.String())
	}
	return m
}

// Label values of wait_rejections_total (middleware.ErrorKind's names).
const (
	reasonQueueFull   = "queue_full"
	reasonWaitTimeout = "wait_timeout"
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.lockWait.Describe(ch)
	m.lockHold.Describe(ch)
	ch <- m.takeovers
	m.leaseRenewals.Describe(ch)
	m.fencedWrites.Describe(ch)
	m.rejections.Describe(ch)
	m.storeErrors.Describe(ch)
	m.invalidIDs.Describe(ch)
	m.storeEvents.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.lockWait.Collect(ch)
	m.lockHold.Collect(ch)
	m.mu.Lock()
	var takeovers uint64
	for _, p := range m.providers {
		takeovers += p.WaitStats().Expirations
	}
	m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.takeovers, prometheus.CounterValue, float64(takeovers))
	m.leaseRenewals.Collect(ch)
	m.fencedWrites.Collect(ch)
	m.rejections.Collect(ch)
	m.storeErrors.Collect(ch)
	m.invalidIDs.Collect(ch)
	m.storeEvents.Collect(ch)
}

// StoreEvent counts e under its kind. Plug it into a store's
// Config.OnEvent (or, through middleware.Observers, with
// middleware.LogEvents).
func (m *Metrics) StoreEvent(e provider.Event) {
	if m != nil {
		m.storeEvents.WithLabelValues(e.Kind.String()).Inc()
	}
}

// WatchProvider adds p's lock takeovers to lock_takeovers_total, once per
// provider. middleware.New calls it with the Manager's provider.
func (m *Metrics) WatchProvider(p *provider.Provider) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Contains(m.providers, p) {
		m.providers = append(m.providers, p)
	}
}

// Request implements middleware.Observer.
func (m *Metrics) Request(mode middleware.Mode) {
	if m != nil {
		m.requests.WithLabelValues(mode.String()).Inc()
	}
}

// LockWait implements middleware.Observer.
func (m *Metrics) LockWait(d time.Duration) {
	if m != nil {
		m.lockWait.Observe(d.Seconds())
	}
}

// LockHold implements middleware.Observer.
func (m *Metrics) LockHold(d time.Duration) {
	if m != nil {
		m.lockHold.Observe(d.Seconds())
	}
}

// LeaseRenewals implements middleware.Observer.
func (m *Metrics) LeaseRenewals(n int64) {
	if m != nil && n > 0 {
		m.leaseRenewals.Add(float64(n))
	}
}

// InvalidID implements middleware.Observer.
func (m *Metrics) InvalidID(reason string) {
	if m != nil {
		m.invalidIDs.WithLabelValues(reason).Inc()
	}
}

// StoreError implements middleware.Observer: it counts err as a fenced
// write, a wait rejection or a store error of its kind
// (middleware.ErrorKind). The Manager reports failures only.
func (m *Metrics) StoreError(err error) {
	if m == nil || err == nil {
		return
	}
	switch kind := middleware.ErrorKind(err); kind {
	case "lock_lost":
		m.fencedWrites.Inc()
	case reasonQueueFull, reasonWaitTimeout:
		m.rejections.WithLabelValues(kind).Inc()
	default:
		m.storeErrors.WithLabelValues(kind).Inc()
	}
}
