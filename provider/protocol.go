package provider

// This file is the lock protocol: every state change of a session record,
// each a pure transition applied inside the one compare-and-swap loop
// (update). docs/protocol.md describes the same rules and names the test
// that proves each invariant.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

var (
	// ErrLocked reports a session whose lock another request holds. The
	// error is a *LockedError carrying the lock id and age.
	ErrLocked = errors.New("provider: session is locked")
	// ErrLockLost is the fence: the caller's lock is no longer the
	// session's lock (another request took it over, or the record
	// vanished). Nothing was written.
	ErrLockLost = errors.New("provider: lock lost; write fenced")
)

// LockedError is returned by GetItem and GetItemExclusive while another
// request holds the session's lock. errors.Is(err, ErrLocked) holds.
type LockedError struct {
	// LockID is the id of the lock being held.
	LockID uint64
	// LockAge is how long ago the holder took the lock by the holder's
	// wall clock, as this server reads it. Informational only: servers'
	// clocks may disagree, so takeover decisions never use it.
	LockAge time.Duration
	// Stamp identifies the state of the lock (lockStamp). It changes
	// whenever the lock is taken, renewed, released or broken, and not
	// when lock-free requests write the session's data; a waiter that sees
	// the same Stamp for one lease may break the lock (BreakLock).
	Stamp uint64
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("provider: session is locked (lock id %d, age %v)", e.LockID, e.LockAge.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Item is a session handed to a request.
type Item struct {
	// Data holds the values and the session's own timeout.
	Data *session.Data
	// LockID is the lock the request holds: non-zero after
	// GetItemExclusive in locking mode, zero otherwise.
	LockID uint64
	// Actions are the action flags handed to this request. InitializeItem
	// is handed to exactly one request.
	Actions session.ActionFlags
	// Deadline is when the session reaches its absolute lifetime
	// (Config.Lifetime), by this server's clock; zero when it has none
	// (no Lifetime, or a session stored before creation times were).
	Deadline time.Time
}

// update is the single compare-and-swap loop every state change goes
// through. It reads the record (nil when absent), asks change for the next
// record and its TTL, and writes it with Add (when absent) or
// CompareAndSwap (when present); a conflict re-reads and asks again. change
// returning a nil record writes nothing. The record written is returned.
//
// When this process wrote the key last (p.written), the first attempt
// starts from that record and the token its write returned, without a
// read. Its outcome is trusted only if the write based on it lands (the
// token proves the stored record was that one): a conflict, a miss, or a
// change that refuses or writes nothing on it is decided again from a
// fresh read, so a stale entry costs one extra operation and never a
// wrong answer.
//
// A write whose outcome is unknown (ErrOutcomeUnknown) is returned as is
// when res is nil or the store's reads cannot settle it (OutcomeReader).
// Otherwise it is resolved: the record is read once
// more. If the key still holds the very record the write was decided on,
// under the same token, the same write is sent again. Otherwise res (see
// resolver) says from the read whether the write landed (the read record
// and its token are the result), did not land (change decides again on
// what is stored now), or cannot be told (the unknown error is
// returned). At most maxUnknown writes of one call are resolved so; any
// error while one is unresolved returns the unknown error, never another
// (an unknown commit never becomes ErrLockLost).
func (p *Provider) update(ctx context.Context, key string, res resolver, change func(cur *record.Record) (next *record.Record, ttl time.Duration, err error)) (*record.Record, error) {
	cached, ccas, useCache := p.written.get(key)
	limit := p.cfg.MaxCASRetries
	if useCache {
		limit++ // the guess is not one of the MaxCASRetries attempts
	}
	// stray is the value an append of ours set the TTL of when that was
	// not the value the append made (see Appender): unless a read shows
	// it changed since or has that TTL anyway, or a write of ours
	// replaces it, it is checked on the way out.
	var stray strayTouch
	defer func() { p.fixTouch(ctx, key, stray) }()
	// unknown are this call's writes of unknown outcome, the latest
	// last; pend is the latest while it may still land from its token.
	var unknown unknownWrites
	var pend *unknownWrite
	sends := 0 // of unknown outcome
	for attempt := 0; attempt < limit; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, unknown.or(err)
		}
		if attempt >= 4 {
			if err := contentionBackoff(ctx, attempt); err != nil {
				return nil, unknown.or(err)
			}
		}
		var cur *record.Record
		var cas uint64
		var err error
		fromCache := useCache
		if fromCache {
			cur, cas, useCache = cached, ccas, false
		} else if cur, cas, err = p.read(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, unknown.or(err)
		} else if cur != nil {
			p.written.found(key, cas)
		}
		if !fromCache && stray.cas != 0 && (cas != stray.cas || p.ttlOf(cur) == stray.ttl) {
			stray = strayTouch{}
		}
		stored := cur // as stored: a delta is appended to it
		var next *record.Record
		var ttl time.Duration
		if unknown.landed(res, cur) {
			// One of them landed after all, maybe late (a replicated
			// store may complete a write it reported unknown).
			p.wrote(key, cur, cas, false)
			return cur, nil
		}
		if pend != nil {
			switch {
			case cur != nil && cas == pend.cas:
				// The key holds the very record the write was decided
				// on (a write changes the token): it has not landed,
				// but may still be on its way. Send it again, the same
				// bytes under the same token: at most one of the two can
				// land, and either leaves the same record.
				stored, cur, next, ttl = pend.stored, pend.pre, pend.next, pend.ttl
			case cur == nil && pend.pre == nil:
				// An Add, and the key is still absent: not landed (or
				// landed and already lost): the same Add again stores
				// what the caller meant, and if the first lands before
				// it, it finds the key present and the next read tells.
				next, ttl = pend.next, pend.ttl
			default:
				if res(pend.pre, pend.next, cur, time.Since(pend.sent)) != notLanded {
					return nil, unknown.or(errors.New("the record read back does not tell"))
				}
				pend = nil // the token it needs is gone: decide again
			}
		}
		if next == nil {
			cur = p.withCreated(cur)
			next, ttl, err = change(cur)
			if fromCache && (err != nil || next == nil) {
				p.written.drop(key)
				continue // decided on a guess: decide again on what is stored
			}
			if errors.Is(err, ErrLockLost) {
				// ErrLockLost says nothing was written: not after a
				// write of unknown outcome.
				return nil, unknown.or(err)
			}
			if err != nil || next == nil {
				return nil, err
			}
		}
		next.Deltas = 0 // unless appended as a delta, below
		sent := time.Now()
		if pend != nil {
			sent = pend.sent // the same write again: it may land from the first send on
		}
		var newCAS uint64
		if cur == nil {
			newCAS, err = p.store.Add(ctx, key, next.Encode(), ttl)
			if errors.Is(err, ErrExists) && !errors.Is(err, ErrOutcomeUnknown) {
				continue
			}
		} else {
			var appended bool
			var touched uint64
			newCAS, appended, touched, err = p.swap(ctx, key, stored, next, cas, ttl)
			if appended {
				next.Deltas = stored.Deltas + 1
			}
			switch {
			case touched != 0 && (err != nil || touched != newCAS):
				stray = strayTouch{cas: touched, ttl: ttl}
			case err == nil:
				stray = strayTouch{} // our write replaced it and set its TTL
			}
			// An error that wraps ErrOutcomeUnknown is unknown, whatever
			// else it wraps (a replica refused, the other's reply lost).
			if (errors.Is(err, ErrCASConflict) || errors.Is(err, ErrNotFound)) && !errors.Is(err, ErrOutcomeUnknown) {
				if fromCache {
					p.written.refused(key, !cached.Locked) // stale: someone else wrote
				}
				continue
			}
		}
		if err != nil {
			p.written.drop(key)
			if res != nil && p.settles && p.broken&brokenUnresolved == 0 && errors.Is(err, ErrOutcomeUnknown) && sends < maxUnknown {
				sends++
				if pend == nil || pend.next != next {
					pend = &unknownWrite{pre: cur, stored: stored, next: next, ttl: ttl, cas: cas, sent: sent, err: err}
					unknown = append(unknown, pend)
				}
				pend.err = err
				continue // resolved on the next read
			}
			if len(unknown) > 0 && errors.Is(err, ErrOutcomeUnknown) {
				return nil, fmt.Errorf("%w (not resolved: %d sends of unknown outcome)", err, maxUnknown+1)
			}
			return nil, unknown.or(err)
		}
		p.wrote(key, next, newCAS, fromCache && !cached.Locked)
		return next, nil
	}
	return nil, unknown.or(fmt.Errorf("provider: %w: gave up after %d attempts", ErrCASConflict, p.cfg.MaxCASRetries))
}

// wrote records that key holds rec under token cas, written or found by
// this process (see writtenCache.put for trusted).
func (p *Provider) wrote(key string, rec *record.Record, cas uint64, trusted bool) {
	p.written.put(key, rec, cas, trusted)
	if !rec.Removed {
		p.timeouts.see(key, rec.Timeout, p.cfg.DefaultTimeout)
	}
}

// maxUnknown is how many sends of unknown outcome one update resolves
// (one read each) before it returns the unknown error.
const maxUnknown = 3

// unknownWrite is a write whose outcome is unknown: next, decided on pre
// (stored as stored, under token cas), sent at sent, which failed with
// err.
type unknownWrite struct {
	pre, stored, next *record.Record
	ttl               time.Duration
	cas               uint64
	sent              time.Time
	err               error
}

// unknownWrites are one call's writes of unknown outcome, the latest
// last.
type unknownWrites []*unknownWrite

// or returns err, or, when there are writes of unknown outcome, the
// latest one's error saying why it was not resolved (err, not wrapped):
// no other error may then stand for the call.
func (u unknownWrites) or(err error) error {
	if len(u) > 0 {
		return fmt.Errorf("%w (not resolved: %v)", u[len(u)-1].err, err)
	}
	return err
}

// landed reports whether res finds that got shows one of the writes
// landed.
func (u unknownWrites) landed(res resolver, got *record.Record) bool {
	for _, w := range u {
		if res(w.pre, w.next, got, time.Since(w.sent)) == landed {
			return true
		}
	}
	return false
}

// A resolver tells what became of a write whose outcome is unknown from
// one record read after it, when the key no longer holds the record the
// write was decided on under the same token (then update sends the write
// again: a copy still on its way and the new one can land at most once
// between them). pre is the record the write was decided on, sent the
// record it wrote, got what the read found (nil: absent), since how long
// ago the write was first sent (this process's monotonic clock). It
// returns landed only when got shows that write's effect and no other's
// that a caller could mistake for it, and notLanded only when the write
// did not take effect as far as anyone can ever see: update then decides
// again, since a compare-and-swap whose token is gone can never land.
// Anything else is unclear, and the unknown error stands.
// docs/protocol.md ("Writes of unknown outcome") has the argument for
// each.
type resolver func(pre, sent, got *record.Record, since time.Duration) outcome

// outcome is what a resolver makes of a write of unknown outcome.
type outcome int

const (
	unclear outcome = iota
	landed
	notLanded
)

// resolveLock resolves a lock acquisition (GetItemExclusive). The
// record shows the acquisition if it is locked with its lock id and
// acquisition time (unique with overwhelming probability: nextLockID).
// Otherwise it did not land, if the read came within 7/8 of a lease of
// the first send: a lock that landed can be changed before its holder
// returns only by lock-free writes, which keep lock id and time, or be
// ended by a break, which needs a waiter to see it unchanged for a whole
// lease (staleAfter) after it landed, so after the first send, or by an
// end of the session (a lock-free removal, expiry, a revival of the
// tiered store), which ends the lock too; the eighth is a margin for
// clocks of different rates. Later than that it may have landed and been
// broken: unclear.
func (p *Provider) resolveLock(_, sent, got *record.Record, since time.Duration) outcome {
	switch {
	case got != nil && got.Locked && !got.Removed && got.LockID == sent.LockID && got.LockedAt.Equal(sent.LockedAt):
		return landed
	case since < unbroken(p.cfg.staleAfter()) || p.broken&brokenNoWindow != 0:
		return notLanded
	}
	return unclear
}

// unbroken is how long after an acquisition was first sent no waiter can
// have broken the lock it may have taken: 7/8 of stale, the time a waiter
// must see a lock unchanged before it breaks it, measured on another
// clock.
func unbroken(stale time.Duration) time.Duration { return stale - stale/8 }

// resolveUnlock resolves a holder's write that ends its lock: a commit,
// a release, a removal. The record is exactly the one written: landed (a
// break of the same lock from the same record writes the same bytes as a
// release: the lock is released and no data changed either way). Still
// locked with the holder's lock id: not landed, since the write unlocks
// and no lock is ever taken again with that id. Anything else (another
// lock, a later change after an unlock, nothing) is unclear: the write
// may have landed before it, or the lock may have been taken over
// without it.
func resolveUnlock(pre, sent, got *record.Record, _ time.Duration) outcome {
	switch {
	case sameRecord(got, sent):
		return landed
	case lockedBy(got, pre.LockID):
		return notLanded
	}
	return unclear
}

// resolveRenewal resolves a lease renewal. Still locked with the
// holder's lock id, the lock's stamp tells: the same as before the write,
// not landed; higher, renewed (only a renewal of this lock raises the
// stamp of a record it keeps locked: lock-free writes leave it alone).
func resolveRenewal(pre, _, got *record.Record, _ time.Duration) outcome {
	switch {
	case !lockedBy(got, pre.LockID):
		return unclear
	case lockStamp(got) == lockStamp(pre):
		return notLanded
	}
	return landed
}

// resolveExact resolves a lock-free write (a lock-free commit or
// removal), a break or a new session: landed if the record is exactly the
// one written and the only change since pre (Seq counts changes); not
// landed if nothing changed since pre. Another writer's identical change
// from the same record (two lock-free commits of the same values, a
// holder's release instead of a break) leaves the very record this write
// would have: the caller's change is in the store either way, and this
// write, if it did not land, never will (its token is gone). A session
// created where nothing was stored has a random lock id base of its own
// (I7). Anything else (a later change: lock-free writes carry no
// identity) is unclear.
func resolveExact(pre, sent, got *record.Record, _ time.Duration) outcome {
	switch {
	case sameRecord(got, sent):
		return landed
	case pre != nil && got != nil && got.Seq == pre.Seq && got.DataSeq == pre.DataSeq && got.LockID == pre.LockID:
		return notLanded
	}
	return unclear
}

// unlocking is the resolver of a write that ends the caller's lock (a
// commit, a removal): resolveUnlock, or resolveExact in lock-free mode,
// where it holds none.
func (p *Provider) unlocking() resolver {
	if p.cfg.LockFree {
		return resolveExact
	}
	return resolveUnlock
}

// lockedBy reports whether r is a live record locked with lock lockID.
func lockedBy(r *record.Record, lockID uint64) bool {
	return r != nil && r.Locked && !r.Removed && r.LockID == lockID
}

// sameRecord reports whether a and b are the same record, deltas aside:
// both encode to the same bytes (Encode writes a record whole).
func sameRecord(a, b *record.Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return bytes.Equal(a.Encode(), b.Encode())
}

// swap writes next in place of stored, whose token is cas: as a
// record.Delta appended to it when the store is an Appender and a delta
// can carry the change (appended reports it), else whole with
// CompareAndSwap. touched is the token of the value an append set the
// TTL of (Appender), 0 after a whole write.
func (p *Provider) swap(ctx context.Context, key string, stored, next *record.Record, cas uint64, ttl time.Duration) (newCAS uint64, appended bool, touched uint64, err error) {
	if ap, ok := p.store.(Appender); ok {
		if d, ok := record.Delta(stored, next); ok {
			newCAS, touched, err = ap.CompareAndAppend(ctx, key, d, cas, ttl)
			// Too large with its deltas: whole, it is smaller.
			if !errors.Is(err, ErrNoAppend) && !errors.Is(err, ErrTooLarge) {
				return newCAS, err == nil, touched, err
			}
		}
	}
	newCAS, err = p.store.CompareAndSwap(ctx, key, next.Encode(), cas, ttl)
	return newCAS, false, touched, err
}

// strayTouch is a value (token cas) whose TTL an append set to ttl,
// though the append did not make it.
type strayTouch struct {
	cas uint64
	ttl time.Duration
}

// fixTouch makes sure the value a stray touch landed on has its own TTL:
// if the key still holds it and it must have another (a commit between
// changed the timeout), a compare-and-swap of the unchanged value gives it
// its own, as readSliding does. A value changed since got its own TTL
// from that change, which sets it after its own append. Failures are left
// alone: the next write of the session sets its TTL again.
func (p *Provider) fixTouch(ctx context.Context, key string, t strayTouch) {
	if t.cas == 0 {
		return
	}
	e, err := p.store.Get(ctx, key)
	if err != nil || e.CAS != t.cas {
		return
	}
	r, err := record.Decode(e.Value)
	if err != nil {
		return
	}
	if want := p.ttlOf(&r); want != t.ttl {
		_, _ = p.store.CompareAndSwap(ctx, key, e.Value, e.CAS, want)
	}
}

// contentionBackoff spreads out CAS retries that keep conflicting.
func contentionBackoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(50*time.Microsecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// read returns the decoded record under key and its CAS token. A missing
// key returns a nil record and an error wrapping ErrNotFound.
func (p *Provider) read(ctx context.Context, key string) (*record.Record, uint64, error) {
	e, err := p.store.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	r, err := record.Decode(e.Value)
	if err != nil {
		return nil, 0, wrapKey(key, err)
	}
	return &r, e.CAS, nil
}

func wrapKey(key string, err error) error {
	return fmt.Errorf("provider: key %s: %w", keyTag(key), err)
}

// keyTag names a key in errors without the whole id (or hash) in it.
func keyTag(key string) string {
	if len(key) > 26 {
		return key[:len(key)-26] + "…"
	}
	return key
}

func (p *Provider) decodeValues(b []byte) (*session.Values, error) {
	return session.DecodeValues(b, p.cfg.Codec, p.cfg.MaxValuesSize)
}

func (p *Provider) lockedError(r *record.Record) *LockedError {
	age := p.cfg.Now().Sub(r.LockedAt)
	if age < 0 {
		age = 0
	}
	return &LockedError{LockID: r.LockID, LockAge: age, Stamp: lockStamp(r)}
}

// lockStamp is the stamp of r's lock state, which waiters watch: LockID +
// Seq - DataSeq. Every change of the record bumps Seq; a change of the
// data (a commit, lock-free or not, DeleteValuesIf, a removal, a new
// record in place of a tombstone) bumps DataSeq with it, and a change of
// the lock alone (taking, renewing, releasing or breaking it, handing
// over InitializeItem) does not; taking it also bumps LockID. So within
// an incarnation the stamp never decreases; taking the lock adds at least 2 and
// renewing it 1, so a record locked with the same stamp at two moments
// was neither renewed nor released and re-taken in between; and the
// writes that leave a locked record locked without being lock changes
// (lock-free commits, DeleteValuesIf) leave the stamp as it was: a stream
// of them cannot keep an abandoned lock from being broken. The lock id's
// random base (I7) keeps stamps of different incarnations apart, as it
// keeps their lock ids. Deltas carry Seq and LockID and never change
// DataSeq, so the stamp reads the same from a record with deltas.
func lockStamp(r *record.Record) uint64 { return r.LockID + r.Seq - r.DataSeq }

func notFound(id string) error { return fmt.Errorf("provider: session %s: %w", idTag(id), ErrNotFound) }

func lockLost(id string, held uint64, cur *record.Record) error {
	id = idTag(id)
	switch {
	case held == 0:
		return fmt.Errorf("provider: session %s: the caller holds no lock (lock id 0): %w", id, ErrLockLost)
	case cur == nil:
		return fmt.Errorf("provider: session %s: record vanished while lock %d was held: %w", id, held, ErrLockLost)
	case cur.Removed:
		return fmt.Errorf("provider: session %s was removed: %w", id, ErrLockLost)
	case held > cur.LockID:
		return fmt.Errorf("provider: session %s: lock %d was not granted by this incarnation of the session (it expired and was created again): %w", id, held, ErrLockLost)
	case !cur.Locked && cur.LockID == held:
		return fmt.Errorf("provider: session %s: lock %d is no longer held: already released (or broken after its lease ran out): %w", id, held, ErrLockLost)
	case !cur.Locked:
		return fmt.Errorf("provider: session %s: lock %d was taken over by lock %d, since released: %w", id, held, cur.LockID, ErrLockLost)
	default:
		return fmt.Errorf("provider: session %s: lock %d was taken over by lock %d: %w", id, held, cur.LockID, ErrLockLost)
	}
}

// checkHolder is the fence every holder's write passes: the record must
// exist, be within its lifetime, be locked, and carry the caller's lock
// id. A session that reached its lifetime is treated as if the store had
// expired it: its holder's lock is lost.
func (p *Provider) checkHolder(id string, cur *record.Record, lockID uint64) error {
	if cur != nil && p.ended(cur) {
		return fmt.Errorf("provider: session %s reached its lifetime while lock %d was held: %w", idTag(id), lockID, ErrLockLost)
	}
	if cur == nil || cur.Removed || !cur.Locked || cur.LockID != lockID {
		return lockLost(id, lockID, cur)
	}
	return nil
}

// CreateUninitializedItem adds an uninitialized session (ASP.NET's
// cookieless first request): insert-if-absent, with the InitializeItem
// action flag that exactly one later Get hands out. It returns an error
// wrapping ErrExists when the session already exists. timeout zero means
// the default timeout.
func (p *Provider) CreateUninitializedItem(ctx context.Context, id string, timeout time.Duration) error {
	if timeout == 0 {
		timeout = p.cfg.DefaultTimeout
	}
	if timeout < session.MinTimeout || timeout > session.MaxTimeout {
		return fmt.Errorf("provider: timeout %v: %w", timeout, session.ErrInvalidTimeout)
	}
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	_, err = p.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if !p.gone(cur) {
			return nil, 0, fmt.Errorf("provider: session %s: %w", idTag(id), ErrExists)
		}
		next := p.successor(cur)
		next.Actions = session.InitializeItem
		next.Timeout = timeout
		return next, p.ttlOf(next), nil
	})
	return err
}

// successor starts a new live record in place of cur (absent, a
// tombstone, or a session past its lifetime). The sequence numbers of a
// record in its place are continued and its lock id advanced (stampOwn):
// the session keeps its incarnation, and two creations over one
// tombstone write bytes of their own. In place of nothing a new
// incarnation begins, its lock ids counting from a random base (I7).
// With a Lifetime, the new session's creation time is now.
func (p *Provider) successor(cur *record.Record) *record.Record {
	next := &record.Record{}
	if p.cfg.Lifetime > 0 {
		next.Created = p.cfg.Now()
	}
	if cur != nil {
		next.LockID = cur.LockID
		p.stampOwn(next)
		next.Seq = cur.Seq
		next.DataSeq = cur.DataSeq
	} else {
		next.LockID = newIncarnation()
	}
	next.Seq++
	next.DataSeq++
	return next
}

// Lock ids of a new incarnation start at a random base in
// [incarnationMin, incarnationMax): far below 2^64, so that one
// incarnation can take about 1.3e13 locks (lockIDStep) or 49,000
// revivals (record.LockReviveGap each) without wrapping, and far above
// 0, the id of "no lock".
const (
	incarnationMin = 1 << 32
	incarnationMax = 1 << 62
)

// lockIDStep bounds how far one acquisition advances the lock id: by 1
// plus a random value below lockIDStep. Two acquisitions decided on the
// same record (two servers racing for one lock) therefore get different
// ids with probability 1 - 2^-20, and with their acquisition times
// (LockedAt, ns) both equal only by a coincidence of clocks on top: an
// acquisition whose outcome is unknown recognises its own lock on a read
// (resolveLock) by id and time. Ids still strictly increase, which the
// fence (checkHolder, lockLost's held > cur.LockID) and the lock stamp
// (lockStamp: taking the lock adds at least 2) rely on.
//
// Headroom. Overflow: an incarnation starts below 2^62, so it can take
// 3*2^62 / 2^20 (about 1.3e13) locks, or about 49,000 revivals, before
// the id could wrap. Revival (record.Revive, tiered) advances the id by
// record.LockReviveGap (2^48) past the durable copy's: that outruns every
// id the lost cache granted while it granted fewer than 2^48/2^20 = 2^28
// locks since the durable copy was written (TestReviveOutrunsRandomSteps).
const lockIDStep = 1 << 20

// stampOwn gives next, a change that hands something out once (a claim
// of InitializeItem, a creation, a conditional deletion of values),
// bytes of its own when its record is unlocked: a new lock id, as an
// acquisition's, and the time. Two such changes decided on one record
// otherwise write the same bytes, which a store may take for one write
// sent twice and acknowledge to both (tiered's write-through: the twin's
// durable write taken for this one's, then its very bytes found in the
// cache; the provider's own resolveExact). No holder is fenced: the
// record is unlocked (or, for a creation, replaces a session whose end
// fenced its holder already). On a locked record nothing is stamped: a
// new lock id would fence the holder, and a new time would hide its
// acquisition from resolveLock; two such changes of a locked record may
// still write the same bytes (docs/replication.md, sixth session of
// 2026-12-02).
func (p *Provider) stampOwn(next *record.Record) {
	if next.Locked || p.broken&brokenWriteNonce != 0 {
		return
	}
	next.LockID = p.nextLockID(next.LockID)
	next.LockedAt = p.cfg.Now()
}

// nextLockID returns the id of a lock taken on a record whose latest lock
// id is cur.
func (p *Provider) nextLockID(cur uint64) uint64 {
	if p.broken&brokenLockIDs != 0 {
		return cur + 1
	}
	return cur + 1 + rand.Uint64N(lockIDStep)
}

// newIncarnation returns the lock-id base of a new incarnation of a
// session. A lock id of one incarnation equals a lock id granted by
// another only if their random bases happen to line up: with n locks
// granted, the chance is below n / 2^62.
func newIncarnation() uint64 {
	return incarnationMin + rand.Uint64N(incarnationMax-incarnationMin)
}

// GetItem returns the session for a read-only request. It takes no lock,
// but returns a *LockedError while a writer holds the lock (ASP.NET's
// ReadOnly semantics; in lock-free mode locks are ignored). It slides the
// session's expiry by its own timeout. An id that is not stored returns
// an error wrapping ErrNotFound.
func (p *Provider) GetItem(ctx context.Context, id string) (*Item, error) {
	return p.getShared(ctx, id, p.cfg.LockFree)
}

// getShared reads a session without locking it and slides its expiry by
// its own timeout (readSliding), or, when the InitializeItem flag is set,
// clears it with a CAS, so one request alone receives it.
func (p *Provider) getShared(ctx context.Context, id string, ignoreLock bool) (*Item, error) {
	key, err := p.Key(id)
	if err != nil {
		return nil, err
	}
	cur, err := p.readSliding(ctx, key, func(r *record.Record) bool {
		return r.Removed || r.Locked && !ignoreLock || r.Actions&session.InitializeItem != 0
	})
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, err
	}
	if p.gone(cur) {
		return nil, notFound(id)
	}
	if cur.Locked && !ignoreLock {
		return nil, p.lockedError(cur)
	}
	if cur.Actions&session.InitializeItem != 0 {
		return p.claimInitialize(ctx, id, key, ignoreLock)
	}
	values, err := p.decodeValues(cur.Values)
	if err != nil {
		return nil, fmt.Errorf("provider: session %s: %w", idTag(id), err)
	}
	return &Item{Data: session.NewData(values, cur.Timeout), Deadline: p.deadline(cur)}, nil
}

// claimInitialize hands the InitializeItem flag to the one request whose
// CAS clears it; everybody else sees the item without the flag. On an
// unlocked record the claim also advances the lock id (nextLockID) and
// stamps LockedAt, so that no two claims write the same bytes (I6: a
// store may acknowledge a write whose very bytes it finds stored).
func (p *Provider) claimInitialize(ctx context.Context, id, key string, ignoreLock bool) (*Item, error) {
	var item *Item
	_, err := p.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if p.gone(cur) {
			return nil, 0, notFound(id)
		}
		if cur.Locked && !ignoreLock {
			return nil, 0, p.lockedError(cur)
		}
		values, err := p.decodeValues(cur.Values)
		if err != nil {
			return nil, 0, fmt.Errorf("provider: session %s: %w", idTag(id), err)
		}
		item = &Item{Data: session.NewData(values, cur.Timeout), Actions: cur.Actions, Deadline: p.deadline(cur)}
		next := *cur
		next.Actions &^= session.InitializeItem
		next.Seq++
		p.stampOwn(&next)
		return &next, p.ttlOf(&next), nil
	})
	if err != nil {
		return nil, err
	}
	return item, nil
}

// GetItemExclusive takes the session's lock and returns the session
// (ASP.NET's GetItemExclusive): the lock id is bumped (I7), the
// InitializeItem flag is handed over and cleared, and the expiry slides by
// the session's own timeout, all in one CAS. While another request holds
// the lock it returns a *LockedError and writes nothing. In lock-free mode
// it takes no lock and behaves like GetItem that ignores locks.
//
// An acquisition that took more than half a lease renews the lease before
// it returns (freshLease), so that the lock it hands out has most of a
// lease left. A lock broken meanwhile (the renewal fails with
// ErrLockLost) is decided again: the caller then gets the lock taken
// again, or a *LockedError for the request that broke it. The
// InitializeItem flag a lost acquisition took is carried over: the
// acquisition decided again reports it if no data was written since (the
// session is still as it was created). A request that broke the lock and
// took it meanwhile was handed the session without the flag, and it is
// not put back (that request may have written the session by then). A
// renewal that fails otherwise, or a write still slow when the call's
// renewals are spent, ends the call with an error, and the lock it took
// is released at once, the InitializeItem flag put back (under the same
// condition), so that nobody waits a lease for it; the error says whether
// that release landed (abandon), and is never ErrLockLost.
//
// Time: one call makes at most maxFreshRenewals renewals in all, and so
// at most 1+maxFreshRenewals acquisitions (each decided again after a
// renewal that found the lock lost), each one store operation that ends
// with ctx; after a failure, one release, detached from ctx (which may
// have ended) and bounded by a third of a lease.
//
// Most callers want AcquireItem, which waits for a held lock.
func (p *Provider) GetItemExclusive(ctx context.Context, id string) (*Item, error) {
	if p.cfg.LockFree {
		return p.getShared(ctx, id, true)
	}
	key, err := p.Key(id)
	if err != nil {
		return nil, err
	}
	renewals := maxFreshRenewals // for the whole call: it bounds the loop too
	var carry carried
	for {
		t, err := p.acquire(ctx, id, key, carry)
		if err != nil || !p.cfg.leased() || p.broken&brokenNoFreshLease != 0 {
			return t.item, err
		}
		err = p.freshLease(ctx, id, t, &renewals)
		switch {
		case err == nil:
			return t.item, nil
		case errors.Is(err, ErrLockLost):
			// Broken while the acquisition was on its way back (update
			// never reports ErrLockLost after a write of unknown
			// outcome: nothing of this lock is left to release).
			p.unhold(key, t.item.LockID)
			if p.broken&brokenNoCarry == 0 {
				carry = t.carry()
			}
			continue // the new holder's lock, for a waiter
		case p.broken&brokenKeepLock != 0:
			p.unhold(key, t.item.LockID)
			return nil, fmt.Errorf("provider: session %s: lock %d taken, but its lease could not be made fresh: %w", idTag(id), t.item.LockID, err)
		}
		return nil, p.abandon(ctx, id, key, t, err)
	}
}

// maxFreshRenewals bounds the renewals of one GetItemExclusive call
// (freshLease), and so its acquisitions: only a renewal finds an
// acquisition's lock lost and has it decided again. A renewal is made
// only after a write slower than half a lease; three allow a slow moment
// (one failover) to pass and a lock broken meanwhile to be decided again
// (each break needs a waiter to see the lock unchanged for a lease: more
// than one in a row means a store slower than the lease, on which a
// holder could not keep its lock either).
const maxFreshRenewals = 3

// slowAcquisition is how long an acquisition may take, from the sending
// of its write to its return, for its lease to be left to KeepLease: a
// waiter's clock for the new lock starts at the earliest when that write
// was sent (it cannot see the lock before), and it breaks the lock once
// it has seen it unchanged for a lease (StaleAfter) by its own clock;
// KeepLease renews a third of a lease after the acquisition returned. An
// acquisition slower than half a lease (a store that failed a copy over
// while the lock was already visible on the others: in the real-process
// partition run, a silent copy costs its Timeout twice, about 1 s) would
// leave less than a third of a lease, less a margin for clock rates (an
// eighth), before a waiter may break it: a waiter could break the lock
// before the holder's handler even began, and both ran (two holders, the
// slow one fenced only at its commit).
func slowAcquisition(lease time.Duration) time.Duration { return lease / 2 }

// freshLease makes sure the lock t took has most of a lease left when
// GetItemExclusive returns it: after a slow acquisition (slowAcquisition)
// it renews the lease at once, and again while a renewal was slow itself,
// each renewal taken from *budget (maxFreshRenewals for the whole call);
// with the budget spent it fails with ErrUnavailable. A lock broken
// meanwhile fails the renewal with ErrLockLost: the caller does not hold
// it.
func (p *Provider) freshLease(ctx context.Context, id string, t taken, budget *int) error {
	sent := t.sent
	for time.Since(sent) >= slowAcquisition(p.cfg.Lease) {
		if *budget <= 0 {
			return fmt.Errorf("provider: a write took more than half a lease (%v) with this call's %d renewals spent: %w", p.cfg.Lease, maxFreshRenewals, ErrUnavailable)
		}
		*budget--
		sent = time.Now()
		if err := p.RenewLease(ctx, id, t.item.LockID); err != nil {
			return err
		}
	}
	return nil
}

// abandon releases the lock of acquisition t, which GetItemExclusive
// does not hand out because its lease could not be made fresh (cause),
// so that no other request waits a lease for a lock nobody holds; the
// InitializeItem flag t took goes back into the record in the same write
// (if no data was written since). The release is detached from ctx,
// which may have ended (cause may be its error), and bounded by a third
// of a lease (KeepLease's bound on a renewal). The error it returns says
// what is left:
//
//   - released, or broken meanwhile (the release's ErrLockLost): no lock
//     of this call is left and nothing else changed. It wraps cause,
//     except that a renewal of unknown outcome no longer matters (the
//     lock is gone either way): that is reported as ErrUnavailable.
//   - not released: the lock may stay until a waiter breaks it (a
//     lease). It wraps cause and the release's error (ErrOutcomeUnknown
//     when its outcome is unknown); never ErrLockLost.
func (p *Provider) abandon(ctx context.Context, id, key string, t taken, cause error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Lease/3)
	defer cancel()
	err := p.release(rctx, id, key, t.item.LockID, t.carry())
	if err == nil || errors.Is(err, ErrLockLost) {
		if errors.Is(cause, ErrOutcomeUnknown) {
			cause = fmt.Errorf("%w (a renewal of unknown outcome: %v)", ErrUnavailable, cause)
		}
		gone := "released"
		if err != nil {
			gone = "broken meanwhile"
		}
		return fmt.Errorf("provider: session %s: lock %d taken, but its lease could not be made fresh; the lock is %s: %w", idTag(id), t.item.LockID, gone, cause)
	}
	return fmt.Errorf("provider: session %s: lock %d taken, but its lease could not be made fresh (%w); releasing it failed, so it may stay locked until a waiter breaks it: %w", idTag(id), t.item.LockID, cause, err)
}

// taken is one acquisition of GetItemExclusive: the item it hands out,
// when its write was first sent, and the DataSeq of the record it was
// decided on.
type taken struct {
	item    *Item
	sent    time.Time
	dataSeq uint64
}

// carried is the InitializeItem flag an acquisition took that was not
// handed out, and the DataSeq of the record it took it from: the next
// acquisition of the same call reports it, and a release puts it back,
// if the record's DataSeq is still that (no data written since).
type carried struct {
	actions session.ActionFlags
	dataSeq uint64
}

// carry is what t took that must not get lost if t is not handed out.
func (t taken) carry() carried {
	return carried{actions: t.item.Actions & session.InitializeItem, dataSeq: t.dataSeq}
}

// to returns the action flags of c that still apply to r.
func (c carried) to(r *record.Record) session.ActionFlags {
	if r.DataSeq != c.dataSeq {
		return 0
	}
	return c.actions
}

// acquire is one decision of GetItemExclusive: the lock taken (or an
// error), with the action flags carry adds to it.
func (p *Provider) acquire(ctx context.Context, id, key string, carry carried) (taken, error) {
	// The acquisition decided on each record: a write of unknown outcome
	// may land after a later one was decided (update); and when each was
	// decided (its write follows at once).
	decided := make(map[uint64]taken, 1)
	got, err := p.update(ctx, key, p.resolveLock, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if p.gone(cur) {
			return nil, 0, notFound(id)
		}
		if cur.Locked {
			return nil, 0, p.lockedError(cur)
		}
		values, err := p.decodeValues(cur.Values)
		if err != nil {
			return nil, 0, fmt.Errorf("provider: session %s: %w", idTag(id), err)
		}
		next := *cur
		next.Locked = true
		next.LockID = p.nextLockID(cur.LockID)
		next.LockedAt = p.cfg.Now()
		next.Actions = 0
		next.Seq++
		item := &Item{Data: session.NewData(values, cur.Timeout), LockID: next.LockID, Actions: cur.Actions | carry.to(cur), Deadline: p.deadline(cur)}
		decided[next.LockID] = taken{item: item, sent: time.Now(), dataSeq: cur.DataSeq}
		return &next, p.ttlOf(&next), nil
	})
	if err != nil {
		return taken{}, err
	}
	t := decided[got.LockID]
	p.hold(key, t.item.LockID)
	return t, nil
}

// SetAndReleaseItemExclusive commits data and releases the lock in one CAS
// (data and unlock together: no reader ever sees the session unlocked with
// older data, I5). The TTL becomes data's timeout (I4).
//
// With newItem the session is inserted: it must not exist (a tombstone of
// a removed session is replaced, continuing its lock ids); lockID is
// ignored. Otherwise the caller must hold lock lockID; a holder whose lock
// was taken over gets an error wrapping ErrLockLost and nothing is written
// (I3).
//
// A commit merges the keys this request changed (set, deleted, cleared)
// into the stored values rather than overwriting them all: under the lock
// nothing else changed them, except lock-free requests, whose writes are
// kept. In lock-free mode no lock is checked or released, and concurrent
// requests that change different keys both keep their change.
func (p *Provider) SetAndReleaseItemExclusive(ctx context.Context, id string, data *session.Data, lockID uint64, newItem bool) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	if data == nil || data.Values == nil {
		return errors.New("provider: SetAndReleaseItemExclusive: nil session data")
	}
	if !p.cfg.LockFree && !newItem && lockID != 0 {
		defer p.unhold(key, lockID)
	}
	var full []byte // the whole values, for a new session
	if newItem {
		if full, err = data.Values.Encode(p.cfg.MaxValuesSize); err != nil {
			return fmt.Errorf("provider: session %s: %w", idTag(id), err)
		}
	}
	var refused error // why the values could not be stored: it will recur
	res := p.unlocking()
	if newItem {
		res = resolveExact // a new record carries a new random lock id base
	}
	_, err = p.update(ctx, key, res, func(cur *record.Record) (*record.Record, time.Duration, error) {
		refused = nil
		live := !p.gone(cur)
		if newItem && !live {
			next := p.successor(cur)
			next.Timeout = data.Timeout()
			next.Values = full
			return next, p.ttlOf(next), nil
		}
		switch {
		case newItem && !p.cfg.LockFree:
			return nil, 0, fmt.Errorf("provider: new session %s: %w", idTag(id), ErrExists)
		case p.cfg.LockFree && !live:
			return nil, 0, notFound(id)
		case !p.cfg.LockFree:
			if err := p.checkHolder(id, cur, lockID); err != nil {
				return nil, 0, err
			}
		}
		b, err := p.merge(cur.Values, data.Values)
		if err != nil {
			err = fmt.Errorf("provider: session %s: %w", idTag(id), err)
			if p.cfg.LockFree {
				return nil, 0, err
			}
			// Too large, or the stored values do not decode: a retry
			// would fail the same way. Release the lock in this same
			// write and leave the stored values as they are, so that
			// nobody waits a lease for a lock whose holder gave up.
			refused = err
			next := *cur
			next.Locked = false
			next.Seq++
			return &next, p.ttlOf(&next), nil
		}
		next := *cur
		if !p.cfg.LockFree {
			next.Locked = false
		}
		next.Seq++
		next.DataSeq++
		if data.TimeoutChanged() || !p.cfg.LockFree {
			next.Timeout = data.Timeout()
		}
		next.Values = b
		return &next, p.ttlOf(&next), nil
	})
	switch {
	case refused != nil && err != nil:
		return fmt.Errorf("%w; releasing the lock failed too: %w", refused, err)
	case refused != nil:
		return fmt.Errorf("%w (nothing stored; lock %d released)", refused, lockID)
	}
	return err
}

// merge applies a request's changes to the stored values and returns the
// result in stored form. Its errors recur on every attempt: the stored
// values do not decode (ErrCorrupt), or the result is over the size limit
// (ErrTooLarge).
func (p *Provider) merge(stored []byte, changes *session.Values) ([]byte, error) {
	v, err := p.decodeValues(stored)
	if err != nil {
		return nil, err
	}
	v.Merge(changes)
	return v.Encode(p.cfg.MaxValuesSize)
}

// ReleaseItemExclusive releases lock lockID without changing the data. The
// TTL becomes the session's own stored timeout (I4), never a default. A
// caller whose lock was taken over gets an error wrapping ErrLockLost. In
// lock-free mode, or with lockID 0, there is nothing to release.
func (p *Provider) ReleaseItemExclusive(ctx context.Context, id string, lockID uint64) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	if p.cfg.LockFree || lockID == 0 {
		return nil
	}
	return p.release(ctx, id, key, lockID, carried{})
}

// release releases lock lockID of session id (key) and puts back the
// action flags back carries, if they still apply (carried.to).
func (p *Provider) release(ctx context.Context, id, key string, lockID uint64, back carried) error {
	defer p.unhold(key, lockID)
	_, err := p.update(ctx, key, resolveUnlock, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if err := p.checkHolder(id, cur, lockID); err != nil {
			return nil, 0, err
		}
		next := *cur
		next.Locked = false
		next.Actions |= back.to(cur)
		next.Seq++
		return &next, p.ttlOf(&next), nil
	})
	return err
}

// RemoveItem removes the session (ASP.NET's Session.Abandon). The caller
// must hold lock lockID (in lock-free mode no lock is needed). The record
// becomes a short-lived tombstone rather than being deleted, so removal is
// a fenced CAS like every other change and a session re-created under the
// same id continues its lock ids.
func (p *Provider) RemoveItem(ctx context.Context, id string, lockID uint64) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	if !p.cfg.LockFree && lockID != 0 {
		defer p.unhold(key, lockID)
	}
	_, err = p.update(ctx, key, p.unlocking(), func(cur *record.Record) (*record.Record, time.Duration, error) {
		if p.cfg.LockFree {
			if p.gone(cur) {
				return nil, 0, notFound(id)
			}
		} else if err := p.checkHolder(id, cur, lockID); err != nil {
			return nil, 0, err
		}
		next := tombstone(cur)
		return next, p.ttlOf(next), nil
	})
	return err
}

// tombstone is the record that replaces cur when the session is removed:
// no values, no lock, its lock id kept (I7).
func tombstone(cur *record.Record) *record.Record {
	next := *cur
	next.Removed = true
	next.Locked = false
	next.Actions = 0
	next.Values = nil
	next.Seq++
	next.DataSeq++
	return &next
}

// ResetItemTimeout slides the session's expiry by its own stored timeout
// (I4) without touching its data or lock (readSliding): no write that
// could lose an update, and no touch that could apply an old timeout.
func (p *Provider) ResetItemTimeout(ctx context.Context, id string) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	cur, err := p.readSliding(ctx, key, func(r *record.Record) bool { return r.Removed })
	if errors.Is(err, ErrNotFound) {
		return notFound(id)
	}
	if err != nil {
		return err
	}
	if p.gone(cur) {
		return notFound(id)
	}
	return nil
}

// RenewLease renews the lease of lock lockID: a CAS that bumps the record's
// Seq, and so the lock's stamp, which waiters watch, and slides the TTL. A caller whose lock was
// taken over gets an error wrapping ErrLockLost.
func (p *Provider) RenewLease(ctx context.Context, id string, lockID uint64) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	_, err = p.update(ctx, key, resolveRenewal, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if err := p.checkHolder(id, cur, lockID); err != nil {
			return nil, 0, err
		}
		next := *cur
		next.Seq++
		return &next, p.ttlOf(&next), nil
	})
	return err
}

// BreakLock releases a lock that a waiter has seen unchanged (same Stamp)
// for a whole lease, or for LockTimeout when leases are off: its holder has
// stopped renewing it. It is a CAS conditional on the record's lock still
// having that stamp, so a holder that renewed in the meantime keeps its
// lock (the error then wraps lock.ErrRetry); lock-free writes since do not
// change the stamp and are kept. The next lock taken gets a higher lock
// id, so the old holder is fenced (I3).
func (p *Provider) BreakLock(ctx context.Context, id string, stamp uint64) error {
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	_, err = p.update(ctx, key, resolveExact, func(cur *record.Record) (*record.Record, time.Duration, error) {
		if p.gone(cur) {
			return nil, 0, nil // gone: the next attempt reports it
		}
		if !cur.Locked || lockStamp(cur) != stamp {
			return nil, 0, fmt.Errorf("provider: session %s changed since it was seen: %w", idTag(id), lock.ErrRetry)
		}
		next := *cur
		next.Locked = false
		next.Seq++
		return &next, p.ttlOf(&next), nil
	})
	return err
}
