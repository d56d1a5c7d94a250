package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
)

func TestQueueFullIs503(t *testing.T) {
	e := newEnv(t, envOptions{provider: provider.Config{Wait: lock.Config{QueueLimit: 1}}})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	queued := make(chan int, 1)
	go func() {
		queued <- serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id)).Code
	}()
	waitFor(t, "one request queued", func() bool { return e.p.Waiting(id) == 1 })

	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Equal(t, 1.0, e.obs.get("store_error/queue_full"))

	close(g.release)
	require.Equal(t, http.StatusOK, recv(t, queued, "the queued request"))
	<-holderDone
}

func TestWaitTimeoutIs503(t *testing.T) {
	e := newEnv(t, envOptions{
		provider: provider.Config{Wait: lock.Config{MaxWait: 20 * time.Millisecond}},
		config:   Config{RetryAfter: 1500 * time.Millisecond},
	})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")

	var ran atomic.Bool
	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran.Store(true) })), request("POST", "/", id))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "2", w.Header().Get("Retry-After"), "rounded up to whole seconds")
	require.False(t, ran.Load())
	require.Equal(t, 1.0, e.obs.get("store_error/wait_timeout"))
	close(g.release)
	<-holderDone
}

func TestCustomErrorHandler(t *testing.T) {
	var got error
	e := newEnv(t, envOptions{
		provider: provider.Config{Wait: lock.Config{MaxWait: 10 * time.Millisecond}},
		config: Config{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}},
	})
	id := e.create(map[string]any{"n": 1}, 0)
	g := newGate()
	holderDone := make(chan struct{})
	go func() { defer close(holderDone); serve(e.m.WithMode(Exclusive, g), request("POST", "/", id)) }()
	recv(t, g.entered, "the holder")
	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(incr)), request("POST", "/", id))
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.ErrorIs(t, got, lock.ErrWaitTimeout)
	require.True(t, Overloaded(got))
	close(g.release)
	<-holderDone
}

// failingStore fails every Get with fail while armed.
type failingStore struct {
	provider.Store
	armed atomic.Bool
	fail  error
}

func (f *failingStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	if f.armed.Load() {
		return provider.Entry{}, f.fail
	}
	return f.Store.Get(ctx, key)
}

func TestUnavailableLoadIs503AndCounted(t *testing.T) {
	fs := &failingStore{fail: fmt.Errorf("dial: %w", provider.ErrUnavailable)}
	e := newEnv(t, envOptions{wrap: func(s provider.Store) provider.Store { fs.Store = s; return fs }})
	id := e.create(map[string]any{"n": 1}, 0)
	fs.armed.Store(true)
	w := serve(e.m.Handler(http.HandlerFunc(incr)), request("POST", "/", id))
	require.Equal(t, http.StatusServiceUnavailable, w.Code, "nothing was written: the client may retry")
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Equal(t, 1.0, e.obs.get("store_error/unavailable"))
	require.Contains(t, e.logs.String(), "loading session")
	require.NotContains(t, e.logs.String(), id, "full session ids stay out of the logs")
}

func TestFencedCommitIsLoggedAndCounted(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.Set("n", 99))
		// Meanwhile another server decides our lock is abandoned and takes
		// it over.
		takeOver(t, e, id)
		fmt.Fprint(w, "response dropped")
	}))
	w := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusConflict, w.Code, "a fenced commit is answered 409, never 2xx")
	require.NotContains(t, w.Body.String(), "response dropped")
	n, _ := e.value(id, "n")
	require.Equal(t, 7, n, "the fenced commit wrote nothing")
	require.Equal(t, 1.0, e.obs.get("store_error/lock_lost"))
	require.Contains(t, e.logs.String(), "lock was taken over")
	require.Contains(t, e.logs.String(), "level=WARN")
}

func TestObserver(t *testing.T) {
	const lease = 50 * time.Millisecond
	e := newEnv(t, envOptions{provider: provider.Config{Lease: lease}})
	require.Equal(t, []*provider.Provider{e.p}, e.obs.providers, "New hands its provider to a watching Observer")
	id := e.create(map[string]any{"n": 1}, 0)

	// A crashed holder: a lock nobody renews. The next request takes it over
	// after one lease.
	_, err := e.p.GetItemExclusive(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "2", serve(e.m.Handler(http.HandlerFunc(incr)), request("POST", "/", id)).Body.String())

	serve(e.m.WithMode(ReadOnly, http.HandlerFunc(echoMode)), request("GET", "/", id))
	serve(e.m.WithMode(Off, http.HandlerFunc(echoMode)), request("GET", "/", id))
	serve(e.m.WithMode(LockFree, http.HandlerFunc(echoMode)), request("GET", "/", id))
	serve(e.m.Handler(http.HandlerFunc(echoMode)), request("GET", "/", "bad"))
	serve(e.m.Handler(http.HandlerFunc(echoMode)), request("GET", "/", strings.Repeat("a", 32)))
	Observers(e.obs, LogEvents(slog.New(slog.NewTextHandler(e.logs, nil)))).StoreEvent(provider.Event{Kind: provider.EventFailover, Node: "n1"})

	for key, want := range map[string]float64{
		"request/exclusive":     3,
		"request/readonly":      1,
		"request/off":           1,
		"request/lockfree":      1,
		"lock_wait":             2, // the takeover wait and the read-only load
		"lock_hold":             1,
		"invalid_id/malformed":  1,
		"invalid_id/unknown":    1,
		"store_event/failover":  1,
		"store_event/node_down": 0,
		"store_error/lock_lost": 0,
	} {
		require.Equal(t, want, e.obs.get(key), key)
	}
	require.Contains(t, e.logs.String(), "level=WARN msg=\"session store event\" kind=failover node=n1")
}

// TestObserverNotFailures: not found and a cancelled client are not
// store errors; nil Observers are left out.
func TestObserverNotFailures(t *testing.T) {
	r := &recorder{}
	o := Observers(nil, r, Observers(nil))
	o.StoreError(nil)
	o.StoreError(fmt.Errorf("x: %w", provider.ErrNotFound))
	o.StoreError(fmt.Errorf("x: %w", context.Canceled))
	o.StoreError(fmt.Errorf("x: %w", provider.ErrUnavailable))
	require.Equal(t, map[string]float64{"store_error/unavailable": 1}, r.n)
}

func TestErrorKinds(t *testing.T) {
	for want, err := range map[string]error{
		"unavailable":     provider.ErrUnavailable,
		"server":          provider.ErrServer,
		"corrupt":         provider.ErrCorrupt,
		"too_large":       provider.ErrTooLarge,
		"cas_conflict":    provider.ErrCASConflict,
		"closed":          provider.ErrClosed,
		"exists":          provider.ErrExists,
		"outcome_unknown": fmt.Errorf("%w: %w", provider.ErrOutcomeUnknown, provider.ErrUnavailable),
		"lock_lost":       provider.ErrLockLost,
		"timeout":         context.DeadlineExceeded,
		"other":           errors.New("x"),
	} {
		require.Equal(t, want, ErrorKind(fmt.Errorf("wrapped: %w", err)))
	}
}
