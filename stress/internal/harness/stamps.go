package harness

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// stampsKey is the context key of a request's *stamps.
type stampsKey struct{}

// stamps records when each of one request's writes that changed its
// session's record (Add, CompareAndSwap, CompareAndAppend) was called, if
// it succeeded: the writes made with the request's context, which reaches
// the store through the provider (the lock's write in AcquireItem, its
// lease renewals in KeepLease, under context.WithoutCancel of it; a lock
// it broke while waiting, before its own). A holder's lease runs a lease
// from the call of its last such write (the lock's, or a renewal's), as
// the simulation's two-holders check counts it per request (stress/sim,
// twoHolders). Another request's write of the record (a lock-free commit
// of the same app server) is not the holder's: it does not renew the
// lease the waiters watch (provider's lockStamp).
type stamps struct {
	mu sync.Mutex
	at []int64 // Unix ns of each successful write's call
}

// A write of unknown outcome is recorded too: the provider may settle it
// as landed by reading it back (a lock taken with no successful write);
// a lease from its call is never longer than the truth when it landed,
// and when it did not, a later call only makes the check stricter.
func (s *stamps) add(at time.Time, err error) {
	if s == nil || err != nil && !errors.Is(err, provider.ErrOutcomeUnknown) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, at.UnixNano())
}

// within returns the calls of the request's successful writes in
// [from, to].
func (s *stamps) within(from, to int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, t := range s.at {
		if t >= from && t <= to {
			out = append(out, t)
		}
	}
	return out
}

// stamp records, in the stamps of ctx if it has one, a write called at
// at that ended with err.
func stamp(ctx context.Context, at time.Time, err error) {
	s, _ := ctx.Value(stampsKey{}).(*stamps)
	s.add(at, err)
}

// lockEpochKey is the context key of a request's *lockEpoch.
type lockEpochKey struct{}

// lockEpoch records the epoch (record.Epoch) of the first whole record a
// request wrote (Add, CompareAndSwap): an exclusive request's lock. A
// revival from tiered's durable tier (the cache lost the record) starts a
// new epoch and fences every holder of a lock of the one before
// (store/tiered's package documentation), so two holders of different
// epochs are the revival working, as the simulation's epochHolders counts
// them. An appended change (CompareAndAppend) carries no header: not
// recorded, so a request whose lock was appended has no epoch.
type lockEpoch struct {
	v atomic.Uint64 // the epoch + 1; 0 while none was seen
}

// note records value's epoch if it is the first write seen, on the
// conditions stamps.add records a write on.
func (e *lockEpoch) note(value []byte, err error) {
	if e == nil || err != nil && !errors.Is(err, provider.ErrOutcomeUnknown) {
		return
	}
	if h, perr := record.Parse(value); perr == nil {
		e.v.CompareAndSwap(0, record.Epoch(h.Seq)+1)
	}
}

// get returns the epoch recorded, and whether one was.
func (e *lockEpoch) get() (uint64, bool) {
	v := e.v.Load()
	return v - 1, v > 0
}

func noteEpoch(ctx context.Context, value []byte, err error) {
	e, _ := ctx.Value(lockEpochKey{}).(*lockEpoch)
	e.note(value, err)
}

// stampStore records the successful writes of an app server's provider
// in the stamps and the lockEpoch of the request whose context each is
// made with. It keeps the optional interfaces (provider.Appender,
// provider.GetAndToucher) of the store it wraps, so that the provider
// behaves as it would over that store.
type stampStore struct {
	provider.Store
}

func (s stampStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	at := time.Now()
	cas, err := s.Store.Add(ctx, key, value, ttl)
	stamp(ctx, at, err)
	noteEpoch(ctx, value, err)
	return cas, err
}

func (s stampStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	at := time.Now()
	out, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	stamp(ctx, at, err)
	noteEpoch(ctx, value, err)
	return out, err
}

// Close does not close the store underneath (the app does not own it).
func (s stampStore) Close() error { return nil }

type stampAppender struct {
	stampStore
	ap provider.Appender
}

func (s stampAppender) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (uint64, uint64, error) {
	at := time.Now()
	out, touched, err := s.ap.CompareAndAppend(ctx, key, delta, cas, ttl)
	stamp(ctx, at, err)
	return out, touched, err
}

type stampToucher struct {
	stampStore
	gt provider.GetAndToucher
}

func (s stampToucher) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	return s.gt.GetAndTouch(ctx, key, ttl)
}

type stampBoth struct {
	stampAppender
	gt provider.GetAndToucher
}

func (s stampBoth) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	return s.gt.GetAndTouch(ctx, key, ttl)
}

// stamped wraps store in a stampStore with the same optional interfaces.
func stamped(store provider.Store) provider.Store {
	base := stampStore{Store: store}
	ap, isAp := store.(provider.Appender)
	gt, isGt := store.(provider.GetAndToucher)
	switch {
	case isAp && isGt:
		return stampBoth{stampAppender{base, ap}, gt}
	case isAp:
		return stampAppender{base, ap}
	case isGt:
		return stampToucher{base, gt}
	}
	return base
}
