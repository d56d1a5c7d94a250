package provider

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/lock"
)

// AcquireItem takes the session's lock, waiting while another request holds
// it: the session-state module's loop around GetItemExclusive. Waiting is
// paced by the provider's lock.Waiter (FIFO in this process, woken at once
// by a release in this process, backoff for holders elsewhere). A lock
// whose record stays unchanged for one lease (LockTimeout when leases are
// off) is broken with BreakLock and taken. Errors: ErrNotFound,
// lock.ErrQueueFull, lock.ErrWaitTimeout, the context's error, store errors.
// In lock-free mode it never waits.
func (p *Provider) AcquireItem(ctx context.Context, id string) (*Item, error) {
	if p.cfg.LockFree {
		return p.GetItemExclusive(ctx, id)
	}
	return p.wait(ctx, id, p.GetItemExclusive)
}

// ReadItem returns the session for a read-only request, waiting while a
// writer holds its lock (ASP.NET's ReadOnly pages wait behind writers).
func (p *Provider) ReadItem(ctx context.Context, id string) (*Item, error) {
	if p.cfg.LockFree {
		return p.GetItem(ctx, id)
	}
	return p.wait(ctx, id, p.GetItem)
}

func (p *Provider) wait(ctx context.Context, id string, get func(context.Context, string) (*Item, error)) (*Item, error) {
	key, err := p.Key(id)
	if err != nil {
		return nil, err
	}
	var item *Item
	try := func(ctx context.Context) (lock.Attempt, error) {
		it, err := get(ctx, id)
		var locked *LockedError
		if errors.As(err, &locked) {
			return lock.Attempt{Stamp: locked.Stamp}, nil
		}
		if err != nil {
			return lock.Attempt{}, err
		}
		item = it
		return lock.Attempt{Acquired: true}, nil
	}
	expire := func(ctx context.Context, stamp uint64) error {
		return p.BreakLock(ctx, id, stamp)
	}
	if err := p.waiter.Wait(ctx, key, try, expire); err != nil {
		return nil, err
	}
	return item, nil
}

// Waiting returns how many requests in this process wait for session id.
func (p *Provider) Waiting(id string) int {
	key, err := p.Key(id)
	if err != nil {
		return 0
	}
	return p.waiter.Waiting(key)
}

// WaitStats returns a snapshot of the provider's waiting side, shared with
// its LockFree copies: requests waiting now, locks found abandoned and
// broken (Expirations: takeovers), waits refused with lock.ErrQueueFull and
// waits ended by lock.ErrWaitTimeout.
func (p *Provider) WaitStats() lock.Stats { return p.waiter.Stats() }

// Lease keeps a held lock alive by renewing it in the background. Stop it
// before committing or releasing.
//
// It runs on a timer, not a goroutine of its own: a request that ends
// before its first renewal is due (almost every request) costs no
// goroutine, and Stop then waits for nothing to be scheduled.
type Lease struct {
	mu      sync.Mutex
	timer   *time.Timer   // nil when nothing is renewed
	stopped bool          // Stop was called, or the lock was lost
	running chan struct{} // closed when the renewal in flight ends; nil when none
	lost    chan struct{}

	renewals atomic.Int64
}

// KeepLease renews lock lockID of session id every third of a lease until
// Stop is called or the lock is lost (then Lost is closed). Renewals use a
// context that outlives ctx's cancellation, bounded per call, so a client
// that disconnects does not make a living handler lose its lock. With
// leases off, lock-free mode or lockID 0 it renews nothing.
func (p *Provider) KeepLease(ctx context.Context, id string, lockID uint64) *Lease {
	l := &Lease{lost: make(chan struct{})}
	if !p.cfg.leased() || p.cfg.LockFree || lockID == 0 {
		return l
	}
	ctx = context.WithoutCancel(ctx)
	interval := p.cfg.Lease / 3
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = time.AfterFunc(interval, func() { l.renew(ctx, p, id, lockID, interval) })
	return l
}

// renew runs one renewal when the timer fires, and sets the timer for the
// next one an interval after this one started (as a ticker would), unless
// the lease was stopped meanwhile or the lock is lost. Other errors (a
// store hiccup) are retried at the next renewal: the lease lasts three
// intervals.
func (l *Lease) renew(ctx context.Context, p *Provider, id string, lockID uint64, interval time.Duration) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	done := make(chan struct{})
	l.running = done
	l.mu.Unlock()
	defer close(done)

	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, interval)
	err := p.RenewLease(rctx, id, lockID)
	cancel()
	if err == nil {
		l.renewals.Add(1)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = nil
	switch {
	case errors.Is(err, ErrLockLost):
		l.stopped = true
		close(l.lost)
	case !l.stopped:
		l.timer.Reset(max(0, interval-time.Since(start)))
	}
}

// Stop stops the renewals and waits until no renewal is in flight. It is
// safe to call more than once.
func (l *Lease) Stop() {
	l.mu.Lock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
	running := l.running
	l.mu.Unlock()
	if running != nil {
		<-running
	}
}

// Renewals returns how many renewals have succeeded so far.
func (l *Lease) Renewals() int64 { return l.renewals.Load() }

// Lost is closed when a renewal found the lock taken over.
func (l *Lease) Lost() <-chan struct{} { return l.lost }
