// Package memstore is the embedded, in-memory provider.Store: the default
// wherever a store is optional. It has the same compare-and-swap and TTL
// semantics as the networked backends: an expired entry is invisible at
// once, and a background sweep reclaims its memory. Every operation is O(1)
// and safe for concurrent use; Close stops the sweep, leaving no goroutine.
//
// It keeps the sessions of one process only. Behind a load balancer use a
// shared backend (store/memcached, store/couchbase, store/sqlstore,
// store/tiered).
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// Defaults of Config.
const (
	DefaultSweepInterval = time.Minute
	DefaultMaxValueSize  = 16 << 20
)

const shardCount = 32

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// SweepInterval is how often expired entries are reclaimed. Default
	// 1 min. A negative value disables the background sweep (call Sweep).
	SweepInterval time.Duration
	// MaxValueSize bounds one value; larger values fail with
	// provider.ErrTooLarge. Default 16 MiB.
	MaxValueSize int
	// Now is the clock deciding expiry. Default time.Now. Tests pass a
	// fake clock to expire entries without waiting.
	Now func() time.Time
}

// Store is an in-memory provider.Store.
type Store struct {
	cfg    Config
	seed   maphash.Seed
	shards [shardCount]shard
	cas    atomic.Uint64
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	value   []byte
	cas     uint64
	expires time.Time
}

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
)

// New returns an empty Store and starts its sweep.
func New(cfg Config) *Store {
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.MaxValueSize <= 0 {
		cfg.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
	}
	if cfg.SweepInterval > 0 {
		go s.sweepLoop()
	} else {
		close(s.done)
	}
	return s
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return provider.ErrClosed
	}
	return ctx.Err()
}

func (s *Store) checkWrite(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("memstore: key %q: ttl %v must be positive", key, ttl)
	}
	if len(value) > s.cfg.MaxValueSize {
		return fmt.Errorf("memstore: value of %d bytes, limit %d: %w", len(value), s.cfg.MaxValueSize, provider.ErrTooLarge)
	}
	return nil
}

// live returns the unexpired entry under key; an expired one is deleted.
// The shard lock must be held.
func (sh *shard) live(key string, now time.Time) *entry {
	e := sh.m[key]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		delete(sh.m, key)
		return nil
	}
	return e
}

// withLive runs fn on key's unexpired entry under its shard's lock; an
// absent or expired key is ErrNotFound.
func (s *Store) withLive(key string, fn func(sh *shard, e *entry, now time.Time) error) error {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.cfg.Now()
	e := sh.live(key, now)
	if e == nil {
		return fmt.Errorf("memstore: %w", provider.ErrNotFound)
	}
	return fn(sh, e, now)
}

// Get implements provider.Store.
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := s.check(ctx); err != nil {
		return provider.Entry{}, err
	}
	var out provider.Entry
	err := s.withLive(key, func(_ *shard, e *entry, _ time.Time) error {
		out = provider.Entry{Value: append([]byte(nil), e.value...), CAS: e.cas}
		return nil
	})
	return out, err
}

// Add implements provider.Store.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.checkWrite(ctx, key, value, ttl); err != nil {
		return 0, err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.cfg.Now()
	if sh.live(key, now) != nil {
		return 0, fmt.Errorf("memstore: %w", provider.ErrExists)
	}
	e := &entry{value: append([]byte(nil), value...), cas: s.cas.Add(1), expires: now.Add(ttl)}
	sh.m[key] = e
	return e.cas, nil
}

// CompareAndSwap implements provider.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.checkWrite(ctx, key, value, ttl); err != nil {
		return 0, err
	}
	var newCAS uint64
	err := s.withLive(key, func(_ *shard, e *entry, now time.Time) error {
		if e.cas != cas {
			return fmt.Errorf("memstore: %w", provider.ErrCASConflict)
		}
		e.value = append([]byte(nil), value...)
		e.cas = s.cas.Add(1)
		e.expires = now.Add(ttl)
		newCAS = e.cas
		return nil
	})
	return newCAS, err
}

// Touch implements provider.Store. It keeps the CAS token.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.checkWrite(ctx, key, nil, ttl); err != nil {
		return err
	}
	return s.withLive(key, func(_ *shard, e *entry, now time.Time) error {
		e.expires = now.Add(ttl)
		return nil
	})
}

// GetAndTouch implements provider.GetAndToucher: the read and the new TTL
// under one lock. The CAS token is kept.
func (s *Store) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if err := s.checkWrite(ctx, key, nil, ttl); err != nil {
		return provider.Entry{}, err
	}
	var out provider.Entry
	err := s.withLive(key, func(_ *shard, e *entry, now time.Time) error {
		e.expires = now.Add(ttl)
		out = provider.Entry{Value: append([]byte(nil), e.value...), CAS: e.cas}
		return nil
	})
	return out, err
}

// Delete implements provider.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.withLive(key, func(sh *shard, _ *entry, _ time.Time) error {
		delete(sh.m, key)
		return nil
	})
}

// TTL implements provider.TTLReader.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var ttl time.Duration
	err := s.withLive(key, func(_ *shard, e *entry, now time.Time) error {
		ttl = e.expires.Sub(now)
		return nil
	})
	return ttl, err
}

// Len returns the number of entries held, expired ones not yet swept
// included.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Sweep removes expired entries now and returns how many it removed. It
// locks one shard at a time, so operations on other shards proceed.
func (s *Store) Sweep() int {
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		now := s.cfg.Now()
		for k, e := range sh.m {
			if !now.Before(e.expires) {
				delete(sh.m, k)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

func (s *Store) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close stops the sweep and drops every entry. Later calls fail with
// provider.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.m = make(map[string]*entry)
		sh.mu.Unlock()
	}
	return nil
}
