package providertest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// CountingStore wraps a Store and counts its operations and CAS conflicts.
type CountingStore struct {
	provider.Store
	Gets, Adds, CASes, Touches, Deletes atomic.Int64
	// Conflicts counts CompareAndSwap calls that failed with
	// ErrCASConflict.
	Conflicts atomic.Int64
}

// Ops returns the number of operations made so far.
func (s *CountingStore) Ops() int64 {
	return s.Gets.Load() + s.Adds.Load() + s.CASes.Load() + s.Touches.Load() + s.Deletes.Load()
}

// Get implements provider.Store.
func (s *CountingStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	s.Gets.Add(1)
	return s.Store.Get(ctx, key)
}

// Add implements provider.Store.
func (s *CountingStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	s.Adds.Add(1)
	return s.Store.Add(ctx, key, value, ttl)
}

// CompareAndSwap implements provider.Store.
func (s *CountingStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	s.CASes.Add(1)
	n, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	if errors.Is(err, provider.ErrCASConflict) {
		s.Conflicts.Add(1)
	}
	return n, err
}

// Touch implements provider.Store.
func (s *CountingStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	s.Touches.Add(1)
	return s.Store.Touch(ctx, key, ttl)
}

// Delete implements provider.Store.
func (s *CountingStore) Delete(ctx context.Context, key string) error {
	s.Deletes.Add(1)
	return s.Store.Delete(ctx, key)
}

// Close does not close the wrapped store: the suite owns it.
func (s *CountingStore) Close() error { return nil }

// TouchChangesCAS wraps a Store so that Touch changes the key's CAS token,
// as Couchbase's touch does: it rewrites the unchanged value with
// CompareAndSwap. The suite runs I2 through it so that concurrent touches
// really race with releases on every backend.
type TouchChangesCAS struct {
	provider.Store
}

// Touch implements provider.Store.
func (s TouchChangesCAS) Touch(ctx context.Context, key string, ttl time.Duration) error {
	for {
		e, err := s.Store.Get(ctx, key)
		if err != nil {
			return err
		}
		_, err = s.Store.CompareAndSwap(ctx, key, e.Value, e.CAS, ttl)
		if !errors.Is(err, provider.ErrCASConflict) {
			return err
		}
	}
}

// Close does not close the wrapped store: the suite owns it.
func (s TouchChangesCAS) Close() error { return nil }
