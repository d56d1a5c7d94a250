package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// This file is how a lock change appended to a key's primary copy
// (CompareAndAppend) reaches its backup copy: as the same delta, appended
// once the primary's append succeeded (doc.go, "The unknown-outcome
// contract"), when the Store knows that the backup copy holds the very
// record the delta applies to; else the key is written whole, as before.
//
// The pair. After a write of record R that landed on both copies (whole or
// appended, with no claim on the backup copy), or a Get that read R on
// both (pairRead), the Store remembers the memcached CAS of each copy
// (bakVersion.cas and .pcas): each CAS names
// one version of one item on its node, so as long as the primary's CAS is
// still pcas and the backup's still cas, both hold R, byte for byte. An
// append conditioned on the provider's token (the primary's CAS) is sent
// to the backup only when that token is pcas, conditioned on cas: if both
// land, both copies hold R followed by the same delta, the same bytes
// again, and the pair moves on to their new CAS values. Anything that
// changed the backup copy since (another Store's write, a repair's
// claim, a flush, an eviction, a restart) changed its CAS, and the backup
// append is refused: it never lands on a copy it was not computed for.
//
// When the backup append did not land, the backup copy gets the whole
// record, exactly as a whole write's backup half does
// when its conditioned write is refused (bakWrite.afterPrimary, with its
// Seq ordering, claims and primary checks): the whole record is read back
// from the primary, where it is the value this append made (its Seq, and
// ending with this delta), or a newer write, taken to include it as
// fixPrimary takes a higher Seq. When the primary holds neither (it lost
// the key, or was restored from an older copy, between the append and the
// read), this append survives nowhere: the backup copy never had it, and
// every later write on the primary is based on what it holds. It was on
// the primary though, where another process may have read it before the
// primary lost it: it fails with provider.ErrOutcomeUnknown (landedErr),
// never a conflict, which says nothing was written. A primary that stops
// answering in that window fails it with ErrOutcomeUnknown too: this Store
// notes the key stale there (its copy is deleted before the node serves
// this Store again), but other processes, for which the node may still be
// up, read the append there.
//
// When the primary append is refused, the backup append is not sent.

// bakAppend is the backup half of one CompareAndAppend.
type bakAppend struct {
	ctx   context.Context // the write's, without its cancellation: the backup half completes
	s     *Store
	rt    route
	delta []byte
	exp   int32
	pair  bakVersion // both copies held record Seq pair.seq at these CAS values

	newCAS uint64 // the backup copy's CAS after the append; 0 when it did not land
	err    error  // the backup append's error, if any
}

// newBakAppend returns the backup half of an append conditioned on the
// primary's memcached CAS mcas. It returns nil and true when there is no
// backup copy to write (no backup, or its node is down: the copy is then
// noted stale, as for whole writes), and nil and false when the Store
// cannot tell that the backup copy holds what the primary holds at mcas:
// the caller then declines (provider.ErrNoAppend) and the key is written
// whole.
func (s *Store) newBakAppend(ctx context.Context, rt route, delta []byte, mcas uint64, exp int32) (*bakAppend, bool) {
	if rt.b == nil || rt.b.noteIfDown(rt.bakKey()) {
		return nil, true
	}
	pair, ok := s.baks.get(rt.key)
	if !ok || pair.pcas == 0 || pair.pcas != mcas || s.hooks.backupAppendOff {
		return nil, false
	}
	return &bakAppend{ctx: context.WithoutCancel(ctx), s: s, rt: rt, delta: delta, exp: exp, pair: pair}, true
}

// send is the part sent once the primary append succeeded: the same
// append and touch, on the backup copy, conditioned on its CAS.
func (a *bakAppend) send() error {
	cas, _, err := a.rt.b.appendTouch(a.ctx, a.rt.bakKey(), a.delta, a.pair.cas, a.exp)
	if err == nil {
		a.newCAS = cas
	}
	a.err = err
	return err
}

// afterPrimary completes the backup half once the primary append landed
// with memcached CAS primaryCAS: the new pair when both appends landed,
// else the whole record on the backup copy (see above).
func (a *bakAppend) afterPrimary(primaryCAS uint64) error {
	if a.newCAS != 0 {
		a.s.baks.put(a.rt.key, bakVersion{cas: a.newCAS, seq: a.pair.seq + 1, pcas: primaryCAS})
		return nil
	}
	a.s.baks.drop(a.rt.key)
	if a.s.hooks.bakAppendNoWhole {
		return nil
	}
	if errors.Is(a.err, provider.ErrUnavailable) || a.rt.b.noteIfDown(a.rt.bakKey()) {
		return nil // the backup node is down; its copy is noted stale
	}
	ctx := a.ctx
	p, key := a.rt.p, a.rt.key
	items, err := p.mget(ctx, true, key)
	if err != nil {
		if errors.Is(err, provider.ErrUnavailable) && p.noteIfDown(key) && a.s.hooks.landedConflict {
			return a.s.landedErr(p, "append", key, "the primary died before the backup copy held this append (its copy there is deleted before the node serves again)")
		}
		return fmt.Errorf("memcached: node %s: append %s: %w: reading the record back for the backup copy: %w", p.addr, key, provider.ErrOutcomeUnknown, err)
	}
	cur, seq := items[0], a.pair.seq+1
	var h record.Header
	perr := errors.New("absent")
	if cur != nil {
		h, perr = record.Parse(cur.value)
	}
	if perr != nil || h.Seq < seq || (h.Seq == seq && !bytes.HasSuffix(cur.value, a.delta)) {
		return a.s.landedErr(p, "append", key, "the primary lost this append before its backup copy was written")
	}
	exp := a.exp
	if h.Seq > seq {
		exp = remaining(cur.ttl) // a newer write's, with its own TTL
	}
	w := &bakWrite{ctx: ctx, s: a.s, rt: a.rt, value: cur.value, seq: h.Seq, record: true, exp: exp}
	return w.afterPrimary(cur.cas)
}

// pairRead is the backup half of a Get: the backup copy, read in parallel
// with the primary's, so that a Store that did not write the key last
// learns the pair when both copies hold the same bytes (and the lock change
// that usually follows a read is appended to both). The pair learnt this
// way means what a written one means: each copy, at the CAS it was read
// with, held the same record.
type pairRead struct {
	ctx context.Context
	s   *Store
	rt  route
	bak *metaItem // the backup copy read, nil when absent or not read
}

// newPairRead returns the backup half of a Get of a key with a backup copy
// on a node that is up, or nil.
func (s *Store) newPairRead(ctx context.Context, rt route) *pairRead {
	if rt.b == nil || !rt.b.isUp() || s.cfg.WholeWrites || s.hooks.backupAppendOff {
		return nil
	}
	return &pairRead{ctx: ctx, s: s, rt: rt}
}

func (r *pairRead) read() error {
	items, err := r.rt.b.mget(r.ctx, true, r.rt.bakKey())
	if err == nil {
		r.bak = items[0]
	}
	return err
}

// learn remembers the pair when the primary's copy prim and the backup
// copy read are the same record, byte for byte, without a claim.
func (r *pairRead) learn(prim *metaItem) {
	if r == nil || r.bak == nil || r.bak.flags != 0 || !bytes.Equal(r.bak.value, prim.value) {
		return
	}
	if h, err := record.Parse(prim.value); err == nil {
		r.s.baks.put(r.rt.key, bakVersion{cas: r.bak.cas, seq: h.Seq, pcas: prim.cas})
	}
}
