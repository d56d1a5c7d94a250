package lock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/lock"
)

// quiet is a configuration under which nothing times out or goes stale
// during a test unless the test says so.
func quiet() lock.Config {
	return lock.Config{MaxWait: time.Minute, StaleAfter: time.Minute, PollStart: 100 * time.Microsecond, PollCap: time.Millisecond}
}

func TestUncontendedWaitTriesOnce(t *testing.T) {
	w := lock.NewWaiter(lock.Config{})
	var calls atomic.Int64
	err := w.Wait(context.Background(), "k", func(context.Context) (lock.Attempt, error) {
		calls.Add(1)
		return lock.Attempt{Acquired: true}, nil
	}, noExpire(t))
	require.NoError(t, err)
	require.EqualValues(t, 1, calls.Load())
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestFIFOOrder(t *testing.T) {
	const n = 8
	before := runtime.NumGoroutine()
	w := lock.NewWaiter(quiet())
	f := newFakeLock(w)
	const key = "s"
	// Request -1 holds the lock in this process.
	_, err := f.writer(key, -1, true, nil)(context.Background())
	require.NoError(t, err)

	calls := make([]atomic.Int64, n)
	done := make([]<-chan error, n)
	for i := range n {
		try := f.writer(key, i, true, &calls[i])
		ch := make(chan error, 1)
		go func() {
			err := w.Wait(context.Background(), key, try, noExpire(t))
			if err == nil {
				f.unlock(t, key, i)
			}
			ch <- err
		}()
		done[i] = ch
		// Queue in a known order: the next starts once this one has joined.
		waitUntil(t, fmt.Sprintf("waiter %d queued", i), func() bool { return w.Waiting(key) == i+1 })
	}
	// While the local holder holds, only the head has tried, once.
	require.EqualValues(t, 1, calls[0].Load())
	for i := 1; i < n; i++ {
		require.Zero(t, calls[i].Load(), "waiter %d tried before its turn", i)
	}

	f.unlock(t, key, -1)
	for i := range n {
		require.NoError(t, result(t, done[i]))
	}
	want := []int{-1}
	for i := range n {
		want = append(want, i)
	}
	require.Equal(t, want, f.acquired())
	// Each waiter tried at most twice: once when it became head (finding
	// its predecessor still holding, perhaps) and once after its Release.
	for i := range n {
		require.LessOrEqual(t, calls[i].Load(), int64(2), "waiter %d polled", i)
	}
	require.Equal(t, lock.Stats{}, w.Stats())
	noLeak(t, before)
}

func TestLocalReleaseWakesWithoutPolling(t *testing.T) {
	before := runtime.NumGoroutine()
	w := lock.NewWaiter(quiet())
	f := newFakeLock(w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	_, err := f.writer("held", -1, true, nil)(ctx)
	require.NoError(t, err)

	// A control waiter whose holder is elsewhere polls, and so measures out
	// a window of time without sleeping.
	var control atomic.Int64
	controlDone := goWait(ctx, w, "remote", never(&control), noExpire(t))

	var calls [3]atomic.Int64
	var done [3]<-chan error
	for i := range done {
		done[i] = goWait(ctx, w, "held", f.reader("held", i, &calls[i]), noExpire(t))
		waitUntil(t, "reader queued", func() bool { return w.Waiting("held") == i+1 })
	}
	waitUntil(t, "the control waiter polled 30 times", func() bool { return control.Load() >= 30 })
	require.EqualValues(t, 1, calls[0].Load(), "head polled while the holder is in this process")
	require.Zero(t, calls[1].Load()+calls[2].Load())

	// StaleAfter and MaxWait are a minute away: only Release can wake them.
	f.unlock(t, "held", -1)
	for i := range done {
		require.NoError(t, result(t, done[i]))
	}
	require.Equal(t, []int{-1, 0, 1, 2}, f.acquired())
	require.EqualValues(t, 2, calls[0].Load())
	require.EqualValues(t, 1, calls[1].Load())
	require.EqualValues(t, 1, calls[2].Load())

	cancel()
	require.ErrorIs(t, result(t, controlDone), context.Canceled)
	require.Equal(t, lock.Stats{}, w.Stats())
	noLeak(t, before)
}

func TestReleaseWakesHeadPausingWithBackoff(t *testing.T) {
	// The head's try fails before the holder records Hold (a provider calls
	// Hold after its Wait returned), so the head first pauses with backoff;
	// a backoff of up to an hour must not delay it past the Release.
	cfg := quiet()
	cfg.PollStart, cfg.PollCap, cfg.StaleAfter, cfg.MaxWait = time.Hour, time.Hour, 2*time.Hour, 2*time.Hour
	w := lock.NewWaiter(cfg)
	var calls atomic.Int64
	try := func(context.Context) (lock.Attempt, error) {
		return lock.Attempt{Acquired: calls.Add(1) == 2, Stamp: 1}, nil
	}
	done := goWait(context.Background(), w, "k", try, noExpire(t))
	waitUntil(t, "first try", func() bool { return calls.Load() == 1 })
	w.Hold("k")
	w.Release("k")
	require.NoError(t, result(t, done))
	require.EqualValues(t, 2, calls.Load())
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestReadersShareTheFIFO(t *testing.T) {
	w := lock.NewWaiter(quiet())
	f := newFakeLock(w)
	const key = "s"
	_, err := f.writer(key, -1, true, nil)(context.Background())
	require.NoError(t, err)

	var calls atomic.Int64
	var done []<-chan error
	for i := range 5 {
		done = append(done, goWait(context.Background(), w, key, f.reader(key, i, &calls), noExpire(t)))
		waitUntil(t, "reader queued", func() bool { return w.Waiting(key) == i+1 })
	}
	writerDone := make(chan error, 1)
	go func() {
		err := w.Wait(context.Background(), key, f.writer(key, 5, true, &calls), noExpire(t))
		if err == nil {
			f.unlock(t, key, 5)
		}
		writerDone <- err
	}()
	waitUntil(t, "writer queued", func() bool { return w.Waiting(key) == 6 })
	require.EqualValues(t, 1, calls.Load())

	f.unlock(t, key, -1)
	for _, ch := range done {
		require.NoError(t, result(t, ch))
	}
	require.NoError(t, result(t, writerDone))
	require.Equal(t, []int{-1, 0, 1, 2, 3, 4, 5}, f.acquired())
	// The head reader tried twice, every later request once: the readers
	// passed one after the other without polling.
	require.EqualValues(t, 7, calls.Load())
}

func TestAdaptiveBackoffGrows(t *testing.T) {
	// Against a lock that never frees, 200 ms of polling from 100 µs
	// doubling to 10 ms (full jitter: 5 ms on average) makes about 45 tries;
	// without growth it would make thousands. On the bubble's clock: the
	// count depends on the jitter, never on the machine's load.
	synctest.Test(t, func(t *testing.T) {
		w := lock.NewWaiter(lock.Config{PollStart: 100 * time.Microsecond, PollCap: 10 * time.Millisecond,
			MaxWait: 200 * time.Millisecond, StaleAfter: time.Minute})
		var calls atomic.Int64
		start := time.Now()
		err := w.Wait(context.Background(), "k", never(&calls), noExpire(t))
		require.ErrorIs(t, err, lock.ErrWaitTimeout)
		require.Equal(t, 200*time.Millisecond, time.Since(start), "MaxWait ends the wait")
		require.GreaterOrEqual(t, calls.Load(), int64(20))
		require.LessOrEqual(t, calls.Load(), int64(100))
	})
}

func TestAdaptiveBackoffRestartsWhenStampChanges(t *testing.T) {
	// A lock that changes hands at every try keeps the backoff at PollStart
	// (100 µs, so 50 µs on average): many more tries in the same window
	// than with the stamp fixed, where the backoff climbs to 20 ms.
	synctest.Test(t, func(t *testing.T) {
		cfg := lock.Config{PollStart: 100 * time.Microsecond, PollCap: 20 * time.Millisecond,
			MaxWait: 100 * time.Millisecond, StaleAfter: time.Minute}
		var fixed, changing atomic.Int64
		err := lock.NewWaiter(cfg).Wait(context.Background(), "k", never(&fixed), noExpire(t))
		require.ErrorIs(t, err, lock.ErrWaitTimeout)
		err = lock.NewWaiter(cfg).Wait(context.Background(), "k", func(context.Context) (lock.Attempt, error) {
			return lock.Attempt{Stamp: uint64(changing.Add(1))}, nil
		}, noExpire(t))
		require.ErrorIs(t, err, lock.ErrWaitTimeout)
		require.Greater(t, changing.Load(), 20*fixed.Load(), "fixed stamp: %d tries, changing: %d", fixed.Load(), changing.Load())
	})
}

func TestASPNETPollsAtFixedInterval(t *testing.T) {
	// 200 ms at one try per 10 ms: a try at 0, 10, ..., 190 ms, and none
	// at 200 ms, when MaxWait ends the wait. On the bubble's clock the
	// count is exact.
	synctest.Test(t, func(t *testing.T) {
		w := lock.NewWaiter(lock.Config{Strategy: lock.ASPNET, ASPNETPoll: 10 * time.Millisecond,
			PollStart: time.Microsecond, PollCap: time.Microsecond,
			MaxWait: 200 * time.Millisecond, StaleAfter: time.Minute})
		var calls atomic.Int64
		err := w.Wait(context.Background(), "k", never(&calls), noExpire(t))
		require.ErrorIs(t, err, lock.ErrWaitTimeout)
		require.EqualValues(t, 20, calls.Load())
	})
}

func TestASPNETIgnoresLocalHolder(t *testing.T) {
	// Under ASPNET a local holder does not stop the polling: the head keeps
	// trying although nobody releases and StaleAfter is a minute away.
	w := lock.NewWaiter(lock.Config{Strategy: lock.ASPNET, ASPNETPoll: time.Millisecond,
		MaxWait: time.Minute, StaleAfter: time.Minute})
	w.Hold("k")
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	done := goWait(ctx, w, "k", never(&calls), noExpire(t))
	waitUntil(t, "5 tries", func() bool { return calls.Load() >= 5 })
	cancel()
	require.ErrorIs(t, result(t, done), context.Canceled)
	w.Release("k")
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestQueueFull(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := quiet()
	cfg.QueueLimit = 3
	w := lock.NewWaiter(cfg)
	w.Hold("k")
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	var done []<-chan error
	for i := range 3 {
		done = append(done, goWait(ctx, w, "k", never(&calls), noExpire(t)))
		waitUntil(t, "queued", func() bool { return w.Waiting("k") == i+1 })
	}
	waitUntil(t, "head tried", func() bool { return calls.Load() == 1 })

	var refused atomic.Int64
	err := w.Wait(context.Background(), "k", never(&refused), noExpire(t))
	require.ErrorIs(t, err, lock.ErrQueueFull)
	require.Zero(t, refused.Load(), "try called on a full queue")
	require.EqualValues(t, 1, w.Stats().QueueFull)
	require.Equal(t, 3, w.Waiting("k"))
	// Another key has its own queue.
	require.NoError(t, w.Wait(context.Background(), "other", func(context.Context) (lock.Attempt, error) {
		return lock.Attempt{Acquired: true}, nil
	}, nil))

	cancel()
	for _, ch := range done {
		require.ErrorIs(t, result(t, ch), context.Canceled)
	}
	require.Zero(t, w.Waiting("k"))
	require.Equal(t, lock.Stats{Holds: 1, Keys: 1, QueueFull: 1}, w.Stats())
	w.Release("k")
	require.Equal(t, lock.Stats{QueueFull: 1}, w.Stats())
	noLeak(t, before)
}

func TestUnlimitedQueue(t *testing.T) {
	cfg := quiet()
	cfg.QueueLimit = -1
	w := lock.NewWaiter(cfg)
	w.Hold("k")
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	var done []<-chan error
	for range lock.DefaultQueueLimit + 10 {
		done = append(done, goWait(ctx, w, "k", never(&calls), nil))
	}
	waitUntil(t, "all queued", func() bool { return w.Waiting("k") == lock.DefaultQueueLimit+10 })
	cancel()
	for _, ch := range done {
		require.ErrorIs(t, result(t, ch), context.Canceled)
	}
	w.Release("k")
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestMaxWait(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := quiet()
	cfg.MaxWait = 30 * time.Millisecond
	w := lock.NewWaiter(cfg)
	var calls atomic.Int64
	// The head polls; the second waits in the queue all along.
	head := goWait(context.Background(), w, "k", never(&calls), noExpire(t))
	waitUntil(t, "head tried", func() bool { return calls.Load() >= 1 })
	var queuedCalls atomic.Int64
	queued := goWait(context.Background(), w, "k", never(&queuedCalls), noExpire(t))

	err := result(t, head)
	require.ErrorIs(t, err, lock.ErrWaitTimeout)
	require.NotErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, result(t, queued), lock.ErrWaitTimeout)
	require.Zero(t, w.Waiting("k"))
	require.Equal(t, lock.Stats{WaitTimeouts: 2}, w.Stats())
	noLeak(t, before)
}

func TestMaxWaitUnderLocalHolder(t *testing.T) {
	// Waiting for a local Release is bounded by MaxWait too.
	cfg := quiet()
	cfg.MaxWait = 20 * time.Millisecond
	w := lock.NewWaiter(cfg)
	w.Hold("k")
	var calls atomic.Int64
	err := w.Wait(context.Background(), "k", never(&calls), noExpire(t))
	require.ErrorIs(t, err, lock.ErrWaitTimeout)
	require.EqualValues(t, 1, calls.Load())
	w.Release("k")
	require.Equal(t, lock.Stats{WaitTimeouts: 1}, w.Stats())
}

func TestContextCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	w := lock.NewWaiter(quiet())
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	head := goWait(ctx, w, "k", never(&calls), noExpire(t))
	waitUntil(t, "head tried", func() bool { return calls.Load() >= 1 })
	queued := goWait(ctx, w, "k", never(&calls), noExpire(t))
	waitUntil(t, "queued", func() bool { return w.Waiting("k") == 2 })
	cancel()
	require.ErrorIs(t, result(t, head), context.Canceled)
	require.ErrorIs(t, result(t, queued), context.Canceled)
	require.Equal(t, lock.Stats{}, w.Stats())
	noLeak(t, before)

	// A context already ended: no try at all.
	calls.Store(0)
	err := w.Wait(ctx, "k", never(&calls), noExpire(t))
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, calls.Load())
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestContextCauseAndDeadline(t *testing.T) {
	w := lock.NewWaiter(quiet())
	errGone := errors.New("client went away")
	ctx, cancel := context.WithCancelCause(context.Background())
	var calls atomic.Int64
	done := goWait(ctx, w, "k", never(&calls), noExpire(t))
	waitUntil(t, "head tried", func() bool { return calls.Load() >= 1 })
	cancel(errGone)
	err := result(t, done)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, errGone)

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer dcancel()
	err = w.Wait(dctx, "k", never(&calls), noExpire(t))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, lock.ErrWaitTimeout)
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestLeavingWakesTheNext(t *testing.T) {
	before := runtime.NumGoroutine()
	w := lock.NewWaiter(quiet())
	f := newFakeLock(w)
	const key = "s"
	_, err := f.writer(key, -1, true, nil)(context.Background())
	require.NoError(t, err)

	// Queue: a (head), b, c, d. b leaves from the middle, then the head is
	// cancelled: c must become head at once and d stay in order behind it.
	actx, acancel := context.WithCancel(context.Background())
	bctx, bcancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	a := goWait(actx, w, key, f.reader(key, 0, &calls), noExpire(t))
	waitUntil(t, "a queued", func() bool { return w.Waiting(key) == 1 })
	b := goWait(bctx, w, key, f.reader(key, 1, &calls), noExpire(t))
	waitUntil(t, "b queued", func() bool { return w.Waiting(key) == 2 })
	c := goWait(context.Background(), w, key, f.reader(key, 2, &calls), noExpire(t))
	waitUntil(t, "c queued", func() bool { return w.Waiting(key) == 3 })
	d := goWait(context.Background(), w, key, f.reader(key, 3, &calls), noExpire(t))
	waitUntil(t, "d queued", func() bool { return w.Waiting(key) == 4 })

	bcancel()
	require.ErrorIs(t, result(t, b), context.Canceled)
	require.Equal(t, 3, w.Waiting(key))
	acancel()
	require.ErrorIs(t, result(t, a), context.Canceled)
	// c is now the head: it tries once and waits for the local Release.
	waitUntil(t, "c tried", func() bool { return calls.Load() == 2 })
	f.unlock(t, key, -1)
	require.NoError(t, result(t, c))
	require.NoError(t, result(t, d))
	require.Equal(t, []int{-1, 2, 3}, f.acquired())
	require.Equal(t, lock.Stats{}, w.Stats())
	noLeak(t, before)
}

func TestTryErrorIsReturnedAndNextWoken(t *testing.T) {
	w := lock.NewWaiter(quiet())
	errStore := errors.New("store down")
	proceed := make(chan struct{})
	head := goWait(context.Background(), w, "k", func(context.Context) (lock.Attempt, error) {
		<-proceed
		return lock.Attempt{}, errStore
	}, noExpire(t))
	waitUntil(t, "head queued", func() bool { return w.Waiting("k") == 1 })
	next := goWait(context.Background(), w, "k", func(context.Context) (lock.Attempt, error) {
		return lock.Attempt{Acquired: true}, nil
	}, noExpire(t))
	waitUntil(t, "next queued", func() bool { return w.Waiting("k") == 2 })
	close(proceed)
	require.Equal(t, errStore, result(t, head), "try's error must come back unchanged")
	require.NoError(t, result(t, next))
	require.Equal(t, lock.Stats{}, w.Stats())
}

// staleLock is a fake remote lock whose holder never renews: its stamp
// stays until expire takes it over.
type staleLock struct {
	mu      sync.Mutex
	stamps  []uint64 // the stamp of each successive abandoned holder
	expired []uint64 // stamps expire was called with
	results []error  // what successive expire calls return (nil when exhausted)
	tries   int
}

func (l *staleLock) try(context.Context) (lock.Attempt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tries++
	if len(l.stamps) == 0 {
		return lock.Attempt{Acquired: true}, nil
	}
	return lock.Attempt{Stamp: l.stamps[0]}, nil
}

func (l *staleLock) expire(_ context.Context, stamp uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expired = append(l.expired, stamp)
	var err error
	if len(l.results) > 0 {
		err, l.results = l.results[0], l.results[1:]
	}
	if err == nil && len(l.stamps) > 0 && l.stamps[0] == stamp {
		l.stamps = l.stamps[1:]
	}
	return err
}

func staleConfig() lock.Config {
	return lock.Config{StaleAfter: 5 * time.Millisecond, PollStart: 100 * time.Microsecond,
		PollCap: time.Millisecond, MaxWait: time.Minute}
}

func TestStaleStampExpiredOnce(t *testing.T) {
	w := lock.NewWaiter(staleConfig())
	l := &staleLock{stamps: []uint64{7}}
	require.NoError(t, w.Wait(context.Background(), "k", l.try, l.expire))
	require.Equal(t, []uint64{7}, l.expired)
	require.EqualValues(t, 1, w.Stats().Expirations)

	// Two abandoned holders in a row (the second took over, then died too):
	// one expire each, with its own stamp.
	l = &staleLock{stamps: []uint64{7, 8}}
	require.NoError(t, w.Wait(context.Background(), "k", l.try, l.expire))
	require.Equal(t, []uint64{7, 8}, l.expired)
	require.EqualValues(t, 3, w.Stats().Expirations)
}

func TestStaleLocalHolderWaitsStaleAfterThenExpires(t *testing.T) {
	// With the holder in this process (which never releases), the head
	// makes no try until StaleAfter has passed, then expires it.
	w := lock.NewWaiter(staleConfig())
	w.Hold("k")
	defer w.Release("k")
	l := &staleLock{stamps: []uint64{7}}
	require.NoError(t, w.Wait(context.Background(), "k", l.try, l.expire))
	require.Equal(t, []uint64{7}, l.expired)
	require.Equal(t, 3, l.tries, "first try, one after StaleAfter, one after expire")
}

func TestRenewingHolderNeverExpired(t *testing.T) {
	// On the bubble's clock: a loaded machine cannot starve the waiter of
	// tries within the ten StaleAfter periods.
	synctest.Test(t, func(t *testing.T) {
		w := lock.NewWaiter(staleConfig())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var first time.Time
		var stamp uint64
		try := func(context.Context) (lock.Attempt, error) {
			if first.IsZero() {
				first = time.Now()
			}
			if time.Since(first) >= 10*staleConfig().StaleAfter {
				cancel()
			}
			stamp++ // the holder renewed its lease since the last look
			return lock.Attempt{Stamp: stamp}, nil
		}
		err := w.Wait(ctx, "k", try, noExpire(t))
		require.ErrorIs(t, err, context.Canceled)
		require.Greater(t, stamp, uint64(10))
		require.Zero(t, w.Stats().Expirations)
	})
}

func TestExpireErrRetryKeepsWaiting(t *testing.T) {
	w := lock.NewWaiter(staleConfig())
	// The first takeover loses a race (ErrRetry, wrapped); the same state
	// goes stale again after another StaleAfter and the second succeeds.
	l := &staleLock{stamps: []uint64{7}, results: []error{fmt.Errorf("cas conflict: %w", lock.ErrRetry)}}
	require.NoError(t, w.Wait(context.Background(), "k", l.try, l.expire))
	require.Equal(t, []uint64{7, 7}, l.expired)
}

func TestExpireAtMostOncePerStaleAfter(t *testing.T) {
	// A takeover that keeps losing (ErrRetry) while the state stays the
	// same is retried once per StaleAfter, not in a hot loop: 60 ms at one
	// per 10 ms, on the bubble's clock, is 5 (at 10, 20, ..., 50 ms; the
	// one due at 60 ms meets MaxWait).
	synctest.Test(t, func(t *testing.T) {
		cfg := staleConfig()
		cfg.StaleAfter, cfg.MaxWait = 10*time.Millisecond, 60*time.Millisecond
		w := lock.NewWaiter(cfg)
		var calls, expired atomic.Int64
		err := w.Wait(context.Background(), "k", never(&calls), func(context.Context, uint64) error {
			expired.Add(1)
			return lock.ErrRetry
		})
		require.ErrorIs(t, err, lock.ErrWaitTimeout)
		require.EqualValues(t, 5, expired.Load())
		require.EqualValues(t, expired.Load(), w.Stats().Expirations)
	})
}

func TestExpireErrorIsReturned(t *testing.T) {
	w := lock.NewWaiter(staleConfig())
	errStore := errors.New("store down")
	l := &staleLock{stamps: []uint64{7}, results: []error{errStore}}
	err := w.Wait(context.Background(), "k", l.try, l.expire)
	require.ErrorIs(t, err, errStore)
	require.Equal(t, []uint64{7}, l.expired)
	require.Equal(t, lock.Stats{Expirations: 1}, w.Stats())
}

func TestNilExpireNeverExpires(t *testing.T) {
	cfg := staleConfig()
	cfg.MaxWait = 30 * time.Millisecond
	w := lock.NewWaiter(cfg)
	l := &staleLock{stamps: []uint64{7}}
	require.ErrorIs(t, w.Wait(context.Background(), "k", l.try, nil), lock.ErrWaitTimeout)
	require.Zero(t, w.Stats().Expirations)
}

func TestHoldIsCounted(t *testing.T) {
	w := lock.NewWaiter(quiet())
	w.Release("k") // no Hold: no-op
	require.Equal(t, lock.Stats{}, w.Stats())
	w.Hold("k")
	w.Hold("k")
	require.Equal(t, lock.Stats{Holds: 2, Keys: 1}, w.Stats())
	w.Release("k")
	require.Equal(t, lock.Stats{Holds: 1, Keys: 1}, w.Stats())
	w.Release("k")
	w.Release("k")
	require.Equal(t, lock.Stats{}, w.Stats())
}

func TestBadInput(t *testing.T) {
	w := lock.NewWaiter(lock.Config{})
	require.Error(t, w.Wait(context.Background(), "k", nil, nil))

	bad := lock.NewWaiter(lock.Config{Strategy: 9})
	err := bad.Wait(context.Background(), "k", func(context.Context) (lock.Attempt, error) {
		t.Error("try called with an unknown strategy")
		return lock.Attempt{}, nil
	}, nil)
	require.ErrorContains(t, err, "Strategy(9)")

	cfg := lock.NewWaiter(lock.Config{PollStart: -1, PollCap: -5, ASPNETPoll: -1, StaleAfter: -1}).Config()
	require.Equal(t, lock.Config{QueueLimit: lock.DefaultQueueLimit, MaxWait: lock.DefaultMaxWait,
		PollStart: lock.DefaultPollStart, PollCap: lock.DefaultPollCap, ASPNETPoll: lock.DefaultASPNETPoll,
		StaleAfter: lock.DefaultStaleAfter}, cfg)
	cfg = lock.NewWaiter(lock.Config{PollStart: time.Second, PollCap: time.Millisecond}).Config()
	require.Equal(t, time.Second, cfg.PollCap)
}

func TestStrategyNames(t *testing.T) {
	for _, s := range []lock.Strategy{lock.Adaptive, lock.ASPNET} {
		got, err := lock.ParseStrategy(s.String())
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	_, err := lock.ParseStrategy("spin")
	require.Error(t, err)
}

func TestStress(t *testing.T) {
	const (
		goroutines = 64
		keys       = 10
		rounds     = 120
	)
	before := runtime.NumGoroutine()
	w := lock.NewWaiter(lock.Config{QueueLimit: -1, PollStart: 50 * time.Microsecond, PollCap: time.Millisecond,
		MaxWait: time.Minute, StaleAfter: time.Minute})
	f := newFakeLock(w)
	var inside [keys]atomic.Int32
	var violations, acquired, read, cancelled atomic.Int64

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			// A quarter of the goroutines stand for other processes (no
			// Hold/Release: their waiters must poll), some are readers.
			local := g%4 != 0
			reader := g%9 == 0
			for r := range rounds {
				k := (g*7 + r*3) % keys
				key := fmt.Sprint("session-", k)
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if r%7 == 3 {
					ctx, cancel = context.WithTimeout(ctx, 200*time.Microsecond)
				}
				id := g*rounds + r
				var try func(context.Context) (lock.Attempt, error)
				if reader {
					try = f.reader(key, id, nil)
				} else {
					try = f.writer(key, id, local, nil)
				}
				err := w.Wait(ctx, key, try, noExpire(t))
				cancel()
				switch {
				case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
					cancelled.Add(1)
				case err != nil:
					t.Errorf("Wait: %v", err)
				case reader:
					read.Add(1)
				default:
					if inside[k].Add(1) != 1 {
						violations.Add(1)
					}
					runtime.Gosched()
					inside[k].Add(-1)
					acquired.Add(1)
					f.unlock(t, key, id)
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatalf("stress did not finish: %+v", w.Stats())
	}
	require.Zero(t, violations.Load(), "two holders inside one critical section")
	require.EqualValues(t, goroutines*rounds, acquired.Load()+read.Load()+cancelled.Load())
	require.Positive(t, acquired.Load())
	require.Positive(t, read.Load())
	t.Logf("acquired %d, read %d, cancelled %d", acquired.Load(), read.Load(), cancelled.Load())
	require.Equal(t, lock.Stats{}, w.Stats())
	noLeak(t, before)
}

func BenchmarkWaitUncontended(b *testing.B) {
	w := lock.NewWaiter(lock.Config{})
	ctx := context.Background()
	try := func(context.Context) (lock.Attempt, error) { return lock.Attempt{Acquired: true}, nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Wait(ctx, "session", try, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandoff measures one in-process hand-over: a holder releases and
// the waiter queued behind it acquires. Two goroutines pass one lock back
// and forth; each op is one acquisition.
func BenchmarkHandoff(b *testing.B) {
	w := lock.NewWaiter(lock.Config{QueueLimit: -1, MaxWait: time.Minute, StaleAfter: time.Minute})
	var (
		mu     sync.Mutex
		locked bool
		stamp  uint64
		left   atomic.Int64
	)
	try := func(context.Context) (lock.Attempt, error) {
		mu.Lock()
		defer mu.Unlock()
		if locked {
			return lock.Attempt{Stamp: stamp}, nil
		}
		locked = true
		stamp++
		w.Hold("session")
		return lock.Attempt{Acquired: true}, nil
	}
	unlock := func() {
		mu.Lock()
		locked = false
		stamp++
		mu.Unlock()
		w.Release("session")
	}
	left.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := w.Wait(context.Background(), "session", try, nil); err != nil {
					b.Error(err)
					return
				}
				unlock()
			}
		})
	}
	wg.Wait()
}
