package memcached

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
