package provider

// Deliberately broken variants of the provider, kept in test code. Each
// reintroduces one bug of the earlier providers (../shared/PRIOR_ART.md);
// the conformance checks must catch every one of them (broken_test.go).

import (
	"context"
	"time"

	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

// NoRetryRelease is the Couchbase provider's stuck-lock bug: the release
// CAS is tried once and a conflict is ignored.
type NoRetryRelease struct{ *Provider }

func (b NoRetryRelease) releaseOnce(ctx context.Context, id string, lockID uint64, data *session.Data) error {
	key, err := b.Key(id)
	if err != nil {
		return err
	}
	defer b.unhold(key, lockID)
	cur, cas, err := b.read(ctx, key)
	if err != nil {
		return err
	}
	if err := b.checkHolder(id, cur, lockID); err != nil {
		return err
	}
	next := *cur
	next.Locked = false
	next.Seq++
	if data != nil {
		v, err := data.Values.Encode(0)
		if err != nil {
			return err
		}
		next.Values = v
		next.DataSeq++
	}
	_, _ = b.store.CompareAndSwap(ctx, key, next.Encode(), cas, next.Timeout) // BUG: failure ignored
	return nil
}

// ReleaseItemExclusive releases with one CAS attempt.
func (b NoRetryRelease) ReleaseItemExclusive(ctx context.Context, id string, lockID uint64) error {
	return b.releaseOnce(ctx, id, lockID, nil)
}

// SetAndReleaseItemExclusive commits with one CAS attempt.
func (b NoRetryRelease) SetAndReleaseItemExclusive(ctx context.Context, id string, data *session.Data, lockID uint64, newItem bool) error {
	if newItem {
		return b.Provider.SetAndReleaseItemExclusive(ctx, id, data, lockID, newItem)
	}
	return b.releaseOnce(ctx, id, lockID, data)
}

// Unfenced writes without checking the lock id: a stale holder's commit
// lands (the memcached/SQL providers without CAS).
type Unfenced struct{ *Provider }

func (b Unfenced) write(ctx context.Context, id string, lockID uint64, change func(*record.Record)) error {
	key, err := b.Key(id)
	if err != nil {
		return err
	}
	defer b.unhold(key, lockID)
	_, err = b.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if cur == nil {
			return nil, 0, notFound(id)
		}
		next := *cur // BUG: no checkHolder
		next.Locked = false
		next.Seq++
		change(&next)
		return &next, next.Timeout, nil
	})
	return err
}

// SetAndReleaseItemExclusive commits whoever holds the lock.
func (b Unfenced) SetAndReleaseItemExclusive(ctx context.Context, id string, data *session.Data, lockID uint64, newItem bool) error {
	if newItem {
		return b.Provider.SetAndReleaseItemExclusive(ctx, id, data, lockID, newItem)
	}
	v, err := data.Values.Encode(0)
	if err != nil {
		return err
	}
	return b.write(ctx, id, lockID, func(r *record.Record) { r.Values = v; r.DataSeq++; r.Timeout = data.Timeout() })
}

// ReleaseItemExclusive unlocks whoever holds the lock.
func (b Unfenced) ReleaseItemExclusive(ctx context.Context, id string, lockID uint64) error {
	return b.write(ctx, id, lockID, func(*record.Record) {})
}

// RemoveItem removes whoever holds the lock.
func (b Unfenced) RemoveItem(ctx context.Context, id string, lockID uint64) error {
	return b.write(ctx, id, lockID, func(r *record.Record) { r.Removed = true; r.Values = nil })
}

// DefaultTimeoutRelease is the memcached providers' lost-timeout bug: a
// release stores the session with the configured default timeout instead of
// the session's own.
type DefaultTimeoutRelease struct{ *Provider }

// ReleaseItemExclusive releases with the config default as TTL.
func (b DefaultTimeoutRelease) ReleaseItemExclusive(ctx context.Context, id string, lockID uint64) error {
	key, err := b.Key(id)
	if err != nil {
		return err
	}
	defer b.unhold(key, lockID)
	_, err = b.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if err := b.checkHolder(id, cur, lockID); err != nil {
			return nil, 0, err
		}
		next := *cur
		next.Locked = false
		next.Seq++
		return &next, b.cfg.DefaultTimeout, nil // BUG: not the session's own timeout
	})
	return err
}

// TouchAfterRead is the read path before GetAndTouch: read the record,
// then Touch with the timeout read. A commit that changes the timeout
// between the two is undone by the late Touch.
type TouchAfterRead struct{ *Provider }

func (b TouchAfterRead) readThenTouch(ctx context.Context, id string) error {
	key, err := b.Key(id)
	if err != nil {
		return err
	}
	cur, _, err := b.read(ctx, key)
	if err != nil {
		return err
	}
	return b.store.Touch(ctx, key, cur.Timeout) // BUG: the timeout may be stale by now
}

// GetItem reads, then touches.
func (b TouchAfterRead) GetItem(ctx context.Context, id string) (*Item, error) {
	if err := b.readThenTouch(ctx, id); err != nil {
		return nil, err
	}
	return &Item{}, nil
}

// ResetItemTimeout reads, then touches.
func (b TouchAfterRead) ResetItemTimeout(ctx context.Context, id string) error {
	return b.readThenTouch(ctx, id)
}

// NoLifetime is the provider before lifetimes: every write's TTL is the
// session's own timeout, whatever remains of its lifetime, so a session
// used continuously outlives its lifetime in the store.
type NoLifetime struct{ *Provider }

// RenewLease renews with the own timeout as TTL.
func (b NoLifetime) RenewLease(ctx context.Context, id string, lockID uint64) error {
	key, err := b.Key(id)
	if err != nil {
		return err
	}
	_, err = b.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if err := b.checkHolder(id, cur, lockID); err != nil {
			return nil, 0, err
		}
		next := *cur
		next.Seq++
		return &next, next.Timeout, nil // BUG: not min(timeout, remaining lifetime)
	})
	return err
}

// withBroken returns a copy of p with the broken variant's bits b set.
func withBroken(p *Provider, b brokenBits) *Provider {
	q := *p
	q.broken |= b
	return &q
}

// Unresolved returns a copy of p that returns a write of unknown outcome
// at once, as the provider did before it resolved them (update).
func Unresolved(p *Provider) *Provider {
	return withBroken(p, brokenUnresolved)
}

// SequentialLockIDs returns a copy of p that takes locks with the lock id
// + 1, as the provider did before nextLockID: two acquisitions decided on
// one record get the same id.
func SequentialLockIDs(p *Provider) *Provider {
	return withBroken(p, brokenLockIDs)
}

// Unbroken is unbroken, for tests: how long after an acquisition was sent
// a resolving read that does not show its lock proves it did not land.
func Unbroken(stale time.Duration) time.Duration { return unbroken(stale) }

// NoWindow returns a copy of p that takes an acquisition its resolving
// read does not show for not landed however late the read came (no
// window of 7/8 of a lease): it may have landed and been broken.
func NoWindow(p *Provider) *Provider {
	return withBroken(p, brokenNoWindow)
}

// NoFreshLease returns a copy of p that hands out the lock of an
// acquisition that took longer than half a lease as it is, as the
// provider did before freshLease, though a waiter may have broken it
// meanwhile (two holders, the slow one fenced only at its commit: the
// real-process partition run).
func NoFreshLease(p *Provider) *Provider {
	return withBroken(p, brokenNoFreshLease)
}

// KeepLock returns a copy of p that leaves the lock of an acquisition
// whose lease could not be made fresh (a renewal failed with an error
// other than ErrLockLost, or every renewal was slow) in the store, as
// the provider did before abandon: every other request of the user
// waited a lease for a lock nobody held.
func KeepLock(p *Provider) *Provider {
	return withBroken(p, brokenKeepLock)
}

// NoCarry returns a copy of p that forgets the InitializeItem flag an
// acquisition took when its lock was lost before it returned, as the
// provider did before carried: the acquisition decided again found the
// flag cleared, and nobody was told.
func NoCarry(p *Provider) *Provider {
	return withBroken(p, brokenNoCarry)
}

// WithoutWriteNonce returns a copy of p whose claims of InitializeItem,
// creations over a record (a tombstone) and conditional deletions of
// values write no lock id of their own, as the provider did before
// (stampOwn): two of them decided on one record write the same bytes,
// which a store may acknowledge to both (tiered's write-through takes the
// twin's durable write and cache write for its own).
func WithoutWriteNonce(p *Provider) *Provider {
	return withBroken(p, brokenWriteNonce)
}

// MaxFreshRenewals is maxFreshRenewals, for tests.
const MaxFreshRenewals = maxFreshRenewals
