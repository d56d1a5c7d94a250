package memstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/memstore"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Options{NewStore: func(t *testing.T) provider.Store {
		return memstore.New(memstore.Config{})
	}})
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCASAndTTLSemantics(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s := memstore.New(memstore.Config{Now: clock.Now, SweepInterval: -1})
	defer s.Close()

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	cas, err := s.Add(ctx, "k", []byte("v1"), 10*time.Second)
	require.NoError(t, err)
	_, err = s.Add(ctx, "k", []byte("v2"), 10*time.Second)
	require.ErrorIs(t, err, provider.ErrExists)

	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", string(e.Value))
	require.Equal(t, cas, e.CAS)

	newCAS, err := s.CompareAndSwap(ctx, "k", []byte("v2"), cas, 10*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, cas, newCAS)
	_, err = s.CompareAndSwap(ctx, "k", []byte("v3"), cas, 10*time.Second)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a stale CAS must conflict")

	require.NoError(t, s.Touch(ctx, "k", 20*time.Second))
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, ttl)

	// Expired entries are invisible at once, for every operation.
	clock.Add(20 * time.Second)
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.CompareAndSwap(ctx, "k", []byte("v4"), newCAS, time.Second)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.ErrorIs(t, s.Touch(ctx, "k", time.Second), provider.ErrNotFound)
	_, err = s.Add(ctx, "k", []byte("again"), time.Second)
	require.NoError(t, err, "Add over an expired key succeeds")

	_, err = s.Add(ctx, "zero", []byte("x"), 0)
	require.Error(t, err, "a non-positive TTL is refused")
	require.ErrorIs(t, s.Delete(ctx, "missing"), provider.ErrNotFound)
}

func TestValuesAreCopied(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Config{})
	defer s.Close()
	v := []byte("abc")
	_, err := s.Add(ctx, "k", v, time.Minute)
	require.NoError(t, err)
	v[0] = 'X'
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "abc", string(e.Value))
	e.Value[1] = 'Y'
	e2, _ := s.Get(ctx, "k")
	require.Equal(t, "abc", string(e2.Value))
}

func TestSweepReclaimsMemory(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s := memstore.New(memstore.Config{Now: clock.Now, SweepInterval: -1})
	defer s.Close()
	for i := range 100 {
		_, err := s.Add(ctx, string(rune('a'+i%26))+string(rune(i)), []byte("x"), time.Duration(1+i%2)*time.Second)
		require.NoError(t, err)
	}
	require.Equal(t, 100, s.Len())
	clock.Add(time.Second)
	require.Equal(t, 50, s.Sweep())
	require.Equal(t, 50, s.Len())
}

func TestBackgroundSweepAndClose(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s := memstore.New(memstore.Config{Now: clock.Now, SweepInterval: time.Millisecond})
	_, err := s.Add(ctx, "k", []byte("x"), time.Second)
	require.NoError(t, err)
	clock.Add(2 * time.Second)
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, time.Millisecond, "the background sweep reclaims expired entries")
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrClosed)
	_, err = s.Add(ctx, "k", []byte("x"), time.Second)
	require.ErrorIs(t, err, provider.ErrClosed)
}

func TestTooLarge(t *testing.T) {
	s := memstore.New(memstore.Config{MaxValueSize: 10})
	defer s.Close()
	_, err := s.Add(context.Background(), "k", make([]byte, 11), time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	_, err = s.Get(context.Background(), "k")
	require.ErrorIs(t, err, provider.ErrNotFound, "nothing was written")
}

// TestConcurrentCAS: many goroutines CAS-incrementing one key lose nothing.
func TestConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Config{})
	defer s.Close()
	_, err := s.Add(ctx, "n", []byte{0, 0}, time.Minute)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				for {
					e, err := s.Get(ctx, "n")
					if err != nil {
						t.Error(err)
						return
					}
					n := int(e.Value[0])<<8 | int(e.Value[1])
					n++
					_, err = s.CompareAndSwap(ctx, "n", []byte{byte(n >> 8), byte(n)}, e.CAS, time.Minute)
					if errors.Is(err, provider.ErrCASConflict) {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						t.Error(err)
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	e, err := s.Get(ctx, "n")
	require.NoError(t, err)
	require.Equal(t, 1600, int(e.Value[0])<<8|int(e.Value[1]))
}

func BenchmarkGetCAS(b *testing.B) {
	ctx := context.Background()
	s := memstore.New(memstore.Config{})
	defer s.Close()
	v := make([]byte, 2048)
	_, _ = s.Add(ctx, "k", v, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		e, _ := s.Get(ctx, "k")
		_, _ = s.CompareAndSwap(ctx, "k", v, e.CAS, time.Hour)
	}
}
