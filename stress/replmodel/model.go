package replmodel

import (
	"fmt"
	"strings"
)

// numNodes is the session's three rendezvous candidates.
const numNodes = 3

// Kinds of item a node may hold for the session.
const (
	absent  uint8 = iota // no item (never written, flushed, restarted, expired)
	blank                // a 0-byte placeholder made by an insert: evidence of nothing
	data                 // a data copy: envelope and the provider's record
	witness              // a witness: envelope only
)

// Rec is one item's content: the store-level envelope. E is the epoch, V
// the version within it, Val the register value (the provider's record,
// abstracted to the id of the write that made it), P and Q the data copies
// of the configuration the record belongs to (P the primary; the witness
// is the third node), Pend the "failover started here" flag.
type Rec struct {
	K, E, V, Val, P, Q uint8
	Pend               bool
	// Non is the envelope's nonce where it differs from the write's own
	// (Val is unique per write, so equal records are one write): only the
	// variant RestampNewNonce gives a re-stamp a new one.
	Non uint8
	// NoWit: the configuration was established with nothing present on
	// its third node (a failover or write failover whose other copy
	// answered absent or blank, not silent): until R9 stores its witness
	// a lone copy of it is not taken for expired or stale (R4.1).
	NoWit bool
	// T is the envelope's session timeout (timed scopes; 0 elsewhere),
	// written by every client write.
	T uint8
}

// rank orders data records: epoch first, then an established record (not
// pending) above a failover fence of the same epoch, then the version.
func (r Rec) rank() int {
	est := 0
	if !r.Pend {
		est = 1
	}
	return int(r.E)<<9 | est<<8 | int(r.V)
}

func (r Rec) String() string {
	switch r.K {
	case absent:
		return "-"
	case blank:
		return "blank"
	case witness:
		return fmt.Sprintf("W(e%d {%d,%d})", r.E, r.P, r.Q)
	}
	p := ""
	if r.Pend {
		p = " pending"
	}
	if r.Non != 0 {
		p += fmt.Sprintf(" nonce%d", r.Non)
	}
	if r.NoWit {
		p += " nowit"
	}
	return fmt.Sprintf("D(e%d v%d val%d {%d,%d}%s)", r.E, r.V, r.Val, r.P, r.Q, p)
}

// node is one memcached process as the session's key sees it.
type node struct {
	Item Rec
	Tok  uint8 // CAS token of Item
	Inc  uint8 // incarnation: bumped by a restart
	Ctr  uint8 // the CAS counter: kept by flush_all, reset by a restart
	// NoTTL: Item was stored without an expiry (an ms without T); only
	// the broken variant InternalNoTTL writes such items.
	NoTTL bool
	// Lag (witness-lifetime scopes): data TTLs set by writes of the
	// configuration this witness vouches for since it was last touched
	// (saturating at 2); LagTried: the rule sent a touch with one of them.
	Lag      uint8
	LagTried bool
	// Rem (timed scopes, review-3 M2): the item's remaining TTL in ticks;
	// it expires when a tick takes it to 0.
	Rem uint8
	// Prom is the epoch promised on this item (R7, P1's fix): written
	// into the item's bytes by a decision's first CAS, kept by a re-stamp
	// (the same bytes), gone with any other write. It is valid only for
	// the item it was written with (PromTok, PromInc): every write, flush,
	// restart or expiry that replaces the item ends it.
	Prom, PromTok, PromInc uint8
	// Bnd (Scope.CopyLife): 1 + the node whose item this item expires no
	// later than (a copy made from it: the store's copyExp gives a copy
	// its source's remaining t less clockSlack); 0 for none.
	Bnd uint8
	// Live (Scope.Renewal, once a write was acknowledged): the item's
	// life is at least the one the last acknowledged write gave the
	// session, so that its expiry means the session's new deadline has
	// passed; an item with an older life may expire before it. Y[c]
	// (Scope.Renewal): the item's life was set since client c's write
	// call started, so that its expiry during the call means the life
	// that call's ack gives has run out in the untimed model.
	Live bool
	Y    [maxClients]bool
}

// noPromise forgets the promise with the item it was written with, so
// that states differing only in a promise no item carries are one state.
func (nd *node) noPromise() { nd.Prom, nd.PromTok, nd.PromInc = 0, 0, 0 }

// prom is the epoch promised on the node's current item (0: none).
func (nd *node) prom() uint8 {
	if nd.Item.K == absent || nd.PromTok != nd.Tok || nd.PromInc != nd.Inc {
		return 0
	}
	return nd.Prom
}

// Commands a client sends.
const (
	opGet   uint8 = iota + 1
	opCAS         // ms k C<tok>: replace only if the token matches
	opAdd         // ms k ME: insert if absent (content: only in broken variants)
	opGetN        // mg k N: get, leaving a blank on a miss (repair scopes)
	opTouch       // mg k T<2T>: R3's touch of the witness (witness-lifetime scopes)
	opGetT        // mg k v c t T<T>: R2's read and touch of a data copy (timed scopes)
)

var opNames = [...]string{opGet: "get", opCAS: "cas", opAdd: "add", opGetN: "get-or-blank", opTouch: "witness touch", opGetT: "get-and-touch"}

// msg is a command in flight. A command whose client has moved on
// (Orphan) may still be executed: late delivery.
type msg struct {
	Used, Orphan     bool
	Client, Node, Op uint8
	Tok, Inc         uint8
	Rec              Rec
	NoTTL            bool // stored without an expiry (variant InternalNoTTL)
	Write            bool // R3's CAS on the primary: it sets the data's TTL
	// TTL (timed scopes): the T<ttl> the command sets; Age: ticks since
	// it was sent (a command older than MaxT must run before time moves
	// on: a longer delay is a fault).
	TTL, Age uint8
	// Prom: the promise a CAS writes with its record (a decision's
	// promise, or the one a re-stamp read and keeps); 0 for new content.
	Prom uint8
	// Life (Scope.CopyLife): the lifetime the write gives its item, one
	// of the life constants.
	Life uint8
	// App (Scope.Append): R3's data write sent as an append, which keeps
	// the item's expiry; once stored, the same message comes back as the
	// touch that gives the copy the caller's T (opTouch, Tok the
	// append's new token), answered rGone when the item is absent.
	App bool
}

// Lifetimes of a write (Scope.CopyLife), after the store's expirations
// (witness_decide.go): lifeFresh, a new one (a client's T, an Add, a
// witness, a blank); lifeKeep, the item's own (a re-stamp, a fence, a
// promise: restampExp); lifeCopy+x, no longer than node x's item
// (copyExp: a failover's copy); lifeMax+x, the longer of the item's own
// and a copy of node x's (R4.4's completion and R11's re-ballot onto a
// data copy: max(copyExp, restampExp)); lifeDead, a copy whose source
// expired while it was in flight: it expires as it lands.
const (
	lifeFresh uint8 = iota
	lifeKeep
	lifeCopy
	lifeMax  = lifeCopy + numNodes
	lifeDead = lifeMax + numNodes
)

// Reply codes, and the states of a reply slot.
const (
	rPending uint8 = iota
	rOK
	rExists    // EX: the token did not match
	rNotFound  // NF
	rNotStored // NS: insert found an item
	rStale     // token of another incarnation: not executed
	rTimeout   // the client gave up (or the connection was reset)
	rGone      // Scope.Append: the append was stored, then its touch found the key absent (EN) or a blank
	rStray     // Scope.Append: the append was stored, then its touch found a record not built on it
	rTie       // Scope.Append: the append was stored, then its touch found a rival write of the same base and configuration (it won the tie)
)

var replyNames = [...]string{"pending", "ok", "EX", "NF", "NS", "stale", "timeout", "stored, then gone", "stored, then replaced", "stored, then lost the tie"}

type reply struct {
	St       uint8
	Rec      Rec
	Tok, Inc uint8
	Rem      uint8 // the item's remaining TTL (the t flag), timed scopes
	Prom     uint8 // the epoch promised on the item (R7), 0 for none
	// Won: this get-or-blank made the blank (memcached's W flag on
	// mg … N): no other process read its token before this reply. Kept
	// only with Scope.WonBlanks (it splits states).
	Won bool
}

func (r reply) definiteFail() bool {
	return r.St == rExists || r.St == rNotFound || r.St == rStale || r.St == rNotStored
}

// Client phases.
const (
	phIdle    uint8 = iota
	phRd1           // common read: get both data copies
	phRd2           // anomaly read: get all three
	phDec1          // decision, first CAS (the fence)
	phDec2          // decision, second write (the new or completed copy)
	phDecBoth       // broken variant 2.4: both at once
	phWr            // CompareAndSwap: CAS both data copies
	phWrGet         // the primary's winner re-reads the secondary
	phWrCAS         // ... and completes it
	phUndo          // the loser restores its base on the secondary
	phDone
	phRestamp   // witness repair (R9): re-stamp both data copies first
	phCrRead    // Add: the not-found read (mg N on all three)
	phCrW       // Add: CAS the witness node's blank
	phCrQ       // Add: then the secondary's
	phCrP       // Add: then the primary's
	phCrUndo    // Add: a refused step undoes the earlier ones
	phWrFoRead  // R3, P stored, Q lost or silent (review-2 M3): read the third node
	phWrFence   // ... fence P (its own write) to the next epoch with the third node
	phWrCopy    // ... copy it there: success when stored
	phBury      // R4.1 (review-4 D3): CAS the lone copy to a blank
	phCrPoison  // Add over a lone witness (R8): re-stamp the blanks first
	phCrReread  // Add: a CAS step with no reply reads its candidate again
	phPromise   // R7 (P1): promise the new epoch on w before the fence
	phWrPromise // R3's write failover (P1): promise on W before the fence
	phNFFence   // R4.1's not found (review-ballot m4): re-stamp the blanks counted
	phBuryFence // R4.1's burial (D3′): re-stamp the blank peers first
	phWitFence  // R14: re-stamp the blanks before burying the lone witness
	phWitBury   // R14: CAS the lone witness to a blank
	phAdopt     // R9's adoption (review-r14 B1): re-stamp the witness
	phAdoptClear
	phR9ClearRead // R9's clear (Scope.R9ClearsNoWit): read both copies again
	phR9Clear     // ... and CAS both, if still re-stamped, without nowit
	phWrTouch     // R3's completion (Scope.Append): Q holds the write, touch it
	phRestampP    // R9 in turn (Scope.R9InTurn): P's re-stamp first
	phOwnGet      // the writer's own completion (Scope.OwnComplete): read P
	phOwnQ        // ... P holds the base: CAS Q to the write
	phOwnP        // ... then P, with the token just read
	phUndoRead    // an undo refused (Scope.OwnComplete): read both copies
	phUndoTouch   // ... both hold the write (Scope.Append): touch P before the ack
	phWrRestamp   // R3′'s completion (Scope.RollBack): re-stamp P before Q's CAS
	phWrRestampRd // ... the re-stamp refused: read P
	phOvRead      // overtaken (Scope.Overtaken): read all three
	phOvTouch     // ... applied, with appends: touch the decision's copies
	numPhases
)

var phaseNames = [...]string{"idle", "read", "read-all", "fence", "decide", "decide-both", "write", "complete-get", "complete-cas", "undo", "done",
	"restamp", "add-read", "add-witness", "add-secondary", "add-primary", "add-undo",
	"write-failover-read", "write-failover-fence", "write-failover-copy", "bury", "add-poison", "add-reread", "promise", "write-failover-promise",
	"not-found-fence", "bury-fence", "old-witness-fence", "old-witness-bury", "adopt-witness", "adopt-clear-nowit",
	"r9-clear-read", "r9-clear-nowit", "complete-touch", "r9-restamp-p",
	"own-complete-get", "own-complete-q", "own-complete-p", "undo-read", "undo-touch",
	"complete-restamp-p", "complete-restamp-read", "overtaken-read", "overtaken-touch"}

const maxIter = 2 // decisions per Get before it reports unavailable

type client struct {
	Phase    uint8
	Pc       uint8 // index of the current program operation
	Sent     [numNodes]bool
	R        [numNodes]reply
	P, Q     uint8 // the configuration this process believes current
	Iter     uint8
	Floor    uint8 // the greatest completed value when the call started
	Base     Rec   // what the read returned, as the secondary held it (for the undo)
	TokP     uint8 // tokens of the read, per data copy
	IncP     uint8
	TokQ     uint8
	IncQ     uint8
	New      Rec // the record being written
	NewTok   uint8
	NewInc   uint8
	DX, DY   uint8 // a decision's fence node and second node
	DTX, DIX uint8 // the fence node's read token (after R7's promise)
	DR1, DR2 Rec
	DT2, DI2 uint8
	DAdd     bool // the second write is an insert (broken variants)
	// Tries: R3's completion's re-reads of Q; in the writer's own
	// completion (Scope.OwnComplete) the undo's read round it belongs to
	// (0: the completion before the undo).
	Tries uint8
	// Add: the blanks' tokens and what each step stored (for the undo).
	BT, BI  [numNodes]uint8
	ST, SI  [numNodes]uint8
	Stored  [numNodes]bool
	AfterNF bool // the call started after a read reported the session expired
	// AW is the Add's witness node: the candidate this process held
	// failed when the Add started (R8, review-3 M1), else node 2; AS: it
	// was held failed, so no reply from it within Timeout (to the read
	// or the witness CAS) makes the two-record creation (nowit).
	AW uint8
	AS bool
	// DT (timed scopes): the TTL a decision's data writes carry: the
	// remaining t of its base, or the caller's T for a write failover;
	// BRem: the base's remaining TTL, for R3's undo.
	DT, BRem uint8
	// DL (Scope.CopyLife): the life of a decision's second write (the
	// copy onto DY).
	DL uint8
	// Add's read-again (Scope.Reread): RN the candidate read again, RS
	// the step (phase) it resolves, RR the reads so far (at most 2).
	RN, RS, RR uint8
	// Susp: nodes this process holds *failed* (docs/replication.md section
	// 9): it sends them nothing until its probe sees them answer again.
	// Scopes with MaxSuspicions make such a suspicion wrong at any step.
	Susp [numNodes]bool
	// OW: the decision under way is a re-ballot of a creation's record
	// over a witness (review-4 N4's fix), for Result's counts.
	OW bool
	// Held (Scope.OwnComplete): a read of P by the writer's own
	// completion or the undo's read loop showed P holding this write, not
	// promised above its epoch (the store's primaryShows, seenHeld; the
	// model has no ancestors, so a later record built on it is not
	// counted); Far: a read of the undo's loop found a data record of the
	// write's configuration at a later version (past what the ancestors
	// tell: the model keeps none). Both held when the loop ends: the
	// write is acknowledged (the store's "applied, and built on since").
	// Cleared when the call ends.
	Held, Far bool
	// Own (Scope.RollBack): the writer's own completion sent its CAS of
	// the copy that refused the write (P, in R3's row "P refused, Q
	// stored") and got no refusal: stored, or no reply (it may have
	// been). Until then no copy of the write's configuration but the
	// one that stored it held it (L4″), so a later version of that
	// configuration, or Q holding another record of it, means not
	// applied. RB: the decision under way is
	// R4.4′'s roll-back (for Result's counts); Rs: R3′'s re-stamps of P
	// sent again after a refusal found P still holding the write; PR: a
	// completion CAS of P was refused (rv-roll M4: no completion again).
	// Cleared when the call ends.
	Own, PR, RB bool
	Rs          uint8
	// Fresh (Scope.Renewal): the call under way started after the last
	// acknowledged write, so that write's renewal of the session's life
	// bounds when it may find the session gone. YGone: during this write
	// call an item whose life was set since it started expired (node.Y).
	Fresh, YGone bool
	// OvAt (Scope.Overtaken): the phase whose answer the overtaken round
	// under way replaces (for Result's counts by site).
	OvAt uint8
}

const (
	maxClients = 3
	maxMsgs    = 14
	maxVals    = 16
)

// state is everything the model holds. Every field is a byte or a bool, so
// the fingerprint hashes its memory directly.
type state struct {
	N        [numNodes]node
	C        [maxClients]client
	M        [maxMsgs]msg
	Parent   [maxVals]uint8 // the value each write was computed from
	Failed   [maxVals]bool  // writes reported "not applied"
	Max      uint8          // greatest value acknowledged or observed
	Faults   uint8
	Timeouts uint8
	Susps    uint8 // wrong suspicions so far (MaxSuspicions)
	Nonces   uint8 // nonces handed out (variant RestampNewNonce)
	Lost     uint8 // reads that found no session (double faults only)
	// Expiry: Deadline is set when the session's timeout has run out (its
	// first item expired); from then on each item with a TTL may expire,
	// on each node at its own instant. NFSeen is set once a call reported
	// "not found" after the deadline: no call that starts later may
	// return the session.
	Deadline, NFSeen bool
	// Renewal (Scope.Renewal): Renewed once a write was acknowledged: it
	// gave the session a new life (the caller's T from its ack), so the
	// session's deadline is passed again only when an item of that life
	// (Live) expires: RDeadline. A call that started after the ack may
	// find the session gone only then, or after two faults.
	Renewed, RDeadline bool
	// The stated exception to the single-fault guarantee (R8, review-3
	// M1): ExcOpen once a configuration was begun with two present records
	// because a candidate did not answer an Add (R8's two-record creation,
	// a failover from a creation's record whose other copy was silent, or
	// a creation's record re-balloted over a witness, review-4 N4);
	// Exception once a fault then removed a data copy of a nowit
	// configuration whose third node holds nothing. From then on a "not
	// found" is the stated residual: counted, and the run stops there.
	ExcOpen, Exception, Halt bool
	// FaultedN (Scope.NoWitRead): the nodes a fault (flush, restart, a
	// lapse counted as a fault) has emptied, a bit each.
	FaultedN uint8
	// Hit (Scope.FinalWrites): the nodes a fault hit (a flush, a restart,
	// a lapse or witness expiry counted as a fault, Start WitnessBlank's
	// lost witness), a bit each.
	Hit uint8
}

func (s *state) String() string {
	var b strings.Builder
	for i, n := range s.N {
		fmt.Fprintf(&b, "  node %d (inc %d): %v tok %d\n", i, n.Inc, n.Item, n.Tok)
	}
	fmt.Fprintf(&b, "  greatest acknowledged/observed value: %d\n", s.Max)
	return b.String()
}

// anc reports whether a is b or an ancestor of b in the tree of values.
func (s *state) anc(a, b uint8) bool {
	for {
		if a == b {
			return true
		}
		if b == 0 {
			return false
		}
		b = s.Parent[b]
	}
}

// observe checks a value returned by a read or acknowledged by a write
// whose call started when floor was the greatest completed value.
func (s *state) observe(x, floor uint8, what string) string {
	for y := x; ; y = s.Parent[y] {
		if s.Failed[y] {
			return fmt.Sprintf("%s returned value %d, built on write %d that was reported not applied", what, x, y)
		}
		if y == 0 {
			break
		}
	}
	if !s.anc(floor, x) {
		return fmt.Sprintf("%s returned value %d, but value %d was acknowledged or observed before the call started (lost update or stale read)", what, x, floor)
	}
	switch {
	case s.anc(s.Max, x):
		s.Max = x
	case s.anc(x, s.Max):
	default:
		return fmt.Sprintf("%s returned value %d, which is not on the chain through value %d (fork: an acknowledged or observed state was lost)", what, x, s.Max)
	}
	return ""
}

// notApplied records a write reported as certainly not applied.
func (s *state) notApplied(v uint8) string {
	s.Failed[v] = true
	if s.anc(v, s.Max) {
		return fmt.Sprintf("write %d reported not applied, but value %d built on it was returned", v, s.Max)
	}
	return ""
}
