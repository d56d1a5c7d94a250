package provider

// The read path: reading a session and sliding its expiry by its own
// timeout, exact under any interleaving with commits that change that
// timeout (I4), without adding an operation to the common case.

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

// ttlOf is the TTL record r must have: its own timeout, or the tombstone
// TTL for a removed session.
func (p *Provider) ttlOf(r *record.Record) time.Duration {
	if r.Removed {
		return p.cfg.TombstoneTTL
	}
	return r.Timeout
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
