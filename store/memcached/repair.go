package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// found is a copy of a key found on some node under some local key.
type found struct {
	n    *node
	key  string
	item *metaItem
	seq  uint64
}

// getMissed handles a primary miss: it looks for copies on the backup node
// ("bak:"+key, and key itself: the node was the primary before a node was
// added) and on the primary ("bak:"+key: it was the backup before a node
// was removed), restores the newest by Seq to the backup and then the
// primary, and returns the primary's copy. Lookup failures count as misses.
//
// The backup copy is written first, conditioned on the copy read there and
// marked with the time of the claim (claimStamp): a write whose primary
// write landed before the primary lost it, and whose backup write is still
// to come,
// then finds its backup write refused or the claim in its way, and brings
// the primary up to its value itself (bakWrite.fixPrimary); a backup write
// that landed before the claim makes the claim fail, and the copies are
// read again. So a repair never leaves on the primary a copy older than a
// write acknowledged before or during the repair.
func (s *Store) getMissed(ctx context.Context, rt route, miss error) (provider.Entry, error) {
	if rt.b == nil {
		return provider.Entry{}, miss
	}
	for range maxRepairRounds {
		best, bakOnB, err := s.readCopies(ctx, rt)
		if err != nil || best == nil {
			if err == nil {
				err = miss
			}
			return provider.Entry{}, err
		}
		exp := remaining(best.item.ttl)
		if rt.b.isUp() {
			s.baks.drop(rt.key)
			stamp := claimStamp(time.Now())
			var cerr error
			if bakOnB != nil {
				_, cerr = rt.b.msetFlags(ctx, rt.bakKey(), best.item.value, exp, stamp, false, bakOnB.cas)
			} else {
				_, cerr = rt.b.msetFlags(ctx, rt.bakKey(), best.item.value, exp, stamp, true, 0)
			}
			if errors.Is(cerr, provider.ErrCASConflict) || errors.Is(cerr, provider.ErrNotFound) || errors.Is(cerr, provider.ErrExists) {
				continue // the backup copy changed since it was read
			}
			// Any other failure: a backup node now marked down takes no
			// backup writes, so there is nothing to claim it against.
		}
		// Restore the primary; ErrExists means another request restored or
		// wrote it meanwhile, and the primary's copy stands.
		err = rt.p.add(ctx, rt.key, best.item.value, exp)
		if err != nil && !errors.Is(err, provider.ErrExists) {
			return provider.Entry{}, err
		}
		if err == nil {
			s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventRepair, Node: rt.p.addr, Detail: "a missing copy was restored from the newest copy found"})
		}
		it, err := rt.p.get(ctx, rt.key)
		if err != nil {
			return provider.Entry{}, err
		}
		return entry(rt.p, it.value, it.cas)
	}
	return provider.Entry{}, fmt.Errorf("memcached: node %s: repair %s: %w: the backup copy kept changing", rt.b.addr, rt.key, provider.ErrUnavailable)
}

// maxRepairRounds bounds how often a repair reads the copies again because
// the backup copy changed under it (each time, a write landed there).
const maxRepairRounds = 4

// readCopies reads the copies a primary miss looks for (see getMissed)
// and returns the newest, or nil when there is none, with the backup
// node's copy under "bak:"+key (nil when absent or not read).
func (s *Store) readCopies(ctx context.Context, rt route) (best *found, bakOnB *metaItem, err error) {
	var pItems, bItems []*metaItem
	var bDo func() error
	if rt.b.isUp() {
		bDo = func() error {
			var err error
			bItems, err = rt.b.mget(ctx, true, rt.bakKey(), rt.key)
			return err
		}
	}
	parallel(func() error {
		var err error
		pItems, err = rt.p.mget(ctx, true, rt.bakKey())
		return err
	}, bDo)
	if s.hooks.afterRepairRead != nil {
		s.hooks.afterRepairRead(rt.key)
	}
	var copies []found
	if len(bItems) == 2 {
		bakOnB = bItems[0]
		copies = appendFound(copies, rt.b, rt.bakKey(), bItems[0])
		copies = appendFound(copies, rt.b, rt.key, bItems[1])
	}
	if len(pItems) == 1 {
		copies = appendFound(copies, rt.p, rt.bakKey(), pItems[0])
	}
	if len(copies) == 0 {
		return nil, nil, nil
	}
	f, err := newest(rt, copies)
	if err != nil {
		return nil, nil, err
	}
	return &f, bakOnB, nil
}

func appendFound(copies []found, n *node, key string, it *metaItem) []found {
	if it == nil {
		return copies
	}
	return append(copies, found{n: n, key: key, item: it})
}

// newest picks the copy with the highest record Seq; on equal Seq the
// earlier in copies wins (the backup copy first). Copies that do not parse
// as records are skipped; if none parses, the error wraps
// provider.ErrCorrupt.
func newest(rt route, copies []found) (found, error) {
	best := -1
	var firstErr error
	for i := range copies {
		h, err := record.Parse(copies[i].item.value)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("memcached: node %s: key %s: %w", copies[i].n.addr, copies[i].key, err)
			}
			continue
		}
		copies[i].seq = h.Seq
		if best < 0 || h.Seq > copies[best].seq {
			best = i
		}
	}
	if best < 0 {
		return found{}, firstErr
	}
	return copies[best], nil
}

// backupOnly handles an Add the primary accepted while the backup node
// already held a copy: the primary had lost the session (eviction or
// restart), so the key exists. The backup's copy replaces the value just
// added, unless that changed meanwhile.
func (s *Store) backupOnly(ctx context.Context, rt route, ours []byte) error {
	bItems, err := rt.b.mget(ctx, true, rt.bakKey())
	if err != nil || bItems[0] == nil {
		return nil // the backup copy is gone: the add stands
	}
	bak := bItems[0]
	s.baks.drop(rt.key)
	if pItems, err := rt.p.mget(ctx, true, rt.key); err == nil && pItems[0] != nil && bytes.Equal(pItems[0].value, ours) {
		_ = rt.p.cas(ctx, rt.key, bak.value, pItems[0].cas, remaining(bak.ttl))
	}
	return fmt.Errorf("memcached: node %s: add %s: %w (held by the backup copy)", rt.b.addr, rt.key, provider.ErrExists)
}

// restoreBackup copies the primary's value to a backup node that lost it.
func (s *Store) restoreBackup(ctx context.Context, rt route) {
	s.baks.drop(rt.key)
	pItems, err := rt.p.mget(ctx, true, rt.key)
	if err != nil || pItems[0] == nil {
		return
	}
	_ = rt.b.add(ctx, rt.bakKey(), pItems[0].value, remaining(pItems[0].ttl))
}
