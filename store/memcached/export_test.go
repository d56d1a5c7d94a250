package memcached

// SetTestHooks installs functions called while a CompareAndSwap is between
// its primary and backup writes (afterPrimaryWrite) and while a repair has
// read the copies but written nothing (afterRepairRead). Set them before
// the Store is used concurrently.
func SetTestHooks(s *Store, afterPrimaryWrite, afterRepairRead func(key string)) {
	s.hooks = testHooks{afterPrimaryWrite: afterPrimaryWrite, afterRepairRead: afterRepairRead}
}
