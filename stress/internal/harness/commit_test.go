package harness_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// failingCommits fails every fifth commit (a compare-and-swap that
// writes an unlocked record with changed data) with ErrUnavailable, as a
// store node dying under it would, up to max failures.
type failingCommits struct {
	provider.Store
	commits, failed *atomic.Int64
	max             int64
}

func (s failingCommits) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if next, err := record.Parse(value); err == nil && !next.Locked {
		if e, err := s.Store.Get(ctx, key); err == nil {
			cur, err := record.Parse(e.Value)
			if err == nil && cur.DataSeq != next.DataSeq && s.commits.Add(1)%5 == 0 && s.failed.Add(1) <= s.max {
				return 0, provider.ErrUnavailable
			}
		}
	}
	return s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

func (s failingCommits) Close() error { return nil }

// TestFailedCommitIsNeverAcknowledged runs the workload over a store whose
// commits sometimes fail. The middleware buffers every answer until its
// commit has stored the session, so a failed commit is answered 500 and
// nothing acknowledged is lost. With LateCommit (the middleware
// unbuffered) the same failures lose acknowledged writes, and the harness
// must say so.
func TestFailedCommitIsNeverAcknowledged(t *testing.T) {
	for _, late := range []bool{false, true} {
		var commits, failed atomic.Int64
		res := run(t, harness.Config{
			Sessions: 4, Burst: 8, Requests: 400, LateCommit: late,
			Mix: harness.Mix{Incr: 4, Free: 2, Append: 1, Read: 1},
			// A lock whose release failed is taken over after a lease.
			Lease: 200 * time.Millisecond,
			WrapStore: func(s provider.Store) provider.Store {
				return failingCommits{Store: s, commits: &commits, failed: &failed, max: 8}
			},
		})
		require.Positive(t, failed.Load(), "no commit failed; the test proves nothing")
		if !late {
			requireClean(t, res)
			require.Positive(t, res.FailedByReason["status_500"], "failed commits are answered 500: %v", res.FailedByReason)
			continue
		}
		require.Positive(t, res.LostUpdates, "late commit: acknowledged writes were lost")
		require.Zero(t, res.FailedByReason["status_500"], "late commit: the failures were answered 200")
		require.Contains(t, res.Violations(), "lost_updates")
	}
}
