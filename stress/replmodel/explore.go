package replmodel

import (
	"fmt"
	"hash/maphash"
	"strings"
	"unsafe"
)

// OpKind is one step of a client's program.
type OpKind uint8

const (
	// RMW is a Get followed by a CompareAndSwap of a new value computed
	// from it (the provider's update loop, one attempt).
	RMW OpKind = iota + 1
	// Read is a Get alone.
	Read
	// ReadTouch is GetAndTouch with the client's session timeout (timed
	// scopes, review-3 M2): R2 touches the witness with TW in the same
	// round trip; the data copies are read without T and then touched
	// with the envelope's T (review-4 D1, a cold key); WitnessTTLFromT
	// touches them with the caller's T and the witness with twice it.
	ReadTouch
	// Scan is the repair scan's visit of the key (R9): an anomaly read,
	// with its decisions, whose value is checked like a Get's.
	Scan
	// Create is Add: the not-found read (mg N on all three), then the
	// blanks CASed one after the other (witness, secondary, primary).
	// Its value is computed from "no session" (value 0), so two Adds
	// that both succeed are a fork, and an Add that succeeds after a
	// session was acknowledged is a lost session.
	Create
)

// Start is the state the session's records are in when the run begins.
type Start int

const (
	// Healthy: data on nodes 0 and 1, the witness on node 2.
	Healthy Start = iota
	// WitnessBlank: the witness node holds only a blank (a witness lost to
	// an earlier fault and not yet re-created). It counts as one fault:
	// MaxFaults must be 2 to add another.
	WitnessBlank
	// Empty: no session yet (every node absent): the scope creates it.
	// Value 0 is "no session": a read that finds none returns it.
	Empty
	// LoneWitness: no session, but node 2 holds a witness of (E0, {0, 1})
	// and nodes 0 and 1 nothing: what an Add leaves whose witness CAS was
	// stored and whose next step timed out or was never sent (a creator
	// paused or killed after its claim: no fault). As Empty, value 0 is
	// "no session"; R8's Add takes the key over (Add over a lone witness).
	LoneWitness
	// LoneWitnessP: no session, but node 0 (the home primary) holds a
	// witness of (E1, {1, 2}) and nodes 1 and 2 nothing: a session that
	// failed over off node 0 once, whose witness was then put on node 0,
	// and whose two copies expired (review-lonewit B1). The Add's primary
	// candidate is the witness's node.
	LoneWitnessP
	// LoneWitnessQ: as LoneWitnessP with the witness, of (E1, {0, 2}), on
	// node 1 (the home secondary).
	LoneWitnessQ
	// ForeignWitnessN4 (review-n4's experiment): review-resume-4 N4's
	// state: node 0 holds a witness of another configuration, (E0,
	// {1, 2}) (a late R9 CAS of an earlier session of the id), node 1 an
	// Add's creation record (value 13, its outcome unknown: nothing
	// acknowledged), node 2 its witness; the Add's primary CAS was
	// refused.
	ForeignWitnessN4
	// LateForeignWitness (review-4 N4 with its Add in flight): no
	// session; node 0 (the Add's primary) holds a blank, and a witness
	// CAS of another configuration, (E0, {1, 2}), carrying that blank's
	// token (a late R9 CAS of an earlier session of the id, its client
	// gone), is in flight: it may land before the Add's read (a lone
	// witness, taken over), or after it, refusing the Add's primary CAS.
	LateForeignWitness
)

// Scope bounds one exhaustive run.
type Scope struct {
	Variant  Variant
	Start    Start
	Programs [][]OpKind // one per client, at most 3 clients
	// MaxFaults is the number of amnesia events (flush_all or restart of
	// any node at any instant): 1 for single faults, 2 for double faults.
	MaxFaults int
	// Restart allows restarts as well as flushes.
	Restart bool
	// MaxTimeouts bounds the timeouts that fire (with or without a fault)
	// in one run; a timeout is not a fault.
	MaxTimeouts int
	// MaxSuspicions bounds the wrong suspicions in one run: at any step a
	// process may start to hold a live node *failed* (section 9: it then
	// sends that node nothing, and its commands still outstanding there
	// count as silent), until a later step at which its probe sees the
	// node answer again. A suspicion spans several rounds of one call or
	// several calls, as a real one does for F; like a timeout, it is not
	// a fault.
	MaxSuspicions int
	// MaxStates stops the search (0: 20 million).
	MaxStates int
	// WitnessTTL models the witness's lifetime against its data's (review-2
	// B1): with the data touched at d and the witness at w (2T after its
	// touch, T after the data's), the witness dies first only if d > w + T.
	// Every write that sets a TTL needs the data alive (d' < d + T), so
	// that takes two writes in a row whose touch of the witness did not
	// land. A witness whose Lag reached 2 may then expire: with no fault
	// when the rule sent no touch (WitnessUntouched), and as a fault when
	// R3's touches were sent and not executed (its node unreachable or
	// paused for T). R3 sends the touch with the write, not waited for.
	WitnessTTL bool
	// FinalDecides: a final read that cannot decide (ErrUnavailable after
	// every client is done and nothing is in the way) is a violation: a
	// session stuck by a single fault (section 9 claims availability).
	FinalDecides bool
	// FinalWrites checks the availability of writes (review-3 M3): when
	// every client is done and the final read returned a value (the
	// session's timeout not run out), a Get+CompareAndSwap run alone by a
	// client that has finished its program (a new one when the scope has
	// fewer than three) must be acknowledged: not ErrOutcomeUnknown, not
	// "not applied", not unavailable or not found. It runs through the
	// explorer's own steps with no other client, every command delivered
	// at once in the order sent, no timeout, no fault and no suspicion;
	// then again with one node dead (held failed by the client, as
	// section 9's detector holds it a failover time after the fault: its
	// commands are never answered): the node a fault of the run hit, or
	// each node when the run had none (a dead node on top of a fault on
	// another is a double fault: not checked, nor is anything after two
	// faults). Its steps are not added to the states explored.
	FinalWrites bool
	// Prefix scripts the first steps: step i must be the one whose trace
	// label starts with Prefix[i] (a scope that forces the order of the
	// steps a known counterexample needs, then explores every
	// interleaving after them). Empty: every interleaving from the start.
	Prefix []string
	// NoWitRead (with Repair; review-n4b F2's fix, the store's readers):
	// R2 sends a nowit record to the anomaly read, whose R4.3 runs R9
	// for it before returning it (a plain reader runs R9 only for nowit
	// records, as the store's do; the scan for every record), and R4.4's
	// re-ballot of a creation over a witness opens no stated exception.
	NoWitRead bool
	// Repair adds R9's witness repair: the anomaly read leaves blanks on
	// misses (mg N), and a healthy state whose third node holds a blank
	// re-creates the witness there by CAS.
	Repair bool
	// R9InTurn: R9 re-stamps P, and Q only once P's is stored; a refused
	// P sends no Q and the process reads again (the store's
	// restampBoth). Without it both re-stamps go at once, the process
	// waiting for both replies (a superset of the orders, but not of a
	// refused P's sending nothing more).
	R9InTurn bool
	// Expiry lets the session's timeout run out at any step (not a fault)
	// and then each item with a TTL expire at any later step, on each
	// node at its own instant. Checked: once a call reported the session
	// not found, no call that starts later returns it; and once every
	// item with a TTL has expired, a final read finds no session.
	Expiry bool
	// StaleTouched (expiry scopes, review-3 B1): data of a lower rank on
	// the third node of the newest configuration (a failover's stale copy
	// or lost fence) is touched by every R2/R3 and so never expires while
	// the user retries; the final check expires everything else and must
	// find no session.
	StaleTouched bool
	// Lapse (review-4 B1): at any step one data copy may lapse before
	// the session's deadline (its last touch lost): no Deadline. Under D1
	// (data touched only with the envelope's T) that needs a lost touch,
	// a fault (MaxFaults); LapseFree (the caller's, guessed, T) charges it
	// to the timeout budget: no fault.
	Lapse bool
	// Timed (review-3 M2) gives TTLs lengths: each item has a remaining
	// TTL in ticks, a tick (at any step, not a fault) takes one from every
	// item and ages every command in flight, and an item reaching 0
	// expires. Client c's session timeout is SessionT[c] ticks (each at
	// most MaxT, Config.MaxTimeout); R3 sets it on both data copies and
	// touches the witness with TW = 2 × MaxT (WitnessTTLFromT: 2 × the
	// caller's T). No fault: every command runs within MaxT ticks of its
	// send (time does not move on past an older one). Checked at every
	// tick: a witness never expires while a data copy of its
	// configuration is still alive.
	Timed    bool
	SessionT []uint8
	MaxT     uint8
	// MaxDelay (timed scopes) bounds a command's delivery delay in ticks
	// with no fault (0: MaxT).
	MaxDelay uint8
	// WonBlanks: R4.1's fence before a "not found" (review-ballot m4)
	// skips the blanks the read itself made (memcached's W flag), as the
	// implementation does; without it every blank counted is re-stamped
	// (a stronger rule, and fewer states: the W bit splits replies).
	WonBlanks bool
	// Reread: an Add's CAS step with no reply reads its candidate again
	// (at most twice): holding the Add's record (an Add's witness then
	// carries the Add's value as its identity, as the implementation's
	// nonce) it was stored; holding the same item under the same token
	// the CAS is sent again with that token; else unknown. Not on a
	// candidate the process holds failed.
	Reread bool
	// CopyLife (expiry scopes, untimed): a copy expires no later than
	// the item it copies, as the store's copyExp has it (witness_decide.go:
	// a copy gets its source's remaining t less clockSlack, a re-stamp or
	// fence keeps its item's own, R4.4's completion and R11's re-ballot
	// the longer of the two, a client's write or an Add a new one); when
	// an item expires, every copy bounded by it expires in the same step
	// (and a copy still in flight expires as it lands). Without it every
	// item expires in any order: a copy made after the deadline may
	// outlive its source, which the store rules out (scope S3 of
	// docs/replication-review-d3.md). The expiry's partial-order
	// reduction stays exact: a copy expiring earlier than its source's
	// expiry commutes with every step but a command on its own node, so
	// it is explored there or with its source's.
	CopyLife bool
	// OldWitness is R14 (review-r14): an anomaly read's "not found" with
	// every candidate heard, no data record and one witness re-stamps the
	// blanks with their read tokens and, only if all were stored, CASes
	// the witness to a blank with its read token; the answer is "not
	// found" either way (refused or unanswered: nothing more). The model
	// buries any such witness, whatever its age: the store's age
	// condition (older than T + 10 s) is for availability only.
	OldWitness bool
	// AdoptWitness (with Repair) is R9's adoption of a witness it did not
	// write (review-r14 B1): a nowit configuration whose third node holds
	// its witness has that witness re-stamped (its read token, same
	// record) and, only if stored, nowit cleared on both copies (CAS with
	// their read tokens); then the read goes on. Without it and
	// R9ClearsNoWit the model never clears nowit.
	AdoptWitness bool
	// R9ClearsNoWit (with Repair) is R9's clear of nowit after writing the
	// witness (the store's clearNoWitAfter, review-n4 M1): once R9's
	// witness CAS is stored over a blank or stale data of a nowit
	// configuration, read both copies again and, only if both still hold
	// the tokens of R9's re-stamps, CAS each with that token to the same
	// record without nowit (two commands, each delivered, lost or late on
	// its own, as the store's parallel CASes). Without it only the
	// adoption (AdoptWitness) clears nowit, and R8's stated residual
	// (Excepted) stays open for a nowit configuration whose witness R9
	// wrote, so a loss after that R9 counts as the residual.
	R9ClearsNoWit bool
	// Append (untimed scopes; the append-at-expiry review's F2): R3's
	// data writes are appends (`ms … MA c C<tok>`), which keep the
	// item's expiry (Scope.CopyLife: lifeKeep), each followed, once
	// stored, by its touch (`mg <key> c T<T>`): a separate command on
	// that node, delivered at any later step, which gives the copy the
	// caller's T or answers EN when the key is gone (the reply rGone: the
	// copy expired between the two; also when it finds a blank, rStray
	// when it finds a record not built on the append's). The protocol
	// (Correct) counts such a copy as stored only when its touch found
	// the append's value or one built on it; what a gone copy makes of
	// R3's table is below (appendGone); AppendGoneStored counts it
	// stored, AppendGoneRefused refused by NF. The touch's sending
	// round (pipelined with the append or a second round trip) makes no
	// difference here: the model delivers it at any step after the
	// append ran. An append whose client gave up is sent no touch.
	Append bool
	// Renewal (untimed expiry scopes): a write acknowledged gives the
	// session a new life, the caller's T from its ack. Without it the
	// session's deadline, once passed (an item expired), stays passed,
	// so any later "not found" is accepted: a write acknowledged on a
	// session already gone would go unseen. With it, from a write's ack,
	// the data items whose life was set since the write's call started
	// (node.Y) and the witness of their configuration (which R3 touches
	// with TW) carry the new life (node.Live); a write landing later
	// gives its item a life by the CopyLife rules (a copy its source's, a
	// re-stamp or an append its item's, a touch or a client's write a new
	// one); and a call that starts after the ack may find the session
	// gone only once an item of the new life expired, or after two
	// faults. A witness's expiry counts as the new deadline (it outlives
	// the data a write's read found by T: the untimed model lets it
	// expire early), as does an item of the new life expiring during the
	// write's own call.
	Renewal bool
	// OwnComplete is the writer's own completion of R3's row "P
	// refused, Q stored" (the store's completeOwn and its undo's read
	// loop, witness_write.go): after P refused the write with EX, read
	// P; if it holds the write's base (the same record, re-stamped) and
	// is not promised above the write's epoch, CAS Q to the write (the
	// token its store returned) and then P (the token just read): both
	// stored, the write is acknowledged. Otherwise undo Q as before (Q
	// stored and P refused: with the token of Q's completion). An undo
	// refused (EX, another incarnation) reads both copies, at most
	// undoReads rounds: both holding the write, neither promised above
	// its epoch: acknowledged (with appends, Scope.Append, once a touch
	// of P with T found it: P's copy may be a reader's, made from Q's
	// append before Q's touch, with the old life); Q holding it, P the
	// base and Q not
	// promised above its epoch: the completion again, Q's CAS with the
	// token just read (refused or unanswered: the next round); anything
	// else ErrOutcomeUnknown, as without it. A read of P (the completion's,
	// or one of the loop's) that showed P holding the write, not promised
	// above its epoch, is kept (client.Held: the store's primaryShows);
	// when the loop ends (Q not holding the write, a read unanswered, or
	// the rounds spent) after a read of it found a data record of the
	// write's configuration at a later version (client.Far; the model
	// keeps no ancestors, so every later version is past what they tell),
	// the write is acknowledged: the store's "applied (P held it), and
	// built on since" (Result.UndoHeldLater). The store's other answers
	// in that loop (a conflict, an applied write built on since told by
	// the ancestors, a failover that overtook it, the beaten writer's
	// second undo) are not modelled: ErrOutcomeUnknown here, in the
	// store's order (a greater epoch on P, and Q replaced at the write's
	// version or below, answer before held does).
	OwnComplete bool
	// RollBack is proposal v2 "a write on its secondary alone is
	// completed by its writer only" (fourth session of 2026-12-02,
	// proposal v2, docs/replication-review-rollback.md), meant with OwnComplete.
	// R4.4′: a reader's decision (the repair scan's and the final read's
	// too) on a Q-ahead plain split (b on its configuration's secondary
	// Q, b's parent on its primary P: same configuration, one version
	// below, b computed from it, neither pending) rolls it back: it
	// re-stamps P and, only if stored, CASes Q to the parent (a copy of
	// it: its life no longer than P's), then reads again; both tokens
	// are the anomaly read's (rv-roll M1). Q promised above b's epoch:
	// R11.3's re-ballot, Q as w (rv-roll m1). A P-ahead plain split, and
	// every other R4.4 case, is completed as before, and R3's row "P
	// stored, Q refused" is unchanged. (The store's first sight, the
	// parent returned with no write, is not modelled; nor is isWriting:
	// a process here runs one call at a time.) R3's row "P refused, Q
	// stored", the writer's side: client.Own is set once a completion
	// CAS of P (the writer's own, before the undo or in its loop) was
	// sent and not refused (stored, or no reply: it may have landed,
	// rv-roll M2). While Own is false, a read of the undo's loop that
	// finds a data record of the write's configuration past its version
	// is not applied (Result.FarNotApplied), and so is one that finds Q
	// holding another record of the configuration than the write, P a
	// data record of it (Result.ReplacedNotApplied: L7″, "at any
	// version"), before the loop's other answers. Once a completion CAS
	// of P was refused (client.PR), the writer does not complete again
	// (rv-roll M4): where the loop would, it undoes with Q's token just
	// read (Result.UndoneAfterRefused); stored, not applied; refused,
	// the loop reads again. RollBackPSide is proposal v1 (P-ahead splits
	// rolled back too, and v1's rows of "P stored, Q refused").
	RollBack bool
	// Overtaken is docs/replication.md §17 ("which write a decision
	// carries") as the cold review rvcarry asks it modelled (M6): where
	// a writer's answer was ErrOutcomeUnknown because another process's
	// decision overtook its write (R3's write failover refused at its
	// read of the witness node, its promise, its fence or its copy; R3's
	// completion finding Q promised above the write's epoch or holding
	// a record of a greater epoch; R3′'s read of P finding one; the
	// undo refused, or the undo's read loop finding P at a greater
	// epoch), the writer reads all three nodes and answers from what
	// another decision carries: success when an established data record
	// of a greater epoch holds the write's value at its version or one
	// built on it (the model's unique values and its tree of values,
	// anc, stand for Carries and Ancestors), after touching that
	// configuration's two copies with T when writes are appends
	// (Scope.Append, rvcarry M5; a touch not stored: unknown); "not
	// applied" when an established data record of a greater epoch is
	// not built on it and the other copy of its configuration, read in
	// the same round, holds a record of it not built on it either; else
	// ErrOutcomeUnknown as before. A pending record never counts for
	// success (rvcarry B1: OvertakenPending counts it).
	Overtaken bool
}

// undoReads bounds the undo's read rounds (Scope.OwnComplete; the store
// reads up to five times).
const undoReads = 2

// Result is what a run found.
type Result struct {
	States    int      // distinct states explored
	Complete  bool     // false if MaxStates stopped the search
	Violation string   // empty when none
	Trace     []string // the steps that lead to Violation
	Terminals int      // states where every client was done
	// Lost counts final reads (or reads) that found no session: allowed,
	// and reported, only with two faults.
	Lost int
	// FinalUnavailable counts final reads that could not decide.
	FinalUnavailable int
	// WitnessRepairs counts explored steps in which a witness was
	// re-created on a blank (R9): evidence that a repair scope repairs.
	WitnessRepairs int
	// StaleConverted counts explored steps in which R9 turned stale data
	// on the third node (a failover's old copy, a lost fence) into the
	// witness (review-3 B1).
	StaleConverted int
	// Fences counts explored steps in which a failover's fence was stored.
	Fences int
	// WriteFailovers counts writes acknowledged after a failover of
	// their own (R3 with the secondary lost or silent).
	WriteFailovers int
	// Creations counts explored steps in which an Add stored its last
	// record (the primary's); Expired counts reads that found the session
	// expired (after the deadline).
	Creations, Expired int
	// NoWitCreations counts explored steps that began R8's two-record
	// creation; Excepted counts reads that found no session in R8's
	// stated residual (the run stops there), ExceptedUnavailable final
	// reads that could not decide in it.
	NoWitCreations, Excepted, ExceptedUnavailable int
	// ExceptedLoss counts those of Excepted that would be a violation
	// without the residual (a value acknowledged or observed before the
	// call lost); the others are "not found" answers the checker accepts
	// anyway (the run stops at them all the same).
	ExceptedLoss int
	// Buried counts lone copies buried before a "not found" (review-4 D3).
	// BuryFenceRefused counts burials given up because a re-stamp of an
	// empty peer (D3′) was refused or unanswered (the read again).
	Buried, BuryFenceRefused int
	// Takeovers counts explored steps in which an Add's read found a
	// lone witness and blanks and took the key over (R8).
	Takeovers int
	// Rereads counts explored steps in which an Add's CAS with no reply,
	// read again, was found stored; Resends those that sent it again.
	Rereads, Resends int
	// NotFoundFenced counts "not found" answers given after re-stamping
	// the blanks counted (R4.1, review-ballot m4).
	NotFoundFenced int
	// OldWitnessBuried counts R14's burials stored; OldWitnessKept the
	// R14 attempts whose re-stamps or burial were refused or unanswered
	// (the answer still "not found").
	OldWitnessBuried, OldWitnessKept int
	// Adoptions counts R9's nowit clears sent after the adopted witness
	// was re-stamped (AdoptByTouch: touched).
	Adoptions int
	// R9Clears counts R9's nowit clears sent after its witness was stored
	// and both copies still held its re-stamps' tokens (R9ClearsNoWit).
	R9Clears int
	// CreationReballots counts decisions that re-balloted a creation's
	// record over a witness on its other data candidate (review-4 N4's
	// fix); CreationReballotsDone those whose copy was stored (the new
	// configuration made); WitnessReplaced R9's witness CASes stored
	// over a witness of another configuration (or a promised one).
	CreationReballots, CreationReballotsDone, WitnessReplaced int
	// AppendsGone counts explored steps in which an append's touch found
	// the key gone (Scope.Append); Renewals the writes acknowledged that
	// renewed the session's life (Scope.Renewal).
	AppendsGone, Renewals int
	// AppendsStrayGone counts the explored steps in which an append's
	// touch found another item than the append's, neither holding its
	// value nor one built on it (the store's strayed touch): a blank
	// (counted in AppendsGone too), a witness or another record.
	AppendsStrayGone int
	// AppendsTie counts those that found a rival write of the append's
	// own base and configuration (rTie); TieConflicts the calls that
	// then ended "not applied" by the tie row (appendGone).
	AppendsTie, TieConflicts int
	// FinalWrites counts the writes run alone after every client was
	// done that were acknowledged (Scope.FinalWrites): with no node dead,
	// and FinalWritesDead with one.
	FinalWrites, FinalWritesDead int
	// FinalWritesExcused counts the final writes with a node dead left
	// out because that death is no single fault the protocol answers: a
	// creation scope's state with nothing acknowledged or observed (an
	// Add abandoned half-way), or a data copy of a nowit configuration
	// with nothing on its third node while R8's window is open.
	FinalWritesExcused int
	// OwnCompleted counts writes acknowledged by their writer's own
	// completion before any undo (Scope.OwnComplete); UndoCompleted those
	// acknowledged by the completion after an undo was refused, and
	// UndoBothHeld those acknowledged because the undo's read found the
	// write on both copies; UndoReadRounds the undo's read rounds sent.
	OwnCompleted, UndoCompleted, UndoBothHeld, UndoReadRounds int
	// UndoHeldLater counts writes acknowledged when the undo's read loop
	// ended after a read of P showed P holding the write (client.Held)
	// and a read of the loop found a later record of its configuration
	// (client.Far): applied, and built on since.
	UndoHeldLater int
	// RollBacks counts R4.4′'s roll-backs whose second CAS was stored
	// (Scope.RollBack); RollBackDecisions the roll-backs begun.
	RollBacks, RollBackDecisions int
	// RolledBackNotApplied counts R3′'s completions whose re-stamp of P
	// was refused and whose read of P then found another record of the
	// write's configuration: not applied; LaterNotApplied those that
	// found a later record of it on Q: not applied (both RollBackPSide
	// only, proposal v1). FarNotApplied counts the undo's reads that
	// found one past the write's version, ReplacedNotApplied those that
	// found Q holding another record of the configuration (P a data
	// record of it), no completion CAS of P having been sent and not
	// refused: not applied (Scope.RollBack).
	RolledBackNotApplied, LaterNotApplied, FarNotApplied, ReplacedNotApplied int
	// UndoneAfterRefused counts the undo's loop's undoes sent where it
	// would have completed again, a completion CAS of P having been
	// refused (Scope.RollBack, rv-roll M4).
	UndoneAfterRefused int
	// OvertakenAt counts the overtaken rounds (Scope.Overtaken: each
	// ended ErrOutcomeUnknown before) by the phase whose answer the round
	// replaces, and their answers: [phase][OvRounds] rounds begun,
	// [OvApplied] success, [OvConflicts] "not applied", [OvUnknown]
	// unknown as before. Counted per explored step, as the other counts:
	// a round begun in one state may end in many (the answers are steps
	// that deliver its last reply). Overtaken sums them over the phases.
	OvertakenAt [numPhases][4]int
}

// The columns of Result.OvertakenAt.
const (
	OvRounds = iota
	OvApplied
	OvConflicts
	OvUnknown
)

// Overtaken returns column k of OvertakenAt summed over the phases.
func (r Result) Overtaken(k int) int {
	n := 0
	for _, a := range r.OvertakenAt {
		n += a[k]
	}
	return n
}

type explorer struct {
	sc      Scope
	seen    fpSet
	trace   []step
	res     Result
	stopped bool
	// acks counts the acknowledgements of writes (ack), so that a write
	// run alone (Scope.FinalWrites) can tell its own; soloC is the client
	// that runs it and soloProgs the programs with that write appended to
	// soloC's.
	acks      int
	soloC     int
	soloProgs [][]OpKind
	// iterCap is the decisions a Get makes before it reports unavailable:
	// maxIter, or soloMaxIter in a final write.
	iterCap uint8
}

// Kinds of step, for the trace.
const (
	stDeliver uint8 = iota
	stStart
	stTimeout
	stProbe
	stSuspect
	stExpiry
	stExpiryDeliver
	stFlush
	stRestart
	stWitnessExpiry
	stTick
	stLapse
	stSolo
)

// step is one transition, kept in the trace and printed only when a
// violation is found (formatting every transition costs more than the
// rest of the search).
type step struct {
	kind, c, n, aux uint8
	m               msg
}

func (x *explorer) label(st step) string {
	c, n := st.c, st.n
	switch st.kind {
	case stDeliver:
		late := ""
		if st.m.Orphan {
			late = " (late: its client gave up)"
		}
		if st.m.Prom != 0 {
			late = fmt.Sprintf(" promise e%d", st.m.Prom) + late
		}
		op := opNames[st.m.Op]
		switch {
		case st.m.App && st.m.Op == opCAS:
			op = "append"
		case st.m.App:
			op = "append's touch"
		}
		return fmt.Sprintf("node %d executes c%d's %s %v%s", st.m.Node, st.m.Client, op, st.m.Rec, late)
	case stStart:
		return fmt.Sprintf("c%d starts %s", c, opLabel(OpKind(st.aux)))
	case stTimeout:
		return fmt.Sprintf("c%d times out on node %d (%s)", c, n, phaseNames[st.aux])
	case stProbe:
		return fmt.Sprintf("c%d's probe finds node %d answering again", c, n)
	case stSuspect:
		return fmt.Sprintf("SUSPICION: c%d holds node %d failed (wrong: the node is alive)", c, n)
	case stExpiry:
		return fmt.Sprintf("EXPIRY: node %d's item expires", n)
	case stExpiryDeliver:
		st.kind = stDeliver
		return fmt.Sprintf("EXPIRY: node %d's item expires; then %s", n, x.label(st))
	case stFlush:
		return fmt.Sprintf("FAULT: flush_all on node %d", n)
	case stLapse:
		what := "a FAULT: its last touch was lost"
		if st.aux == 0 {
			what = "no fault: a touch with a shorter guessed T ran last"
		}
		return fmt.Sprintf("LAPSE: node %d's data copy expires while the session is live (%s)", n, what)
	case stTick:
		return "TICK: one unit of time passes"
	case stSolo:
		s := fmt.Sprintf("FINAL WRITE: every client is done; c%d runs Get+CompareAndSwap alone (no other step, every command delivered at once, no timeout, no fault)", c)
		if st.aux != 0 {
			s += fmt.Sprintf("; node %d is dead: c%d holds it failed (section 9) and it answers nothing", n, c)
		}
		return s
	case stWitnessExpiry:
		what := "no fault: no write touched it"
		if st.aux != 0 {
			what = "a FAULT: R3's touches did not reach it for T"
		}
		return fmt.Sprintf("WITNESS EXPIRY: node %d's witness expires before its data (%s)", n, what)
	}
	return fmt.Sprintf("FAULT: restart of node %d (empty, new incarnation, queued commands dropped)", n)
}

// Check explores every interleaving within sc.
func Check(sc Scope) Result {
	if sc.MaxStates == 0 {
		sc.MaxStates = 20_000_000
	}
	x := &explorer{sc: sc, seen: newFPSet(1 << 16), iterCap: maxIter}
	if sc.FinalWrites {
		x.soloSetup()
	}
	s := initial(sc)
	x.dfs(&s)
	x.res.States = x.seen.n
	x.res.Complete = !x.stopped && x.res.Violation == ""
	return x.res
}

func initial(sc Scope) state {
	var s state
	// A healthy session has been written since its Add (V1): E0 V0 is a
	// creation's record, which R7 treats specially (review-3 M1).
	d := Rec{K: data, E: 0, V: 1, Val: 0, P: 0, Q: 1}
	s.N[0] = node{Item: d, Tok: 1, Ctr: 1}
	s.N[1] = node{Item: d, Tok: 1, Ctr: 1}
	switch {
	case sc.Start == Empty:
		s.N[0], s.N[1] = node{}, node{}
	case sc.Start == LoneWitness:
		s.N[0], s.N[1] = node{}, node{}
		s.N[2] = node{Item: Rec{K: witness, P: 0, Q: 1}, Tok: 1, Ctr: 1}
	case sc.Start == LoneWitnessP:
		s.N[1], s.N[2] = node{}, node{}
		s.N[0] = node{Item: Rec{K: witness, E: 1, P: 1, Q: 2}, Tok: 1, Ctr: 1}
	case sc.Start == LoneWitnessQ:
		s.N[0], s.N[2] = node{}, node{}
		s.N[1] = node{Item: Rec{K: witness, E: 1, P: 0, Q: 2}, Tok: 1, Ctr: 1}
	case sc.Start == ForeignWitnessN4:
		s.N[0] = node{Item: Rec{K: witness, E: 0, P: 1, Q: 2}, Tok: 1, Ctr: 1}
		s.N[1] = node{Item: Rec{K: data, Val: foreignN4Val, P: 0, Q: 1}, Tok: 1, Ctr: 1}
		s.N[2] = node{Item: Rec{K: witness, P: 0, Q: 1}, Tok: 1, Ctr: 1}
	case sc.Start == LateForeignWitness:
		s.N[1], s.N[2] = node{}, node{}
		s.N[0] = node{Item: Rec{K: blank}, Tok: 1, Ctr: 1}
		s.M[0] = msg{Used: true, Orphan: true, Node: 0, Op: opCAS, Tok: 1, Rec: Rec{K: witness, E: 0, P: 1, Q: 2}}
	case sc.Variant == NoWitness:
	case sc.Start == WitnessBlank:
		s.N[2] = node{Item: Rec{K: blank}, Tok: 1, Ctr: 1}
		s.Faults = 1 // the lost witness is the first fault
		if sc.FinalWrites {
			s.Hit = 1 << 2
		}
	default:
		s.N[2] = node{Item: Rec{K: witness, P: 0, Q: 1}, Tok: 1, Ctr: 1}
	}
	if sc.Timed {
		// Last written by a call with the longest T.
		s.N[0].Rem, s.N[1].Rem, s.N[2].Rem = sc.MaxT, sc.MaxT, 2*sc.MaxT
		s.N[0].Item.T, s.N[1].Item.T = sc.MaxT, sc.MaxT
	}
	for c := range s.C {
		s.C[c].P, s.C[c].Q = 0, 1
		if c >= len(sc.Programs) {
			s.C[c].Phase = phDone
		}
	}
	return s
}

// seed is the fingerprints' hash seed: a collision (about n²/2⁶⁵ for n
// states) could hide a state; the counts do not depend on it otherwise.
var seed = maphash.MakeSeed()

func (s *state) fingerprint() uint64 {
	// Messages in flight are a multiset: each is hashed on its own and the
	// hashes are summed (order-free), the rest of the state hashed whole.
	t := *s
	var ms uint64
	for i := range t.M {
		if t.M[i].Used {
			ms += mix(maphash.Comparable(seed, t.M[i]))
		}
	}
	t.M = [maxMsgs]msg{}
	return maphash.Bytes(seed, unsafe.Slice((*byte)(unsafe.Pointer(&t)), unsafe.Sizeof(t))) ^ mix(ms)
}

// mix is SplitMix64's finalizer.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// fpSet is the set of visited fingerprints: open addressing with linear
// probing (0 stands for 1), much faster than a map at tens of millions.
type fpSet struct {
	slots []uint64
	n     int
}

func newFPSet(size int) fpSet { return fpSet{slots: make([]uint64, size)} }

// add inserts fp and reports whether it was new.
func (f *fpSet) add(fp uint64) bool {
	if fp == 0 {
		fp = 1
	}
	if 2*(f.n+1) > len(f.slots) {
		old := f.slots
		f.slots = make([]uint64, 2*len(old))
		for _, v := range old {
			if v != 0 {
				f.insert(v)
			}
		}
	}
	if !f.insert(fp) {
		return false
	}
	f.n++
	return true
}

func (f *fpSet) insert(fp uint64) bool {
	mask := uint64(len(f.slots) - 1)
	for i := fp & mask; ; i = (i + 1) & mask {
		switch f.slots[i] {
		case 0:
			f.slots[i] = fp
			return true
		case fp:
			return false
		}
	}
}

func (x *explorer) dfs(s *state) {
	if x.stopped || x.res.Violation != "" {
		return
	}
	fp := s.fingerprint()
	if !x.seen.add(fp) {
		return
	}
	if x.seen.n >= x.sc.MaxStates {
		x.stopped = true
		return
	}
	if s.Halt {
		return // the stated exception was reached: counted, not explored further
	}
	if x.allDone(s) {
		x.res.Terminals++
		v, read := x.final(s)
		if v != "" {
			x.fail(v, s)
			return
		}
		if read && x.sc.FinalWrites && !x.finalWrites(s) {
			return
		}
	}
	try := func(st step, f func(t *state) string) {
		if x.res.Violation != "" || x.stopped {
			return
		}
		if d := len(x.trace); d < len(x.sc.Prefix) && !strings.HasPrefix(x.label(st), x.sc.Prefix[d]) {
			return // the scripted prefix allows only its own step here
		}
		t := *s
		v := f(&t)
		x.trace = append(x.trace, st)
		if v != "" {
			x.fail(v, &t)
		} else {
			x.dfs(&t)
		}
		x.trace = x.trace[:len(x.trace)-1]
	}
	for i := range s.M {
		m := s.M[i]
		if !m.Used {
			continue
		}
		try(step{kind: stDeliver, m: m},
			func(t *state) string { return x.deliver(t, i) })
		if x.expires(s, int(m.Node)) {
			try(step{kind: stExpiryDeliver, n: m.Node, m: m}, func(t *state) string {
				x.expire(t, int(m.Node))
				return x.deliver(t, i)
			})
		}
	}
	if x.sc.Timed && x.canTick(s) {
		try(step{kind: stTick}, func(t *state) string { return x.tick(t) })
	}
	for c := range s.C {
		cl := &s.C[c]
		if cl.Phase == phIdle && int(cl.Pc) < len(x.sc.Programs[c]) {
			try(step{kind: stStart, c: uint8(c), aux: uint8(x.sc.Programs[c][cl.Pc])},
				func(t *state) string { return x.startOp(t, c) })
		}
		if int(s.Timeouts) < x.sc.MaxTimeouts {
			for n := range numNodes {
				if cl.Sent[n] && cl.R[n].St == rPending {
					try(step{kind: stTimeout, c: uint8(c), n: uint8(n), aux: cl.Phase},
						func(t *state) string {
							t.Timeouts++
							t.C[c].R[n].St = rTimeout
							return x.maybeAdvance(t, c)
						})
				}
			}
		}
	}
	for c := range s.C {
		if s.C[c].Phase == phDone || (s.C[c].Phase == phIdle && int(s.C[c].Pc) >= len(x.sc.Programs[c])) {
			continue // a finished process's suspicions change nothing
		}
		for n := range uint8(numNodes) {
			switch {
			case s.C[c].Susp[n]:
				try(step{kind: stProbe, c: uint8(c), n: n}, func(t *state) string {
					t.C[c].Susp[n] = false
					return ""
				})
			case int(s.Susps) < x.sc.MaxSuspicions:
				try(step{kind: stSuspect, c: uint8(c), n: n}, func(t *state) string {
					t.Susps++
					t.C[c].Susp[n] = true
					if t.C[c].Sent[n] && t.C[c].R[n].St == rPending {
						t.C[c].R[n].St = rTimeout
						return x.maybeAdvance(t, c)
					}
					return ""
				})
			}
		}
	}
	for n := range numNodes {
		nd := &s.N[n]
		if !x.sc.WitnessTTL || nd.Item.K != witness || nd.Lag < 2 || (nd.LagTried && int(s.Faults) >= x.sc.MaxFaults) {
			continue
		}
		try(step{kind: stWitnessExpiry, n: uint8(n), aux: b2u(nd.LagTried)}, func(t *state) string {
			if t.N[n].LagTried {
				t.Faults++
				x.hit(t, n)
			}
			if x.lives() {
				unbind(t, n)
			}
			t.N[n] = node{Inc: t.N[n].Inc, Ctr: t.N[n].Ctr}
			return ""
		})
	}
	if x.allDone(s) {
		for n := range numNodes {
			if x.expires(s, n) {
				try(step{kind: stExpiry, n: uint8(n)}, func(t *state) string {
					x.expire(t, n)
					return ""
				})
			}
		}
	}
	for n := range numNodes {
		free := x.sc.Variant == LapseFree
		if !x.sc.Lapse || s.N[n].Item.K != data || (free && int(s.Timeouts) >= x.sc.MaxTimeouts) || (!free && int(s.Faults) >= x.sc.MaxFaults) {
			continue
		}
		try(step{kind: stLapse, n: uint8(n), aux: b2u(!free)}, func(t *state) string {
			if free {
				t.Timeouts++
			} else {
				t.Faults++
				x.faulted(t, n)
				excFault(t, n)
			}
			if x.lives() {
				unbind(t, n)
			}
			t.N[n].Item, t.N[n].Tok, t.N[n].Live, t.N[n].Y = Rec{}, 0, false, [maxClients]bool{}
			t.N[n].noPromise()
			return ""
		})
	}
	if int(s.Faults) < x.sc.MaxFaults {
		for n := range numNodes {
			try(step{kind: stFlush, n: uint8(n)}, func(t *state) string {
				t.Faults++
				x.faulted(t, n)
				excFault(t, n)
				if x.lives() {
					unbind(t, n)
				}
				t.N[n].Item, t.N[n].Tok, t.N[n].Live, t.N[n].Y = Rec{}, 0, false, [maxClients]bool{}
				t.N[n].noPromise()
				return ""
			})
			if x.sc.Restart {
				try(step{kind: stRestart, n: uint8(n)}, func(t *state) string {
					return x.restart(t, n)
				})
			}
		}
	}
}

// Expiry (partial-order reduction). An item's expiry changes only its
// node, so it commutes with every step except a command executed on that
// node: every run is equivalent (the same replies, the same checks) to one
// in which each expiry happens immediately before a command executes on
// its node, or once every client is done. Only those places are explored.
// The session's deadline is its first item's expiry.

// expires reports whether node n's item may expire now.
func (x *explorer) expires(s *state, n int) bool {
	return x.sc.Expiry && s.N[n].Item.K != absent && !s.N[n].NoTTL
}

func (x *explorer) expire(t *state, n int) {
	// The session's deadline is passed when an item other than a blank
	// expires: data copies carry the session's T, and the witness and a
	// stale third copy TW from the same calls' touches, so with no lost
	// touch neither expires before the session's deadline; a blank lives
	// 30 s whatever the session does (review-4 M3). A data copy lapsing
	// early while the session is live is the Lapse step, not an expiry.
	t.Deadline = t.Deadline || t.N[n].Item.K != blank
	if t.Deadline {
		t.Hit = 0 // no final write runs after the deadline (finalWrites)
	}
	if k := t.N[n].Item.K; k != blank && x.sc.Renewal {
		// An item of the renewed life: the new deadline; one set since a
		// write call started: that call's. A witness lives TW = 2 × T
		// from its last touch, and was touched with every read and write
		// of its data: it runs out at least T after the data a write's
		// read found, so its expiry (free in the untimed model) stands
		// for every life given since.
		w := k == witness
		t.RDeadline = t.RDeadline || t.N[n].Live || w
		for c := range t.C {
			t.C[c].YGone = t.C[c].YGone || (t.N[n].Y[c] || w) && x.writing(t, c)
		}
	}
	t.N[n].Item, t.N[n].Tok, t.N[n].Live, t.N[n].Y = Rec{}, 0, false, [maxClients]bool{}
	t.N[n].noPromise()
	if !x.lives() {
		return
	}
	// Scope.CopyLife: the copies made from this item expire with it (a
	// copy gets its source's t less clockSlack), one still in flight as
	// it lands; R4.4's or R11's copy onto a data copy keeps that one's own.
	t.N[n].Bnd = 0
	for i := range t.M {
		switch m := &t.M[i]; {
		case !m.Used:
		case m.Life == lifeCopy+uint8(n):
			m.Life = lifeDead
		case m.Life == lifeMax+uint8(n):
			m.Life = lifeKeep
		}
	}
	for k := range t.N {
		if int(t.N[k].Bnd) == n+1 {
			t.N[k].Bnd = 0
			if t.N[k].Item.K != absent && !t.N[k].NoTTL {
				x.expire(t, k)
			}
		}
	}
}

// lives reports whether the scope bounds copies' lifetimes by their
// sources' (Scope.CopyLife; untimed expiry scopes only).
func (x *explorer) lives() bool { return x.sc.CopyLife && x.sc.Expiry && !x.sc.Timed }

// setLife gives a write its lifetime (Scope.CopyLife only: elsewhere the
// field stays 0, so that it splits no state).
func (x *explorer) setLife(m *msg, life uint8) {
	if x.lives() {
		m.Life = life
	}
}

// boundBy reports whether node a's item expires no later than node b's
// (a chain of copies, Scope.CopyLife).
func boundBy(t *state, a, b int) bool {
	for range numNodes {
		if t.N[a].Bnd == 0 {
			return false
		}
		a = int(t.N[a].Bnd) - 1
		if a == b {
			return true
		}
	}
	return false
}

// unbind (Scope.CopyLife): node n's item is replaced by a write with a
// lifetime of its own, or removed by a fault: what was bounded by it
// (items, and copies in flight) is bounded by what bounded it (its old
// expiry is no later), or by nothing.
func unbind(t *state, n int) {
	ob := t.N[n].Bnd
	for k := range t.N {
		if k != n && int(t.N[k].Bnd) == n+1 {
			t.N[k].Bnd = ob
		}
	}
	for i := range t.M {
		m := &t.M[i]
		if !m.Used || (m.Life != lifeCopy+uint8(n) && m.Life != lifeMax+uint8(n)) {
			continue
		}
		switch {
		case ob == 0:
			m.Life = lifeFresh
		case m.Life == lifeCopy+uint8(n):
			m.Life = lifeCopy + ob - 1
		default:
			m.Life = lifeMax + ob - 1
		}
	}
	t.N[n].Bnd = 0
}

// landed (Scope.CopyLife) gives node n's item, just stored by a write of
// lifetime life, its bound.
func (x *explorer) landed(t *state, n int, life uint8) {
	switch {
	case life == lifeKeep, life == lifeMax+uint8(n):
		return // its own expiry (a source's bound handed over by unbind may be n itself)
	case life == lifeCopy+uint8(n):
		// No longer than n's previous item: what bounded that.
		ob := t.N[n].Bnd
		unbind(t, n)
		t.N[n].Bnd = ob
		return
	case life >= lifeMax && life < lifeDead:
		src := int(life - lifeMax)
		if boundBy(t, src, n) {
			return // the source is a copy of this item: it keeps its own
		}
		life = lifeFresh // the longer of two unrelated lifetimes: free
		if boundBy(t, n, src) {
			life = lifeCopy + uint8(src)
		}
	}
	unbind(t, n)
	switch {
	case life == lifeDead:
		x.expire(t, n)
	case life >= lifeCopy && life < lifeMax:
		t.N[n].Bnd = life - lifeCopy + 1
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func opLabel(k OpKind) string {
	switch k {
	case RMW:
		return "Get+CompareAndSwap"
	case Scan:
		return "a repair scan"
	case Create:
		return "Add"
	}
	return "Get"
}

func (x *explorer) fail(v string, s *state) {
	x.res.Violation = v
	for _, st := range x.trace {
		x.res.Trace = append(x.res.Trace, x.label(st))
	}
	x.res.Trace = append(x.res.Trace, "final state:\n"+strings.TrimRight(s.String(), "\n"))
}

func (x *explorer) allDone(s *state) bool {
	for c := range s.C {
		if s.C[c].Phase != phDone && !(s.C[c].Phase == phIdle && int(s.C[c].Pc) >= len(x.sc.Programs[c])) {
			return false
		}
	}
	return true
}

// final runs a fault-free read after everything, deciding synchronously,
// and checks that it returns a value at or after every completed one;
// read reports that it returned one.
func (x *explorer) final(s *state) (v string, read bool) {
	t := *s
	for range 4 {
		var r [numNodes]reply
		for i := range r {
			r[i] = exec(&t.N[i], &msg{Op: x.getAll()})
		}
		res := resolve(x.sc.Variant, x.rulesAt(&t), &r)
		switch res.kind {
		case resReturn:
			if t.NFSeen {
				return fmt.Sprintf("the final read returned value %d after a read found the session expired", res.b.Val), false
			}
			if v := t.observe(res.b.Val, t.Max, "the final read"); v != "" {
				return v, false
			}
			return x.afterExpiry(&t), true
		case resNotFound:
			if v := x.notFound(&t, true, t.Max, "the final read"); v != "" {
				return v, false
			}
			return x.afterExpiry(&t), false
		case resUnavailable:
			x.res.FinalUnavailable++
			if t.Exception {
				x.res.ExceptedUnavailable++ // R8's residual: a lone nowit copy
				return x.afterExpiry(&t), false
			}
			if x.creates() && t.Max == 0 {
				// Nothing was acknowledged or observed: an Add abandoned
				// half-way, hit by one flush, is undecidable until it
				// expires (review-2 m11).
				return x.afterExpiry(&t), false
			}
			if x.sc.FinalDecides {
				return "the final read cannot decide (ErrUnavailable): the session is stuck after a single fault", false
			}
			return x.afterExpiry(&t), false
		}
		x.newNonce(&t, &res)
		m1 := msg{Op: opCAS, Tok: r[res.x].Tok, Inc: r[res.x].Inc, Rec: res.rec1, NoTTL: x.sc.Variant == InternalNoTTL}
		st1 := exec(&t.N[res.x], &m1).St
		if st1 == rOK && res.adopt {
			// R9's adoption: the witness re-stamped, clear nowit.
			g := res.b
			g.NoWit = false
			for _, n := range [2]uint8{res.b.P, res.b.Q} {
				exec(&t.N[n], &msg{Op: opCAS, Tok: r[n].Tok, Inc: r[n].Inc, Rec: g})
			}
		}
		if st1 == rOK && res.repair && x.sc.R9ClearsNoWit && res.b.NoWit {
			// R9's clear (atomic here: the final read runs alone).
			g := res.b
			g.NoWit = false
			for _, n := range [2]uint8{res.b.P, res.b.Q} {
				exec(&t.N[n], &msg{Op: opCAS, Tok: r[n].Tok, Inc: r[n].Inc, Rec: g})
			}
		}
		if st1 != rOK || res.single {
			continue
		}
		m2 := msg{Op: opCAS, Tok: r[res.y].Tok, Inc: r[res.y].Inc, Rec: res.rec2, NoTTL: x.sc.Variant == InternalNoTTL}
		if res.add2 {
			m2.Op = opAdd
		}
		exec(&t.N[res.y], &m2)
	}
	x.res.FinalUnavailable++
	if x.sc.FinalDecides {
		return "the final read cannot decide (ErrUnavailable) after 4 decisions: the session does not converge", false
	}
	return x.afterExpiry(&t), false
}

// afterExpiry (expiry scopes): once the timeout has run out and every
// item with a TTL has expired, nothing may still hold the session.
func (x *explorer) afterExpiry(s *state) string {
	if !x.sc.Expiry {
		return ""
	}
	t := *s
	keep := -1
	if x.sc.StaleTouched {
		top, b := -1, Rec{}
		for i := range t.N {
			if it := t.N[i].Item; it.K == data && it.rank() > top {
				top, b = it.rank(), it
			}
		}
		if w := 3 - int(b.P) - int(b.Q); top >= 0 && w >= 0 && w < numNodes {
			if it := t.N[w].Item; it.K == data && it.rank() < top {
				keep = w
			}
		}
	}
	for i := range t.N {
		if !t.N[i].NoTTL && i != keep {
			t.N[i].Item, t.N[i].Tok = Rec{}, 0
			t.N[i].noPromise()
		}
	}
	var r [numNodes]reply
	for i := range r {
		r[i] = exec(&t.N[i], &msg{Op: opGet})
	}
	if res := resolve(x.sc.Variant, x.rules(), &r); res.kind != resNotFound && !res.bury {
		if keep >= 0 {
			return "every item but the stale third record (touched by R2/R3) has expired, yet the read does not find the session not found (stuck)"
		}
		return "every item with a TTL has expired, yet the session is still there (a record without an expiry)"
	}
	return ""
}

// notFound judges a call (or the final read) that found no session; fresh:
// the call started after the last write acknowledged (Scope.Renewal).
func (x *explorer) notFound(t *state, fresh bool, floor uint8, what string) string {
	if t.Exception && !t.Deadline {
		// R8's stated residual: a reader that does not hear the
		// surviving copy of such a configuration finds no session.
		x.res.Excepted++
		if x.nfLoss(t, floor) {
			x.res.ExceptedLoss++ // without the residual: a violation
		}
		t.Halt = true
		return ""
	}
	return x.nfVerdict(t, fresh, floor, what)
}

// nfLoss reports whether nfVerdict would find a "not found" a violation
// (it changes nothing).
func (x *explorer) nfLoss(t *state, floor uint8) bool {
	switch {
	case t.Deadline, t.Faults >= 2:
		return false
	case x.creates():
		u := *t
		return u.observe(0, floor, "") != ""
	}
	return true
}

// nfVerdict judges a "not found" outside R8's stated residual. With
// Scope.Renewal a call that started after a write was acknowledged is
// judged against the life that write gave the session (renewed): the
// deadline passed before the ack does not excuse it.
func (x *explorer) nfVerdict(t *state, fresh bool, floor uint8, what string) string {
	renewed := x.sc.Renewal && t.Renewed && fresh && !t.RDeadline
	switch {
	case t.Deadline && !renewed:
		t.NFSeen = true
		x.res.Expired++
		return ""
	case t.Faults >= 2:
		t.Lost++
		x.res.Lost++
		return ""
	case x.creates():
		return t.observe(0, floor, what+" (no session)")
	case renewed && t.Faults == 0:
		return what + " found no session, with no fault, though a write acknowledged before the call started gave it a new life and no item of that life has expired (a write acknowledged on a session that is gone)"
	}
	return what + " found no session after a single fault"
}

// excFault (R8's stated exception): a fault removes a data copy of a
// nowit configuration once a candidate did not answer an Add.
func excFault(t *state, n int) {
	it := t.N[n].Item
	if !t.ExcOpen || it.K != data || !it.NoWit {
		return
	}
	// Even once its witness is stored, a read that saw the third node
	// before that (the window still open) may count it empty: such a read
	// is in the residual too. (After the witness is stored a read that saw
	// it cannot find two empties, so this excuses nothing else.)
	t.Exception = true
}

// faulted records that a fault removed node n's item (Scope.NoWitRead
// only: elsewhere the field stays 0, so that it splits no state), and
// that a fault hit it (hit).
func (x *explorer) faulted(t *state, n int) {
	if x.sc.NoWitRead {
		t.FaultedN |= 1 << n
	}
	x.hit(t, n)
}

// hit records that a fault hit node n (Scope.FinalWrites only, and before
// the session's deadline, after which no final write runs: elsewhere the
// field stays 0, so that it splits no state).
func (x *explorer) hit(t *state, n int) {
	if x.sc.FinalWrites && !t.Deadline {
		t.Hit |= 1 << n
	}
}

func (x *explorer) restart(t *state, n int) string {
	t.Faults++
	x.faulted(t, n)
	excFault(t, n)
	if x.lives() {
		unbind(t, n)
	}
	nd := &t.N[n]
	nd.Item, nd.Tok, nd.Ctr, nd.Live, nd.Y = Rec{}, 0, 0, false, [maxClients]bool{}
	nd.noPromise()
	nd.Inc++
	for i := range t.M {
		if t.M[i].Used && int(t.M[i].Node) == n {
			t.M[i] = msg{}
		}
	}
	for c := range t.C {
		if t.C[c].Sent[n] && t.C[c].R[n].St == rPending {
			t.C[c].R[n].St = rTimeout // connection reset: outcome unknown
			if v := x.maybeAdvance(t, c); v != "" {
				return v
			}
		}
	}
	return ""
}

func (x *explorer) deliver(t *state, i int) string {
	m := t.M[i]
	t.M[i] = msg{}
	if m.App && m.Op == opTouch {
		return x.appendTouched(t, m)
	}
	prev := t.N[m.Node].Item.K
	rep := exec(&t.N[m.Node], &m)
	if x.sc.Renewal && rep.St == rOK {
		switch n := int(m.Node); {
		case m.Op == opCAS || m.Op == opAdd:
			x.landLive(t, n, &m)
		case m.Op == opTouch || m.Op == opGetT && m.TTL != 0:
			x.newLife(t, n)
		case m.Op == opGetN && rep.Won:
			t.N[n].Live, t.N[n].Y = false, [maxClients]bool{} // a blank: its expiry is not the session's
		}
	}
	if x.lives() && (m.Op == opCAS || m.Op == opAdd) && rep.St == rOK {
		x.landed(t, int(m.Node), m.Life)
		if m.Write {
			// R3 touches its configuration's third node (the witness,
			// or a stale copy there: StaleTouched) with TW: a lifetime
			// of its own.
			unbind(t, 3-int(m.Rec.P)-int(m.Rec.Q))
		}
	}
	if m.Write && rep.St == rOK && x.sc.WitnessTTL {
		// R3's store on the primary sets the data's TTL: the witness
		// of its configuration falls one write behind until its touch.
		if w := &t.N[3-m.Rec.P-m.Rec.Q]; w.Item.K == witness {
			w.Lag = min(w.Lag+1, 2)
			w.LagTried = w.LagTried || x.sc.Variant != WitnessUntouched
		}
	}
	if m.Op == opCAS && rep.St == rOK {
		switch {
		case m.Rec.K == witness && prev == blank && !m.Orphan && t.C[m.Client].Phase == phDec1:
			x.res.WitnessRepairs++
		case m.Rec.K == witness && prev == data && !m.Orphan && t.C[m.Client].Phase == phDec1:
			x.res.StaleConverted++
		case m.Rec.K == witness && prev == witness && !m.Orphan && t.C[m.Client].Phase == phDec1:
			x.res.WitnessReplaced++
		case m.Rec.Pend:
			x.res.Fences++
		case m.Rec.K == data && !m.Orphan && t.C[m.Client].Phase == phCrP:
			x.res.Creations++
		}
	}
	if m.Orphan {
		return ""
	}
	c := int(m.Client)
	if t.C[c].R[m.Node].St != rPending {
		return ""
	}
	rep.Won = rep.Won && x.sc.WonBlanks
	if m.App && rep.St == rOK {
		// Stored: the touch follows, on the same node (the reply
		// waits for it).
		tm := m
		tm.Op, tm.Tok, tm.Inc, tm.Write, tm.Life = opTouch, rep.Tok, rep.Inc, false, 0
		t.M[i] = tm
		return ""
	}
	t.C[c].R[m.Node] = rep
	return x.maybeAdvance(t, c)
}

// maybeAdvance runs the protocol once every command of the client's round
// has a reply (or counts as silent), again and again while a new round is
// sent only to nodes the client holds failed (nothing to wait for).
func (x *explorer) maybeAdvance(t *state, c int) string {
	for range 64 {
		cl := &t.C[c]
		sent := false
		for n := range numNodes {
			if cl.Sent[n] {
				sent = true
				if cl.R[n].St == rPending {
					return ""
				}
			}
		}
		if !sent {
			return ""
		}
		if v := x.advance(t, c); v != "" {
			return v
		}
	}
	panic("replmodel: a client made no progress")
}

// newRound orphans the client's outstanding commands and clears its slots.
func newRound(t *state, c int) {
	for i := range t.M {
		if t.M[i].Used && int(t.M[i].Client) == c {
			t.M[i].Orphan = true
		}
	}
	t.C[c].Sent = [numNodes]bool{}
	t.C[c].R = [numNodes]reply{}
}

func (x *explorer) send(t *state, c int, n, op, tok, inc uint8, rec Rec) *msg {
	if t.C[c].Susp[n] {
		t.C[c].Sent[n] = true
		t.C[c].R[n] = reply{St: rTimeout}
		return &msg{} // nothing is sent: the reply slot says silent
	}
	return x.put(t, c, n, op, tok, inc, rec)
}

// put sends a command even to a node the process holds failed (an Add
// still sends to a suspected candidate and waits Timeout: R8).
func (x *explorer) put(t *state, c int, n, op, tok, inc uint8, rec Rec) *msg {
	for i := range t.M {
		if !t.M[i].Used {
			t.M[i] = msg{Used: true, Client: uint8(c), Node: n, Op: op, Tok: tok, Inc: inc, Rec: rec}
			t.C[c].Sent[n] = true
			t.C[c].R[n] = reply{}
			return &t.M[i]
		}
	}
	panic("replmodel: too many messages in flight; raise maxMsgs")
}

func (x *explorer) startOp(t *state, c int) string {
	cl := &t.C[c]
	cl.Floor = t.Max
	cl.Iter = 0
	cl.AfterNF = t.NFSeen
	cl.Fresh = x.sc.Renewal && t.Renewed
	if x.sc.Renewal {
		cl.YGone = false
		for n := range t.N {
			t.N[n].Y[c] = false
		}
	}
	switch x.sc.Programs[c][cl.Pc] {
	case Scan:
		x.sendRead2(t, c)
	case Create:
		newRound(t, c)
		// R8: the witness goes to the candidate this process holds failed,
		// if any (the two others hold the data, the better-ranked one
		// primary); the Add still sends to it.
		cl.AW, cl.AS, cl.RR = 2, false, 0
		for n := range uint8(numNodes) {
			if cl.Susp[n] {
				cl.AW, cl.AS = n, true
				break
			}
		}
		for n := range uint8(numNodes) {
			x.put(t, c, n, opGetN, 0, 0, Rec{})
		}
		cl.Phase = phCrRead
	default:
		x.sendRead1(t, c)
	}
	return x.maybeAdvance(t, c)
}

func (x *explorer) sendRead1(t *state, c int) {
	newRound(t, c)
	cl := &t.C[c]
	op, ttl := opGet, uint8(0)
	if x.touches(t, c) {
		if x.sc.Variant == WitnessTTLFromT {
			op, ttl = opGetT, x.sessionT(c)
		}
		m := x.send(t, c, 3-cl.P-cl.Q, opTouch, 0, 0, Rec{})
		m.Orphan, m.TTL = true, x.witnessTTL(c)
		cl.Sent[3-cl.P-cl.Q] = false
	}
	x.send(t, c, cl.P, op, 0, 0, Rec{}).TTL = ttl
	x.send(t, c, cl.Q, op, 0, 0, Rec{}).TTL = ttl
	cl.Phase = phRd1
}

// touches: client c's current step is a GetAndTouch in a timed scope.
func (x *explorer) touches(t *state, c int) bool {
	return x.sc.Timed && int(t.C[c].Pc) < len(x.sc.Programs[c]) && x.sc.Programs[c][t.C[c].Pc] == ReadTouch
}

func (x *explorer) sendRead2(t *state, c int) {
	newRound(t, c)
	for n := range uint8(numNodes) {
		x.send(t, c, n, x.getAll(), 0, 0, Rec{})
	}
	t.C[c].Phase = phRd2
}

// creates: the scope starts with no session (value 0 is "no session").
func (x *explorer) creates() bool {
	switch x.sc.Start {
	case Empty, LoneWitness, LoneWitnessP, LoneWitnessQ, ForeignWitnessN4, LateForeignWitness:
		return true
	}
	return false
}

// getAll is the anomaly read's command: mg N (a blank on a miss, as the
// rules always send) in repair and creation scopes; elsewhere a plain get
// (a smaller state space: no blank there is ever written over).
func (x *explorer) getAll() uint8 {
	if x.sc.Repair || x.creates() {
		return opGetN
	}
	return opGet
}

// endOp finishes the client's current program step.
func (x *explorer) endOp(t *state, c int) string {
	newRound(t, c)
	cl := &t.C[c]
	cl.Phase = phIdle
	cl.Pc++
	cl.Held, cl.Far = false, false
	cl.Own, cl.PR, cl.RB, cl.Rs = false, false, false, 0
	cl.OvAt = 0
	return ""
}

// endOpOr reports violation v, or ends the step (the run has reached
// R8's stated residual and stops).
func (x *explorer) endOpOr(t *state, c int, v string) string {
	if v != "" {
		return v
	}
	return x.endOp(t, c)
}

// value is the unique id of client c's write in program step pc.
func value(c int, pc uint8) uint8 { return uint8(1 + c*4 + int(pc)) }

// foreignN4Val is the value of ForeignWitnessN4's creation record: no
// client's write (value gives at most 12), built on "no session".
const foreignN4Val = 13

func (x *explorer) readOK(t *state, c int, b Rec, rp, rq reply) string {
	cl := &t.C[c]
	if cl.AfterNF {
		return fmt.Sprintf("c%d's Get returned value %d, but a read that ended before it started found the session expired (it came back)", c, b.Val)
	}
	if v := t.observe(b.Val, cl.Floor, fmt.Sprintf("c%d's Get", c)); v != "" {
		return v
	}
	cl.P, cl.Q = b.P, b.Q
	if x.sc.Programs[c][cl.Pc] != RMW {
		if x.touches(t, c) && x.sc.Variant != WitnessTTLFromT {
			// GetAndTouch on a cold key (D1): touch both copies with
			// the envelope's T, and the witness with TW, in parallel
			// (section 2.4), not waited for.
			newRound(t, c)
			for _, n := range [2]uint8{cl.P, cl.Q} {
				m := x.send(t, c, n, opTouch, 0, 0, Rec{})
				m.Orphan, m.TTL = true, b.T
			}
			m := x.send(t, c, 3-cl.P-cl.Q, opTouch, 0, 0, Rec{})
			m.Orphan, m.TTL = true, x.witnessTTL(c)
		}
		return x.endOp(t, c)
	}
	// The CompareAndSwap starts now, from the value just read.
	cl.Floor = t.Max
	nv := value(c, cl.Pc)
	t.Parent[nv] = b.Val
	cl.Base, cl.BRem = rq.Rec, rq.Rem
	cl.TokP, cl.IncP, cl.TokQ, cl.IncQ = rp.Tok, rp.Inc, rq.Tok, rq.Inc
	// The write keeps its configuration's nowit (R3).
	cl.New = Rec{K: data, E: b.E, V: b.V + 1, Val: nv, P: b.P, Q: b.Q, NoWit: b.NoWit, T: x.sessionT(c)}
	newRound(t, c)
	mp := x.send(t, c, cl.P, opCAS, cl.TokP, cl.IncP, cl.New)
	mp.Write, mp.TTL = true, x.sessionT(c)
	mq := x.send(t, c, cl.Q, opCAS, cl.TokQ, cl.IncQ, cl.New)
	mq.TTL = x.sessionT(c)
	if x.sc.Append {
		// The appends keep each item's expiry; their touches follow
		// once stored (deliver).
		for _, m := range [2]*msg{mp, mq} {
			m.App = true
			x.setLife(m, lifeKeep)
		}
	}
	if w := 3 - cl.P - cl.Q; (x.sc.WitnessTTL || x.sc.Timed) && x.sc.Variant != WitnessUntouched {
		// R3 touches the witness in the same round trip (review-2 B1);
		// its reply is not waited for.
		m := x.send(t, c, w, opTouch, 0, 0, Rec{})
		m.Orphan, m.TTL = true, x.witnessTTL(c)
		cl.Sent[w], cl.R[w] = false, reply{}
	}
	cl.Phase = phWr
	return ""
}

func (x *explorer) ack(t *state, c int) string {
	cl := &t.C[c]
	if v := t.observe(cl.New.Val, cl.Floor, fmt.Sprintf("c%d's CompareAndSwap (acknowledged)", c)); v != "" {
		return v
	}
	x.acks++
	if x.sc.Renewal && x.sc.Programs[c][cl.Pc] == RMW {
		x.renew(t, c)
	}
	return x.endOp(t, c)
}

// renew (Scope.Renewal): client c's write was acknowledged: the session
// has a new life, the caller's T from when the write set it. The data
// items that carry it are those whose life was set since the call
// started (node.Y: the write's own copies and touches, and whatever was
// written or copied from them since), and the witness of their
// configuration (R3 touches it with TW, longer than T); every other item
// has an older life and may expire before the new deadline. If an item
// of the new life already expired during the call (the untimed model
// lets a touched item expire at once: its T has then run out), the new
// deadline has passed. Calls under way started before the ack: they are
// judged as before it.
func (x *explorer) renew(t *state, c int) {
	x.res.Renewals++
	t.Renewed, t.RDeadline = true, t.C[c].YGone
	for n := range t.N {
		t.N[n].Live = t.N[n].Item.K == data && t.N[n].Y[c]
	}
	for n := range t.N {
		w := t.N[n].Item
		if w.K != witness {
			continue
		}
		for k := range t.N {
			if t.N[k].Live && t.N[k].Item.K == data && sameConfig(t.N[k].Item, w) {
				t.N[n].Live = true
			}
		}
	}
	for k := range t.C {
		if k != c {
			t.C[k].Fresh = false
		}
	}
}

// landLive (Scope.Renewal) sets the lives (node.Live, node.Y) of node
// n's item, just stored by m: an append or a re-stamp keeps its item's, a
// copy its source's (the longer of two: either's), anything else gets a
// new one.
func (x *explorer) landLive(t *state, n int, m *msg) {
	nd := &t.N[n]
	if m.App {
		return
	}
	if !x.lives() {
		x.newLife(t, n)
		return
	}
	switch l := m.Life; {
	case l == lifeKeep:
	case l == lifeDead:
		nd.Live, nd.Y = false, [maxClients]bool{}
	case l >= lifeMax:
		src := &t.N[l-lifeMax]
		nd.Live = nd.Live || src.Live
		for c := range nd.Y {
			nd.Y[c] = nd.Y[c] || src.Y[c]
		}
	case l >= lifeCopy:
		nd.Live, nd.Y = t.N[l-lifeCopy].Live, t.N[l-lifeCopy].Y
	default:
		x.newLife(t, n)
	}
}

// newLife (Scope.Renewal): node n's item gets a life of its own now: it
// carries the last renewal's (once there was one) and is young for every
// write call under way.
func (x *explorer) newLife(t *state, n int) {
	nd := &t.N[n]
	nd.Live = t.Renewed
	for c := range t.C {
		nd.Y[c] = x.writing(t, c)
	}
}

// writing: client c is in a write call (Get+CompareAndSwap).
func (x *explorer) writing(t *state, c int) bool {
	cl := &t.C[c]
	return cl.Phase != phIdle && cl.Phase != phDone && int(cl.Pc) < len(x.sc.Programs[c]) && x.sc.Programs[c][cl.Pc] == RMW
}

// appendTouched runs the touch of an append that was stored (Scope.Append,
// m its message): it gives the item the caller's T (a write of another
// value landed since: the store's untouch gives that its own T back, a new
// life all the same), or finds the key gone. The reply carries the
// append's token (a touch changes no token).
func (x *explorer) appendTouched(t *state, m msg) string {
	nd := &t.N[m.Node]
	st := rOK
	switch it := nd.Item; {
	case it.K == absent:
		st = rGone
		x.res.AppendsGone++
	case nd.Tok == m.Tok && nd.Inc == m.Inc, x.sc.Variant.straysStored():
		// The append's item, untouched since (or, the code before and
		// the variants, whatever the touch found).
	case it.K == data && t.anc(m.Rec.Val, it.Val):
		// Another item holding the append's value or one built on it
		// (a reader's re-stamp or fence, a later write): stored.
	case it.K == blank:
		// The copy expired (or R4.1 buried it) and a reader's mg … N
		// made a blank: gone all the same.
		st = rGone
		x.res.AppendsGone++
		x.res.AppendsStrayGone++
	case x.tie(t, it, m.Rec):
		// A rival write of the same base in the same configuration
		// replaced it: its writer's completion (R3, phWrGet), which
		// only a rival that won the tie makes. Not stored there, and
		// the key is not gone (rTie: appendGone).
		st = rTie
		x.res.AppendsStrayGone++
		x.res.AppendsTie++
	default:
		// A witness, or a record not built on the append's, replaced
		// it: not stored there, and the key is not gone (rStray).
		st = rStray
		x.res.AppendsStrayGone++
	}
	if nd.Item.K != absent && x.sc.Renewal {
		x.newLife(t, int(m.Node))
	}
	if m.Orphan {
		return ""
	}
	c := int(m.Client)
	if t.C[c].R[m.Node].St != rPending {
		return ""
	}
	t.C[c].R[m.Node] = reply{St: st, Rec: m.Rec, Tok: m.Tok, Inc: m.Inc}
	return x.maybeAdvance(t, c)
}

// tie reports whether it, found by the touch of an append of r, is a
// rival write of r's own base: a data record, established, of r's
// configuration and version, computed from r's parent value (the store:
// the same E, P, Q and V, the same parent nonce, another nonce).
func (x *explorer) tie(t *state, it, r Rec) bool {
	return it.K == data && !it.Pend && it.E == r.E && it.P == r.P && it.Q == r.Q && it.V == r.V &&
		it.Val != r.Val && t.Parent[it.Val] == t.Parent[r.Val]
}

// straysStored: an append's touch that finds another item than the
// append's counts the copy stored (the store's strayed touch: the code
// before F2's fix, and the fix as first stated).
func (v Variant) straysStored() bool {
	return v == AppendGoneStored || v == AppendGoneRefused || v == AppendStrayStored
}

// appendGone maps R3's replies when an append's touch found its copy gone
// (rGone) onto R3's table; done: the call ended (its verdict v). The
// appended value was on that copy, unfenced, until it expired: a plain
// read may have returned it, a reader's decision may have copied it on.
// So a gone copy is:
//   - with the other copy stored (and touched): when the gone copy is Q,
//     missing, as an NF on the CAS: the completion (Q empty: the write
//     failover); when it is P, ErrOutcomeUnknown, Q left as it is (an
//     undo, or an answer "not applied", would deny a value a read may
//     have returned: AppendGoneRefused);
//   - with the other copy gone or refused by NF: not found, the session
//     expired with the value (F3's "applied, then expired"): no call
//     that starts later may return it;
//   - with the other copy refused otherwise (EX, another incarnation)
//     or silent: ErrOutcomeUnknown.
//
// A copy whose touch found a record not built on the append (rStray:
// another writer's completion, a witness) is as a gone one, save that it
// never makes "not found": the key is not gone.
//
// A copy whose touch found a rival write of the same base and
// configuration (rTie: stored on its primary, it won R4.2's tie and was
// completed over the append, by its writer or a reader's R4.4) is as a
// stray one, save the tie row: Q lost the tie and P refused the append:
// a conflict, "not applied". The append was never on P; a reader that
// completed it onto P would have kept the rival off Q (the same P
// token), so it was never returned. A tie on P, or on both, is not
// reached (the append was on its own primary) and stays unknown.
//
// AppendGoneStored counts a gone copy stored; AppendGoneRefused refused
// by NF, save that both gone (or gone and NF) is not found.
func (x *explorer) appendGone(t *state, c int, rp, rq *reply) (string, bool) {
	cl := &t.C[c]
	nfLike := func(r *reply) bool { return r.St == rGone || r.St == rNotFound }
	as := func(st uint8) {
		for _, r := range [2]*reply{rp, rq} {
			if r.St == rGone || r.St == rStray || r.St == rTie {
				r.St = st
			}
		}
	}
	switch {
	case rq.St == rTie && rp.definiteFail():
		x.res.TieConflicts++
		return x.conflict(t, c), true
	case x.sc.Variant == AppendGoneStored:
		as(rOK)
		return "", false
	case nfLike(rp) && nfLike(rq):
		return x.endOpOr(t, c, x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's CompareAndSwap (an append's copy gone)", c))), true
	case x.sc.Variant == AppendGoneRefused, rp.St == rOK:
		as(rNotFound)
		return "", false
	}
	return x.endOp(t, c), true // ErrOutcomeUnknown
}

func (x *explorer) conflict(t *state, c int) string {
	if v := t.notApplied(t.C[c].New.Val); v != "" {
		return v
	}
	return x.endOp(t, c)
}

// advance runs the protocol when all replies of a round are in.
func (x *explorer) advance(t *state, c int) string {
	cl := &t.C[c]
	switch cl.Phase {
	case phRd1:
		rp, rq := cl.R[cl.P], cl.R[cl.Q]
		if rp.St == rOK && rq.St == rOK && rp.Rec.K == data && !rp.Rec.Pend && rp.Rec == rq.Rec &&
			rp.Rec.P == cl.P && rp.Rec.Q == cl.Q &&
			(x.sc.Variant == NoPromise || rp.Prom <= rp.Rec.E && rq.Prom <= rq.Rec.E) &&
			!(x.sc.NoWitRead && rp.Rec.NoWit && x.sc.Variant != NoWitFastPath) {
			return x.readOK(t, c, rp.Rec, rp, rq)
		}
		x.sendRead2(t, c)
	case phRd2:
		o := x.rulesAt(t)
		o.nowitOnly = x.sc.NoWitRead && x.sc.Programs[c][cl.Pc] != Scan
		res := resolve(x.sc.Variant, o, &cl.R)
		switch res.kind {
		case resReturn:
			if res.exc && x.creates() {
				// Review-n4b F2: the window opens with the read that
				// returns the nowit configuration; a fault that already
				// removed one of the copies it read (a node faulted and
				// holding no data now) falls in it.
				t.ExcOpen = true
				for _, n := range [2]uint8{res.b.P, res.b.Q} {
					if t.N[n].Item.K != data && t.FaultedN&(1<<n) != 0 {
						t.Exception = true
					}
				}
			}
			return x.readOK(t, c, res.b, cl.R[res.b.P], cl.R[res.b.Q])
		case resNotFound:
			if res.oldWit != 0 {
				// R14: re-stamp the blanks (their read tokens), then
				// bury the witness (its read token); "not found" either
				// way.
				w := res.oldWit - 1
				cl.DX, cl.DTX, cl.DIX = w, cl.R[w].Tok, cl.R[w].Inc
				if res.fence != [numNodes]bool{} {
					x.fenceBlanks(t, c, res.fence)
					cl.Phase = phWitFence
					return ""
				}
				newRound(t, c)
				x.decide(t, c, w, cl.DTX, cl.DIX, Rec{K: blank})
				cl.Phase = phWitBury
				return ""
			}
			if res.fence != [numNodes]bool{} {
				// R4.1 (review-ballot m4): re-stamp the blanks counted,
				// each with its read token, before answering, so that no
				// CAS holding a token read before (R9's witness CAS, its
				// reply lost) lands on one afterwards. Only a refusal
				// (the read again) counts toward the cap.
				x.fenceBlanks(t, c, res.fence)
				cl.Phase = phNFFence
				return ""
			}
			if v := x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Get", c)); v != "" {
				return v
			}
			return x.endOp(t, c)
		case resUnavailable:
			return x.endOp(t, c)
		}
		if cl.Iter >= x.iterCap {
			return x.endOp(t, c) // unavailable
		}
		cl.Iter++
		if res.exc && x.creates() {
			t.ExcOpen = true // only creation scopes' E0 V0 records are creations
		}
		if res.overWitness {
			x.res.CreationReballots++
		}
		cl.OW, cl.RB = res.overWitness, res.rollBack
		if res.rollBack {
			x.res.RollBackDecisions++
		}
		if res.single {
			res.y = res.x
		}
		if res.adopt {
			// R9's adoption (review-r14 B1): re-stamp the witness with
			// its read token (AdoptByTouch: touch it, which keeps the
			// token), and only then clear nowit on both copies.
			w := res.x
			cl.DX = w
			cl.DR1 = res.b
			cl.DR1.NoWit = false
			cl.TokP, cl.IncP = cl.R[res.b.P].Tok, cl.R[res.b.P].Inc
			cl.TokQ, cl.IncQ = cl.R[res.b.Q].Tok, cl.R[res.b.Q].Inc
			cl.DT = cl.R[res.b.P].Rem
			read := cl.R[w]
			newRound(t, c)
			if x.sc.Variant == AdoptByTouch {
				x.send(t, c, w, opTouch, 0, 0, Rec{}).TTL = x.witnessTTL(c)
			} else {
				m := x.decide(t, c, w, read.Tok, read.Inc, read.Rec)
				m.TTL = read.Rem
				x.setLife(m, lifeKeep)
			}
			cl.Phase = phAdopt
			return ""
		}
		if res.bury {
			cl.DX = res.x
			tok, inc := cl.R[res.x].Tok, cl.R[res.x].Inc
			if res.fence != [numNodes]bool{} {
				// D3′ (the store's fenceEmpties): re-stamp the blank
				// peers first, each with its read token, and bury only
				// once all were stored. Under BuryCreationFenced (the
				// store's rule until the sixth session of 2026-11-30) both
				// peers are fenced and an absent one (no token to fence
				// with) reads again, as a refusal does.
				read := cl.R
				for n := range numNodes {
					if res.fence[n] && !(read[n].St == rOK && read[n].Rec.K == blank) {
						x.sendRead2(t, c)
						return ""
					}
				}
				cl.DTX, cl.DIX = tok, inc
				x.fenceBlanks(t, c, res.fence)
				cl.Phase = phBuryFence
				return ""
			}
			newRound(t, c)
			x.decide(t, c, res.x, tok, inc, res.rec1)
			cl.Phase = phBury
			return ""
		}
		x.newNonce(t, &res)
		cl.DT = cl.R[res.x].Rem // the base's remaining t (R4)
		if res.repair {
			cl.DT = cl.R[res.b.P].Rem
		}
		cl.DX, cl.DY, cl.DR1, cl.DR2, cl.DAdd = res.x, res.y, res.rec1, res.rec2, res.add2
		if x.lives() {
			// The copy onto y: x's t less clockSlack (copyExp); R4.4's
			// completion onto a data copy, and R11's re-ballot, keep
			// y's own if longer.
			cl.DL = lifeCopy + res.x
			if (res.reballot || res.complete) && cl.R[res.y].St == rOK && cl.R[res.y].Rec.K == data {
				cl.DL = lifeMax + res.x
			}
		}
		cl.DT2, cl.DI2 = cl.R[res.y].Tok, cl.R[res.y].Inc
		tx, ix := cl.R[res.x].Tok, cl.R[res.x].Inc
		read := cl.R
		newRound(t, c)
		if res.repair && x.sc.R9ClearsNoWit && res.b.NoWit {
			// R9's clear (clearNoWitAfter): remember the record and, for
			// R9Unfenced, the read's tokens (the re-stamps replace them).
			cl.DR2 = res.b
			cl.DR2.NoWit = false
			cl.TokP, cl.IncP = read[res.b.P].Tok, read[res.b.P].Inc
			cl.TokQ, cl.IncQ = read[res.b.Q].Tok, read[res.b.Q].Inc
		}
		if res.repair && !(x.sc.Variant == R9Unfenced && res.rec1.K == witness) {
			// R9: re-stamp both data copies (same content, new token);
			// the blank gets the witness only if both were stored.
			if x.sc.R9InTurn {
				// P's first; Q's token, promise and record wait in
				// DTX, DIX, Tries and Base (free in this phase).
				p, q := res.rs[0], res.rs[1]
				if read[p].Rec != read[q].Rec || x.sc.Variant == R9ClearFirst {
					panic("replmodel: R9 in turn: the copies' records differ")
				}
				m := x.decide(t, c, p, read[p].Tok, read[p].Inc, read[p].Rec)
				m.Prom = read[p].Prom
				x.setLife(m, lifeMax+q)
				cl.DTX, cl.DIX, cl.Tries, cl.Base = read[q].Tok, read[q].Inc, read[q].Prom, read[q].Rec
				cl.Phase = phRestampP
				return ""
			}
			for _, n := range res.rs {
				rec := read[n].Rec
				if x.sc.Variant == R9ClearFirst && x.sc.R9ClearsNoWit {
					rec.NoWit = false // broken: the clear before the witness
				}
				m := x.decide(t, c, n, read[n].Tok, read[n].Inc, rec)
				m.Prom = read[n].Prom
				// keepExp: its own t, or the other copy's carried
				// over (copyExp) when longer (D2).
				x.setLife(m, lifeMax+res.rs[0]+res.rs[1]-n)
			}
			cl.Phase = phRestamp
			return ""
		}
		if x.sc.Variant == CompleteNoFence && res.complete || x.sc.Variant == RollBackUnfenced && res.rollBack {
			x.sendSecond(t, c)
			cl.Phase = phDec2
			return ""
		}
		if res.promise {
			// R7 (P1's fix): promise the new epoch on w first, with
			// its read token and its own record.
			cl.DTX, cl.DIX = tx, ix
			m := x.send(t, c, res.y, opCAS, cl.DT2, cl.DI2, read[res.y].Rec)
			m.Prom, m.TTL = res.rec1.E, read[res.y].Rem
			x.setLife(m, lifeKeep)
			cl.Phase = phPromise
			return ""
		}
		m := x.decide(t, c, cl.DX, tx, ix, cl.DR1)
		x.setLife(m, lifeKeep) // x's own record, or its fence: its own expiry
		if res.complete || res.rollBack {
			m.Prom = read[cl.DX].Prom // a re-stamp keeps the bytes
		}
		cl.Phase = phDec1
		if x.sc.Variant == ParallelFailover && !res.single {
			x.sendSecond(t, c)
			cl.Phase = phDecBoth
		}
	case phRestampP:
		// R9 in turn: P's re-stamp refused or silent: nothing more
		// sent, read again; stored: Q's.
		p, q := cl.DR1.P, cl.DR1.Q
		if cl.R[p].St != rOK {
			x.sendRead2(t, c)
			return ""
		}
		if d := cl.DR2; d.K == data {
			cl.TokP, cl.IncP = cl.R[d.P].Tok, cl.R[d.P].Inc
		}
		rec := cl.Base
		tok, inc, prom := cl.DTX, cl.DIX, cl.Tries
		cl.DTX, cl.DIX, cl.Tries, cl.Base = 0, 0, 0, Rec{}
		newRound(t, c)
		m := x.decide(t, c, q, tok, inc, rec)
		m.Prom = prom
		x.setLife(m, lifeMax+p)
		cl.Phase = phRestamp
	case phRestamp:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				x.sendRead2(t, c)
				return ""
			}
		}
		if d := cl.DR2; d.K == data {
			// R9's clear uses the re-stamps' tokens (pcas, qcas).
			if !x.sc.R9InTurn {
				cl.TokP, cl.IncP = cl.R[d.P].Tok, cl.R[d.P].Inc
			}
			cl.TokQ, cl.IncQ = cl.R[d.Q].Tok, cl.R[d.Q].Inc
		}
		newRound(t, c)
		x.decide(t, c, cl.DX, cl.DT2, cl.DI2, cl.DR1)
		cl.Phase = phDec1
	case phCrRead, phCrQ, phCrW, phCrP, phCrUndo, phCrPoison, phCrReread:
		return x.advanceAdd(t, c)
	case phPromise:
		if cl.R[cl.DY].St != rOK {
			x.sendRead2(t, c) // refused or silent: nothing decided
			return ""
		}
		cl.DT2, cl.DI2 = cl.R[cl.DY].Tok, cl.R[cl.DY].Inc
		newRound(t, c)
		x.setLife(x.decide(t, c, cl.DX, cl.DTX, cl.DIX, cl.DR1), lifeKeep)
		cl.Phase = phDec1
		if x.sc.Variant == ParallelFailover {
			x.sendSecond(t, c)
			cl.Phase = phDecBoth
		}
	case phNFFence:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				// Refused or silent: read again, as a decision would.
				if cl.Iter >= x.iterCap {
					return x.endOp(t, c) // unavailable
				}
				cl.Iter++
				x.sendRead2(t, c)
				return ""
			}
		}
		x.res.NotFoundFenced++
		if v := x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Get", c)); v != "" {
			return v
		}
		return x.endOp(t, c)
	case phWitFence:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				// R14: a re-stamp refused or unanswered: the witness is
				// left, the answer is "not found" all the same.
				x.res.OldWitnessKept++
				return x.endOpOr(t, c, x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Get", c)))
			}
		}
		newRound(t, c)
		x.decide(t, c, cl.DX, cl.DTX, cl.DIX, Rec{K: blank})
		cl.Phase = phWitBury
	case phWitBury:
		if cl.R[cl.DX].St == rOK {
			x.res.OldWitnessBuried++
		} else {
			x.res.OldWitnessKept++
		}
		return x.endOpOr(t, c, x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Get", c)))
	case phAdopt:
		r, d := cl.R[cl.DX], cl.DR1
		if r.St != rOK || r.Rec.K != witness || r.Rec.E != d.E || r.Rec.P != d.P || r.Rec.Q != d.Q {
			cl.P, cl.Q = d.P, d.Q
			x.sendRead1(t, c) // refused or no reply: no clear (R0)
			return ""
		}
		x.res.Adoptions++
		x.clearNoWit(t, c, d)
		cl.Phase = phAdoptClear
	case phAdoptClear:
		cl.P, cl.Q = cl.DR1.P, cl.DR1.Q
		x.sendRead1(t, c)
	case phR9ClearRead:
		d := cl.DR2
		cl.P, cl.Q = d.P, d.Q
		rp, rq := cl.R[d.P], cl.R[d.Q]
		if rp.St != rOK || rq.St != rOK || rp.Tok != cl.TokP || rp.Inc != cl.IncP || rq.Tok != cl.TokQ || rq.Inc != cl.IncQ {
			x.sendRead1(t, c) // a copy changed, or no reply: no clear
			return ""
		}
		x.res.R9Clears++
		x.clearNoWit(t, c, d)
		cl.Phase = phR9Clear
	case phR9Clear:
		x.sendRead1(t, c)
	case phBuryFence:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				x.res.BuryFenceRefused++
				x.sendRead2(t, c) // refused or silent: read again (counts toward the cap)
				return ""
			}
		}
		newRound(t, c)
		x.decide(t, c, cl.DX, cl.DTX, cl.DIX, Rec{K: blank})
		cl.Phase = phBury
	case phBury:
		if cl.R[cl.DX].St != rOK {
			x.sendRead2(t, c) // refused: read again (counts toward the cap)
			return ""
		}
		x.res.Buried++
		if v := x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Get", c)); v != "" {
			return v
		}
		return x.endOp(t, c)
	case phDec1:
		if cl.R[cl.DX].St != rOK {
			x.sendRead2(t, c)
			return ""
		}
		if cl.DX == cl.DY { // a single write (witness repair): read again
			if d := cl.DR2; d.K == data {
				// R9's clear (R9ClearsNoWit): its witness is stored;
				// read both copies again (clearNoWitAfter).
				newRound(t, c)
				x.send(t, c, d.P, opGet, 0, 0, Rec{})
				x.send(t, c, d.Q, opGet, 0, 0, Rec{})
				cl.Phase = phR9ClearRead
				return ""
			}
			x.sendRead1(t, c)
			return ""
		}
		newRound(t, c)
		x.sendSecond(t, c)
		cl.Phase = phDec2
	case phDec2, phDecBoth:
		if cl.R[cl.DY].St == rOK && cl.OW {
			x.res.CreationReballotsDone++
		}
		if cl.R[cl.DY].St == rOK && cl.RB {
			x.res.RollBacks++
		}
		if cl.R[cl.DY].St == rOK {
			cl.P, cl.Q = cl.DR2.P, cl.DR2.Q
		}
		x.sendRead1(t, c)
	case phWr:
		rp, rq := cl.R[cl.P], cl.R[cl.Q]
		if rp.St == rGone || rq.St == rGone || rp.St == rStray || rq.St == rStray || rp.St == rTie || rq.St == rTie {
			if v, done := x.appendGone(t, c, &rp, &rq); done {
				return v
			}
		}
		switch {
		case rp.St == rOK && rq.St == rOK:
			return x.ack(t, c)
		case rp.St == rOK && rq.St == rTimeout:
			// Won at the primary, the secondary silent: fail over with
			// the write (R3, review-2 M3).
			cl.NewTok, cl.NewInc = rp.Tok, rp.Inc
			x.writeFailover(t, c)
		case rp.St == rOK && rq.definiteFail():
			// Won at the primary: complete the secondary, then acknowledge.
			cl.NewTok, cl.NewInc = rp.Tok, rp.Inc
			cl.Tries = 0
			newRound(t, c)
			x.send(t, c, cl.Q, opGet, 0, 0, Rec{})
			cl.Phase = phWrGet
		case rp.definiteFail() && rq.St == rOK:
			if x.sc.Variant == NoUndo {
				return x.conflict(t, c)
			}
			cl.NewTok, cl.NewInc = rq.Tok, rq.Inc
			if x.sc.OwnComplete && rp.St == rExists {
				// P refused it (EX): complete it ourselves if P still
				// holds the base, re-stamped (completeOwn).
				cl.Tries = 0
				x.ownComplete(t, c, rq.Tok, rq.Inc)
				return ""
			}
			// Lost at the primary: restore the base on the secondary.
			x.undo(t, c)
		case rp.definiteFail() && rq.definiteFail():
			return x.conflict(t, c)
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phWrGet:
		r := cl.R[cl.Q]
		switch {
		case r.St == rOK && r.Prom > cl.New.E && x.sc.Variant != NoPromise:
			// R11 (review-ballot M1): a decision promised a higher
			// epoch on Q since the write's read; the write is not put
			// over it (nor acknowledged from it): ErrOutcomeUnknown
			// (Scope.Overtaken: read what that decision carries).
			return x.overtaken(t, c)
		case r.St == rOK && r.Rec == cl.New && x.sc.Append && x.sc.Variant != AppendCompleteUntouched:
			// Q holds this write, copied by a reader's completion,
			// possibly from P's append before its touch: with P's old
			// life. Touch it with T before the ack; gone: missing, as
			// an NF (the write failover).
			newRound(t, c)
			m := x.send(t, c, cl.Q, opTouch, r.Tok, r.Inc, cl.New)
			m.App = true
			cl.Phase = phWrTouch
		case r.St == rOK && r.Rec == cl.New:
			return x.ack(t, c)
		case r.St == rOK && r.Rec.K == data && r.Rec.E == cl.New.E && r.Rec.P == cl.New.P && r.Rec.Q == cl.New.Q && r.Rec.V <= cl.New.V:
			if x.pSide() {
				// R3′ (v1): re-stamp P first (R0: the completion relies on
				// P holding the write, which a reader's roll-back may
				// take away); Q's CAS, with the token just read, only
				// if that was stored.
				cl.DT2, cl.DI2 = r.Tok, r.Inc
				x.restampP(t, c)
				return ""
			}
			newRound(t, c)
			x.send(t, c, cl.Q, opCAS, r.Tok, r.Inc, cl.New).TTL = x.sessionT(c)
			cl.Phase = phWrCAS
		case x.pSide() && r.St == rOK && r.Rec.K == data && sameConfig(r.Rec, cl.New) && r.Rec.V > cl.New.V:
			// A later record of the write's configuration on Q. The
			// store's row (an implementation note, not in the model
			// before): success, every later record built on the write.
			// R3′ (v1): a reader may have rolled P back and the later
			// records be built on the base: not applied, the writer's
			// own completion never having stored.
			if !cl.Own {
				x.res.LaterNotApplied++
				return x.conflict(t, c)
			}
			return x.endOp(t, c) // ErrOutcomeUnknown
		case r.St == rNotFound || r.St == rTimeout || (r.St == rOK && r.Rec.K == blank):
			// The secondary lost (flush, restart) or silent; lost: the new
			// configuration's third node is empty until R9 (nowit).
			cl.New.NoWit = r.St != rTimeout
			x.writeFailover(t, c)
		case r.St == rOK && r.Rec.K == data && r.Rec.E > cl.New.E:
			return x.overtaken(t, c) // a failover overtook it
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phWrTouch:
		switch cl.R[cl.Q].St {
		case rOK:
			return x.ack(t, c)
		case rGone:
			cl.New.NoWit = true
			x.writeFailover(t, c)
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phWrFoRead:
		w := 3 - cl.P - cl.Q
		r := cl.R[w]
		own := r.St == rOK && r.Rec.K == witness && r.Rec.E == cl.New.E && r.Rec.P == cl.P && r.Rec.Q == cl.Q
		older := r.St == rOK && r.Rec.K == data && r.Rec.E < cl.New.E
		if !own && !older && !(x.sc.Variant == WriteFailoverAny && presentRec(r)) {
			// Anything else may be a newer configuration's record (the
			// first version of this rule, present record enough, lost an
			// acknowledged write to it): ErrOutcomeUnknown
			// (Scope.Overtaken: read what it carries).
			if r.St == rTimeout {
				return x.endOp(t, c)
			}
			return x.overtaken(t, c)
		}
		cl.DT2, cl.DI2 = r.Tok, r.Inc
		cl.DR1 = cl.New
		e := cl.New.E
		if x.sc.Variant != NoPromise {
			e = max(e, r.Rec.E, r.Prom)
		}
		cl.DR1.E, cl.DR1.Q, cl.DR1.Pend = e+1, w, true
		cl.DT = x.sessionT(c) // the write's own T (R3)
		newRound(t, c)
		if x.sc.Variant != NoPromise {
			// P1's fix: promise the new epoch on W first.
			m := x.send(t, c, w, opCAS, r.Tok, r.Inc, r.Rec)
			m.Prom, m.TTL = cl.DR1.E, r.Rem
			cl.Phase = phWrPromise
			return ""
		}
		x.decide(t, c, cl.P, cl.NewTok, cl.NewInc, cl.DR1)
		cl.Phase = phWrFence
	case phWrPromise:
		w := cl.DR1.Q
		if r := cl.R[w]; r.St != rOK {
			if r.definiteFail() {
				return x.overtaken(t, c) // another decision changed W
			}
			return x.endOp(t, c) // ErrOutcomeUnknown: the write is on P
		}
		cl.DT2, cl.DI2 = cl.R[w].Tok, cl.R[w].Inc
		newRound(t, c)
		x.decide(t, c, cl.P, cl.NewTok, cl.NewInc, cl.DR1)
		cl.Phase = phWrFence
	case phWrFence:
		if r := cl.R[cl.P]; r.St != rOK {
			if r.definiteFail() {
				return x.overtaken(t, c) // another decision fenced P
			}
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
		cl.DR2 = cl.DR1
		cl.DR2.Pend = false
		newRound(t, c)
		x.decide(t, c, cl.DR2.Q, cl.DT2, cl.DI2, cl.DR2)
		cl.Phase = phWrCopy
	case phWrCopy:
		if r := cl.R[cl.DR2.Q]; r.St != rOK {
			if r.definiteFail() {
				return x.overtaken(t, c)
			}
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
		x.res.WriteFailovers++
		cl.Q = cl.DR2.Q
		return x.ack(t, c)
	case phWrRestamp:
		// R3′: P's re-stamp stored: CAS Q with the token read; refused:
		// read P; no reply: ErrOutcomeUnknown.
		r := cl.R[cl.P]
		switch {
		case r.St == rOK:
			cl.NewTok, cl.NewInc = r.Tok, r.Inc
			newRound(t, c)
			x.send(t, c, cl.Q, opCAS, cl.DT2, cl.DI2, cl.New).TTL = x.sessionT(c)
			cl.Phase = phWrCAS
		case r.definiteFail():
			x.readOne(t, c, cl.P, phWrRestampRd)
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phWrRestampRd:
		r := cl.R[cl.P]
		switch {
		case r.St == rOK && r.Rec == cl.New && r.Prom <= cl.New.E && cl.Rs == 0:
			// Still the write (a reader's completion of another split
			// re-stamped it): re-stamp it again with the token read.
			cl.Rs++
			cl.NewTok, cl.NewInc = r.Tok, r.Inc
			x.restampP(t, c)
		case r.St == rOK && r.Rec.K == data && sameConfig(r.Rec, cl.New) && r.Rec.Val != cl.New.Val && !cl.Own:
			// P changed within the write's configuration: rolled back
			// by a reader (the proposal: the write was on P only).
			x.res.RolledBackNotApplied++
			return x.conflict(t, c)
		case r.St == rOK && r.Rec.K == data && r.Rec.E > cl.New.E:
			return x.overtaken(t, c) // a failover's fence
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown (a failover's fence: overtaken, not modelled)
		}
	case phWrCAS:
		r := cl.R[cl.Q]
		switch {
		case r.St == rOK:
			return x.ack(t, c)
		case r.St == rExists && cl.Tries == 0:
			cl.Tries++
			x.readOne(t, c, cl.Q, phWrGet)
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phUndo:
		if cl.R[cl.Q].St == rOK {
			return x.conflict(t, c)
		}
		if st := cl.R[cl.Q].St; x.sc.OwnComplete && (st == rExists || st == rStale) {
			// Q changed again: read both copies.
			return x.undoRead(t, c)
		}
		if cl.R[cl.Q].definiteFail() {
			return x.overtaken(t, c) // Q changed: read what it carries
		}
		return x.endOp(t, c) // ErrOutcomeUnknown
	case phOwnGet:
		r := cl.R[cl.P]
		if r.St != rOK || r.Rec != cl.Base || r.Prom > cl.New.E {
			// P does not hold the base (or is promised above the
			// write's epoch: R11.3): no completion. P holding the
			// write itself is kept (held).
			cl.Held = cl.Held || x.showsHeld(cl, r)
			return x.ownFailed(t, c)
		}
		cl.DTX, cl.DIX = r.Tok, r.Inc
		x.ownCAS(t, c, cl.Q, cl.DT2, cl.DI2, phOwnQ)
	case phOwnQ:
		r := cl.R[cl.Q]
		if r.St != rOK {
			return x.ownFailed(t, c)
		}
		cl.DT2, cl.DI2 = r.Tok, r.Inc
		x.ownCAS(t, c, cl.P, cl.DTX, cl.DIX, phOwnP)
	case phOwnP:
		r := cl.R[cl.P]
		if x.sc.RollBack { // (bits only RollBack reads)
			cl.Own = cl.Own || r.St == rOK || !r.definiteFail() && x.sc.Variant != RollBackFarSilent
			cl.PR = cl.PR || r.definiteFail()
		}
		if r.St == rOK || x.sc.Variant == OwnCompleteQOnly {
			if cl.Tries == 0 {
				x.res.OwnCompleted++
			} else {
				x.res.UndoCompleted++
			}
			return x.ack(t, c)
		}
		if cl.Tries == 0 && r.definiteFail() {
			// P certainly does not hold it: the undo may run, with
			// the token of Q's completion (the store's M2).
			cl.NewTok, cl.NewInc = cl.DT2, cl.DI2
		}
		return x.ownFailed(t, c)
	case phUndoRead:
		rp, rq := cl.R[cl.P], cl.R[cl.Q]
		promised := func(r reply) bool { return r.Prom > cl.New.E }
		switch {
		case rp.St == rTimeout || rq.St == rTimeout:
			// A read unanswered ends the store's loop: what the reads
			// before proved decides.
			return x.undoEnd(t, c)
		case rp.St == rOK && rq.St == rOK && rp.Rec == cl.New && rq.Rec == cl.New:
			if promised(rp) || promised(rq) {
				return x.endOp(t, c) // R11.3: ErrOutcomeUnknown
			}
			if x.sc.Append && x.sc.Variant != UndoBothHeldUntouched {
				// P's copy may be a reader's, made from Q's append
				// before its touch: with the old life. Touch P with T
				// before the ack (as phWrTouch touches Q); the touch
				// finding it gone or replaced: ErrOutcomeUnknown.
				newRound(t, c)
				m := x.send(t, c, cl.P, opTouch, rp.Tok, rp.Inc, cl.New)
				m.App = true
				cl.Phase = phUndoTouch
				return ""
			}
			// A reader's completion copied it onto P: applied.
			x.res.UndoBothHeld++
			return x.ack(t, c)
		case x.sc.RollBack && !cl.Own && (x.far(cl, rp) || x.far(cl, rq)):
			// R3′: the session past the write in its configuration, no
			// completion CAS of P sent and not refused: the write was on
			// Q only (L4″), however far: not applied.
			x.res.FarNotApplied++
			return x.conflict(t, c)
		case x.sc.RollBack && !cl.Own && rq.St == rOK && rq.Rec != cl.New && cl.sameEpochData(rq) && cl.sameEpochData(rp):
			// L7″: Q no longer holds the write, both copies hold
			// records of its configuration: it was on Q only, never
			// returned nor built on: not applied, at any version.
			x.res.ReplacedNotApplied++
			return x.conflict(t, c)
		case rp.St == rOK && rp.Rec.K == data && rp.Rec.E > cl.New.E:
			// The store decides this before held (overtaken by a
			// failover): Scope.Overtaken reads what it carries; without
			// it ErrOutcomeUnknown.
			return x.overtaken(t, c)
		case rq.St == rOK && rq.Rec.K == data && sameConfig(rq.Rec, cl.New) && rq.Rec.V <= cl.New.V && rq.Rec != cl.New:
			// Replaced on both copies (the store: a conflict): not
			// modelled, ErrOutcomeUnknown.
			return x.endOp(t, c)
		}
		// (The store's answers by the ancestors, built on since or on
		// another write, are not modelled: the model keeps none, so a
		// later record of the configuration is past what they tell.)
		cl.Far = cl.Far || cl.later(rp) || cl.later(rq)
		cl.Held = cl.Held || x.showsHeld(cl, rp)
		switch {
		case rq.St != rOK || rq.Rec != cl.New:
			// Q no longer holds the write: the store's loop ends.
			return x.undoEnd(t, c)
		case rp.St == rOK && rp.Rec == cl.Base && !promised(rq) && cl.PR:
			// A completion CAS of P was refused (a reader's roll-back,
			// a competitor, a fence): do not complete again (rv-roll
			// M4), undo, Q's CAS with the token just read.
			x.res.UndoneAfterRefused++
			cl.NewTok, cl.NewInc = rq.Tok, rq.Inc
			x.undo(t, c)
			return ""
		case rp.St == rOK && rp.Rec == cl.Base && !promised(rq):
			// The split a reader's R4.4 completes to this write:
			// complete it, Q's CAS with the token just read.
			x.ownComplete(t, c, rq.Tok, rq.Inc)
			return ""
		}
		return x.ownFailed(t, c) // read again
	case phOvRead:
		return x.overtakenRead(t, c)
	case phOvTouch:
		d := cl.DR2
		if cl.R[d.P].St != rOK || cl.R[d.Q].St != rOK {
			// A copy gone or replaced: ErrOutcomeUnknown.
			x.res.OvertakenAt[cl.OvAt][OvUnknown]++
			return x.endOp(t, c)
		}
		x.res.OvertakenAt[cl.OvAt][OvApplied]++
		return x.ack(t, c)
	case phUndoTouch:
		if cl.R[cl.P].St != rOK {
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
		x.res.UndoBothHeld++
		return x.ack(t, c)
	}
	return ""
}

// overtaken (Scope.Overtaken, docs/replication.md §17): client c's write
// was overtaken by another process's decision; read all three nodes and
// answer from what a decision of a greater epoch carries (overtakenRead).
// Without Scope.Overtaken: ErrOutcomeUnknown.
func (x *explorer) overtaken(t *state, c int) string {
	if !x.sc.Overtaken {
		return x.endOp(t, c)
	}
	x.res.OvertakenAt[t.C[c].Phase][OvRounds]++
	t.C[c].OvAt = t.C[c].Phase
	newRound(t, c)
	for n := range uint8(numNodes) {
		x.send(t, c, n, opGet, 0, 0, Rec{})
	}
	t.C[c].Phase = phOvRead
	return ""
}

// overtakenRead answers an overtaken write from its read of all three
// nodes (Scope.Overtaken): applied when an established data record of a
// greater epoch carries it (holds its value at its version, or a value
// built on it: the model's values are unique and its tree of values
// stands for Ancestors), once that configuration's two copies are
// touched with T when writes are appends (rvcarry M5); not applied when
// an established one is not built on it and the other copy of its
// configuration holds a record of it not built on it either; else
// ErrOutcomeUnknown. A pending record (a fence) never shows the write
// applied (rvcarry B1): only OvertakenPending takes it.
func (x *explorer) overtakenRead(t *state, c int) string {
	cl := &t.C[c]
	w := cl.New
	greater := func(r reply) bool { return r.St == rOK && r.Rec.K == data && r.Rec.E > w.E }
	for n := range numNodes {
		r := cl.R[n]
		if !greater(r) || !t.anc(w.Val, r.Rec.Val) || r.Rec.Pend && x.sc.Variant != OvertakenPending {
			continue
		}
		if x.sc.Append && x.sc.Variant != OvertakenNoTouch {
			// Touch the decision's copies with T before the ack: a
			// decision taken from an append before its touch carries
			// the old life.
			d := r.Rec
			cl.DR2 = d
			newRound(t, c)
			for _, k := range [2]uint8{d.P, d.Q} {
				m := x.send(t, c, k, opTouch, cl.R[k].Tok, cl.R[k].Inc, w)
				m.App = true
			}
			cl.Phase = phOvTouch
			return ""
		}
		x.res.OvertakenAt[cl.OvAt][OvApplied]++
		return x.ack(t, c)
	}
	for n := range numNodes {
		r := cl.R[n]
		if !greater(r) || r.Rec.Pend || t.anc(w.Val, r.Rec.Val) {
			continue
		}
		if uint8(n) != r.Rec.P && uint8(n) != r.Rec.Q {
			continue // stale data on its configuration's third node
		}
		o := cl.R[r.Rec.P+r.Rec.Q-uint8(n)]
		if o.St == rOK && o.Rec.K == data && sameConfig(o.Rec, r.Rec) && !t.anc(w.Val, o.Rec.Val) {
			x.res.OvertakenAt[cl.OvAt][OvConflicts]++
			return x.conflict(t, c)
		}
	}
	x.res.OvertakenAt[cl.OvAt][OvUnknown]++
	return x.endOp(t, c) // ErrOutcomeUnknown
}

// undo sends R3's undo: Q, with the token in NewTok, back to the base.
func (x *explorer) undo(t *state, c int) {
	cl := &t.C[c]
	newRound(t, c)
	x.send(t, c, cl.Q, opCAS, cl.NewTok, cl.NewInc, cl.Base).TTL = cl.BRem
	cl.Phase = phUndo
}

// ownComplete starts the writer's own completion (Scope.OwnComplete, the
// store's completeOwn): read P; Q's CAS will carry tok, inc.
func (x *explorer) ownComplete(t *state, c int, tok, inc uint8) {
	cl := &t.C[c]
	cl.DT2, cl.DI2 = tok, inc
	newRound(t, c)
	x.send(t, c, cl.P, opGet, 0, 0, Rec{})
	cl.Phase = phOwnGet
}

// ownCAS sends one of the writer's own completion's CASes: node n to the
// write, with the token tok, inc and the write's own T; phase next.
func (x *explorer) ownCAS(t *state, c int, n, tok, inc, next uint8) {
	newRound(t, c)
	x.send(t, c, n, opCAS, tok, inc, t.C[c].New).TTL = x.sessionT(c)
	t.C[c].Phase = next
}

// ownFailed: the writer's own completion did not store both copies:
// before the undo (Tries 0), undo; in the undo's read loop, read again.
func (x *explorer) ownFailed(t *state, c int) string {
	if t.C[c].Tries == 0 {
		x.undo(t, c)
		return ""
	}
	return x.undoRead(t, c)
}

// undoRead sends the next round of the undo's reads of both copies, or
// answers ErrOutcomeUnknown once undoReads rounds were read.
func (x *explorer) undoRead(t *state, c int) string {
	cl := &t.C[c]
	if cl.Tries >= undoReads {
		return x.undoEnd(t, c)
	}
	cl.Tries++
	x.res.UndoReadRounds++
	newRound(t, c)
	x.send(t, c, cl.P, opGet, 0, 0, Rec{})
	x.send(t, c, cl.Q, opGet, 0, 0, Rec{})
	cl.Phase = phUndoRead
	return ""
}

// undoEnd ends the undo's read loop (Q no longer holds the write, a read
// got no reply, or the rounds were spent): a read of P showed P holding
// the write (Held) and a read of the loop a later record of its
// configuration (Far): acknowledged, applied and built on since (the
// store's far && held); else ErrOutcomeUnknown.
func (x *explorer) undoEnd(t *state, c int) string {
	if cl := &t.C[c]; cl.Held && cl.Far {
		x.res.UndoHeldLater++
		return x.ack(t, c)
	}
	return x.endOp(t, c)
}

// showsHeld reports whether r, a read of P, shows P holding the write of
// cl (the store's primaryShows, seenHeld, without ancestors): the write
// itself, not promised above its epoch. HeldAnyRecord: any established
// data record of its configuration at its version or above.
func (x *explorer) showsHeld(cl *client, r reply) bool {
	if r.St != rOK || r.Prom > cl.New.E {
		return false
	}
	if x.sc.Variant == HeldAnyRecord {
		return r.Rec.K == data && !r.Rec.Pend && sameConfig(r.Rec, cl.New) && r.Rec.V >= cl.New.V
	}
	return r.Rec == cl.New
}

// readOne starts a round of client c that reads node n alone; phase next.
func (x *explorer) readOne(t *state, c int, n, next uint8) {
	newRound(t, c)
	x.send(t, c, n, opGet, 0, 0, Rec{})
	t.C[c].Phase = next
}

// restampP sends R3′'s re-stamp of P (Scope.RollBack): the write, with the
// token in NewTok (its store's, or the last re-stamp's), its own expiry.
func (x *explorer) restampP(t *state, c int) {
	cl := &t.C[c]
	newRound(t, c)
	m := x.send(t, c, cl.P, opCAS, cl.NewTok, cl.NewInc, cl.New)
	m.TTL = x.sessionT(c)
	x.setLife(m, lifeKeep)
	cl.Phase = phWrRestamp
}

// far reports whether r, read by the undo's loop, shows the session past
// cl's write (Scope.RollBack's far "not applied"): a data record of its
// configuration at a later version; RollBackFarAnyEpoch: or of a greater
// epoch.
func (x *explorer) far(cl *client, r reply) bool {
	return cl.later(r) || x.sc.Variant == RollBackFarAnyEpoch && r.St == rOK && r.Rec.K == data && r.Rec.E > cl.New.E
}

// sameEpochData reports whether r is a data record of the configuration
// of cl's write (L7″'s "of the same epoch").
func (cl *client) sameEpochData(r reply) bool {
	return r.St == rOK && r.Rec.K == data && sameConfig(r.Rec, cl.New)
}

// pSide: proposal v1's rows of R3's "P stored, Q refused" and its
// roll-back of P-ahead splits (Scope.RollBack with RollBackPSide).
func (x *explorer) pSide() bool { return x.sc.RollBack && x.sc.Variant == RollBackPSide }

// later reports whether r is a data record of the configuration of cl's
// write at a later version (the store's far: the model keeps no
// ancestors, so none tells whether it was built on the write).
func (cl *client) later(r reply) bool {
	return r.St == rOK && r.Rec.K == data && sameConfig(r.Rec, cl.New) && r.Rec.V > cl.New.V
}

// newNonce (variant RestampNewNonce): a completion's re-stamp gets a new
// nonce; the copy keeps the identity read.
func (x *explorer) newNonce(t *state, res *resolution) {
	if x.sc.Variant == RestampNewNonce && res.complete {
		t.Nonces++
		res.rec1.Non = t.Nonces
	}
}

// writeFailover continues a write stored on the primary whose secondary
// is lost or silent as a failover (R3, review-2 M3): read the third node;
// if it holds the witness of the write's configuration, or data of an
// older epoch, fence the primary (its own write, the
// next epoch, {P, third}, pending), then copy it to the third node. The
// write succeeds when both are stored, and is unknown otherwise.
func (x *explorer) writeFailover(t *state, c int) {
	newRound(t, c)
	x.send(t, c, 3-t.C[c].P-t.C[c].Q, opGet, 0, 0, Rec{})
	t.C[c].Phase = phWrFoRead
}

func (x *explorer) sendSecond(t *state, c int) {
	cl := &t.C[c]
	if cl.DAdd {
		x.setLife(x.send(t, c, cl.DY, opAdd, 0, 0, cl.DR2), cl.DL)
	} else {
		x.setLife(x.decide(t, c, cl.DY, cl.DT2, cl.DI2, cl.DR2), cl.DL)
	}
}

// decide sends one of a decision's CASes (fence, new copy, completion,
// re-stamp, witness). The protocol gives each the remaining TTL of the
// state it copies; the variant InternalNoTTL stores it without one.
func (x *explorer) decide(t *state, c int, n, tok, inc uint8, rec Rec) *msg {
	m := x.send(t, c, n, opCAS, tok, inc, rec)
	m.NoTTL = x.sc.Variant == InternalNoTTL
	if x.sc.Timed {
		m.TTL = t.C[c].DT
		if rec.K == witness {
			m.TTL = x.witnessTTL(c)
		}
	}
	return m
}

// fenceBlanks starts a round of client c that re-stamps each node of
// fence with the blank its last read returned there (its token, its
// remaining TTL): R4.1's fence before a "not found" (review-ballot m4),
// and before a burial (D3′).
func (x *explorer) fenceBlanks(t *state, c int, fence [numNodes]bool) {
	read := t.C[c].R
	newRound(t, c)
	for n := range uint8(numNodes) {
		if fence[n] {
			x.decide(t, c, n, read[n].Tok, read[n].Inc, Rec{K: blank}).TTL = read[n].Rem
		}
	}
}

// clearNoWit starts a round of client c that CASes both copies of d's
// configuration to d (nowit cleared), each with the token in TokP/IncP or
// TokQ/IncQ and keepExp: R9's adoption, and R9's clear after its witness
// (R9ClearsNoWit).
func (x *explorer) clearNoWit(t *state, c int, d Rec) {
	cl := &t.C[c]
	newRound(t, c)
	for _, n := range [2]uint8{d.P, d.Q} {
		tok, inc := cl.TokP, cl.IncP
		if n == d.Q {
			tok, inc = cl.TokQ, cl.IncQ
		}
		m := x.decide(t, c, n, tok, inc, d)
		x.setLife(m, lifeMax+d.P+d.Q-n) // keepExp, as R9's re-stamps
	}
}

// rules are the optional steps of the protocol the scope turns on.
func (x *explorer) rules() rules {
	return rules{repair: x.sc.Repair, oldWitness: x.sc.OldWitness, adopt: x.sc.AdoptWitness && x.sc.Repair, nowitRead: x.sc.NoWitRead}
}

// rulesAt is rules for a decision in state t: with Scope.RollBack, R4.4′
// tells a plain split by t's tree of values.
func (x *explorer) rulesAt(t *state) rules {
	o := x.rules()
	if x.sc.RollBack {
		o.parent = &t.Parent
	}
	return o
}

// sessionT is client c's session timeout in ticks (timed scopes; 0: the
// model's items carry no length).
func (x *explorer) sessionT(c int) uint8 {
	if !x.sc.Timed {
		return 0
	}
	return x.sc.SessionT[c]
}

// witnessTTL is the TTL every witness write or touch gives (review-3
// M2): TW = 2 × MaxTimeout, the same for every call; before M2 it was
// twice the caller's T.
func (x *explorer) witnessTTL(c int) uint8 {
	if !x.sc.Timed {
		return 0
	}
	if x.sc.Variant == WitnessTTLFromT {
		return 2 * x.sc.SessionT[c]
	}
	return 2 * x.sc.MaxT
}

// canTick: time may move on only between calls, and when no command in
// flight is MaxT old (it must run first: a longer delay is a fault, not
// modelled here).
func (x *explorer) canTick(s *state) bool {
	// A tick is long against a call (minutes against the milliseconds of
	// a call's round trips, bounded by the anomaly cap): time moves on only
	// between calls; commands left in flight age.
	for c := range s.C {
		if p := s.C[c].Phase; p != phIdle && p != phDone {
			return false
		}
	}
	for i := range s.M {
		if s.M[i].Used && s.M[i].Age >= max(x.sc.MaxDelay, 1) {
			return false
		}
	}
	for n := range s.N {
		if s.N[n].Item.K != absent {
			return true
		}
	}
	return false // nothing left to expire: a tick changes nothing
}

// tick is one unit of time: every command in flight ages, every item's
// TTL runs down, and items reaching 0 expire. A witness that expires
// while a data copy of its configuration lives on is a violation: no
// fault was needed (section 2.3, review-3 M2).
func (x *explorer) tick(t *state) string {
	for i := range t.M {
		if t.M[i].Used {
			t.M[i].Age++
		}
	}
	var gone [numNodes]bool
	for n := range t.N {
		if nd := &t.N[n]; nd.Item.K != absent && nd.Rem > 0 {
			nd.Rem--
			gone[n] = nd.Rem == 0
		}
	}
	for n := range t.N {
		w := t.N[n].Item
		if !gone[n] || w.K != witness || t.Deadline {
			continue // (once a data copy expired the session is ending)
		}
		for _, d := range [2]uint8{w.P, w.Q} {
			if it := t.N[d].Item; !gone[d] && it.K == data && it.E == w.E && it.P == w.P && it.Q == w.Q {
				return fmt.Sprintf("the witness on node %d expired while node %d's data copy of its configuration lives %d more ticks, with no fault", n, d, t.N[d].Rem)
			}
		}
	}
	for n := range t.N {
		if gone[n] {
			if t.N[n].Item.K == data {
				t.Deadline = true
			}
			t.N[n].Item, t.N[n].Tok = Rec{}, 0
			t.N[n].noPromise()
		}
	}
	return ""
}

// advanceAdd is Add (docs/replication.md, R8): from the not-found read's
// three blanks, CAS the witness node's blank, then the secondary's, then
// the primary's, each only if the one before was stored; a refusal undoes
// the stored ones back to blanks: all undone is "not applied", anything
// else unknown. AddParallel is the first version (review-1, F2).
func (x *explorer) advanceAdd(t *state, c int) string {
	cl := &t.C[c]
	w := cl.AW
	p, q := (w+1)%numNodes, (w+2)%numNodes
	if p > q {
		p, q = q, p
	}
	switch cl.Phase {
	case phCrRead:
		for n := range numNodes {
			if cl.R[n].St != rOK {
				if cl.AS && cl.R[w].St == rTimeout && cl.R[p].St == rOK && cl.R[p].Rec.K == blank &&
					cl.R[q].St == rOK && cl.R[q].Rec.K == blank {
					// The suspected candidate gave no reply within
					// Timeout: the two-record creation (R8).
					if v := x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Add", c)); v != "" || t.Halt {
						return x.endOpOr(t, c, v)
					}
					x.newCreation(t, c, p, q)
					x.noWitCreation(t, c, p, q)
					return ""
				}
				return x.endOp(t, c) // ErrUnavailable: nothing was written
			}
		}
		res := resolve(x.sc.Variant, x.rules(), &cl.R)
		if res.kind != resNotFound {
			return x.endOp(t, c) // ErrExists (or unavailable): nothing written
		}
		lone := -1 // Add over a lone witness (R8): its node
		if x.sc.Variant != AddParallel {
			// Creation writes only onto blanks: a witness is a record
			// someone relies on (R0), even when no data answered; the
			// one exception is a lone witness with blanks on the other
			// two, taken over below.
			for n := range numNodes {
				switch k := cl.R[n].Rec.K; {
				case k == witness && lone < 0:
					lone = n
				case k != blank:
					return x.endOp(t, c) // ErrExists: nothing written
				}
			}
		}
		if v := x.notFound(t, cl.Fresh, cl.Floor, fmt.Sprintf("c%d's Add", c)); v != "" || t.Halt {
			return x.endOpOr(t, c, v)
		}
		x.newCreation(t, c, p, q)
		newRound(t, c)
		if lone >= 0 {
			x.res.Takeovers++
			if x.sc.Variant != TakeoverNoPoison {
				// First re-stamp ("poison") both blanks with the read's
				// tokens, in parallel: the lone witness's creator, its
				// data CASes carrying the old blank tokens, can never
				// store them afterwards. Only once both are stored, the
				// lone witness to a blank (its read token); then R8 as
				// from three blanks, with the three fresh tokens
				// (review-lonewit B1: no data CAS of the Add targets a
				// present record, which a reader's R4.4 completion could
				// take first).
				for n := range uint8(numNodes) {
					if int(n) != lone || x.sc.Variant == TakeoverBlankConcurrent {
						x.put(t, c, n, opCAS, cl.BT[n], cl.BI[n], Rec{K: blank})
					}
				}
				cl.Phase = phCrPoison
				return ""
			}
		}
		if x.sc.Variant == AddParallel {
			cl.Base = cl.R[q].Rec
			cl.TokP, cl.IncP, cl.TokQ, cl.IncQ = cl.BT[p], cl.BI[p], cl.BT[q], cl.BI[q]
			x.send(t, c, w, opCAS, cl.BT[w], cl.BI[w], Rec{K: witness, P: p, Q: q}).Orphan = true
			t.C[c].Sent[w] = false
			x.send(t, c, p, opCAS, cl.TokP, cl.IncP, cl.New)
			x.send(t, c, q, opCAS, cl.TokQ, cl.IncQ, cl.New)
			cl.Phase = phWr
			return ""
		}
		x.put(t, c, w, opCAS, cl.BT[w], cl.BI[w], x.addWitness(cl, p, q))
		cl.Phase = phCrW
	case phCrW, phCrQ, phCrP:
		// The witness first: it is the creation's claim on the key; then
		// the secondary, then the primary.
		n, next := w, q
		if cl.Phase == phCrQ {
			n, next = q, p
		} else if cl.Phase == phCrP {
			n = p
		}
		r := cl.R[n]
		switch {
		case r.St != rOK && cl.RR > 0:
			// A CAS sent again was refused or got no reply: the first
			// may have been stored meanwhile.
			return x.reread(t, c, n)
		case r.St == rOK:
			cl.RR = 0
			cl.Stored[n], cl.ST[n], cl.SI[n] = true, r.Tok, r.Inc
			if cl.Phase == phCrP {
				return x.ack(t, c)
			}
			newRound(t, c)
			x.put(t, c, next, opCAS, cl.BT[next], cl.BI[next], cl.New)
			cl.Phase++
		case r.St == rTimeout && cl.Phase == phCrW && cl.AS:
			// No reply from the suspected candidate to the witness CAS
			// within Timeout: the two-record creation (R8); a late
			// witness CAS stored after all is this configuration's.
			x.noWitCreation(t, c, p, q)
		case r.definiteFail():
			if cl.Phase == phCrW {
				return x.conflict(t, c) // nothing was stored
			}
			newRound(t, c)
			for m := range uint8(numNodes) {
				if cl.Stored[m] {
					x.put(t, c, m, opCAS, cl.ST[m], cl.SI[m], Rec{K: blank})
				}
			}
			cl.Phase = phCrUndo
		case r.St == rTimeout && x.sc.Reread && !cl.Susp[n]:
			return x.reread(t, c, n)
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phCrReread:
		n, step := cl.RN, cl.RS
		want := cl.New
		if step == phCrW {
			want = x.addWitness(cl, p, q)
		}
		r := cl.R[n]
		switch {
		case r.St == rOK && r.Rec == want:
			// Stored: go on as if its reply had said so.
			x.res.Rereads++
			cl.Phase = step
			cl.R[n] = r
			cl.RR = 0
			return x.advanceAdd(t, c)
		case r.St == rOK && r.Tok == cl.BT[n] && r.Inc == cl.BI[n]:
			// The same item under the same token: send it again.
			x.res.Resends++
			newRound(t, c)
			x.put(t, c, n, opCAS, cl.BT[n], cl.BI[n], want)
			cl.Phase = step
		case x.sc.Variant == RereadAnyToken && r.St == rOK && r.Rec.K != data && r.Rec != want:
			x.res.Resends++
			cl.BT[n], cl.BI[n] = r.Tok, r.Inc
			newRound(t, c)
			x.put(t, c, n, opCAS, cl.BT[n], cl.BI[n], want)
			cl.Phase = step
		default:
			return x.endOp(t, c) // ErrOutcomeUnknown
		}
	case phCrUndo:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				return x.endOp(t, c) // ErrOutcomeUnknown
			}
		}
		return x.conflict(t, c)
	case phCrPoison:
		for n := range numNodes {
			if cl.Sent[n] && cl.R[n].St != rOK {
				// Refused (the creator's CAS won: a retry sees its
				// record) or no reply: only blanks were re-stamped,
				// nothing of this Add written.
				return x.conflict(t, c)
			}
		}
		sent, lone := 0, uint8(0)
		for n := range uint8(numNodes) {
			if cl.Sent[n] {
				sent++
				cl.BT[n], cl.BI[n] = cl.R[n].Tok, cl.R[n].Inc
			} else {
				lone = n
			}
		}
		if sent == 2 && x.sc.Variant != TakeoverInPlace {
			// Both re-stamps stored: now the lone witness to a blank
			// (its read token). Refused or no reply: as above.
			newRound(t, c)
			x.put(t, c, lone, opCAS, cl.BT[lone], cl.BI[lone], Rec{K: blank})
			return ""
		}
		newRound(t, c)
		x.put(t, c, w, opCAS, cl.BT[w], cl.BI[w], x.addWitness(cl, p, q))
		cl.Phase = phCrW
	}
	return ""
}

// addWitness is the witness an Add writes: with Reread it carries the
// Add's value as its identity.
func (x *explorer) addWitness(cl *client, p, q uint8) Rec {
	r := Rec{K: witness, P: p, Q: q}
	if x.sc.Reread {
		r.Val = cl.New.Val
	}
	return r
}

// reread reads candidate n again for the Add step in progress (at most
// twice in one step; then the outcome stays unknown).
func (x *explorer) reread(t *state, c int, n uint8) string {
	cl := &t.C[c]
	if cl.RR >= 2 {
		return x.endOp(t, c) // ErrOutcomeUnknown
	}
	if cl.Phase != phCrReread {
		cl.RS = cl.Phase
	}
	cl.RR++
	cl.RN = n
	newRound(t, c)
	x.put(t, c, n, opGet, 0, 0, Rec{})
	cl.Phase = phCrReread
	return ""
}

// newCreation sets up an Add's record from the not-found read's blanks.
func (x *explorer) newCreation(t *state, c int, p, q uint8) {
	cl := &t.C[c]
	nv := value(c, cl.Pc)
	t.Parent[nv] = 0
	cl.New = Rec{K: data, Val: nv, P: p, Q: q}
	for n := range numNodes {
		cl.BT[n], cl.BI[n] = cl.R[n].Tok, cl.R[n].Inc
	}
	cl.Stored = [numNodes]bool{}
}

// noWitCreation is R8's two-record creation (review-3 M1): the suspected
// candidate gave no reply within Timeout, so the record, marked nowit, goes
// to the secondary, then the primary; the key goes on the process's
// witness-less list (the scope's Scan steps run R9 for it).
func (x *explorer) noWitCreation(t *state, c int, p, q uint8) {
	cl := &t.C[c]
	cl.New.NoWit = x.sc.Variant != NoWitUnmarked
	t.ExcOpen = true
	x.res.NoWitCreations++
	newRound(t, c)
	x.put(t, c, q, opCAS, cl.BT[q], cl.BI[q], cl.New)
	cl.Phase = phCrQ
}
