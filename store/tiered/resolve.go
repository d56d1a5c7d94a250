package tiered

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader: true when the
// cache's reads settle its own writes (memcached with one copy or the
// witness scheme; not BackupOn). Without it, a lock change of unknown
// outcome in the cache (a cache-only write: taking, renewing, releasing
// or breaking a lock) failed the request, and an acquisition that landed
// left a lock nobody held for a lease (the simulation's tiered partition
// seed 21: a final acquisition answered "the primary holds a newer
// configuration that may be built on this write", which the provider
// settles by reading the record back on the cache alone).
//
// A Get returns the cache's live record, which holds the lock and is the
// session's current state, or, when the cache lost it, a revival from
// the durable tier (a new epoch: unlocked, lock ids and Seq advanced).
// The provider's resolvers decide "landed" only on a record that shows
// the very write (its lock id and time, or exactly the record written):
// such a record is in the cache, and for a data change in the durable
// tier too (a change is written there first), so it stands; a revival
// never shows a lock, nor exactly a record written. This store's own
// unknown outcomes (a data change durable whose cache write failed, and
// whose adoption by a revival could not be told) are settled by the same
// reads: the record read is either the write (landed), or the one it was
// decided on, which it then sends again or decides again on (not
// landed). Either way the new write goes through the durable tier, which
// orders writes by Seq: the same record sent again finds the durable
// copy holding exactly it, its durable write done, and goes on to the
// cache CAS (sentAgain); another record at the Seq the first write
// already holds there is refused (a conflict: the provider reads again),
// and a later revival serves whichever record the durable tier kept. The
// first write may so become live after all, but the provider, once a
// call had a write of unknown outcome, never answers ErrLockLost
// (nothing written): the call then succeeds with the same change, or
// ends with the unknown error.
func (s *Store) ReadsSettleOutcomes() bool {
	r, ok := s.cache.(provider.OutcomeReader)
	return ok && r.ReadsSettleOutcomes()
}
