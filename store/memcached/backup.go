package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// This file is how backup copies are written so that an older copy never
// replaces a newer one, at one memcached operation per write in the
// steady state.
//
// Every backup write is conditional. The Store remembers, per key, the
// memcached CAS and record Seq of the last backup copy it wrote (meta set
// returns the new CAS). A write of Seq n whose remembered copy has Seq < n
// is sent, in parallel with the primary write, as a meta set conditioned on
// that CAS: it lands only if the backup still holds exactly the copy
// remembered, which is older. When nothing older is remembered (first write
// by this process, or another process wrote since), nothing is sent in
// parallel; once the primary write has succeeded, the slow path reads the
// backup copy, and replaces it (again conditioned on its CAS) only if its
// Seq is lower, or equal with other bytes: that is a refused write of a
// loser of the same round, and this writer won the primary.
//
// A writer whose primary write is refused (CAS conflict) may still have
// landed its parallel backup write, with the same Seq as the winner's. The
// winner's own backup write then fails its condition and its slow path
// replaces the loser's copy before the winner's call returns; the loser
// also undoes its copy (syncBackup). So a write that was acknowledged is
// always on the backup node, or something newer is.

// bakVersion is what the Store remembers of a backup copy it wrote.
type bakVersion struct {
	cas uint64 // memcached CAS of the copy on the backup node
	seq uint64 // record Seq of the copy
	// pcas, when not 0, is the memcached CAS of the primary's copy, which
	// held the same bytes when this Store wrote both (the pair that lets
	// an append reach the backup copy as a delta: backup_append.go).
	pcas uint64
}

// bakCache remembers the last backup copy written per key, in a bounded
// sharded map: past the bound, arbitrary entries are forgotten, which costs
// only a slow-path write later.
type bakCache struct {
	seed     maphash.Seed
	perShard int
	shards   [16]struct {
		mu sync.Mutex
		m  map[string]bakVersion
	}
}

func newBakCache(size int) *bakCache {
	c := &bakCache{seed: maphash.MakeSeed(), perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]bakVersion)
	}
	return c
}

func (c *bakCache) shard(key string) int {
	return int(maphash.String(c.seed, key) % uint64(len(c.shards)))
}

func (c *bakCache) get(key string) (bakVersion, bool) {
	sh := &c.shards[c.shard(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	v, ok := sh.m[key]
	return v, ok
}

// put remembers v unless a copy with a higher Seq is already remembered.
func (c *bakCache) put(key string, v bakVersion) {
	sh := &c.shards[c.shard(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[key]; ok && old.seq > v.seq {
		return
	}
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[key] = v
}

// clear forgets everything: after a node was down, the CAS values
// remembered for its copies mean nothing (a restarted memcached counts CAS
// values from 1 again).
func (c *bakCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

func (c *bakCache) drop(key string) {
	sh := &c.shards[c.shard(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.m, key)
}

// bakWrite is the backup half of one CAS write of a record.
type bakWrite struct {
	ctx    context.Context // the write's, without its cancellation: the backup half completes
	s      *Store
	rt     route
	value  []byte
	seq    uint64
	record bool // value parses as a record (else: plain set)
	exp    int32

	landed bool   // the parallel write stored value on the backup node
	err    error  // the parallel write's error, if any
	bcas   uint64 // the backup copy's CAS when it holds value without a claim, else 0
}

// newBakWrite returns the backup half of a CAS write, or nil when there is
// no backup or the backup node is down (the copy is then noted stale).
func (s *Store) newBakWrite(ctx context.Context, rt route, value []byte, exp int32) *bakWrite {
	if rt.b == nil || rt.b.noteIfDown(rt.bakKey()) {
		return nil
	}
	w := &bakWrite{ctx: context.WithoutCancel(ctx), s: s, rt: rt, value: value, exp: exp}
	if h, err := record.Parse(value); err == nil {
		w.record, w.seq = true, h.Seq
	}
	return w
}

// parallel is the part sent together with the primary write. A value that
// is not a record has no Seq to order copies by: it is set plainly.
func (w *bakWrite) parallel() error {
	ctx := w.ctx
	b, key := w.rt.b, w.rt.bakKey()
	if !w.record {
		w.err = b.set(ctx, key, w.value, w.exp)
		w.landed = w.err == nil
		return w.err
	}
	known, ok := w.s.baks.get(w.rt.key)
	if !ok || known.seq >= w.seq {
		return nil // the slow path decides once the primary write succeeded
	}
	cas, err := b.mset(ctx, key, w.value, w.exp, false, known.cas)
	if err == nil {
		w.landed, w.bcas = true, cas
		w.s.baks.put(w.rt.key, bakVersion{cas: cas, seq: w.seq})
	}
	w.err = err
	return err
}

// A repair (getMissed) claims the backup copy before it restores the
// primary from it: it rewrites the copy, conditioned on the CAS it read,
// with memcached client flags set to the claim's Unix time (claimStamp).
// A write that landed on the primary before the primary lost the key, and
// whose backup write is still to come, then finds its conditioned backup
// write refused and the claim in its way when it reads the copy: once the
// backup holds its value, it checks the primary (fixPrimary). Writers that
// find a claim younger than claimWindow keep it on the copy they write, so
// that a slower writer of the same round still sees it. An empty backup
// copy (the backup node was flushed too, claim included) also sends the
// writer to check the primary.

// claimStamp returns the client flags of a claim made at now (never 0).
func claimStamp(now time.Time) uint32 {
	return uint32(max(now.Unix(), 1))
}

// claimFresh reports whether flags hold a claim made less than window
// before now.
func claimFresh(flags uint32, now time.Time, window time.Duration) bool {
	return flags != 0 && now.Unix()-int64(flags) < int64(window/time.Second)+1
}

// claimWindow is how long a claim is kept on the backup copy by the writes
// that find it: much longer than a write takes between its primary and
// backup writes.
func (s *Store) claimWindow() time.Duration {
	return max(time.Second, 4*s.cfg.Timeout)
}

// afterPrimary completes the backup write once the primary write succeeded:
// when the parallel write did not land, the backup copy is read and
// replaced if it is older (or a loser's copy of the same Seq). It gives up
// after a few conflicting rounds: each conflict is a newer write landing.
// When it found a claim or an empty copy, it then checks
// the primary (fixPrimary), whose error is the write's. primaryCAS is the
// memcached CAS of the primary write. When both copies then hold the value
// (no claim found), the Store remembers the pair of their CAS values.
func (w *bakWrite) afterPrimary(primaryCAS uint64) error {
	ctx := w.ctx
	if w.landed {
		w.pair(primaryCAS)
		return nil
	}
	if !w.record || errors.Is(w.err, provider.ErrUnavailable) || !w.rt.b.isUp() {
		return nil
	}
	b, key := w.rt.b, w.rt.bakKey()
	suspect := false
	var keep uint32 // claim kept on the copy written
	for range 3 {
		items, err := b.mget(ctx, true, key)
		if err != nil {
			break
		}
		cur := items[0]
		if cur == nil {
			suspect = true
			cas, err := b.msetFlags(ctx, key, w.value, w.exp, keep, true, 0)
			if err == nil {
				w.remember(cas, keep)
				break
			}
			if !errors.Is(err, provider.ErrExists) {
				break
			}
			continue
		}
		if cur.flags != 0 {
			suspect = true
			if claimFresh(cur.flags, time.Now(), w.s.claimWindow()) {
				keep = cur.flags
			}
		}
		h, err := record.Parse(cur.value)
		same := err == nil && h.Seq == w.seq && bytes.Equal(cur.value, w.value)
		if err == nil && h.Seq >= w.seq && !same {
			// A copy of this Seq or newer that is not this write: a
			// loser of the same round or a later write based on this
			// one, while the primary holds this write; or a write
			// redirected to the backup, based on the older copy, since
			// the primary died. Only the primary tells them apart.
			if err := w.primaryAlive(); err != nil {
				return err
			}
		}
		if err == nil && (h.Seq > w.seq || same) {
			if cur.flags == 0 {
				w.s.baks.put(w.rt.key, bakVersion{cas: cur.cas, seq: h.Seq})
				if same {
					w.bcas = cur.cas
				}
			}
			break // as new or newer already there
		}
		cas, err := b.msetFlags(ctx, key, w.value, w.exp, keep, false, cur.cas)
		if err == nil {
			w.remember(cas, keep)
			break
		}
		if !errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrNotFound) {
			break
		}
	}
	// A backup node marked down meanwhile (an operation above failed) may
	// hold an older copy, or a loser's: it is deleted before the node
	// serves again.
	b.noteIfDown(key)
	if !suspect {
		w.pair(primaryCAS)
		return nil
	}
	w.s.baks.drop(w.rt.key)
	return w.fixPrimary(primaryCAS)
}

// pair remembers that the backup copy (w.bcas) and the primary's
// (primaryCAS) both hold this write's value.
func (w *bakWrite) pair(primaryCAS uint64) {
	if w.bcas != 0 && primaryCAS != 0 {
		w.s.baks.put(w.rt.key, bakVersion{cas: w.bcas, seq: w.seq, pcas: primaryCAS})
	}
}

// primaryAlive checks that the primary still answers, before a write whose
// backup write found a copy of its Seq or newer is acknowledged or replaces
// that copy. A primary that does not answer may have died after taking this
// write, and the backup copy may then be a write redirected to it since,
// based on the older copy and acknowledged: this write is not live for this
// Store (its copy on the primary is noted stale there). It landed on the
// primary though, which other processes may still read (a primary that is
// only slow answers them; each process judges node health alone): its
// outcome is unknown (landedErr), never a conflict, which says nothing was
// written.
func (w *bakWrite) primaryAlive() error {
	ctx := w.ctx
	p, key := w.rt.p, w.rt.key
	if p.isUp() {
		_, err := p.mget(ctx, false, key)
		if err == nil || !errors.Is(err, provider.ErrUnavailable) {
			return nil
		}
	}
	p.noteIfDown(key)
	w.s.baks.drop(key)
	return w.s.landedErr(p, "cas", key, "the primary stopped answering before the backup copy held this write, and the backup copy changed meanwhile")
}

// landedErr is the error of a write that landed on node n, the key's
// primary (its write there succeeded), and that this Store then found
// lost or replaced there, or could not complete because n stopped
// answering, before the backup copy held it: the write was stored, and
// another process may have read it, so its outcome is unknown
// (provider.ErrOutcomeUnknown), never a conflict or "not found", which say
// that nothing was written (issue 13; the sixth session's d4: a reader's
// sliding CAS or a repair's restore between the write and its backup half
// answered ErrCASConflict, and the provider's next decision then found its
// own release and answered ErrLockLost). With the test hook
// landedConflict, provider.ErrCASConflict, as before.
func (s *Store) landedErr(n *node, op, key, why string) error {
	sentinel := provider.ErrOutcomeUnknown
	if s.hooks.landedConflict {
		sentinel = provider.ErrCASConflict
	}
	return fmt.Errorf("memcached: node %s: %s %s: %w: %s", n.addr, op, key, sentinel, why)
}

// remember notes the backup copy just written, unless it carries a claim
// (the next write must read it, and see the claim).
func (w *bakWrite) remember(cas uint64, flags uint32) {
	if flags == 0 {
		w.bcas = cas
		w.s.baks.put(w.rt.key, bakVersion{cas: cas, seq: w.seq})
	}
}

// fixPrimary checks the primary after the backup copy showed that the
// primary may have lost this write (a claim, an empty copy) and been
// restored from an older copy meanwhile. The primary's own copy of this
// write (its CAS is still primaryCAS) is left alone; an absent or older
// copy is replaced by this write. A copy of the same Seq is either this
// write's value under a new CAS (a reader's sliding CAS rewrote it, or a
// repair restored it from the backup copy holding it) or a write based on
// the older copy (equal bytes included: a lock-free change carries no
// nonce, and two lock-free increments of one base write the same bytes,
// so "the same bytes" is no proof that this write survived): this write
// may no longer be live, the backup copy is made the primary's again, and
// the write's outcome is unknown (landedErr: it was on the primary, where
// others may have read it, before the primary may have lost it). A copy with
// a higher Seq is taken to include this write: it usually is a later write
// based on it, and Seq orders copies but does not tell branches apart (see
// doc.go, Residual windows).
func (w *bakWrite) fixPrimary(primaryCAS uint64) error {
	ctx := w.ctx
	p, key := w.rt.p, w.rt.key
	for range 3 {
		items, err := p.mget(ctx, true, key)
		if err != nil {
			return err
		}
		cur := items[0]
		if cur == nil {
			_, err := p.mset(ctx, key, w.value, w.exp, true, 0)
			if err == nil {
				return nil
			}
			if !errors.Is(err, provider.ErrExists) {
				return err
			}
			continue
		}
		if cur.cas == primaryCAS {
			return nil // the primary never lost it
		}
		h, err := record.Parse(cur.value)
		switch {
		case err != nil:
			return fmt.Errorf("memcached: node %s: cas %s: %w", p.addr, key, err)
		case h.Seq == w.seq:
			_ = w.s.syncBackup(ctx, w.rt, w.value) // the primary holds a record: never kept
			return w.s.landedErr(p, "cas", key, "the primary lost this write and a write based on an older copy replaced it")
		case h.Seq > w.seq:
			return nil
		}
		_, err = p.mset(ctx, key, w.value, w.exp, false, cur.cas)
		if err == nil {
			return nil
		}
		if !errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrNotFound) {
			return err
		}
	}
	return fmt.Errorf("memcached: node %s: cas %s: %w: the primary lost this write and kept changing while it was restored", p.addr, key, provider.ErrUnavailable)
}

// undo undoes the backup write of a CompareAndSwap that landed while the
// primary refused the write with perr (syncBackup), and returns the error
// the write reports: perr, or an unknown outcome when the backup copy is
// kept as the only copy, or when a copy that changed since may carry the
// write (review-oc31 F1, part 3: a reader's repair restored the primary
// from the backup copy holding it before the undo; see bakAppend.undo).
// The write itself is any copy of its bytes, looked for only when the
// primary had lost the key: after a CAS conflict, equal bytes tell
// nothing (a sliding read's CAS rewrites the record it read, byte for
// byte; two processes may write the same bytes), and the write is
// undone as before.
func (w *bakWrite) undo(perr error) error {
	u := backupUndo{
		ours: func(bak *metaItem) bool { return bytes.Equal(bak.value, w.value) },
		seq:  w.seq,
		lost: errors.Is(perr, provider.ErrNotFound),
	}
	if w.record && u.lost {
		u.mine = func(v []byte) bool { return bytes.Equal(v, w.value) }
	}
	return w.s.undoErr(w.rt, perr, w.s.undoBackup(w.ctx, w.rt, u))
}

// syncBackup undoes a backup write whose primary write failed: if the
// backup node still holds that value (ours), it is replaced by the
// primary's copy. A backup copy that changed since is someone else's
// newer write and is left alone. When the primary has no copy (it lost
// the key: a flush or an eviction since this Store's last write, whose
// token it reused without reading), the backup copy is the session's
// only copy and the record before this write is not known: it is kept
// (a later read restores the primary from it), and syncBackup reports
// it (undoKept): the write is then on the backup copy only, its outcome
// unknown. Deleting it lost the session (review of 2026-11-29, F1). An
// undo that could not finish reports undoFailed. A CompareAndSwap's undo
// also looks at copies that changed since (bakWrite.undo).
func (s *Store) syncBackup(ctx context.Context, rt route, ours []byte) undoOutcome {
	return s.undoBackup(ctx, rt, backupUndo{ours: func(bak *metaItem) bool { return bytes.Equal(bak.value, ours) }})
}

// backupUndo is how undoBackup recognises the write it undoes.
type backupUndo struct {
	// ours reports whether the backup copy is still the write's.
	ours func(bak *metaItem) bool
	// pre, when not nil, returns the record before the write (an
	// append's: its value without the delta): when the primary has no
	// copy, the backup copy is put back to it, so that nothing of the
	// refused write stays.
	pre func(bak *metaItem) []byte
	// mine, when not nil, reports whether value v is the write itself
	// (its Seq, its bytes), wherever it is found: a repair's claim
	// rewrites the backup copy with the same bytes and a new CAS, and
	// restores the primary from it. With mine, the undo looks at copies
	// that changed since the write landed (carries).
	mine func(v []byte) bool
	// seq is the write's Seq.
	seq uint64
	// lost: the primary refused the write because it had lost the key
	// (not found). Whatever it holds by the undo was written there since,
	// possibly restored from the backup copy that held the write.
	lost bool
}

// carries reports whether a copy with value v, found where the write's
// own backup copy was replaced or gone, may carry the write: it is the
// write (mine), or, when the primary had lost the key, a later write (a
// higher Seq), which may have been based on the write taken up by a
// repair (Seq orders copies, it does not tell branches apart). When the
// primary refused the write with a CAS conflict, it held another record,
// on which the round's winner and the writes after it are based: a later
// copy there is taken not to carry this write (only a repair after the
// primary lost the key within this call, or a process that took the
// primary for down, could have based one on it; doc.go, Residual windows).
// A copy of the write's Seq that is not the write (another write of that
// Seq) or of a lower Seq never carries it.
func (u *backupUndo) carries(v []byte) bool {
	if u.mine(v) {
		return true
	}
	if !u.lost {
		return false
	}
	h, err := record.Parse(v)
	return err == nil && h.Seq > u.seq
}

// undoOutcome is what an undo of a backup write found.
type undoOutcome int

const (
	// undoDone: nothing of the write stays, or the copy that changed
	// since cannot carry it.
	undoDone undoOutcome = iota
	// undoKept: the backup copy keeps the write, as the session's only
	// copy (see syncBackup).
	undoKept
	// undoCarried: a copy changed since the write landed and may carry it
	// (backupUndo.carries): another process may have taken the write up.
	undoCarried
	// undoFailed: the undo could not finish (a read of a copy, or the
	// write that puts the backup copy back, failed): the backup copy may
	// still hold the write. This Store notes it stale when it marked the
	// backup node down, but other processes, for which the node may be
	// up, read it there.
	undoFailed
)

// undoBackup is syncBackup with the backup copy recognised as the write's
// by u.ours, and, with u.pre, put back to the record before the write
// when the primary has no copy (undoKept when that failed).
//
// With u.mine, the copies are looked at once the write's own backup
// copy is replaced or gone, not only left alone: a reader whose primary
// missed (getMissed) may have claimed the backup copy holding the write
// (the same bytes, a new CAS) and restored the primary from it, or
// written on top of it, before the undo read it or wrote over it. The
// write is then on the copies though the primary refused it: the outcome
// is undoCarried. The backup copy is looked at when it is not the write's
// any more (when read, or when the undo's conditioned write over it is
// refused); the primary's when the primary had lost the key (u.lost):
// whatever it holds by then was written there since, possibly from the
// write's backup copy.
func (s *Store) undoBackup(ctx context.Context, rt route, u backupUndo) undoOutcome {
	s.baks.drop(rt.key)
	// Left undone on a backup node marked down meanwhile, the copy is
	// deleted before the node serves again.
	defer rt.b.noteIfDown(rt.bakKey())
	bItems, err := rt.b.mget(ctx, true, rt.bakKey())
	if err != nil {
		return undoFailed
	}
	bak := bItems[0]
	if bak != nil && !u.ours(bak) {
		// Changed since: left alone.
		return s.mayCarry(ctx, rt, u, bak, nil)
	}
	pItems, err := rt.p.mget(ctx, true, rt.key)
	if err != nil {
		if bak != nil {
			return undoFailed // the write's copy stays
		}
		return s.mayCarry(ctx, rt, u, nil, nil)
	}
	prim := pItems[0]
	switch {
	case prim != nil && bak != nil:
		if s.hooks.beforePutBack != nil {
			s.hooks.beforePutBack(rt.key)
		}
		err := rt.b.cas(ctx, rt.bakKey(), prim.value, bak.cas, remaining(prim.ttl))
		refused := errors.Is(err, provider.ErrCASConflict) || errors.Is(err, provider.ErrNotFound)
		if err != nil && !refused {
			return undoFailed // the write's copy may stay
		}
		if u.mine != nil && refused {
			// Changed since it was read: what holds it now?
			bItems, err := rt.b.mget(ctx, true, rt.bakKey())
			if err != nil {
				return undoCarried // not known
			}
			return s.mayCarry(ctx, rt, u, bItems[0], prim)
		}
		// A whole write's copy is recognised by its bytes, which a
		// repair's claim keeps: the primary may have been restored
		// from it.
		return s.mayCarry(ctx, rt, u, nil, prim)
	case prim != nil:
		// The backup copy is gone since the write landed on it.
		_ = rt.b.add(ctx, rt.bakKey(), prim.value, remaining(prim.ttl))
		return s.mayCarry(ctx, rt, u, nil, prim)
	case bak != nil && u.pre != nil:
		// The primary lost the key: the backup copy goes back to the
		// record before this write, and a later read restores the
		// primary from it.
		if rt.b.cas(ctx, rt.bakKey(), u.pre(bak), bak.cas, remaining(bak.ttl)) != nil {
			return undoKept
		}
	case bak != nil && s.hooks.bakUndoDeletes:
		_ = rt.b.deleteIf(ctx, rt.bakKey(), bak.cas) // the broken variant: before the fix
	case bak != nil:
		return undoKept // the only copy: kept (see syncBackup)
	}
	return undoDone
}

// mayCarry is the outcome of an undo once the write's own copy on the
// backup node is replaced or gone: whether the backup copy now (bak; nil
// when gone, or already put back by the undo) or, when the primary had
// lost the key, the primary's copy (prim; read now when nil) may carry the
// write.
func (s *Store) mayCarry(ctx context.Context, rt route, u backupUndo, bak, prim *metaItem) undoOutcome {
	if u.mine == nil {
		return undoDone
	}
	if bak != nil && u.carries(bak.value) {
		return undoCarried
	}
	if !u.lost {
		// The primary held another record when it refused the write:
		// what it holds is based on that one, not on this write.
		return undoDone
	}
	if prim == nil {
		pItems, err := rt.p.mget(ctx, true, rt.key)
		if err != nil {
			return undoCarried // not known; the backup copy may have been claimed
		}
		prim = pItems[0]
	}
	if prim != nil && u.carries(prim.value) {
		return undoCarried
	}
	return undoDone
}

// undoErr is the error of a write the primary refused with perr, once
// the undo of its backup copy found o: perr; or an unknown outcome when
// the backup copy is kept as the only copy (keptOnBackup), or when a copy
// that changed since it landed may carry it (undoCarried; with the test
// hook undoCarriedRefused, perr, as before).
func (s *Store) undoErr(rt route, perr error, o undoOutcome) error {
	switch {
	case o == undoKept:
		return keptOnBackup(rt, perr)
	case o == undoCarried && !s.hooks.undoCarriedRefused:
		return fmt.Errorf("memcached: node %s: %s: the primary refused this write (%v), and a copy changed since it landed on the backup copy may carry it: %w", rt.p.addr, rt.key, perr, provider.ErrOutcomeUnknown)
	case o == undoFailed && !s.hooks.refusedUnsure:
		return fmt.Errorf("memcached: node %s: %s: the primary refused this write (%v), and the undo of its backup copy could not finish: %w", rt.p.addr, rt.key, perr, provider.ErrOutcomeUnknown)
	}
	return perr
}

// refusedErr is the error of a write that one copy refused with
// notWritten (a conflict, "not found", "exists") while its other half
// failed with other: notWritten, unless other leaves the write's outcome
// there unknown (its reply was lost: the write may have landed on that
// copy, where other processes, for which the node may still be up, read
// it). Then the outcome is unknown (sixth session, d4; with the test hook
// refusedUnsure, notWritten as before).
func (s *Store) refusedErr(rt route, notWritten, other error) error {
	if !errors.Is(other, provider.ErrOutcomeUnknown) || errors.Is(notWritten, provider.ErrOutcomeUnknown) || s.hooks.refusedUnsure {
		return notWritten
	}
	return fmt.Errorf("memcached: %s: one copy refused this write (%v), and the other's write may have landed (%v): %w", rt.key, notWritten, other, provider.ErrOutcomeUnknown)
}

// backupServesErr is the error of a write whose primary failed with perr
// (provider.ErrUnavailable: the primary is now marked down) while its
// backup half landed, or may have (its reply was lost): the backup copy
// serves the key from now on, to this Store and to every process that
// takes the primary for down, so the write may be the session's state.
// perr alone says nothing of that when the primary's request was never
// sent (its dial failed: a dead primary's usual answer, notSentError), and
// callers take ErrUnavailable alone for "nothing written" (the
// middleware's 503 with Retry-After at a load): the outcome is unknown
// (rv-d4 m1). perr is returned as is when it already says so, and with
// the test hook unavailableBare, as before.
func (s *Store) backupServesErr(rt route, perr error) error {
	if errors.Is(perr, provider.ErrOutcomeUnknown) || s.hooks.unavailableBare {
		return perr
	}
	return fmt.Errorf("memcached: %s: the primary failed (%w), and this write's backup half landed or may have, on the copy that serves the key now: %w", rt.key, perr, provider.ErrOutcomeUnknown)
}

// keptOnBackup is the error of a write the primary refused because it
// lost the key, whose backup half is kept as the session's only copy
// (syncBackup): the write may be read back, so its outcome is unknown.
func keptOnBackup(rt route, perr error) error {
	return fmt.Errorf("memcached: node %s: %s: the primary lost the key (%v) and this write stays on the backup copy, the only one: %w", rt.p.addr, rt.key, perr, provider.ErrOutcomeUnknown)
}
