package provider

// The read path: reading a session and sliding its expiry by its own
// timeout (or what remains of its lifetime, if less), exact under any
// interleaving with commits that change that timeout (I4), without adding
// an operation to the common case.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/record"
)

// maxTimeoutMemo bounds the per-process memo of sessions whose own
// timeout is not the default.
const maxTimeoutMemo = 4096

// timeoutMemo remembers, per key, the last own timeout this process saw
// for sessions whose timeout is not the provider's default. It is only a
// hint: a wrong one costs one compare-and-swap, never correctness.
type timeoutMemo struct {
	mu sync.Mutex
	m  map[string]time.Duration
}

func (t *timeoutMemo) get(key string, def time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.m[key]; ok {
		return d
	}
	return def
}

func (t *timeoutMemo) see(key string, d, def time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d == def {
		delete(t.m, key)
		return
	}
	if _, ok := t.m[key]; !ok && len(t.m) >= maxTimeoutMemo {
		for k := range t.m { // evict an arbitrary entry
			delete(t.m, k)
			break
		}
	}
	t.m[key] = d
}

// ttlOf is the TTL record r must have (I4): its own timeout, or what
// remains of its lifetime when that is less; the tombstone TTL for a
// removed session.
func (p *Provider) ttlOf(r *record.Record) time.Duration {
	if r.Removed {
		return p.cfg.TombstoneTTL
	}
	if left, ok := p.remaining(r); ok && left < r.Timeout {
		return max(left, time.Millisecond) // past its lifetime nothing writes it but a tombstone
	}
	return r.Timeout
}

// remaining returns what remains of r's lifetime by this server's clock,
// at most Lifetime; ok is false when r has no lifetime (no Lifetime
// configured, or no creation time stored).
func (p *Provider) remaining(r *record.Record) (left time.Duration, ok bool) {
	if p.cfg.Lifetime <= 0 || r.Created.IsZero() {
		return 0, false
	}
	return min(r.Created.Add(p.cfg.Lifetime).Sub(p.cfg.Now()), p.cfg.Lifetime), true
}

// ended reports whether live record r has reached its lifetime. Such a
// record is treated as the store would treat it had it expired: absent,
// except that a session created in its place continues its lock ids.
func (p *Provider) ended(r *record.Record) bool {
	if r.Removed {
		return false
	}
	left, ok := p.remaining(r)
	return ok && left <= 0
}

// gone reports whether r holds no live session: absent, a tombstone, or
// past its lifetime.
func (p *Provider) gone(r *record.Record) bool {
	return r == nil || r.Removed || p.ended(r)
}

// deadline is when r reaches its lifetime, zero when it has none.
func (p *Provider) deadline(r *record.Record) time.Time {
	if p.cfg.Lifetime <= 0 || r.Created.IsZero() {
		return time.Time{}
	}
	return r.Created.Add(p.cfg.Lifetime)
}

// withCreated gives a live record stored without a creation time (format
// version 1, or written while no Lifetime was set) the creation time now,
// when a Lifetime is set: its lifetime counts from the first write that
// sees it. It returns a copy; cur itself is not changed.
func (p *Provider) withCreated(cur *record.Record) *record.Record {
	if p.cfg.Lifetime <= 0 || cur == nil || cur.Removed || !cur.Created.IsZero() {
		return cur
	}
	c := *cur
	c.Created = p.cfg.Now()
	return &c
}

// readSliding reads the record under key and slides its expiry by the
// TTL it must have (ttlOf), for the read path. skip reports records whose
// expiry must not slide (absent for the caller: removed, or locked by
// another request), which are returned as read.
//
// With a GetAndToucher it is one operation: read and touch at once with
// the timeout the session is expected to have (the memo's, or the
// default). Only when the record says otherwise is the TTL corrected by a
// compare-and-swap of the unchanged record: if that fails, a newer write
// landed after the touch and set its own TTL. Without one, the record is
// read with Get and slid with that same compare-and-swap: never a blind
// Touch, which could land after a commit that changed the timeout.
func (p *Provider) readSliding(ctx context.Context, key string, skip func(*record.Record) bool) (*record.Record, error) {
	var e Entry
	var err error
	hint := time.Duration(0)
	gt, atomic := p.store.(GetAndToucher)
	if atomic {
		hint = p.timeouts.get(key, p.cfg.DefaultTimeout)
		e, err = gt.GetAndTouch(ctx, key, hint)
	} else {
		e, err = p.store.Get(ctx, key)
	}
	if err != nil {
		return nil, err
	}
	r, err := record.Decode(e.Value)
	p.written.saw(key, e.CAS, err == nil)
	if err != nil {
		return nil, wrapKey(key, err)
	}
	if !r.Removed {
		p.timeouts.see(key, r.Timeout, p.cfg.DefaultTimeout)
	}
	if p.ended(&r) {
		// Past its lifetime: replace it by a tombstone (once), which
		// every server then sees as removed, whatever its clock, and a
		// durable tier as a data change. A conflict means a newer write
		// landed; either way the caller finds no session.
		t := tombstone(&r)
		_, err = p.store.CompareAndSwap(ctx, key, t.Encode(), e.CAS, p.ttlOf(t))
		if err != nil && !errors.Is(err, ErrCASConflict) && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return &r, nil
	}
	// want is the own timeout, or less in the last stretch of a lifetime:
	// only then (or when the memo was wrong) does a slide take a second
	// operation.
	want := p.ttlOf(&r)
	if atomic && want == hint || !atomic && skip(&r) {
		return &r, nil
	}
	_, err = p.store.CompareAndSwap(ctx, key, e.Value, e.CAS, want)
	switch {
	case err == nil, errors.Is(err, ErrCASConflict):
		// Slid, or a newer write set its own TTL after our read.
		return &r, nil
	case errors.Is(err, ErrNotFound):
		return nil, err
	}
	return nil, err
}
