package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// Sweep deletes every expired row now, on every partition, in statements of
// at most Config.SweepBatch rows, and returns how many it deleted. Expired
// rows are invisible whether swept or not; sweeping only reclaims space. A
// failing partition does not stop the others; the errors are joined.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("sqlstore: %w", provider.ErrClosed)
	}
	total := 0
	var errs []error
	for _, p := range s.parts {
		n, err := s.sweepPartition(ctx, p)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// sweepPartition deletes batches until one comes back short, ctx ends or a
// statement fails.
func (s *Store) sweepPartition(ctx context.Context, p *partition) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		sctx, cancel := context.WithTimeout(ctx, s.timeout)
		s.statements.Add(1)
		tag, err := p.pool.Exec(sctx, s.q.sweep, s.batch)
		cancel()
		if err != nil {
			return total, s.wrap(p, "sweep", err)
		}
		n := int(tag.RowsAffected())
		total += n
		s.swept.Add(uint64(n))
		if n < s.batch {
			return total, nil
		}
	}
}

// sweepLoop runs Sweep every interval until ctx ends (Close).
func (s *Store) sweepLoop(ctx context.Context, interval time.Duration) {
	defer close(s.sweepDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.parts {
			if _, err := s.sweepPartition(ctx, p); err != nil && ctx.Err() == nil {
				s.sweepErrors.Add(1)
			}
		}
	}
}
