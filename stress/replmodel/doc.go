// Package replmodel is an exhaustive small-scope model check of the
// memcached replication protocol described in docs/replication.md.
//
// It is an explicit-state model: three memcached nodes, each holding one
// item for the session with a per-node CAS token, an incarnation and a CAS
// counter; a network in which every command may be delivered at any later
// time (after its client gave up on it, as a SIGSTOPped node drains its
// queue on SIGCONT) or never; clients that may time out on any outstanding
// command with no fault at all (the asynchronous model: a suspicion is
// never assumed right); and amnesia faults, flush_all (the CAS counter is
// kept) and restart (a new incarnation, the counter reset, every queued
// command dropped). Kill -9, pauses of nodes or app servers and partitions
// of one node from some clients are all behaviours of the network and the
// timeouts, so they need no fault budget: only amnesia is counted. A
// wrong suspicion (MaxSuspicions) is a process holding a live node failed
// from one step to a later one: it sends it nothing meanwhile, so one
// suspicion spans several rounds and calls.
//
// Each client runs a small program of Store calls (Get, Get then a
// CompareAndSwap computed from it, Add, or the repair scan's visit)
// through the replication protocol. Expiry scopes let each node's item
// expire at its own step (the session's deadline is the first); a session
// found expired must never come back, and nothing may outlive every TTL.
// An expiry commutes with every step but a command executed on its node,
// so it is explored only just before such a command or once every client
// is done (a partial-order reduction, exact without flushes and
// restarts). A scope may script its first steps (Prefix: a known trace),
// then explore every interleaving after them. The explorer visits every
// interleaving (depth-first, with a set of 64-bit state fingerprints,
// messages in flight hashed as a multiset) and checks, at every step,
// that the history of
// Store calls refines one linearizable compare-and-swap register: every
// value written is unique and names the value it was computed from, so a
// history is linearizable exactly when the values returned by reads and
// acknowledged writes lie on one chain of that tree, each at or after
// every value completed before its call started, and no value whose write
// reported "not applied" (provider.ErrCASConflict) is on the chain. When
// every client is done a fault-free final read must return a value at or
// after everything acknowledged or observed; with Scope.FinalWrites a
// write run alone after it must then be acknowledged, with no node dead
// and with one node dead (review-3 M3: the availability of writes).
//
// Variants of the protocol that are known to be unsafe (the counter-
// examples of the outside review, REPLICATION_SKETCH.md 2.1, 2.2 and 2.4,
// a loser that skips its undo, and revision 1's unfenced witness repair,
// parallel Add and TTL-less internal writes found by the cold review,
// docs/replication-review-1.md; revision 2's write that does not touch the
// witness, and the first version of the write failover, found through
// docs/replication-review-2.md) are kept here; the tests require the
// checker to reject each of them with a printed trace. Witness-lifetime
// scopes (Scope.WitnessTTL) let a witness that fell two writes behind its
// data expire: with no fault when the rule sent it no touch, as a fault
// when the touches it sent were lost. Timed scopes (Scope.Timed) give
// items TTL lengths in ticks and check that the witness never expires
// while a data copy of its configuration lives (review-3 M2); Lapse lets a
// data copy lapse while the session is live (review-4 B1). R8's Add with
// an unresponsive candidate creates two records (review-3 M1); the window
// it opens, a conflict of requirements the design states, is counted as
// such (Result.Excepted) and the run stops there, every other outcome
// being checked. Scope.OldWitness adds R14 (review-r14): a read that
// heard all three candidates, no data and one witness re-stamps the
// blanks and then buries that witness, whatever its age; and
// Scope.AdoptWitness R9's adoption of a witness of its configuration
// that it did not write: re-stamped before nowit is cleared (B1).
// Scope.NoWitRead makes the readers the store's since review-n4b F2's
// fix: no nowit configuration whose third node answered is returned
// before R9 stored its witness (R2 sends it to the anomaly read, whose
// R4.3 runs R9 for it), a plain reader runs R9 for nowit records only,
// and one returned with its third node silent opens R8's exception.
// Scope.Append sends R3's data writes as appends that keep the item's
// expiry, each followed by its touch, a separate command that finds the
// key gone when the copy expired in between (the append-at-expiry
// review's F2, docs/replication-review-appendtouch.md): the variants
// AppendGoneStored (such a copy counted stored), AppendGoneRefused
// (counted refused by NF throughout R3's table) and
// AppendCompleteUntouched (R3's completion acknowledging a copy on Q that
// a reader made from P's append before its touch) and AppendStrayStored
// (a touch that finds another item, such as a reader's blank where the
// copy expired, counted stored) are rejected (TestAppendTouchGone). Scope.Renewal refines the expiry check for it:
// an acknowledged write gives the session a new life, so a call that
// starts after the ack may find the session gone only once an item of
// that life expired (or after two faults), not merely because an item
// expired before. Scope.OwnComplete adds the writer's own completion of
// R3's row "P refused, Q stored" (the store's completeOwn) and the undo's
// read loop that completes that split again or finds the write on both
// copies, each answering success, and the undo's held: a read of P that
// showed P holding the write, with a later version of its configuration
// found by the loop, answers success (applied, and built on since);
// OwnCompleteQOnly (success once Q's CAS was stored),
// UndoBothHeldUntouched (with appends, success from both copies with P's
// copy never touched) and HeldAnyRecord (held from any record of the
// configuration on P at the write's version or above, a competitor
// included) are rejected. Scope.RollBack is proposal v2 "a write on its
// secondary alone is completed by its writer only" (R4.4′: a reader
// rolls a Q-ahead plain split back; the writer whose write is on Q alone,
// no completion CAS of P sent and not refused, answers "not applied" when
// its undo's loop finds the session past the write, or Q replaced, in its
// configuration): it holds (TestRollBack); RollBackPSide (proposal v1: a
// reader still completes a write on P alone over a sibling on Q),
// RollBackUnfenced, RollBackFarSilent and RollBackFarAnyEpoch are
// rejected (TestRollBackVariants). Scope.Overtaken is docs/replication.md
// §17 as the cold review rvcarry asks it modelled (M6): where another
// process's decision overtook a write (R3's write failover refused, its
// completion or undo finding a greater epoch) the writer reads all three
// nodes and answers success from an established record of a greater
// epoch that carries the write (its value at its version, or one built
// on it: unique values and the tree of values stand for Carries and
// Ancestors; with appends once that configuration's copies are touched),
// "not applied" from one not built on it whose other copy agrees, and
// unknown otherwise (TestOvertaken); OvertakenPending (a pending fence
// counted, B1) and OvertakenNoTouch (no touch, M5) are rejected
// (TestOvertakenVariants).
package replmodel
