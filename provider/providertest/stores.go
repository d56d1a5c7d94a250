package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// GetAndTouch implements provider.GetAndToucher, counted as a Get: the
// wrapped store's own when it has one; otherwise a Get and a
// CompareAndSwap of the unchanged value, counted as both.
func (s *CountingStore) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if gt, ok := s.Store.(provider.GetAndToucher); ok {
		s.Gets.Add(1)
		return gt.GetAndTouch(ctx, key, ttl)
	}
	for {
		e, err := s.Get(ctx, key)
		if err != nil {
			return e, err
		}
		cas, err := s.CompareAndSwap(ctx, key, e.Value, e.CAS, ttl)
		if err == nil {
			return provider.Entry{Value: e.Value, CAS: cas}, nil
		}
		if !errors.Is(err, provider.ErrCASConflict) {
			return provider.Entry{}, err
		}
	}
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

// opGate wraps a Store and holds its HoldAt-th operation (counting from 1)
// until Release is closed, after announcing it on Reached: a test runs
// another request between one request's operations, deterministically.
// Operations after the held one pass. Use newOpGate, which keeps the
// wrapped store's provider.GetAndToucher (or hides it, with hideGAT).
type opGate struct {
	provider.Store
	HoldAt  int64
	Reached chan struct{}
	Release chan struct{}
	n       atomic.Int64
}

// gateGAT is an opGate over a store with GetAndTouch.
type gateGAT struct{ *opGate }

// newOpGate returns an opGate over s holding operation holdAt. The result
// implements provider.GetAndToucher when s does, unless hideGAT.
func newOpGate(s provider.Store, holdAt int64, hideGAT bool) (provider.Store, *opGate) {
	g := &opGate{Store: s, HoldAt: holdAt, Reached: make(chan struct{}), Release: make(chan struct{})}
	if _, ok := s.(provider.GetAndToucher); ok && !hideGAT {
		return gateGAT{g}, g
	}
	return g, g
}

func (g *opGate) pass(ctx context.Context) error {
	if g.n.Add(1) != g.HoldAt {
		return nil
	}
	close(g.Reached)
	select {
	case <-g.Release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get implements provider.Store.
func (g *opGate) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := g.pass(ctx); err != nil {
		return provider.Entry{}, err
	}
	return g.Store.Get(ctx, key)
}

// Add implements provider.Store.
func (g *opGate) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := g.pass(ctx); err != nil {
		return 0, err
	}
	return g.Store.Add(ctx, key, value, ttl)
}

// CompareAndSwap implements provider.Store.
func (g *opGate) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := g.pass(ctx); err != nil {
		return 0, err
	}
	return g.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

// Touch implements provider.Store.
func (g *opGate) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := g.pass(ctx); err != nil {
		return err
	}
	return g.Store.Touch(ctx, key, ttl)
}

// Close does not close the wrapped store: the suite owns it.
func (g *opGate) Close() error { return nil }

// GetAndTouch implements provider.GetAndToucher.
func (g gateGAT) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if err := g.pass(ctx); err != nil {
		return provider.Entry{}, err
	}
	return g.Store.(provider.GetAndToucher).GetAndTouch(ctx, key, ttl)
}

// KeyLog wraps a Store and records every key the provider uses, so that
// Run's second pass can prove that with provider.Config.HashIDs no key
// holds a session id.
type KeyLog struct {
	provider.Store
	mu   sync.Mutex
	keys map[string]struct{}
}

func (k *KeyLog) saw(key string) {
	k.mu.Lock()
	if k.keys == nil {
		k.keys = make(map[string]struct{})
	}
	k.keys[key] = struct{}{}
	k.mu.Unlock()
}

// Wrap returns the logging store, with provider.GetAndToucher and
// provider.TTLReader exactly when the wrapped store has them.
func (k *KeyLog) Wrap() provider.Store {
	base := keyLogStore{k}
	_, gat := k.Store.(provider.GetAndToucher)
	_, ttl := k.Store.(provider.TTLReader)
	switch {
	case gat && ttl:
		return keyLogBoth{keyLogGAT{base}}
	case gat:
		return keyLogGAT{base}
	case ttl:
		return keyLogTTL{base}
	}
	return base
}

// CheckHashed returns an error if a key seen does not end in a hashed id
// (provider.HashedIDLen characters after its last ':'), or if none was
// seen.
func (k *KeyLog) CheckHashed() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range k.keys {
		last := key[strings.LastIndexByte(key, ':')+1:]
		if len(last) != provider.HashedIDLen {
			return fmt.Errorf("HashIDs violated: key %q does not end in a hashed id", key[:min(len(key), 12)]+"…")
		}
	}
	return nil
}

type keyLogStore struct{ k *KeyLog }

func (s keyLogStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	s.k.saw(key)
	return s.k.Store.Get(ctx, key)
}

func (s keyLogStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	s.k.saw(key)
	return s.k.Store.Add(ctx, key, value, ttl)
}

func (s keyLogStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	s.k.saw(key)
	return s.k.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

func (s keyLogStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	s.k.saw(key)
	return s.k.Store.Touch(ctx, key, ttl)
}

func (s keyLogStore) Delete(ctx context.Context, key string) error {
	s.k.saw(key)
	return s.k.Store.Delete(ctx, key)
}

// Close does not close the wrapped store: the suite owns it.
func (s keyLogStore) Close() error { return nil }

type keyLogGAT struct{ keyLogStore }

func (s keyLogGAT) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	s.k.saw(key)
	return s.k.Store.(provider.GetAndToucher).GetAndTouch(ctx, key, ttl)
}

type keyLogTTL struct{ keyLogStore }

func (s keyLogTTL) TTL(ctx context.Context, key string) (time.Duration, error) {
	s.k.saw(key)
	return s.k.Store.(provider.TTLReader).TTL(ctx, key)
}

type keyLogBoth struct{ keyLogGAT }

func (s keyLogBoth) TTL(ctx context.Context, key string) (time.Duration, error) {
	s.k.saw(key)
	return s.k.Store.(provider.TTLReader).TTL(ctx, key)
}
