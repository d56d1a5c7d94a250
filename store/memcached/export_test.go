package memcached

import "time"

// SetTestHooks installs functions called while a CompareAndSwap is between
// its primary and backup writes (afterPrimaryWrite) and while a repair has
// read the copies but written nothing (afterRepairRead). Set them before
// the Store is used concurrently.
func SetTestHooks(s *Store, afterPrimaryWrite, afterRepairRead func(key string)) {
	s.hooks = testHooks{afterPrimaryWrite: afterPrimaryWrite, afterRepairRead: afterRepairRead}
}

// SetAppendWithoutTouch makes CompareAndAppend send its append without the
// touch that follows it: a deliberately broken variant, whose appends
// leave the key's expiry as it was (memcached's append keeps it).
func SetAppendWithoutTouch(s *Store) { s.hooks.appendNoTouch = true }

// WitnessCandidates returns the addresses of key's three candidates in
// BackupWitness mode (c0, c1, c2: home primary, secondary, witness).
func WitnessCandidates(s *Store, key string) []string {
	cs := s.wit.candidates(key)
	return []string{cs[0].addr, cs[1].addr, cs[2].addr}
}

// SetEvictionCheck sets how often a BackupWitness Store reads its nodes'
// evictions counters (default 10 s).
func SetEvictionCheck(s *Store, every time.Duration) {
	s.wit.mu.Lock()
	s.wit.evictEvery = every
	s.wit.mu.Unlock()
}

// Pipelined reports whether s's nodes multiplex their operations over
// shared connections (Config.Conns).
func Pipelined(s *Store) bool {
	for _, n := range s.nodes {
		if n.meta.pipe == nil {
			return false
		}
	}
	return true
}
