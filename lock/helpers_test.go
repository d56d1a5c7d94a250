package lock_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/sessionlock/sessionlock/lock"
)

// bound is how long a test waits for something that should happen at once.
const bound = 5 * time.Second

// waitUntil polls cond until it holds, failing the test after bound.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, bound, what, cond)
}

// result waits (bounded) for the outcome of a Wait running in a goroutine.
func result(t testing.TB, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(bound):
		t.Fatal("Wait did not return")
		return nil
	}
}

// goWait runs w.Wait in a goroutine and returns the channel its error comes on.
func goWait(ctx context.Context, w *lock.Waiter, key string,
	try func(context.Context) (lock.Attempt, error),
	expire func(context.Context, uint64) error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.Wait(ctx, key, try, expire) }()
	return ch
}

// noLeak fails the test if, within bound, the goroutine count does not come
// back to before.
func noLeak(t testing.TB, before int) {
	t.Helper()
	waitUntil(t, "no goroutine is left behind", func() bool { return runtime.NumGoroutine() <= before })
}

// never is a try that never acquires, always seeing the same stamp; it
// counts its calls.
func never(calls *atomic.Int64) func(context.Context) (lock.Attempt, error) {
	return func(context.Context) (lock.Attempt, error) {
		calls.Add(1)
		return lock.Attempt{Stamp: 1}, nil
	}
}

// noExpire is an expire function that fails the test when called.
func noExpire(t testing.TB) func(context.Context, uint64) error {
	return func(context.Context, uint64) error {
		t.Error("expire called")
		return nil
	}
}

// fakeLock is an in-memory exclusive lock per key standing in for the
// provider's CAS lock. Its stamp changes whenever a key changes hands.
type fakeLock struct {
	w *lock.Waiter

	mu     sync.Mutex
	holder map[string]int // key -> holder id; absent: unlocked
	local  map[string]bool
	stamp  map[string]uint64
	order  []int // ids in the order they acquired (or read)
}

func newFakeLock(w *lock.Waiter) *fakeLock {
	return &fakeLock{w: w, holder: map[string]int{}, local: map[string]bool{}, stamp: map[string]uint64{}}
}

// writer returns a try that takes key's lock for id. A local writer calls
// Hold in the same critical section, as a provider in this process does.
func (f *fakeLock) writer(key string, id int, local bool, calls *atomic.Int64) func(context.Context) (lock.Attempt, error) {
	return func(context.Context) (lock.Attempt, error) {
		if calls != nil {
			calls.Add(1)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.holder[key]; ok {
			return lock.Attempt{Stamp: f.stamp[key]}, nil
		}
		f.holder[key] = id
		f.local[key] = local
		f.stamp[key]++
		f.order = append(f.order, id)
		if local {
			f.w.Hold(key)
		}
		return lock.Attempt{Acquired: true}, nil
	}
}

// reader returns a try that succeeds when key is unlocked, taking nothing.
func (f *fakeLock) reader(key string, id int, calls *atomic.Int64) func(context.Context) (lock.Attempt, error) {
	return func(context.Context) (lock.Attempt, error) {
		if calls != nil {
			calls.Add(1)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.holder[key]; ok {
			return lock.Attempt{Stamp: f.stamp[key]}, nil
		}
		f.order = append(f.order, id)
		return lock.Attempt{Acquired: true}, nil
	}
}

// unlock releases key's lock held by id, calling Release when the holder
// was local.
func (f *fakeLock) unlock(t testing.TB, key string, id int) {
	f.mu.Lock()
	holder, ok := f.holder[key]
	local := f.local[key]
	if ok && holder == id {
		delete(f.holder, key)
		f.stamp[key]++
	}
	f.mu.Unlock()
	if !ok || holder != id {
		t.Errorf("unlock %s by %d: holder is %d (held %v)", key, id, holder, ok)
		return
	}
	if local {
		f.w.Release(key)
	}
}

// acquired returns the ids in acquisition order.
func (f *fakeLock) acquired() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.order...)
}
