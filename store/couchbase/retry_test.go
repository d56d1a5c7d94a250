package couchbase

import (
	"testing"
	"time"

	"github.com/couchbase/gocb/v2"
	"github.com/couchbase/gocbcore/v10"
	"github.com/stretchr/testify/require"
)

// retryRequest is a gocb.RetryRequest as gocb hands it to a strategy.
type retryRequest struct {
	attempts   uint32
	idempotent bool
}

func (r retryRequest) RetryAttempts() uint32            { return r.attempts }
func (r retryRequest) Identifier() string               { return "test-op" }
func (r retryRequest) Idempotent() bool                 { return r.idempotent }
func (r retryRequest) RetryReasons() []gocb.RetryReason { return nil }

// namedReason is a reason that is not one of gocb's values but describes
// itself as one.
type namedReason struct{ name string }

func (r namedReason) AllowsNonIdempotentRetry() bool { return true }
func (r namedReason) AlwaysRetry() bool              { return false }
func (r namedReason) Description() string            { return r.name }

func TestFailFastRetryStrategy(t *testing.T) {
	s := &FailFastRetryStrategy{}
	cases := []struct {
		name   string
		req    retryRequest
		reason gocb.RetryReason
		retry  bool
	}{
		{"locked, mutation", retryRequest{0, false}, gocb.KVLockedRetryReason, false},
		{"locked, read", retryRequest{0, true}, gocb.KVLockedRetryReason, false},
		{"locked, later attempt", retryRequest{5, true}, gocb.KVLockedRetryReason, false},
		{"locked, gocbcore value", retryRequest{0, false}, gocb.RetryReason(gocbcore.KVLockedRetryReason), false},
		{"locked, by description", retryRequest{0, true}, namedReason{"KV_LOCKED"}, false},
		{"temporary failure, mutation", retryRequest{0, false}, gocb.KVTemporaryFailureRetryReason, true},
		{"sync write in progress, mutation", retryRequest{2, false}, gocb.KVSyncWriteInProgressRetryReason, true},
		{"socket not available, mutation", retryRequest{0, false}, gocb.SocketNotAvailableRetryReason, true},
		{"circuit breaker open, read", retryRequest{0, true}, gocb.CircuitBreakerOpenRetryReason, true},
		{"socket closed in flight, mutation", retryRequest{0, false}, gocb.SocketCloseInFlightRetryReason, false},
		{"socket closed in flight, read", retryRequest{0, true}, gocb.SocketCloseInFlightRetryReason, true},
		{"unknown, mutation", retryRequest{0, false}, gocb.UnknownRetryReason, false},
		{"unknown, read", retryRequest{3, true}, gocb.UnknownRetryReason, true},
		{"nil reason", retryRequest{0, true}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := s.RetryAfter(c.req, c.reason)
			require.NotNil(t, a)
			if !c.retry {
				require.IsType(t, &gocb.NoRetryRetryAction{}, a)
				require.Zero(t, a.Duration(), "a zero duration tells gocb not to retry")
				return
			}
			require.Equal(t, defaultBackoff(c.req.attempts), a.Duration())
			require.Positive(t, a.Duration())
		})
	}
}

func TestFailFastRetryStrategyBackoff(t *testing.T) {
	s := &FailFastRetryStrategy{Backoff: func(n uint32) time.Duration { return time.Duration(n) * 10 * time.Millisecond }}
	require.Equal(t, 30*time.Millisecond, s.RetryAfter(retryRequest{3, false}, gocb.KVTemporaryFailureRetryReason).Duration())
	require.Equal(t, time.Millisecond, s.RetryAfter(retryRequest{0, false}, gocb.KVTemporaryFailureRetryReason).Duration(),
		"a zero backoff for a retryable reason still retries")
	require.Zero(t, s.RetryAfter(retryRequest{3, false}, gocb.KVLockedRetryReason).Duration())

	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 500, 500}
	for n, w := range want {
		require.Equal(t, w*time.Millisecond, defaultBackoff(uint32(n)), "attempt %d", n)
	}
	require.Equal(t, 500*time.Millisecond, defaultBackoff(1<<31))
}
