package couchbase

import (
	"time"

	"github.com/couchbase/gocb/v2"
)

// FailFastRetryStrategy is the gocb retry strategy the store installs on
// its cluster connection. It behaves as gocb's best-effort strategy (retry
// with backoff while the operation's timeout lasts) for every reason but
// one: a document locked by another client (GetAndLock) is never retried.
//
// gocb's default strategy retries a locked document until the KV timeout
// (2.5 s by default), so one request would hang for the whole timeout and
// then report an ambiguous timeout. With this strategy the operation fails
// at once with gocb.ErrDocumentLocked, which the store reports as
// provider.ErrCASConflict: the provider re-reads and decides again, and its
// own bounded retry loop and lock waiter pace the next attempt.
//
// Reasons gocb always retries (a vBucket map or collection manifest that
// is out of date) never reach a strategy; gocb retries them itself.
type FailFastRetryStrategy struct {
	// Backoff returns how long to wait before retry attempt n (counted
	// from 0). Nil means exponential backoff from 1 ms doubling to at
	// most 500 ms, as gocb's best-effort strategy.
	Backoff gocb.BackoffCalculator
}

var _ gocb.RetryStrategy = (*FailFastRetryStrategy)(nil)

// RetryAfter implements gocb.RetryStrategy: no retry (a zero duration)
// for a locked document, or for a non-idempotent request whose reason does
// not allow retrying it, otherwise a retry after the backoff.
func (s *FailFastRetryStrategy) RetryAfter(req gocb.RetryRequest, reason gocb.RetryReason) gocb.RetryAction {
	if reason == nil || isLockedReason(reason) {
		return &gocb.NoRetryRetryAction{}
	}
	if !req.Idempotent() && !reason.AllowsNonIdempotentRetry() {
		return &gocb.NoRetryRetryAction{}
	}
	backoff := s.Backoff
	if backoff == nil {
		backoff = defaultBackoff
	}
	d := backoff(req.RetryAttempts())
	if d <= 0 {
		// A zero duration means "do not retry" to gocb; a calculator
		// that returns it for a retryable reason still means retry.
		d = time.Millisecond
	}
	return &gocb.WithDurationRetryAction{WithDuration: d}
}

// isLockedReason reports whether reason is gocb's "document locked".
func isLockedReason(reason gocb.RetryReason) bool {
	return reason == gocb.KVLockedRetryReason || reason.Description() == gocb.KVLockedRetryReason.Description()
}

// defaultBackoff is gocb's best-effort backoff: 1 ms doubling to 500 ms.
func defaultBackoff(attempt uint32) time.Duration {
	d := time.Millisecond
	for i := uint32(0); i < attempt && d < 500*time.Millisecond; i++ {
		d *= 2
	}
	return min(d, 500*time.Millisecond)
}
