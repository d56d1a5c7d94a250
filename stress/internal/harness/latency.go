package harness

import (
	"context"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// delayStore adds a fixed delay to every operation of an in-process store:
// the memory backend's stand-in for the latency proxy (internal/netdelay).
type delayStore struct {
	provider.Store
	delay time.Duration
}

func (s delayStore) pause(ctx context.Context) error { return pause(ctx, s.delay) }

func (s delayStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := s.pause(ctx); err != nil {
		return provider.Entry{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s delayStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.pause(ctx); err != nil {
		return 0, err
	}
	return s.Store.Add(ctx, key, value, ttl)
}

func (s delayStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.pause(ctx); err != nil {
		return 0, err
	}
	return s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

func (s delayStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.pause(ctx); err != nil {
		return err
	}
	return s.Store.Touch(ctx, key, ttl)
}

func (s delayStore) Delete(ctx context.Context, key string) error {
	if err := s.pause(ctx); err != nil {
		return err
	}
	return s.Store.Delete(ctx, key)
}

// Close does not close the shared store underneath.
func (s delayStore) Close() error { return nil }
