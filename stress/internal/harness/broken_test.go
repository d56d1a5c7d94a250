package harness_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// The deliberately broken stores below bring back the bugs of the earlier
// session providers (see PRIOR_ART.md) underneath the real provider, so the
// harness's tests can show that it catches them.

// droppedRelease makes every compare-and-swap that unlocks a session "tried
// once, failure ignored", as the Couchbase provider's lock-clear was: when
// a release (or a commit, which releases too) loses its CAS to a
// concurrent write, it reports success without writing anything, so the
// session stays locked and the commit's data is gone.
type droppedRelease struct {
	provider.Store
	dropped *atomic.Int64
}

func (s droppedRelease) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	n, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	if !errors.Is(err, provider.ErrCASConflict) {
		return n, err
	}
	next, perr := record.Parse(value)
	if perr != nil || next.Locked {
		return n, err
	}
	e, gerr := s.Store.Get(ctx, key)
	if gerr != nil {
		return n, err
	}
	cur, perr := record.Parse(e.Value)
	if perr != nil || !cur.Locked || cur.LockID != next.LockID {
		return n, err
	}
	// The holder's own unlock lost the race: pretend it worked.
	s.dropped.Add(1)
	return 0, nil
}

func (s droppedRelease) Close() error { return nil }

// blindWrites ignores the CAS token: every compare-and-swap overwrites
// whatever is stored (memcached providers without CAS did this). Two
// requests can then both take a session's lock, and concurrent commits
// overwrite each other.
type blindWrites struct {
	provider.Store
	overwrote *atomic.Int64
}

func (s blindWrites) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	for {
		e, err := s.Store.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		if e.CAS != cas {
			s.overwrote.Add(1)
		}
		n, err := s.Store.CompareAndSwap(ctx, key, value, e.CAS, ttl)
		if !errors.Is(err, provider.ErrCASConflict) {
			return n, err
		}
	}
}

func (s blindWrites) Close() error { return nil }

// staleReads serves every other read of a record that changed from the
// snapshot before its latest change: a replica that lags, or a cache that
// keeps an old copy. A read-only request then returns a counter older
// than an increment acknowledged before it was sent; an exclusive one
// fails its compare-and-swap on the old token and reads again, so
// nothing is lost: only the counter check sees it.
type staleReads struct {
	provider.Store
	mu     *sync.Mutex
	cur    map[string]provider.Entry
	old    map[string]provider.Entry
	reads  *atomic.Int64
	served *atomic.Int64
}

func newStaleReads(s provider.Store, served *atomic.Int64) staleReads {
	return staleReads{Store: s, mu: &sync.Mutex{}, cur: map[string]provider.Entry{}, old: map[string]provider.Entry{}, reads: &atomic.Int64{}, served: served}
}

func (s staleReads) Get(ctx context.Context, key string) (provider.Entry, error) {
	e, err := s.Store.Get(ctx, key)
	if err != nil {
		return e, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cur[key]; !ok || c.CAS != e.CAS {
		if ok {
			s.old[key] = c
		}
		s.cur[key] = e
	}
	if o, ok := s.old[key]; ok && s.reads.Add(1)%2 == 0 {
		s.served.Add(1)
		return o, nil
	}
	return e, nil
}

func (s staleReads) Close() error { return nil }

// noExpiry ignores the TTL the provider asks for: every write and touch
// gives the item an hour, as a store (or a repair path) that re-sets
// items without their TTL would. A session idle past its own timeout
// then comes back.
type noExpiry struct {
	provider.Store
	ignored *atomic.Int64
}

// noExpiryTTL is the TTL noExpiry gives every item.
const noExpiryTTL = time.Hour

func (s noExpiry) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	s.ignored.Add(1)
	return s.Store.Add(ctx, key, value, noExpiryTTL)
}

func (s noExpiry) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	s.ignored.Add(1)
	return s.Store.CompareAndSwap(ctx, key, value, cas, noExpiryTTL)
}

func (s noExpiry) Touch(ctx context.Context, key string, ttl time.Duration) error {
	s.ignored.Add(1)
	return s.Store.Touch(ctx, key, noExpiryTTL)
}

func (s noExpiry) Close() error { return nil }

// outlivingCopy takes a lone copy that outlived the others for the
// session, as a replicated store that believed its longest-lived copy
// would: it keeps the last value written to each key as a copy of its
// own that lives its TTL plus lag (a node whose clock runs lag behind),
// and when the store answers not found while that copy lives, it writes
// the copy back (with the copy's remaining life) and serves it. With lag
// longer than the skew the harness waits for (Config.ExpirySkew), an
// expired session comes back.
type outlivingCopy struct {
	provider.Store
	lag    time.Duration
	mu     *sync.Mutex
	copies map[string]keptCopy
	served *atomic.Int64
}

// keptCopy is outlivingCopy's copy of a key.
type keptCopy struct {
	value []byte
	until time.Time
}

func newOutlivingCopy(s provider.Store, lag time.Duration, served *atomic.Int64) outlivingCopy {
	return outlivingCopy{Store: s, lag: lag, mu: &sync.Mutex{}, copies: map[string]keptCopy{}, served: served}
}

func (s outlivingCopy) keep(key string, value []byte, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.copies[key] = keptCopy{value: append([]byte(nil), value...), until: time.Now().Add(ttl + s.lag)}
}

func (s outlivingCopy) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	cas, err := s.Store.Add(ctx, key, value, ttl)
	if err == nil {
		s.keep(key, value, ttl)
	}
	return cas, err
}

func (s outlivingCopy) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	n, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	if err == nil {
		s.keep(key, value, ttl)
	}
	return n, err
}

func (s outlivingCopy) Get(ctx context.Context, key string) (provider.Entry, error) {
	e, err := s.Store.Get(ctx, key)
	if !errors.Is(err, provider.ErrNotFound) {
		return e, err
	}
	s.mu.Lock()
	c, ok := s.copies[key]
	s.mu.Unlock()
	left := time.Until(c.until)
	if !ok || left <= 0 {
		return e, err
	}
	cas, aerr := s.Store.Add(ctx, key, c.value, left)
	if aerr != nil {
		return e, err
	}
	s.served.Add(1)
	return provider.Entry{Value: c.value, CAS: cas}, nil
}

func (s outlivingCopy) Close() error { return nil }
