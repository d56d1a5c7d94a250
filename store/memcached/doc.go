// Package memcached is a provider.Store on a pool of memcached nodes that
// replicates every session (with two or more nodes), fails over while a
// node is down and repairs
// when it comes back. By default (Config.Backup's zero value,
// BackupDefault) three or more nodes run the witness replication (two data
// copies and a witness record per session: see Witness replication), two
// nodes a backup copy of every session on the second node (BackupOn: see
// Backup copies), and one node one copy. Each node has one client speaking
// memcached's meta commands (memcached 1.6 or later) on a few shared,
// pipelined connections (or a pool of connections: Config.Conns);
// github.com/bradfitz/gomemcache is used only on the text path for
// older servers (Config.TextProtocol, ProbeMeta).
//
//	store, err := memcached.New(memcached.Config{
//		Nodes: []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"},
//	})
//	if err != nil { ... }
//	defer store.Close()
//	p, err := provider.New(store, provider.Config{App: "shop"})
//
// # Key layout
//
// The provider names each session's record KeyPrefix + App + ":" + id
// (KeyPrefix + id without App), for example "sl:shop:" followed by the
// 32-character id; it validates ids before they form a key. This package
// stores that key unchanged on the key's primary node and the backup copy
// under "bak:" + key on its backup node. Keys longer than MaxKeyLen (246
// bytes, so that the backup key fits memcached's 250) or holding spaces,
// control bytes or DEL fail with ErrInvalidKey.
//
// # Placement
//
// Rendezvous (highest random weight) hashing: each node scores a key with
// FNV-1a of (node address, key) passed through MurmurHash3's 64-bit
// finalizer; the best score is the key's primary node, the second best its
// backup node. The whole key is hashed, which for provider keys is the
// session: all of a session's state is one key. The score depends only on
// the address string and the key, so the order of Config.Nodes does not
// matter (every process must use the same address strings), and adding or
// removing one of N nodes moves about 1/N of the sessions
// (TestPlacementMovesOneNth). Each node has its own client, so no client
// library ever picks a server.
//
// # Backup copies
//
// With BackupOn (the default with two nodes, a choice with more) every
// write also
// writes the backup copy, once the primary write has succeeded (never
// before: see The unknown-outcome contract), so a write costs two round
// trips of latency and one extra memcached operation (an append and its
// touch: two, as on the primary); with one node, or
// BackupOff, there is one copy. Get reads the backup copy in parallel
// with the primary's (see Bytes on the wire) and returns when both
// answered: like a write, it waits for a slow backup node, and a hung one
// delays it up to Timeout, after which the node is marked down and no
// longer read. The backup write never
// replaces a newer copy by an older one: copies are ordered by the record's
// Seq (record.Parse), never by clocks. In the steady state the
// backup write is one meta set conditioned on the memcached CAS of the
// backup copy this Store last wrote, sent only when that copy's Seq is
// lower; otherwise, once the primary write has succeeded, the backup copy is
// read and replaced only if it is older (see backup.go). A writer whose
// primary CAS is refused sends nothing to the backup node, so a write
// that was acknowledged is on the backup node, or something newer is, and
// a write that was refused is on no copy.
//
// # The unknown-outcome contract
//
// A write answered "not written" (provider.ErrCASConflict, ErrNotFound,
// ErrExists; ErrUnavailable without ErrOutcomeUnknown) is on no copy, as
// for every backend (issue 13). BackupOn keeps it by order: the backup
// half of a write (CompareAndSwap, Add, CompareAndAppend) is sent only
// after its primary half succeeded. A write the primary refused, or that
// failed there before it was sent, touched nothing; one whose primary
// request may have landed (its reply lost) answers ErrOutcomeUnknown, its
// backup half sent all the same, so that a process that now takes the
// primary for down reads what the primary may hold (cold review rvbo
// M2); one
// the primary took answers success or, when the primary lost it before its
// backup copy held it, ErrOutcomeUnknown (landedErr), never "not written".
// So no process, reading the primary, a repair's restore from the backup
// copy, or the backup copy while it takes the primary for down, can read
// a write answered "not written" (TestBackupOnRefusedRepairedNotRead,
// TestBackupOnRefusedNotReadByBackupReader, TestBackupOnContentionNoFault).
// The code before sent both halves in parallel and undid a landed backup
// half after a refusal: a repair or a reader could take the write up before
// the undo (rv-d4 M1). What BackupOn still does not guarantee is listed
// under Residual windows: lost updates and sessions, two holders, revival
// of an expired session, under single faults.
//
// # Witness replication (the default with three or more nodes)
//
// With three or more nodes and meta commands (Config.Backup left zero, or
// BackupWitness) the store runs docs/replication.md's "2+W" scheme: each session
// has two data copies and a small witness record, under its own key, on
// its three best nodes by rendezvous score; every record carries an
// envelope (configuration epoch, version, nonce, node-list digest, the
// session's timeout; on data records the session's lifetime, drawn by
// its Add), and the copies themselves, not a process's view of
// node health, decide which state is the truth. Reads and writes cost one
// round trip to all three nodes in the healthy case; a node unanswered
// for Config.FailoverAfter is failed over. Tokens are handles into a
// per-Store table (Config.Handles, Config.HandleBytes). Every
// Config.RepairEvery (30 s) a repair scan lists the nodes' keys
// (`lru_crawler metadump all`) and repairs or fails over the sessions not
// found whole, touched or not. Its connections
// are pooled (Config.Conns does not apply). No single fault (a node killed,
// restarted empty, flushed at any instant, paused past the timeout, or
// unreachable from some servers only; an app server paused; copies
// expiring at different instants) loses an acknowledged write, and a
// failover time (FailoverAfter + Timeout, 1.5 s by default) after a node
// fails requests succeed again; double faults may cost availability, never
// a wrong answer (docs/replication.md sections 8, 9, 11.1). Every process
// sharing the nodes must run the same mode and node list. CAS tokens,
// Failover, Repair and Residual windows below describe BackupOn.
//
// # CAS tokens
//
// memcached CAS values are per node. A token returned by Get carries the
// index of the node that served it in its top byte and the node's epoch
// (bumped whenever this Store marks it down or up) in the next, so a token
// read on one node never matches on another, nor on a node restarted since
// (its CAS values start again from 1; TestTokenAcrossRestart): CompareAndSwap with a token from a node
// that no longer serves the key (the primary went down, or came back)
// returns provider.ErrCASConflict and the provider reads again.
// CompareAndSwap and Add return the new token (`ms ... c` reports the
// item's new CAS), so a caller can write again without reading first; on
// the text path they return 0 (unknown).
//
// # Failover
//
// The first operation on a node that fails with a network error (refused,
// reset, closed) or times out marks the node down. Marking down therefore
// takes one failed operation: about a millisecond after a kill -9 under
// traffic (the kernel resets the connections; TestKillNodeDuringTraffic
// measures 0.6-5 ms), and Config.Timeout (default 500 ms) for a node that
// hangs without closing connections (TestHungNodeMarkedDownAndCleaned). A
// read that fails this way is retried on the backup copy at once; a write
// in flight at that moment fails with provider.ErrUnavailable, its outcome
// unknown. A write that landed on the primary just before it died, and
// whose backup write then finds a copy of its Seq or newer there that is
// not its own, checks that the primary still answers before it is
// acknowledged: otherwise that copy may be a write redirected to the
// backup since, based on the older copy, and the write fails with
// provider.ErrOutcomeUnknown: it is not live for this Store, but it landed
// on the primary, which other processes may still read
// (TestKilledPrimaryRedirectedWriteMidWrite, TestLandedWriteNotConflict). After that, while the node is down, Get, CompareAndSwap, Add,
// Touch and Delete of its keys go to the backup copies, which act as
// primaries; writes of keys whose backup node is down write the primary
// only. No request fails once the node is marked down. A key whose primary
// and backup nodes are both down (or whose only node is down, without
// backup) fails fast with provider.ErrUnavailable.
//
// A background health check, stopped by Close, probes down nodes every
// HealthCheckInterval (default 1 s) with `version`. Before a node that
// answers again is marked up, every copy on it that may be outdated (keys
// written elsewhere, or not written at all, while it was down, as noted by
// this Store; past 65536 such keys the node is flushed) is deleted, and
// writes redirected to the backup copies are let to finish, so a node that
// was only unreachable (partition, pause) never serves an old copy.
//
// # Repair
//
// Repair is lazy, on read. When the primary misses (the node came back
// empty, or evicted the session), Get looks for copies on the backup node
// ("bak:"+key, and key itself, which it holds if it was the primary before
// a node was added) and on the primary ("bak:"+key: it was the backup
// before a node was removed), restores the copy with the highest Seq to
// the backup and then to the primary (add, keeping its remaining TTL), and
// returns the primary's copy. Touch restores a backup copy found missing
// from the primary's. An Add refused by both copies returns
// provider.ErrExists, as does one the primary refuses (its backup half is
// not sent). An Add whose halves split, the primary taking it and the
// backup copy refusing it (the key only on the backup copy: the primary
// lost it, or a process that took the primary for down wrote it there),
// returns
// provider.ErrOutcomeUnknown, never ErrExists: its value was on one copy,
// where others may have read it, and may be the value kept. It then
// brings the copies to one value by one rule every party applies to the
// pair it reads: the backup copy goes onto the primary when it is a record
// of a higher Seq, else the primary's copy onto the backup (a tie
// included: the provider's Adds all carry Seq 1), each write conditioned
// on the copy it replaces. A refused CAS of the primary means the primary
// changed since it was read (another settle, or a write built on the
// Add's value, maybe acknowledged): no backup copy goes over it, and the
// backup copy follows the primary from then on (rv-d4b MJ2,
// TestSettleKeepsPrimaryWrite). The settle reads the pair again after
// each of its writes, stored or refused (another party may have moved the
// other copy meanwhile: two settles, one following the primary and one
// applying the Seq rule, each stored, swap the copies), and ends only on
// a read that shows the copies equal, the primary without a copy (the
// next read restores it, newest by Seq). It gives up after four
// refused writes (each another party's write landing meanwhile) or eight
// rounds, or on a failed command; each command is bounded by Timeout. It
// runs on a goroutine of the Store's, neither stopped by the caller's
// cancellation nor cut at its deadline: cut before its write, it would
// leave the copies as the split did, and a backup copy newer by Seq than
// the primary's is the one divergence nothing else repairs (the next
// write's slow path replaces a backup copy older than the primary's, a
// read restores a primary that lost its copy; a backup copy of a higher
// Seq stays under the writes acknowledged on the primary, and a loss of
// the primary's copy restores it over them). The Add answers when the
// settle ends, or one Timeout past the caller's deadline while it goes
// on. Close waits for the Adds in flight, counted before they send
// anything, and for their settles; an Add that finds the Store closed
// sends nothing and answers ErrClosed, so Close never leaves an Add's
// copies split (rv-settle2 R1, TestCloseWaitsForSplitAdd,
// TestSplitAddsRaceClose). A settle that ends unsettled makes the Add's
// error (if the caller still waits) say that the copies may differ, and
// is reported, after the answer, with an EventWarning naming the primary
// node, not the key (rv-mj2 mn-c, rv-d4b mn5, rv-settle S1, S3;
// TestSettleLastRoundReadAgain, TestSettleGivesUpAloud,
// TestSettleBounded, TestSettleRoundBound, TestSettleRunsPastDeadline,
// TestCloseFromSettleWarning). Before (rv-d4 M2), both Adds of a crossing
// answered ErrExists while one value was stored, and their put-backs,
// going opposite ways, could leave the copies diverged with equal Seq;
// since an Add's backup half waits for its primary half, Adds no longer
// cross. What the Seq rule costs: an Add of a record of
// a higher Seq than the session a copy holds replaces it (the provider's
// Adds carry Seq 1, so only tiered's revivals write such Adds), and an
// Add of Seq 1 replaces a session of Seq 1 (created, never written since)
// that only the backup copy still holds.
//
// A repair may run while a write that already landed on the primary (and
// was then lost with it) has its backup write still to come, so the
// backup copy it reads may be older than that write. It therefore first
// claims the backup copy: it rewrites it, conditioned on the CAS it read,
// with memcached client flags set to the time of the claim. A backup write
// that landed before the claim makes it fail, and the repair reads again;
// a backup write that comes after it is refused or finds the claim, and
// that writer, once its value is on the backup, brings the primary up to
// its value (or fails with provider.ErrOutcomeUnknown if a write based on
// the older copy, or its very bytes under a new CAS, replaced it: it was on
// the primary before, and a twin of the same bytes, two lock-free changes
// of one base, cannot be told from a reader's sliding CAS). Writers keep a claim younger than
// max(1 s, 4 Timeouts) on the copies they write, so a slower writer of
// the same round still sees it; a writer that finds the backup copy gone
// (both nodes flushed one after the other) checks the primary too. So a
// write acknowledged before or during a repair is not rolled back by it
// (TestFlushedPrimaryRepairedMidWrite, TestFlushedBothNodesMidWrite).
//
// # Errors
//
// Errors wrap the provider's sentinels and name the node:
//
//	cache miss                               provider.ErrNotFound
//	add of a present key                     provider.ErrExists
//	cas on a changed key, or token from another node
//	                                         provider.ErrCASConflict
//	value over Config.MaxItemSize (checked before anything is written),
//	or SERVER_ERROR object too large         provider.ErrTooLarge
//	other SERVER_ERROR / CLIENT_ERROR / ERROR replies
//	                                         provider.ErrServer (node stays up)
//	refused, reset, closed, timed out        provider.ErrUnavailable (node marked down)
//	undecodable record where copies are compared (repair)
//	                                         provider.ErrCorrupt
//	after Close                              provider.ErrClosed
//	bad key / TTL                            ErrInvalidKey / ErrInvalidTTL
//
// A record is one memcached item written whole, and the provider checks
// each record's checksum, so a half-written session is never read back.
//
// # Expirations and contexts
//
// TTLs are rounded up to whole seconds, plus two: memcached's clock is
// whole seconds, set by a timer re-armed for one second after each tick,
// so it lags the real second by up to almost two when the timer's phase
// crosses a second boundary, and an item can expire up to two seconds
// before its expiration in seconds has passed. The two extra seconds make
// a session live at least its timeout (and a few seconds more). Before
// they were one; CI saw a 1 s session gone after 979 ms
// (providertest.CheckNoEarlyExpiry), and the simulation's clock model now
// has the skips (stress/sim TestStoreOutlivesTTLAcrossClockSkips). Reads of the
// provider's read path are one `mg <key> c f v T<exp>` (GetAndTouch).
// Beyond 30 days TTLs are sent as an absolute Unix time, computed with
// this machine's clock. The remaining TTL (TTLReader) is read with
// `mg <key> t`.
//
// Every connection is opened through Config.DialContext, and every write
// and read on it is bounded by the earlier of the context's deadline and
// Config.Timeout; a cancelled context interrupts the round trip
// (TestContextDeadlineOnSocket). An operation stopped by its context
// returns the context's error (wrapped with provider.ErrOutcomeUnknown for
// writes, which may have landed) and does not mark the node down; a node
// that exceeds Timeout is marked down. A write handed to the socket that
// gets no whole reply (a timeout, reset or EOF) fails with both
// provider.ErrUnavailable and provider.ErrOutcomeUnknown: it may have
// landed. One that never reached the socket (the dial failed or was
// refused) and every read fail with ErrUnavailable only
// (TestWriteOutcomeUnknownOnHungNode, TestWriteNotSentOnRefusedNode).
//
// # Connections: pipelined or pooled
//
// By default (Config.Conns: ConnsPipelined) each node's operations share
// Config.PipelineConns connections (default 2) (auto-pipelining, as
// rueidis does for Redis). Each connection has one
// writer goroutine, which writes the commands queued while it was busy in
// one write system call (before writing it yields to goroutines ready to
// run for as long as that brings more requests, up to 64 KiB, so a busy
// server gathers several requests per write), and one
// reader goroutine, which reads the replies in order (memcached answers a
// connection's commands in order) and hands each to its caller. The
// commands of one operation (an append and its touch, a multi-key read)
// are written together. Each operation keeps its own deadline: a caller
// whose context ends returns the context's error at once (a write's
// outcome unknown) while the reader still consumes its reply, and a
// request not yet written is dropped; a reply overdue past Timeout breaks
// the connection, failing every request on it (the node is marked down).
// Close fails the requests in flight and stops the goroutines. Concurrent
// requests then pay one write and one wake-up per batch instead of per
// operation: in the side-by-side throughput benchmark with 32 clients
// every mode was faster than on pooled connections, and only pipelined
// met the exclusive-read throughput target (docs/performance.md,
// "Pipelined or pooled"). A request that finds its connection idle
// (nothing in flight, no write under way) is written and its reply read
// by its caller, as on a pooled connection, with no goroutine hand-off;
// until the reply's first byte a context that ends hands the reply to the
// reader goroutine, after it the reply is read whole (bounded by
// Timeout). A lone request is still somewhat slower than pooled (the
// Store's exclusive cycle 10-25 % in the same run): ConnsPooled suits a
// process that serves one request at a time.
//
// ConnsPooled takes one connection from a pool per operation
// (MaxIdleConnsPerNode idle ones kept). The witness scheme
// (BackupWitness) always uses pooled connections: it reads the node's
// incarnation on every new connection (a flush keeps the label: meta.go
// label) and checks it per connection (witness_inc.go), which pipelined
// connections do not do. So does the
// text path (gomemcache). Round trips and commands per request are the
// same on both kinds of connection, and the conformance suite runs on both
// (TestConformance).
//
// # Bytes on the wire
//
// The lock changes of a record (lock, release, lease renewal, break) are
// appended as a record.Delta of record.DeltaLen (31) bytes, not written
// whole: Store implements provider.Appender with `ms <key> <len> MA C<cas>
// c`, a meta append conditioned on the token, and `mg <key> c T<exp>`
// pipelined after it in the same round trip, because memcached's append
// keeps the item's expiry (I4; the touch reports the token of the value it
// set, and the provider corrects the TTL of a value it landed on by
// mistake). Commits, removals and new sessions are written whole, which
// drops the deltas; so is a lock change of a record already carrying
// record.MaxDeltas. Lock and data stay one item under one CAS (I5, see
// docs/protocol.md, Deltas). An exclusive request that changes nothing
// then moves about 1.4 x the session's stored size to each copy, one that
// commits about 2.2-2.3 x, cold (docs/performance.md, TestBytesPerRequest).
//
// A key with a backup copy gets the same delta appended to the backup copy
// (`ms bak:<key> <len> MA C<cas> c` and its touch), once the primary's
// append landed, conditioned on the backup copy's own CAS. The Store
// sends it only when it knows a pair: the CAS of each copy at a moment
// both held the same bytes, from its last write of the key (both copies
// written, no claim found) or from its last Get, which reads the backup
// copy in parallel with the primary's (one more operation on the backup
// node, no extra round trip) and compares the bytes. The pair must name
// the primary's CAS the caller's token carries, so the delta was computed
// for exactly the bytes the backup copy holds. Without a pair the Store
// declines (provider.ErrNoAppend) and the provider writes whole, as
// before. When the primary append lands and the backup's does not (the
// backup copy changed since: another server's write or undo, a repair's
// claim, a flush, an eviction, a restart), the record is read back from
// the primary and written whole to the backup copy by the whole write's
// own backup path (backup.go: ordered by Seq, claims, primary checks); a
// primary that lost the append by then (flushed and restored from the
// older backup copy, or dead) leaves it nowhere, and the call fails with
// provider.ErrOutcomeUnknown (it was on the primary, where others may have
// read it). When the primary append is refused, the backup append is not
// sent. Every guarantee of the backup scheme above therefore holds for
// appends (backup_append.go says why, case by case): the backup copy is
// only ever appended to when it holds the very bytes the primary held
// under the token, so both copies go on holding the same bytes, and
// copies are still ordered and repaired by comparing whole values, which
// record.Parse reads with their deltas; a backup copy is never corrupt (a
// delta on another base) nor newer than the primary by a refused change
// once the call returns; and an acknowledged lock change is on the backup
// copy, or something newer is. I5 holds on each copy: lock and data stay
// one item under that copy's CAS.
//
// The text path (gomemcache) and Config.WholeWrites write whole.
//
// # Text path
//
// Config.TextProtocol (for servers before memcached 1.6, which answer
// ERROR to meta commands: ProbeMeta tells) talks through gomemcache
// instead. That path guarantees the Store contract with one copy per
// session (no backup copy, no failover: a node's sessions are unavailable
// while it is down), returns 0 as the new token from writes (the provider
// reads again before its next write), does GetAndTouch as a Get and a
// CompareAndSwap of the unchanged value (and a Get for the new token; when
// the swap conflicts, a newer write set its own TTL and the value read is
// returned with its stale token), has no TTL reads (TTL fails with
// provider.ErrServer), and checks the context only when an operation
// starts (each round trip is bounded by Timeout). The conformance suite
// runs on both paths (TestConformance).
//
// # Defaults
//
//	Backup               BackupDefault: BackupWitness with 3+ nodes, BackupOn with 2, one copy with 1 or TextProtocol
//	Timeout              500 ms per operation
//	Conns                ConnsPipelined (PipelineConns 2 per node; pooled with BackupWitness or TextProtocol)
//	MaxIdleConnsPerNode  64 on pooled connections (see Config)
//	TextProtocol         false (meta commands)
//	HealthCheckInterval  1 s
//	MaxItemSize          1 MiB - 512 bytes (memcached's default -I 1m)
//	WholeWrites          false (lock changes appended as deltas, to both copies)
//	RepairEvery          30 s (BackupWitness's repair scan; negative: off)
//
// # Residual windows
//
// These are BackupOn's (it is not safe under every single fault); the
// witness scheme has none of them (docs/replication.md lists its open
// items).
//
//   - A write whose primary dies while it is in flight returns
//     provider.ErrUnavailable, wrapping provider.ErrOutcomeUnknown when the
//     request was sent to the primary (it may have landed there, where a
//     process that still reaches the node reads it); its backup half is
//     not sent, and the backup copy that now serves the key does not hold
//     it. A primary whose dial failed, no request sent: ErrUnavailable
//     alone, nothing written (the node is marked down: the next call goes
//     to the backup copy, which acts as the primary).
//   - A write refused with ErrNotFound because the primary lost the key
//     (an eviction or a flush of its node since this process last read or
//     wrote it: the provider then writes from its cached token, with no
//     read first) leaves the backup copy, the only one left, alone: the
//     provider's next read restores the primary from it
//     (TestPrimaryLostKeyKeepsSession). A session whose primary copy
//     expired while its backup copy had not yet (their nodes' clocks tick
//     at different instants, up to a few seconds apart) comes back that
//     way with its backup copy's TTL.
//   - Health is per process: for up to Timeout plus HealthCheckInterval two
//     processes may disagree on whether a node is down, and memcached offers
//     no consensus to settle it; a process only cleans up the outdated copies
//     it knows of. A short Timeout keeps that window short.
//   - Repair and claims order copies by Seq, which does not tell branches
//     apart. A write delayed between its primary and backup writes while
//     its primary is flushed, repaired from an older copy and written twice
//     more from that copy (reaching a higher Seq) is acknowledged though
//     lost; one written once (same Seq) is refused, and a write landing
//     right after a repair may, if its primary is flushed and repaired from
//     its own backup copy again before it completes, be refused though live.
//     A claim replaced by a write that does not keep it (Add, Touch's
//     restore, another undo) or older than the claim window is not seen.
//     The stress harness with -flush (tiered over two nodes, two app
//     servers) no longer shows lost updates from these windows.
//   - The token epoch only sees restarts this Store noticed (an operation
//     failed, marking the node down); a node restarted while this process
//     held no connection to it and sent it nothing is not noticed, and the
//     epoch (8 bits) repeats after 128 down-and-up cycles. A kept token
//     then matches only if the new process gave the key exactly the same
//     CAS value. The same holds for the CAS values remembered of backup
//     copies: a backup append conditioned on one lands only on the very
//     item it names, unless the node restarted unnoticed and gave a new
//     copy of the key that CAS value; the copy then reads as corrupt
//     (the delta does not follow its base) and repair skips it.
//   - A lock change whose backup append was refused, and whose primary
//     then stops answering before the record is read back for the backup
//     copy, fails with provider.ErrOutcomeUnknown (this Store notes the
//     key stale on that node, but other processes may still read it). The touch sent with a refused backup
//     append sets the TTL of whatever the backup copy holds; the whole
//     write that follows sets it again, unless the copy was newer.
//   - Values that are not provider records have no Seq: their backup copy
//     is set plainly, and a primary miss with only such copies left fails
//     with provider.ErrCorrupt rather than guess.
package memcached
