package harness_test

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// The deliberately broken stores below bring back the bugs of the earlier
// session providers (see PRIOR_ART.md) underneath the real provider, so the
// harness's tests can show that it catches them.

// droppedRelease makes every compare-and-swap that unlocks a session "tried
// once, failure ignored", as the Couchbase provider's lock-clear was: when
// a release (or a commit, which releases too) loses its CAS to a
// concurrent write, it reports success without writing anything, so the
// session stays locked and the commit's data is gone.
type droppedRelease struct {
	provider.Store
	dropped *atomic.Int64
}

func (s droppedRelease) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	n, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	if !errors.Is(err, provider.ErrCASConflict) {
		return n, err
	}
	next, perr := record.Parse(value)
	if perr != nil || next.Locked {
		return n, err
	}
	e, gerr := s.Store.Get(ctx, key)
	if gerr != nil {
		return n, err
	}
	cur, perr := record.Parse(e.Value)
	if perr != nil || !cur.Locked || cur.LockID != next.LockID {
		return n, err
	}
	// The holder's own unlock lost the race: pretend it worked.
	s.dropped.Add(1)
	return 0, nil
}

func (s droppedRelease) Close() error { return nil }

// blindWrites ignores the CAS token: every compare-and-swap overwrites
// whatever is stored (memcached providers without CAS did this). Two
// requests can then both take a session's lock, and concurrent commits
// overwrite each other.
type blindWrites struct {
	provider.Store
	overwrote *atomic.Int64
}

func (s blindWrites) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	for {
		e, err := s.Store.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		if e.CAS != cas {
			s.overwrote.Add(1)
		}
		n, err := s.Store.CompareAndSwap(ctx, key, value, e.CAS, ttl)
		if !errors.Is(err, provider.ErrCASConflict) {
			return n, err
		}
	}
}

func (s blindWrites) Close() error { return nil }
