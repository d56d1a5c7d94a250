package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestLint: every series passes promlint and a pedantic registry.
func TestLint(t *testing.T) {
	m := New()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m), "a valid, self-consistent collector")
	// Every series once, so that the histograms and labelled counters show.
	m.Request(middleware.Exclusive)
	m.LockWait(time.Millisecond)
	m.LockHold(time.Millisecond)
	m.InvalidID(middleware.ReasonMalformed)
	m.StoreError(provider.ErrUnavailable)
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, families, 10)
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestLintCatchesBadNames: the lint above can fail (a counter without
// _total, a gauge with it).
func TestLintCatchesBadNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionlock_requests", Help: "x"}))
	families, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	require.NoError(t, err)
	require.NotEmpty(t, problems)
}

// value returns the value of the counter (or the sample count of the
// histogram) name with label values labels, through a pedantic registry.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				return float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// touch sets the session's value "seen" and writes "ok".
func touch(w http.ResponseWriter, r *http.Request) {
	if err := middleware.FromContext(r.Context()).Set("seen", true); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, "ok")
}

func serve(h http.Handler, method, id string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/", nil)
	if id != "" {
		r.Header.Set("Cookie", middleware.DefaultCookieName+"="+id)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestMetrics: a Manager with Metrics as its Observer fills the request,
// lock, id and takeover series; StoreError and StoreEvent (a store's
// OnEvent) the others.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	m := New()
	store := memstore.New(memstore.Config{SweepInterval: -1})
	t.Cleanup(func() { _ = store.Close() })
	p, err := provider.New(store, provider.Config{Lease: 50 * time.Millisecond})
	require.NoError(t, err)
	mgr, err := middleware.New(middleware.Config{Provider: p, Observer: m})
	require.NoError(t, err)

	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, p.CreateUninitializedItem(ctx, id, 0))
	// A crashed holder: a lock nobody renews. The next request takes it
	// over after one lease.
	_, err = p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "ok", serve(mgr.Handler(http.HandlerFunc(touch)), "POST", id).Body.String())
	require.Equal(t, 1.0, value(t, m, "sessionlock_lock_takeovers_total"))

	serve(mgr.WithMode(middleware.ReadOnly, http.HandlerFunc(touch)), "GET", id)
	serve(mgr.WithMode(middleware.Off, http.HandlerFunc(touch)), "GET", id)
	serve(mgr.Handler(http.HandlerFunc(touch)), "GET", "bad")
	serve(mgr.Handler(http.HandlerFunc(touch)), "GET", strings.Repeat("a", 32))
	m.StoreEvent(provider.Event{Kind: provider.EventFailover, Node: "n1"})
	m.StoreError(fmt.Errorf("x: %w", provider.ErrLockLost))
	m.StoreError(fmt.Errorf("x: %w", lock.ErrWaitTimeout))
	m.StoreError(fmt.Errorf("x: %w", provider.ErrOutcomeUnknown))
	m.StoreError(errors.New("odd"))

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sessionlock_requests_total", []string{"mode", "exclusive"}, 3}, // the bad and the unknown id too
		{"sessionlock_requests_total", []string{"mode", "readonly"}, 1},
		{"sessionlock_requests_total", []string{"mode", "off"}, 1},
		{"sessionlock_lock_wait_seconds", nil, 2}, // the takeover wait and the read-only load
		{"sessionlock_lock_hold_seconds", nil, 1},
		{"sessionlock_invalid_ids_total", []string{"reason", "malformed"}, 1},
		{"sessionlock_invalid_ids_total", []string{"reason", "unknown"}, 1},
		{"sessionlock_store_events_total", []string{"kind", "failover"}, 1},
		{"sessionlock_store_events_total", []string{"kind", "node_down"}, 0},
		{"sessionlock_fenced_writes_total", nil, 1},
		{"sessionlock_wait_rejections_total", []string{"reason", "wait_timeout"}, 1},
		{"sessionlock_wait_rejections_total", []string{"reason", "queue_full"}, 0},
		{"sessionlock_store_errors_total", []string{"kind", "outcome_unknown"}, 1},
		{"sessionlock_store_errors_total", []string{"kind", "other"}, 1},
	} {
		require.Equal(t, c.want, value(t, m, c.name, c.labels...), "%s %v", c.name, c.labels)
	}
	require.Equal(t, 1.0, testutil.ToFloat64(m.fencedWrites))

	// One Metrics may serve several Managers of one provider: takeovers
	// are not counted twice.
	_, err = middleware.New(middleware.Config{Provider: p, Observer: m})
	require.NoError(t, err)
	require.Equal(t, 1.0, value(t, m, "sessionlock_lock_takeovers_total"))
}

// TestNilMetrics: a nil *Metrics is off.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Request(middleware.Exclusive)
	m.StoreError(provider.ErrUnavailable)
	m.StoreEvent(provider.Event{Kind: provider.EventNodeDown})
	m.WatchProvider(nil)
}
