// Package tiered is a provider.Store with a cache in front of a durable
// store: memcached (package memcached) in front of PostgreSQL (package
// sqlstore, its own module). The durable tier is any Durable; this package
// does not import sqlstore. The cache may lose any record at any time (LRU
// eviction before the session's timeout, a flush, a restart); the durable
// tier makes that safe, and the cache keeps the durable tier off the path of
// most requests.
//
//	mc, _ := memcached.New(memcached.Config{Nodes: nodes})
//	db, _ := sqlstore.New(ctx, sqlstore.Config{DSNs: dsns})
//	s, _ := tiered.New(tiered.Config{Cache: mc, Durable: db})
//	p, _ := provider.New(s, provider.Config{})
//
// # Where the lock lives
//
// The live record of a session, its lock included, lives in the cache, and
// every change goes through the cache's compare-and-swap, which is what
// serialises requests and fences stale lock holders. The durable tier holds
// a copy of the session's data, not of its lock.
//
// A change that leaves the data as it was (same DataSeq, timeout, action
// flags and removal state: taking, renewing, releasing or breaking a lock)
// is written to the cache only. With a warm cache, a read-only request and
// an exclusive request that changes nothing make no SQL statement.
//
// A change of the data (a commit, a removal, a new session) is written to
// SQL first and then to the cache, so it is durable before it is
// acknowledged: one statement per commit. The SQL write is ordered by the
// record's Seq (Durable.PutRecord): an older record never
// overwrites a newer one, whatever order concurrent writes arrive in. Before
// writing, the cache's CAS token is checked, so a request whose token is
// stale makes no statement. A new session is inserted in SQL first
// (insert-if-absent), then in the cache.
//
// # When the cache loses a record
//
// A Get that misses the cache reads the durable copy and serves it revived
// (record.Revive): unlocked, its lock id advanced by 2^48 past any
// lock the lost cache could have granted, its Seq advanced likewise, which
// starts a new epoch (record.Epoch) of the session. A request that held a
// lock in the lost cache is fenced: its commit, release or removal fails
// with provider.ErrLockLost, nothing written. The revived copy is first
// written back to SQL with a compare-and-swap on the version that was read,
// which also records on the row that this version was claimed
// (Durable.Claim), and only then added to the cache, replacing any record
// of an older epoch found there. Concurrent Gets of one process share one
// revival. A revival reads the cache once more after reading the durable
// copy, and serves the record it finds there unless it is of an older
// epoch: another app server may have revived the session since this one
// missed it, and claimed again, its record would be replaced and its lock
// holders fenced for nothing (TestRevivalServesAnotherServersRevival).
// Likewise a change refused because the durable copy is of a newer epoch
// (a revival claimed it since the change's record was read) does not
// revive the session again at once: the claiming revival's record reaches
// the cache within round trips; only refusals lasting as long as a cache
// gone back in time takes to be deemed so (below) revive it over the
// cache (TestStaleWriteWaitsForTheRevival). Two holders are still
// possible across a revival: one whose lock the lost cache held, fenced,
// and one of the revived record.
//
// The claim is what keeps commits exact across a cache loss. A commit whose
// SQL write arrives after a revival claimed the row belongs to the lost
// epoch and is refused (the committer sees a conflict, re-reads, and gets
// ErrLockLost), so it is neither acknowledged nor live. A commit whose SQL
// write is done but whose cache write fails (the cache lost the session,
// or the session moved on without it: its lock was taken over or renewed
// meanwhile) is settled by one rule (docs/replication.md §15): whoever
// adopts a write that may not be committed first changes that write's
// token, so the writer can tell.
//
//   - If the session moved on in the cache without the commit, its SQL
//     write is undone by writing the cache's live record over it, on the
//     condition that the row still holds the commit's own SQL token. An
//     undo that succeeds proves that no revival served the commit (a
//     revival claims the row, changing its token, before it serves it) and
//     none can now: the commit is refused (ErrLockLost).
//   - Otherwise (the undo changed no row, or the cache already holds a
//     revival) the durable tier says whether a revival claimed that very
//     version (Durable.ClaimOf). Claimed: the commit was served, revived
//     and unlocked, and every later record descends from it: it is
//     acknowledged, even though its own cache write failed and later
//     commits may have moved past it. Replaced by a write that was not a
//     claim (a lock-free merge based on a lock-only change that beat the
//     commit to the cache, ordered after it by Seq): it was never served,
//     and is refused. Cannot tell, or the cache or SQL failed meanwhile:
//     the commit fails with provider.ErrOutcomeUnknown, never as refused.
//     Its error does not wrap a cause that says nothing was written (the
//     revival's conflict, a not found): a caller that checks for a
//     conflict first would take the commit for refused.
//
// Every acknowledged commit therefore survives a flush, nothing refused is
// applied, and a commit that may be applied is never reported as refused;
// TestCacheLostDuringIncrements and the memcached tests check it under
// concurrent traffic with repeated flushes and restarts, and
// TestFencedButApplied forces a revival between a commit's SQL write and
// its undo (all in store/sqlstore/internal/tieredtest).
//
// A write of unknown outcome (this store's, or the cache's own: a lock
// change is the cache's write alone) is settled by the provider reading
// the record back when the cache's reads settle its writes
// (ReadsSettleOutcomes, provider.OutcomeReader: memcached with one copy
// or the witness scheme), as on the cache alone.
//
// A cache that goes back in time (a memcached node restoring an outdated
// copy from its replica after a partial flush) serves a record older than
// the durable copy; a commit from it at a Seq the durable copy already has
// is refused, and so would be every retry. After several refusals in a row
// from one cache record, lasting a few seconds, the durable copy is
// revived over it (its holder is fenced). The seconds are what tells it
// from another writer of the same cache record that sits between its
// durable write and a cache write stalled by a paused node (the cache
// client's timeout, then failover): the refused request retries until that
// writer settles or its own attempts run out (a conflict, nothing
// written), and keeps its lock (TestStalledWriterDoesNotReviveOverHolder).
// A refusal where the durable copy holds exactly the record sent, a change
// this process reported unknown, is not one: it is the same change sent
// again after a write of unknown outcome (its durable write done, its
// cache write not), and goes on to the cache. The same bytes from another
// request (a twin decided on the same record) are refused: the store
// remembers, for a minute and up to 16,384 of them, the changes whose
// outcome it reported unknown, and past that bound takes any exact copy
// for a change sent again, as a forgotten one refused would be refused
// until its holder is fenced (TestTwinsOnce, TestSentBefore).
// A commit from it at a higher Seq is not detected: it overwrites the
// durable copy, and the data the cache lost stays lost
// (TestCacheGoneBackIsRevived covers the refused case).
//
// A cache that holds a record it cannot confirm (provider.ErrUnconfirmed:
// memcached's witness replication left with one copy of a creation, or of
// a witness-less record, and its two other records empty, as a revival's
// cache Add cut short by a loss of the whole cache leaves it) would report
// the session unavailable until the record expires. Tiered deletes that
// record from the cache, a loss of the key's cache record, and revives the
// durable copy as on a miss (Stats.UnconfirmedDeleted).
//
// A corrupt durable copy is reported (an error wrapping provider.ErrCorrupt)
// and never put in the cache. If the cache itself is unavailable, requests
// fail: the lock has no other authority.
//
// # Expiry of the durable copy
//
// Read-only and lock-only requests slide the session's expiry in the cache
// but not in SQL. So that the durable copy does not fall far behind, a
// cache-only request refreshes the SQL row's expiry (one statement, Touch)
// when the copy has less than Config.RefreshBelow (default one half) of the
// session's timeout left; the copy's expiry is tracked in memory (by this
// process's monotonic clock, from the moment before its own write or
// refresh), so most requests cost nothing: at most one refresh per half
// timeout per active session and process. A row found gone is rewritten
// from the live record.
//
// The durable copy is written with the session's own timeout and never
// extended beyond it (a refresh asked with a longer TTL, such as the
// provider's hint for a session whose timeout it does not know yet, uses
// the record's own timeout), so a session never outlives its timeout
// because of SQL. The trade-off: a session whose cache record is lost is revived only
// if it was last used less than RefreshBelow of its timeout ago (its
// durable copy lives at least that long after its last request); one idle
// longer and evicted is gone. Raise RefreshBelow (up to 1) to cover more of
// the timeout with more refresh statements.
//
// Tombstones of removed sessions are written through like commits, with
// the provider's tombstone TTL.
//
// # Requirements
//
// Values written with CompareAndSwap must be provider records
// (record.Parse); the provider writes nothing else. One
// session makes fewer than 2^32 changes between two cache losses (epochs
// are record.Epoch). Close closes the cache and the durable store.
package tiered
