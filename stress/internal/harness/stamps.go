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

// stamps records, per store key, when each of this app server's writes
// that changed the record (Add, CompareAndSwap, CompareAndAppend) was
// called, if it succeeded: a holder's lease runs a lease from the call of
// its last such write (the lock's, or a renewal's), as the simulation's
// two-holders check counts it (stress/sim, twoHolders).
type stamps struct {
	mu sync.Mutex
	at map[string][]int64 // key -> Unix ns of each successful write's call
}

func newStamps() *stamps { return &stamps{at: map[string][]int64{}} }

// A write of unknown outcome is recorded too: the provider may settle it
// as landed by reading it back (a lock taken with no successful write);
// a lease from its call is never longer than the truth when it landed,
// and when it did not, a later call only makes the check stricter.
func (s *stamps) add(key string, at time.Time, err error) {
	if err != nil && !errors.Is(err, provider.ErrOutcomeUnknown) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Requests are bounded far below stampsKept: older calls are dropped.
	old := at.Add(-stampsKept).UnixNano()
	keep := s.at[key]
	for len(keep) > 0 && keep[0] < old {
		keep = keep[1:]
	}
	s.at[key] = append(keep, at.UnixNano())
}

// stampsKept is how long stamps keeps a write's call.
const stampsKept = 10 * time.Minute

// within returns the calls of key's successful writes in [from, to].
func (s *stamps) within(key string, from, to int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, t := range s.at[key] {
		if t >= from && t <= to {
			out = append(out, t)
		}
	}
	return out
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

// stampStore records the successful writes of an app server's provider.
// It keeps the optional interfaces (provider.Appender,
// provider.GetAndToucher) of the store it wraps, so that the provider
// behaves as it would over that store.
type stampStore struct {
	provider.Store
	rec *stamps
}

func (s stampStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	at := time.Now()
	cas, err := s.Store.Add(ctx, key, value, ttl)
	s.rec.add(key, at, err)
	noteEpoch(ctx, value, err)
	return cas, err
}

func (s stampStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	at := time.Now()
	out, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	s.rec.add(key, at, err)
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
	s.rec.add(key, at, err)
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
func stamped(store provider.Store, rec *stamps) provider.Store {
	base := stampStore{Store: store, rec: rec}
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
