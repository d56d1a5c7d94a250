// Package provider is ASP.NET's session-state provider model in Go: a
// Provider loads, locks, commits, releases and expires sessions over a
// small compare-and-swap Store, and every change is one compare-and-swap,
// so that concurrent requests of one session never overwrite each other
// and a crashed lock holder never leaves a session locked for long.
//
// A Provider is created with New over a Store: the embedded
// store/memstore, or a backend module (store/memcached, store/tiered, and
// the modules store/sqlstore, store/couchbase, store/redis). Its methods
// are ASP.NET's: GetItem and GetItemExclusive load a session (the second
// takes its lock, waiting while another request holds it),
// SetAndReleaseItemExclusive commits and releases, ReleaseItemExclusive
// releases, RemoveItem removes, ResetItemTimeout slides the timeout,
// CreateUninitializedItem creates a cookieless session. KeepLease renews a
// held lock while a handler runs. Most applications use the provider
// through package middleware.
//
// The lock protocol (states, transitions, the invariants I1-I7 and the
// tests that check them) is in docs/protocol.md; its code is in one file,
// protocol.go. The waiting side is package lock, configured through
// Config.Wait.
//
// # Stores
//
// A Store is Get, Add, CompareAndSwap, Touch and Delete on opaque values
// with CAS tokens and TTLs; optional interfaces (GetAndToucher, TTLReader)
// save round trips. Errors wrap the sentinels of this package (ErrNotFound,
// ErrExists, ErrCASConflict, ErrUnavailable, ErrOutcomeUnknown, ...), so
// errors.Is works whatever the backend. A write whose outcome cannot be
// known returns ErrOutcomeUnknown, never "not written"; ErrLockLost means
// nothing was written. The provider resolves an unknown outcome by
// reading the record once more where that read can tell (an acquisition
// is recognised by its lock id and time, a holder's write by the record
// it wrote or the lock it still finds), and returns ErrOutcomeUnknown
// otherwise. Stores report node events (Event) through the
// OnEvent callback (EventFunc) of their Config. The bytes a store holds
// are session records, owned by package record; stores read them only
// through its accessors. Package providertest is the conformance suite
// every Store runs.
//
// # Configuration
//
// The zero Config is ready to use: locking on, 10 s leases, 20 min
// default timeout, JSON values. Each field documents its default and what
// a negative value means; docs/semantics.md has them in one table.
package provider
