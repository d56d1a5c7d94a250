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
// Every backup write is conditional, and is sent only once the primary
// write succeeded (doc.go, "The unknown-outcome contract"). The Store
// remembers, per key, the memcached CAS and record Seq of the last backup
// copy it wrote (meta set returns the new CAS). A write of Seq n whose
// remembered copy has Seq < n is sent as a meta set conditioned on that
// CAS: it lands only if the backup still holds exactly the copy
// remembered, which is older. When nothing older is remembered (first
// write by this process, or another process wrote since), or the
// conditioned write is refused, the slow path reads the backup copy, and
// replaces it (again conditioned on its CAS) only if its Seq is lower, or
// equal with other bytes. So a write that was acknowledged is always on
// the backup node, or something newer is; and a write the primary
// refused is on no copy.

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

	landed bool   // the conditioned write (send) stored value on the backup node
	err    error  // the conditioned write's error, if any
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

// send is the backup write sent once the primary write succeeded, when
// this Store remembers an older backup copy: conditioned on its CAS. A
// value that is not a record has no Seq to order copies by: it is set
// plainly.
func (w *bakWrite) send() error {
	ctx := w.ctx
	b, key := w.rt.b, w.rt.bakKey()
	if !w.record {
		w.err = b.set(ctx, key, w.value, w.exp)
		w.landed = w.err == nil
		return w.err
	}
	known, ok := w.s.baks.get(w.rt.key)
	if !ok || known.seq >= w.seq {
		return nil // the slow path (afterPrimary) decides
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

// afterPrimary completes the backup write once the primary write succeeded
// and send ran: when send's write did not land, the backup copy is read and
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
			w.s.syncBackup(ctx, w.rt, w.value)
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

// syncBackup puts the primary's copy on the backup node when the backup
// copy still holds ours (fixPrimary: the primary lost this write and a
// write based on an older copy replaced it). A backup copy that changed
// since is someone else's newer write and is left alone. When the primary
// has no copy, the backup copy is the session's only copy: it is kept (a
// later read restores the primary from it); deleting it lost the session
// (review of 2026-11-29, F1).
func (s *Store) syncBackup(ctx context.Context, rt route, ours []byte) {
	s.baks.drop(rt.key)
	// Left undone on a backup node marked down meanwhile, the copy is
	// deleted before the node serves again.
	defer rt.b.noteIfDown(rt.bakKey())
	bItems, err := rt.b.mget(ctx, true, rt.bakKey())
	if err != nil {
		return
	}
	bak := bItems[0]
	if bak != nil && !bytes.Equal(bak.value, ours) {
		return // changed since: left alone
	}
	pItems, err := rt.p.mget(ctx, true, rt.key)
	if err != nil {
		return
	}
	switch prim := pItems[0]; {
	case prim != nil && bak != nil:
		_ = rt.b.cas(ctx, rt.bakKey(), prim.value, bak.cas, remaining(prim.ttl))
	case prim != nil:
		_ = rt.b.add(ctx, rt.bakKey(), prim.value, remaining(prim.ttl))
	}
}
