package replmodel

// This file is the replication protocol of docs/replication.md as the
// model runs it: the common read and write, the anomaly read's resolution
// and the decisions it makes (completion and failover, fence first), and
// the broken variants.

// Variant selects the protocol, or a deliberately broken version of it.
type Variant int

const (
	// Correct is the protocol of docs/replication.md: two data copies and a
	// witness, content written only by CAS, a decision fenced on two present
	// records, the fence before the new copy.
	Correct Variant = iota
	// NoWitness is REPLICATION_SKETCH.md 2.1: two copies and an epoch; the
	// third node holds nothing, a failover inserts the new copy there.
	NoWitness
	// InsertContent is 2.2: the protocol, but a copy found absent or blank
	// is filled by an insert (ms ME) of content instead of refused.
	InsertContent
	// ParallelFailover is 2.4: a decision writes its new copy in parallel
	// with its fence.
	ParallelFailover
	// NoUndo: a write that lost at the primary but landed on the secondary
	// reports "not applied" without undoing its secondary copy.
	NoUndo
	// CompleteNoFence: a reader completes a split by copying the chosen
	// record to the other copy without first re-writing (fencing) it where
	// it found it.
	CompleteNoFence
	// R9Unfenced is review-1's F1: the witness is re-created on a blank by
	// one CAS, without first re-stamping the two data copies it vouches
	// for (the first version of R9).
	R9Unfenced
	// AddParallel is review-1's F2: Add CASes the three blanks in
	// parallel, the primary decides a split, and the winner completes the
	// secondary (the first version of Add).
	AddParallel
	// InternalNoTTL is review-1's F3b: the protocol's own writes (fence,
	// new copy, completion, witness) are stored without an expiry.
	InternalNoTTL
	// WitnessUntouched is revision 2's R3 (review-2 B1): a write sets the
	// data copies' TTL and does not touch the witness, so with writes
	// only the witness's TTL runs out before its data's, with no fault.
	WitnessUntouched
	// WriteFailoverAny is the first version of review-2 M3's fix: a write
	// stored on its primary, its secondary lost or silent, fails over to
	// the third node whatever present record it holds, even a newer
	// configuration's (the model found the lost write).
	WriteFailoverAny
	// RestampNewNonce is revision 2's re-stamp (review-2 M2): a completion
	// re-stamps its source with a new nonce and copies the old identity to
	// the other copy, so the two never hold the same record.
	RestampNewNonce
	// LoneCopyUnavailable is revision 2's R4.1 (review-3 B1): a lone data
	// record whose two peers answer absent or blank is not "not found"
	// but ErrUnavailable, so the stale third copy a failover leaves, kept
	// alive by every R2/R3 touch, blocks the session after its expiry.
	LoneCopyUnavailable
	// CreationFailoverUnmarked is R7 before the fix: a failover from a
	// creation's record (E0, V0) whose other copy was silent is not
	// marked nowit, though that copy may hold only the Add's blank (the
	// Add's CAS there timed out): one flush of a copy then leaves one data
	// record and two empties, read as not found: a lost write.
	CreationFailoverUnmarked
	// NoWitUnmarked is R8's two-record creation without the nowit mark:
	// one flush leaves a lone copy that R4.1 takes for expired.
	NoWitUnmarked
	// WitnessTTLFromT is the witness TTL before review-3 M2: every
	// witness touch gives 2 × the caller's T, so a cold process's shorter
	// guessed T, its touch run after a warm writer's, cuts the witness
	// below its data's TTL with no fault.
	WitnessTTLFromT
	// NoBury is R4.1 before review-4 D3: the lone data copy with two
	// empty peers is answered "not found" and left in place, so a late
	// R9 witness CAS on a blank peer gives it a second present record and
	// the session comes back (review-4 B2).
	NoBury
	// LapseFree is the data touches before review-4 D1 (the caller's T,
	// possibly a guess): a data copy may lapse while the session is live
	// with no fault (Scope.Lapse charges it to the timeout budget).
	LapseFree
	// BuryCreation is review-4 D3 as first stated: R4.1 buries any lone
	// copy, a creation's record (E0, V0) included, so a read overlapping
	// an Add whose witness was flushed buries the secondary the Add
	// relies on, and the acknowledged session is lost.
	BuryCreation
	// TakeoverNoPoison is R8's Add over a lone witness without its first
	// step: the Add CASes the lone witness (its read token) and then the
	// blanks, without first re-stamping the blanks, so the paused creator
	// of that witness, whose data CASes carry the old blank tokens, can
	// win the secondary, make the takeover undo its witness to a blank,
	// and then complete its primary: a session acknowledged with no
	// witness, which one flush of a data copy loses.
	TakeoverNoPoison
	// RereadAnyToken is the Add's read-again (Scope.Reread) sending its
	// CAS again whenever the candidate still holds an item of the kind it
	// read (a blank, or the lone witness), with the token just read: a
	// blank re-stamped by a takeover meanwhile is then overwritten, so
	// the takeover's fence no longer stops this Add.
	RereadAnyToken
	// TakeoverInPlace is R8's Add over a lone witness as first built: after
	// the re-stamps it CASes its record over the lone witness with the
	// witness's read token. With the witness on the Add's primary, a
	// reader completes the Add's creation there first (R4.4), the Add's
	// primary CAS is refused and it undoes its witness under two copies
	// of its record, which the reader returned: one flush then buries an
	// acknowledged write (review-lonewit B1).
	TakeoverInPlace
	// TakeoverBlankConcurrent blanks the lone witness in parallel with the
	// two re-stamps, not after them: a takeover whose re-stamp is refused
	// (another Add's record there) may already have blanked that Add's
	// witness, leaving an acknowledged session with one copy.
	TakeoverBlankConcurrent
	// NoPromise is R7 before P1's fix: a failover's epoch is its base's
	// plus one and nothing is promised on w before the fence, so a
	// decision that cannot see another's fence (a wrong suspicion) may
	// take a lower epoch than a fence already made, and that fence, left
	// pending with its copy refused, outranks what the later decision
	// establishes (review-silentp P1: an observed value lost, no fault).
	NoPromise
	// NotFoundUnfenced is R4.1's "not found" before review-ballot m4's
	// fix: a read that counts a blank as empty answers at once, without
	// first re-stamping that blank with its read token, so a witness CAS
	// R9 sent before the read (its reply lost) can still land on the
	// blank afterwards and, with a copy the reader did not hear, revive
	// the session the read reported expired.
	NotFoundUnfenced
	// BuryCreationFenced is R4.1 as store/memcached ran it from review
	// 13e B2 until the sixth session of 2026-11-30 (review-lonewit m4):
	// the two empty peers re-stamped first, then any lone copy buried, a
	// creation's record (E0, V0) included. The fence stops an Add in
	// flight, but not every creation's record is an Add's: a reader's
	// R4.4 can establish a creation's configuration whose Add then undoes
	// its witness, and one flush leaves a lone creation's copy of a value
	// already returned, which this variant buries (its cold review, B1:
	// TestLoneWitness's scope of a lone witness of another configuration).
	BuryCreationFenced
	// BuryUnfenced is R4.1's burial of a lone copy other than a
	// creation's as the model ran it until the seventh session of
	// 2026-11-30: the copy is CASed to a blank with no fence on its two
	// empty peers (the store re-stamps them first, D3′). A peer read as
	// a blank before a late CAS made it a copy again, and then read as a
	// blank anew by no one, is still counted empty: c0's late primary
	// CAS lands on a node c1's read found blank, c0's scan fails the
	// session over onto it and returns the value, c1 buries the other
	// copy and the session is lost (TestBuryFenced).
	BuryUnfenced
	// R14Unfenced is R14 (an old lone witness buried by a read that heard
	// all three candidates, none holding data) without its fence: the
	// witness is CASed to a blank with its read token at once, the two
	// blanks not re-stamped first. An Add in flight, its witness stored
	// and its data CASes holding the blanks' tokens, then stores both
	// copies after the burial: a session acknowledged with no witness,
	// which one flush of a copy loses (Scope.OldWitness).
	R14Unfenced
	// AdoptByTouch is R9's adoption of a witness of its configuration that
	// it did not write, before review-r14 B1's fix: nowit is cleared after
	// a touch of the witness (which keeps its token), not a re-stamp, so a
	// burial CAS sent before (R14's, or an Add takeover's) and run late
	// still lands on the adopted witness, and one flush then leaves a lone
	// copy between two blanks (Scope.AdoptWitness).
	AdoptByTouch
	// R9ClearFirst is R9's clear of nowit (Scope.R9ClearsNoWit) made
	// before its witness is stored: the re-stamps of both copies write
	// the record without nowit, as review 4's D4 forbids ("never before").
	// A witness CAS that then gets no reply and is never run leaves an
	// unmarked configuration with nothing on its third node: one flush of
	// a copy, and R4.1 takes the lone copy for expired.
	R9ClearFirst
	// CreationCompletesOverWitness is R4.4 before review-4 N4's fix: a
	// creation's record (E0, V0) on x whose other data candidate y holds
	// a witness (of any configuration: a late R9 witness CAS of an
	// earlier session landed on the Add's primary blank) counts that
	// witness as a present y and completes the creation onto it, so the
	// creator, which cannot tell, may resume it after a Delete (R8's
	// "Open (review-4 N4)"); and R11.3's re-ballot of such a creation
	// over a promised witness is not marked nowit. The Add, its primary
	// CAS refused by that witness, undoes its own witness: one flush of
	// a copy then leaves a lone creation's copy, ErrUnavailable for good
	// (TestCreationOverLateWitness).
	CreationCompletesOverWitness
	// CreationReballotUnmarked is review-4 N4's re-ballot without the
	// nowit mark: the Add's undo blanks the third node, one flush of a
	// copy leaves a lone copy of epoch 1 that R4.1 buries, a value a
	// read returned (TestCreationOverLateWitness).
	CreationReballotUnmarked
	// NoWitFastPath is the store's R2 before review-n4b F2's fix
	// (Scope.NoWitRead): a read whose two copies hold the same record
	// returns it even when it is nowit, before R9 stored its witness; a
	// write built on it is acknowledged, and one flush of a copy leaves a
	// lone nowit copy with an answering, empty third node
	// (TestNoWitReadWaitsForWitness).
	NoWitFastPath
	// NoWitReturnedBeforeR9 is the store's R4.3 before the same fix: a
	// plain reader (not the repair scan) returns a nowit configuration
	// whose third node answered and queues R9 instead of running it
	// (TestNoWitReadWaitsForWitness).
	NoWitReturnedBeforeR9
	// AppendGoneStored is R3's append (Scope.Append) as store/memcached
	// ran it before the fix of the append-at-expiry review's F2
	// (docs/replication-review-appendtouch.md): a copy whose append was stored and whose touch then
	// found the key gone (EN) counts as stored. Both gone: a write
	// acknowledged on a session that is gone; one gone: acknowledged with
	// one live data copy and no fault.
	AppendGoneStored
	// AppendGoneRefused is the first mapping of F2's fix: such a copy
	// counts as refused by NF everywhere in R3's table (P stored and Q
	// gone: the completion; P gone and Q stored: Q undone and
	// ErrCASConflict; both gone: not found). But the appended value was
	// on the copy, unfenced, until it expired: a plain read may have
	// returned it, and a reader's completion may have copied it onto the
	// other copy, so "not applied" (the undo's ErrCASConflict, or a
	// conflict with the other copy refused by EX) is not safe.
	AppendGoneRefused
	// AppendCompleteUntouched is R3's completion as the store runs it
	// (witness_write.go, completeWrite: Q "holds this write" is a
	// success) with appends (Scope.Append): a reader's R4.4 completion
	// that copied P's appended value before P's touch gave Q's copy P's
	// old life (copyExp, or Q's own), and the write is acknowledged with
	// Q never touched: Q expires at the old deadline, and the
	// acknowledged write is left with one copy, with no fault.
	AppendCompleteUntouched
	// AppendStrayStored is F2's fix as first stated in its other half: a
	// touch that answers EN makes the copy gone, but a touch that finds
	// another item (the store's strayed: its CAS is not the append's)
	// counts the copy stored, as before. With R9's repair scopes' reads
	// (mg … N leaves a blank on a miss) a copy that expired after its
	// append is a blank by its touch: not EN, and the write is
	// acknowledged on a session that is gone.
	AppendStrayStored
	// OwnCompleteQOnly is the writer's own completion (Scope.OwnComplete)
	// acknowledging the write once Q's CAS was stored, whatever P's
	// answered: P, holding the base, may take another write instead.
	OwnCompleteQOnly
	// UndoBothHeldUntouched is the undo's read loop as the store runs it
	// (witness_write.go, undo: both copies hold the write, success) with
	// appends (Scope.Append, Scope.OwnComplete): P's copy was made by a
	// reader's R4.4 from Q's append before Q's touch, so it carries the
	// old life (copyExp, or P's own), and the write is acknowledged with
	// P never touched: P expires at the old deadline with no fault, and
	// one flush of Q loses the acknowledged write (as
	// AppendCompleteUntouched for R3's completion).
	UndoBothHeldUntouched
	// FailoverNeedsAnswer fails over only from an answer: a data copy
	// that answered absent or blank is failed over from, a silent one
	// (timed out, or held failed: section 9) makes the anomaly read
	// ErrUnavailable. Safe, and the fault-free final read never sees a
	// silent node, but with one node dead nothing is written: rejected by
	// Scope.FinalWrites (TestFinalWrites).
	FailoverNeedsAnswer
	// HeldAnyRecord is the undo's held (Scope.OwnComplete; the store's
	// primaryShows, seenHeld) taken from any established data record of
	// the write's configuration that a read of P answers at the write's
	// version or above, a competitor of the same version included, not
	// only from the write itself: the undo's read that then finds a later
	// record of the configuration acknowledges a write that is on no
	// chain.
	HeldAnyRecord
	// RollBackPSide (Scope.RollBack) is proposal v1's side of R3's row
	// "P stored, Q refused" (proposal v1, docs/replication-review-rollback.md, rejected
	// by the cold review rv-roll's B1): R4.4′ rolls back every plain
	// split, a P-ahead one (P holding the write, Q its parent) included,
	// and the writer re-stamps P before its completion of Q, answering
	// "not applied" when that re-stamp is refused and P then holds
	// another record of the configuration (Result.RolledBackNotApplied),
	// or when Q holds a later record of it (Result.LaterNotApplied). A
	// reader still copies a write on P alone onto Q through a sibling
	// split (R4.2 prefers the record on its own primary), and a later
	// write is built on it.
	RollBackPSide
	// RollBackUnfenced (Scope.RollBack) is R4.4′'s roll-back without its
	// first CAS: Q, holding the write, is CASed back to the parent with
	// the token the anomaly read returned, P not re-stamped first; the
	// writer's own completion of P, its token read before, may then land
	// after it.
	RollBackUnfenced
	// RollBackFarSilent (Scope.RollBack) answers the undo's "not applied"
	// (FarNotApplied, and the row of Q replaced within the epoch) after a
	// completion CAS of P that got no reply: client.Own counts only a
	// reply that said stored (rv-roll M2: a silent CAS may have landed).
	RollBackFarSilent
	// RollBackFarAnyEpoch (Scope.RollBack) answers the undo's far "not
	// applied" for a data record of a greater epoch too: a failover (R7)
	// or a re-ballot (R11.3) may have carried the write there.
	RollBackFarAnyEpoch
	// OvertakenPending (Scope.Overtaken) counts a *pending* record of a
	// greater epoch that carries the write (its value at its version, or
	// one built on it) as the writer's success, as §17's rule before the
	// cold review rvcarry's B1: a fence shows nothing, since its
	// decision may lose to another (opposite failovers: a failover from
	// Q with the write's parent establishes a greater epoch).
	OvertakenPending
	// OvertakenNoTouch (Scope.Overtaken with Scope.Append) acknowledges
	// from another process's decision without touching its copies with
	// T first (rvcarry M5): a decision taken from an appended copy before
	// the append's touch carries the old life.
	OvertakenNoTouch
)

var variantNames = [...]string{"correct", "2.1-no-witness", "2.2-insert-content", "2.4-parallel-failover", "no-undo", "complete-without-fence",
	"r9-unfenced", "add-parallel", "internal-no-ttl", "witness-untouched", "write-failover-any", "restamp-new-nonce", "lone-copy-unavailable",
	"creation-failover-unmarked", "nowit-unmarked",
	"witness-ttl-from-t", "no-bury", "lapse-free", "bury-creation", "takeover-no-poison", "reread-any-token",
	"takeover-in-place", "takeover-blank-concurrent", "no-promise", "not-found-unfenced", "bury-creation-fenced",
	"bury-unfenced", "r14-unfenced", "adopt-by-touch", "r9-clear-first",
	"creation-completes-over-witness", "creation-reballot-unmarked", "nowit-fast-path", "nowit-returned-before-r9",
	"append-gone-stored", "append-gone-refused", "append-complete-untouched", "append-stray-stored",
	"own-complete-q-only", "undo-both-held-untouched", "failover-needs-answer", "held-any-record",
	"roll-back-p-side", "roll-back-unfenced", "roll-back-far-silent", "roll-back-far-any-epoch",
	"overtaken-pending", "overtaken-no-touch"}

func (v Variant) String() string { return variantNames[v] }

// completesOverWitness: R4.4 completes a creation's record over a witness
// on its other data candidate (the rule before review-4 N4's fix). Two
// older broken variants keep it, since their counterexamples are that
// completion: TakeoverInPlace's (review-lonewit B1; with the re-ballot the
// same schedule ends in R8's stated residual, nowit and exc, which the
// checker excuses) and BuryCreationFenced's (a reader's R4.4 makes a
// creation's configuration whose Add then undoes its witness; with the
// re-ballot no reader makes one: the scope holds).
func (v Variant) completesOverWitness() bool {
	return v == CreationCompletesOverWitness || v == TakeoverInPlace || v == BuryCreationFenced
}

func (v Variant) insertsContent() bool { return v == NoWitness || v == InsertContent }

// Kinds of resolution of an anomaly read.
const (
	resReturn uint8 = iota + 1
	resNotFound
	resUnavailable
	resDecide
)

// resolution is what a process does with the three replies of an anomaly
// read: return b, report not found or unavailable, or decide: CAS rec1 on
// x (the fence) and then write rec2 on y.
type resolution struct {
	kind       uint8
	b          Rec
	x, y       uint8
	rec1, rec2 Rec
	add2       bool // y is written by an insert (broken variants)
	complete   bool // a completion (rec1 is the content x already holds)
	single     bool // one write only: rec1 on x (the witness repair)
	// repair: rec1 (a witness) goes onto x's blank or stale record; the
	// correct protocol first re-stamps the two records in rs, both data
	// copies of b (R9).
	repair bool
	rs     [2]uint8
	// exc: a failover from a creation's record whose other copy was
	// silent, absent or blank (the stated exception's second origin, R8),
	// or a re-ballot of one over a witness (its third, review-4 N4).
	exc bool
	// bury (review-4 D3): rec1 is a blank CASed onto the lone copy x; the
	// answer is "not found" only if that was stored.
	bury bool
	// promise (R7, P1's fix): before the fence, CAS y (the failover's w)
	// with its read token, its own record, and the new epoch promised.
	promise bool
	// reballot (R11.3): the promised y holds b's content (the store's
	// re-ballot gives its copy the longer of both lifetimes when y is a
	// data record).
	reballot bool
	// overWitness (review-4 N4's fix): the re-ballot of a creation's
	// record b whose y holds a witness, instead of R4.4's completion
	// (nowit, and the stated exception's third origin: exc).
	overWitness bool
	// rollBack (R4.4′, Scope.RollBack): a plain split rolled back: x is
	// the copy holding the write's parent (rec1, its re-stamp), y the
	// copy holding the write, CASed to the parent (rec2) only if the
	// re-stamp was stored.
	rollBack bool
	// fence (R4.1, review-ballot m4): a "not found" with a candidate
	// unheard first re-stamps these blanks it counted, each with its read
	// token, and answers only if all were stored (refused or silent: read
	// again). With Scope.WonBlanks a blank the read itself made (mg N's
	// win) is not among them: no process held its token before the read.
	// With bury (D3′): the lone copy's empty peers that answered a
	// blank, each re-stamped with its read token (a blank the read made
	// included, as the store's restampBlanks) before the burial; an absent
	// one needs none (review-d3 M1), save under BuryCreationFenced, whose
	// burial reads again when a peer is absent.
	fence [numNodes]bool
	// oldWit (R14, Scope.OldWitness): a "not found" with every candidate
	// heard, no data and one witness, on node oldWit-1: bury it (CAS to a
	// blank with its read token) once the blanks in fence, re-stamped
	// with their read tokens first, were all stored. The answer is "not
	// found" either way.
	oldWit uint8
	// adopt (R9, Scope.AdoptWitness): b is nowit and its third node x
	// holds the witness of b's configuration (unpromised), which R9 did
	// not write: re-stamp it (its read token, same record), and only if
	// stored clear nowit on both copies (their read tokens).
	adopt bool
}

// rules are the optional steps of the protocol a scope turns on.
type rules struct {
	repair     bool // R9 (Scope.Repair)
	oldWitness bool // R14 (Scope.OldWitness)
	adopt      bool // R9's adoption and nowit clear (Scope.AdoptWitness)
	// nowitOnly (Scope.NoWitRead, a plain reader's anomaly read): R4.3
	// runs R9 only for a nowit record, as the store's plain readers do
	// (the repair scan runs it for every record); never under
	// NoWitReturnedBeforeR9.
	nowitOnly bool
	// nowitRead (Scope.NoWitRead): the N4 re-ballot opens no stated
	// exception (every candidate answered: review-n4b F2).
	nowitRead bool
	// parent (Scope.RollBack, R4.4′): the value each write was computed
	// from, to tell a plain split, which is rolled back when Q is the
	// copy ahead; nil: completed.
	parent *[maxVals]uint8
}

// maxEpoch is the greatest epoch an anomaly read saw: of any data or
// witness record, and of any promise (R7, P1). A new configuration takes
// the next one, so that a decision made after another one's first write
// on a node both touch has the higher epoch.
func maxEpoch(r *[numNodes]reply) uint8 {
	e := uint8(0)
	for i := range r {
		if r[i].St != rOK {
			continue
		}
		if k := r[i].Rec.K; k == data || k == witness {
			e = max(e, r[i].Rec.E)
		}
		e = max(e, r[i].Prom)
	}
	return e
}

// sameConfig reports whether a and b belong to one configuration (epoch,
// primary, secondary).
func sameConfig(a, b Rec) bool { return a.E == b.E && a.P == b.P && a.Q == b.Q }

func presentRec(r reply) bool {
	return r.St == rOK && (r.Rec.K == data || r.Rec.K == witness)
}

func emptyAnswer(r reply) bool {
	return r.St == rNotFound || (r.St == rOK && r.Rec.K == blank)
}

// resolve is the anomaly path (docs/replication.md, R4). With repair, a
// healthy state whose third node answers with a blank re-creates the
// witness there (R9): one CAS on the blank, which the anomaly read's
// get-or-blank left.
func resolve(v Variant, o rules, r *[numNodes]reply) resolution {
	// A plain reader under NoWitReturnedBeforeR9 runs no R9 (it queues
	// the key for the scan).
	repair := o.repair && !(o.nowitOnly && v == NoWitReturnedBeforeR9)
	empty, haveData, top, nData, lone := 0, false, 0, 0, Rec{}
	for i := range r {
		switch {
		case emptyAnswer(r[i]):
			empty++
		case r[i].St == rOK && r[i].Rec.K == data:
			top = max(top, r[i].Rec.rank())
			haveData = true
			nData++
			lone = r[i].Rec
		}
	}
	// R4.1 (review-3 B1): one data record and its two peers absent or
	// blank is not found. A live session has two present records under
	// one fault (R8, R3, R7, R9), so this copy is expired or stale.
	// A creation's record (E0, V0) is excluded: an Add in flight has
	// stored its secondary, not yet its primary, and a read that overlaps
	// it, its witness flushed, sees one copy (review-4 D3's burial would
	// destroy the session the Add then acknowledges: BuryCreation); and a
	// creation's configuration that a reader's R4.4 established, the Add
	// then undoing its witness, is one flush from a lone copy of a value
	// already returned (BuryCreationFenced, which first re-stamps the two
	// empty peers: that stops the Add, not this).
	creation := lone.E == 0 && lone.V == 0 && v != BuryCreation && v != BuryCreationFenced
	if nData == 1 && empty == 2 && !lone.NoWit && !creation && v != NoWitness && v != LoneCopyUnavailable {
		if v == NoBury {
			return resolution{kind: resNotFound}
		}
		// Bury it (review-4 D3): CAS it to a blank with the read's token,
		// so that no late CAS can give it a second present record. First
		// (D3′, the store's fenceEmpties) re-stamp each blank peer with
		// its read token: a late CAS read before (c0's primary CAS onto a
		// blank this read counted) is then refused, or lands first and
		// refuses the re-stamp (read again). A peer read absent is not
		// re-stamped: the store's anomaly read (mg … N30) never answers
		// absent, a miss comes back as a blank it made, whose token no
		// one read before, and the model's plain get stands for that
		// read (review-d3 M1). BuryUnfenced and BuryCreation bury with no
		// fence; BuryCreationFenced re-stamps both peers, an absent one
		// reading again (advance).
		for i := range r {
			if r[i].St == rOK && r[i].Rec == lone {
				res := resolution{kind: resDecide, b: lone, x: uint8(i), rec1: Rec{K: blank}, single: true, bury: true}
				for n := range r {
					switch v {
					case BuryUnfenced, BuryCreation:
					case BuryCreationFenced:
						res.fence[n] = n != i
					default:
						res.fence[n] = n != i && r[n].St == rOK && r[n].Rec.K == blank
					}
				}
				return res
			}
		}
	}
	if !haveData {
		// Not found: two of the three records answer "nothing here". Two
		// copies and no witness can tell only when every node answers.
		if empty >= 2 && (v != NoWitness || empty == numNodes) {
			// Review-ballot m4: with a candidate unheard (it may hold a
			// copy), first re-stamp the blanks counted (with
			// Scope.WonBlanks not those this read made). With all three
			// heard and none data, no late CAS revives the session: only
			// an Add writes data onto a blank (a new session).
			res := resolution{kind: resNotFound}
			if v != NotFoundUnfenced && (r[0].St == rTimeout || r[1].St == rTimeout || r[2].St == rTimeout) {
				for i := range r {
					res.fence[i] = r[i].St == rOK && r[i].Rec.K == blank && !r[i].Won
				}
				return res
			}
			// R14: every candidate heard, none data, one witness, two
			// empties: bury the witness, whatever its age (the store's
			// age condition is for availability only), after
			// re-stamping the blanks (R14Unfenced: none). An absent
			// peer needs no re-stamp: the store's mg … N30 never answers
			// absent (the model's plain get stands for it), and a CAS
			// holding a token read before is refused there (review-d3
			// M1's argument, as D3′'s burial).
			for i := range r {
				if o.oldWitness && empty == 2 && r[i].St == rOK && r[i].Rec.K == witness {
					res.oldWit = uint8(i) + 1
				}
			}
			for i := range r {
				res.fence[i] = res.oldWit != 0 && v != R14Unfenced && r[i].St == rOK && r[i].Rec.K == blank
			}
			return res
		}
		return resolution{kind: resUnavailable}
	}
	holds := func(i int, b Rec) bool { return r[i].St == rOK && r[i].Rec == b }
	// The candidates of the greatest rank (epoch, established, version):
	// prefer the state held by more nodes, then one on its own primary,
	// then the lowest node.
	best, bestScore := -1, -1
	for i := range r {
		if r[i].St != rOK || r[i].Rec.K != data || r[i].Rec.rank() != top {
			continue
		}
		score := 0
		for j := range r {
			if holds(j, r[i].Rec) {
				score += 4
			}
		}
		if r[i].Rec.P == uint8(i) {
			score += 2
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	b := r[best].Rec
	// Ballots (P1's fix): no record of epoch E is written onto an item
	// promised a higher epoch, and none is returned from one. A copy of b
	// promised above b.E makes the decision a re-ballot: b's content, a
	// new epoch above everything read, promised on that copy, then fenced
	// on the other (R7's steps, with the promised copy as w).
	promised := func(i int) bool { return v != NoPromise && r[i].St == rOK && r[i].Prom > b.E }
	reballot := func(x, w uint8) resolution {
		f := b
		f.E, f.P, f.Q, f.Pend = maxEpoch(r)+1, x, w, true
		g := f
		g.Pend = false
		return resolution{kind: resDecide, x: x, y: w, rec1: f, rec2: g, promise: true, reballot: true}
	}
	if !b.Pend && holds(int(b.P), b) && holds(int(b.Q), b) {
		switch {
		case promised(int(b.Q)):
			return reballot(b.P, b.Q)
		case promised(int(b.P)):
			return reballot(b.Q, b.P)
		}
		// R9 (review-3 B1): a blank, or data of a lower rank (a
		// failover's stale copy, a lost fence), on the third node becomes
		// the witness, after both copies are re-stamped; also over a
		// promise (review-ballot M2: the re-stamps make the promising
		// decision's fence, on one of the two copies, impossible to land),
		// and over a witness of another configuration (the store's
		// repairWitness: an Add's witness that a re-ballot of its
		// creation left, review-4 N4; a late R9 witness CAS of another
		// configuration) or a promised one of b's (review-r11 m2).
		if w := 3 - b.P - b.Q; repair && (!o.nowitOnly || b.NoWit) && r[w].St == rOK && (r[w].Rec.K == blank || r[w].Rec.K == data && r[w].Rec.rank() < b.rank() ||
			r[w].Rec.K == witness && (!sameConfig(r[w].Rec, b) || r[w].Prom != 0)) {
			return resolution{kind: resDecide, b: b, x: w, rec1: Rec{K: witness, E: b.E, P: b.P, Q: b.Q}, single: true, repair: true, rs: [2]uint8{b.P, b.Q}}
		}
		// R9's adoption (review-r14 B1): b is nowit (R8's two-record
		// creation, a failover onto an empty y) and its third node holds
		// the witness of b's configuration, unpromised, which this R9
		// did not write (an old one, or a late witness CAS): re-stamp
		// it, then clear nowit on both copies. The store also touches it
		// with TW (witnessOutlives): lengths, not modelled here.
		if w := 3 - b.P - b.Q; repair && o.adopt && !o.nowitOnly && b.NoWit && r[w].St == rOK && r[w].Prom == 0 &&
			r[w].Rec.K == witness && sameConfig(r[w].Rec, b) {
			return resolution{kind: resDecide, b: b, x: w, rec1: r[w].Rec, single: true, adopt: true}
		}
		// Review-n4b F2 (Scope.NoWitRead): a nowit configuration whose
		// third node did not answer is returned without its witness, as
		// R8's two-record creation is made: a candidate that did not
		// answer opens the stated exception (D6).
		return resolution{kind: resReturn, b: b, exc: o.nowitRead && b.NoWit && r[3-b.P-b.Q].St == rTimeout}
	}
	x := b.P
	if !holds(int(x), b) {
		x = b.Q
	}
	if !holds(int(x), b) {
		return resolution{kind: resUnavailable} // b on a node it does not name
	}
	y := b.P + b.Q - x
	w := 3 - b.P - b.Q
	done := b
	done.Pend = false
	// Review-4 N4: a creation's record (E0, V0) whose y holds a witness
	// (of any configuration, promised or not) is not completed over it:
	// y never held this record, and the creator, whose Add never sent
	// its primary CAS, may resume it later (R8), so a completion there
	// makes the creation take effect behind its back. It is re-balloted
	// onto x and y instead (R11's steps: a new identity), marked nowit
	// as R7 marks a creation's failover (review-3 M1: the Add, its
	// primary CAS refused, undoes its witness on the third node, which
	// the re-ballot keeps until R9), and the stated exception's window
	// (exc) opens as for that failover.
	if b.E == 0 && b.V == 0 && !b.Pend && r[y].St == rOK && r[y].Rec.K == witness && !v.completesOverWitness() {
		res := reballot(x, y)
		if v != CreationReballotUnmarked {
			res.rec1.NoWit, res.rec2.NoWit = true, true
		}
		// Review-n4b F2 (Scope.NoWitRead): every candidate answered, so
		// no stated exception opens: readers run R9 before returning
		// the nowit configuration (R2 and R4.3).
		res.exc, res.overWitness = !o.nowitRead, true
		return res
	}
	switch {
	case presentRec(r[y]) && promised(int(y)):
		return reballot(x, y)
	case o.parent != nil && (x == b.Q || v == RollBackPSide) && plainSplit(o.parent, b, r[y]):
		// R4.4′ (Scope.RollBack, proposal v2): a Q-ahead plain split (b
		// on its configuration's secondary, its parent on the primary)
		// is rolled back, never completed: re-stamp y (P), then CAS x
		// (Q) to that parent (its identity and bytes as read from y). A
		// P-ahead one is completed as before (RollBackPSide: rolled back
		// too, proposal v1). Q promised above b's epoch (R11.3, rv-roll
		// m1: the roll-back's CAS would erase the promise): re-balloted,
		// Q as w.
		if promised(int(x)) && v != RollBackPSide {
			return reballot(y, x)
		}
		return resolution{kind: resDecide, x: y, y: x, rec1: r[y].Rec, rec2: r[y].Rec, rollBack: true}
	case presentRec(r[y]):
		// Complete: fence the holder (same content, new token), then copy.
		return resolution{kind: resDecide, x: x, y: y, rec1: r[x].Rec, rec2: done, complete: true}
	case v.insertsContent() && emptyAnswer(r[y]):
		return resolution{kind: resDecide, x: x, y: y, rec1: r[x].Rec, rec2: done, add2: true, complete: true}
	}
	// The other data copy is silent, absent or blank: fail over to the
	// witness node, fence first.
	// A creation's record (E0, V0) whose other copy is silent, absent or
	// blank: an Add abandoned after its secondary (its primary's CAS timed
	// out, no fault) left that copy a blank, so the new configuration may
	// have two present records: marked nowit even when y is silent (R7,
	// review-3 M1), and the stated exception of R8 (exc).
	exc := b.E == 0 && b.V == 0 && !b.Pend && (emptyAnswer(r[y]) || r[y].St == rTimeout)
	e := b.E
	if v != NoPromise {
		e = maxEpoch(r)
	}
	f := Rec{K: data, E: e + 1, V: b.V, Val: b.Val, P: x, Q: w, Pend: true,
		NoWit: emptyAnswer(r[y]) || (exc && v != CreationFailoverUnmarked)}
	g := f
	g.Pend = false
	switch {
	case v == FailoverNeedsAnswer && r[y].St == rTimeout:
	case presentRec(r[w]):
		return resolution{kind: resDecide, x: x, y: w, rec1: f, rec2: g, exc: exc, promise: v != NoPromise}
	case v.insertsContent() && emptyAnswer(r[w]):
		return resolution{kind: resDecide, x: x, y: w, rec1: f, rec2: g, add2: true}
	}
	return resolution{kind: resUnavailable}
}

// plainSplit reports whether y, read beside the copy that holds b, holds
// b's parent (R4.4′, the store's inFlight): an established data record of
// b's configuration one version below b, b computed from it, b established.
func plainSplit(parent *[maxVals]uint8, b Rec, y reply) bool {
	p := y.Rec
	return y.St == rOK && p.K == data && !p.Pend && !b.Pend && sameConfig(p, b) && p.V+1 == b.V && parent[b.Val] == p.Val
}

// Outcomes of a Store call, for the trace.
const (
	outOK = iota
	outNotFound
	outUnavailable
	outConflict
	outUnknown
)

// exec runs one command on its node, atomically.
func exec(nd *node, m *msg) reply {
	switch m.Op {
	case opGetN:
		won := nd.Item.K == absent
		if won {
			nd.Ctr++
			nd.Item, nd.Tok, nd.NoTTL = Rec{K: blank}, nd.Ctr, false
			nd.noPromise()
		}
		return reply{St: rOK, Rec: nd.Item, Tok: nd.Tok, Inc: nd.Inc, Rem: nd.Rem, Prom: nd.prom(), Won: won}
	case opGet, opGetT:
		if nd.Item.K == absent {
			return reply{St: rNotFound, Inc: nd.Inc}
		}
		if m.Op == opGetT && m.TTL != 0 {
			nd.Rem = m.TTL
		}
		return reply{St: rOK, Rec: nd.Item, Tok: nd.Tok, Inc: nd.Inc, Rem: nd.Rem, Prom: nd.prom()}
	case opCAS:
		switch {
		case m.Inc != nd.Inc:
			return reply{St: rStale}
		case nd.Item.K == absent:
			return reply{St: rNotFound}
		case nd.Tok != m.Tok:
			return reply{St: rExists}
		}
	case opAdd:
		if nd.Item.K != absent {
			return reply{St: rNotStored}
		}
	case opTouch: // a touch changes the lifetime only, not the CAS token
		if nd.Item.K == absent {
			return reply{St: rNotFound}
		}
		if m.TTL != 0 {
			nd.Rem = m.TTL
		}
		if nd.Item.K == witness {
			nd.Lag, nd.LagTried = 0, false
		}
		return reply{St: rOK, Rec: nd.Item, Tok: nd.Tok, Inc: nd.Inc}
	}
	nd.Ctr++
	nd.Lag, nd.LagTried = 0, false
	nd.Item, nd.Tok, nd.NoTTL, nd.Rem = m.Rec, nd.Ctr, m.NoTTL, m.TTL
	nd.noPromise()
	if m.Prom != 0 {
		nd.Prom, nd.PromTok, nd.PromInc = m.Prom, nd.Tok, nd.Inc
	}
	return reply{St: rOK, Rec: m.Rec, Tok: nd.Tok, Inc: nd.Inc, Prom: m.Prom}
}
