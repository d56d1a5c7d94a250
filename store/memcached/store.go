package memcached

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// Defaults of Config, and limits.
const (
	// DefaultTimeout bounds each memcached operation (as gomemcache's
	// default).
	DefaultTimeout = 500 * time.Millisecond
	// DefaultMaxIdleConnsPerNode is the number of idle connections kept
	// per node. See Config.MaxIdleConnsPerNode for why it is 64.
	DefaultMaxIdleConnsPerNode = 64
	// DefaultPipelineConns is the number of shared connections per node
	// when pipelined (Config.Conns).
	DefaultPipelineConns = 2
	// DefaultHealthCheckInterval is how often down nodes are probed.
	DefaultHealthCheckInterval = time.Second
	// DefaultMaxItemSize is the largest value stored: memcached's default
	// item limit (1 MiB, -I 1m) less 512 bytes for the item header, the
	// longest key and the CAS.
	DefaultMaxItemSize = 1<<20 - 512
	// MaxKeyLen is the longest key accepted: memcached's 250 bytes less
	// the "bak:" prefix of backup copies.
	MaxKeyLen = 250 - len(backupPrefix)
	// MaxNodes is the most nodes a Store takes (the node index is kept in
	// the top byte of CAS tokens).
	MaxNodes = 255
	// maxStaleKeys bounds the keys remembered per down node; past it the
	// node is flushed when it comes back.
	maxStaleKeys = 1 << 16
	// bakCacheSize bounds the backup versions remembered (backup.go).
	bakCacheSize = 1 << 16
)

// backupPrefix starts the key of every backup copy.
const backupPrefix = "bak:"

// Errors of this package, besides the provider's sentinels.
var (
	// ErrInvalidKey: a key longer than MaxKeyLen, empty, or with a space,
	// control byte or DEL.
	ErrInvalidKey = errors.New("memcached: invalid key")
	// ErrInvalidTTL: a TTL of zero or less, or beyond what memcached can
	// express.
	ErrInvalidTTL = errors.New("memcached: invalid ttl")
	// ErrNoMetaProtocol: a node answered a meta command with ERROR
	// (memcached before 1.6). The store's default path needs meta
	// commands; Config.TextProtocol talks to older servers with one copy
	// of each session (ProbeMeta tells them apart). Calls that needed the
	// node also wrap provider.ErrServer: the node answers, it is not down.
	ErrNoMetaProtocol = errors.New("memcached: the node does not speak the meta protocol (memcached 1.6 or later needed; Config.TextProtocol talks to older servers)")
)

// BackupMode selects how a Store replicates each session (Config.Backup).
type BackupMode int

const (
	// BackupDefault (the zero value) picks the replication by the node
	// count: BackupWitness with three or more nodes, BackupOn with
	// exactly two (the witness scheme needs three), one copy with one.
	// On the text path (TextProtocol) a session has one copy whatever the
	// node count. Store.Backup reports the mode chosen. The schemes keep
	// their records differently (the witness scheme's carry an envelope
	// with the node list's digest): growing a pool from two nodes to
	// three, or shrinking it from three to two, changes the default's
	// scheme, and the sessions stored before are then unreadable
	// (ErrServer) until they expire. A pool that may cross that line sets
	// Backup explicitly; any change of the node list moves sessions
	// anyway (docs/replication.md §11.2).
	BackupDefault BackupMode = iota
	// BackupOn keeps a copy of every value under "bak:"+key on the key's
	// second-best node, and each process's own view of node health decides
	// which copy it serves. It survives one node's kill -9 or restart in
	// the common case, but not every single fault: a flush between a
	// read and its CAS, a paused node executing its queued commands late,
	// or two processes disagreeing on a node's health can lose a session
	// or an acknowledged update (docs/replication.md §11.1; the fault
	// simulation's expected defects, stress/sim TestSimBackupOn). The
	// default with two nodes; with three or more, an explicit choice. It
	// has no effect with a single node or on the text path.
	BackupOn
	// BackupOff keeps one copy only: a node's sessions are unavailable
	// while it is down and lost when it restarts.
	BackupOff
	// BackupWitness is the replication of docs/replication.md ("2+W"):
	// each session has two data copies and a small witness record on its
	// three best nodes, the copies themselves decide which state is the
	// truth (epochs, fences, completion), a node that fails is replaced
	// after Config.FailoverAfter, and no single fault loses an
	// acknowledged write. It needs at least three nodes and meta commands
	// (New refuses it otherwise), and every process sharing the nodes
	// must use it (the mode is part of the node-list digest in every
	// record). CompareAndAppend appends lock changes to both data copies
	// (as trailers after the record, compacted by the next whole write).
	// The default with three or more nodes (BackupDefault); its
	// connections are pooled whatever Config.Conns says.
	BackupWitness
)

// String returns the mode's name: "default", "on", "off" or "witness".
func (m BackupMode) String() string {
	switch m {
	case BackupDefault:
		return "default"
	case BackupOn:
		return "on"
	case BackupOff:
		return "off"
	case BackupWitness:
		return "witness"
	}
	return fmt.Sprintf("BackupMode(%d)", int(m))
}

// ConnMode says how a Store's operations share the connections to a node
// (Config.Conns).
type ConnMode int

const (
	// ConnsPipelined (the zero value, so the default) shares
	// Config.PipelineConns connections per node among all the operations
	// in flight (auto-pipelining): the commands queued while a
	// connection's writer is writing go out together in one write, and
	// the replies, which memcached sends in order, are handed back to
	// their callers by the connection's reader. Concurrent requests then
	// pay one write system call and one wake-up per batch, not per
	// operation. Each operation keeps its own deadline (its context's,
	// and Timeout: a reply later than that breaks the connection, failing
	// what is in flight on it). An operation that finds its connection
	// idle is written and read by its caller, as on a pooled connection;
	// a lone request is still somewhat slower than pooled
	// (docs/performance.md, "Pipelined or pooled").
	ConnsPipelined ConnMode = iota
	// ConnsPooled takes a connection from a pool of idle ones for each
	// operation (dialling one when none is idle) and puts it back after
	// the reply: one operation at a time per connection, written and read
	// on the caller's goroutine. Config.MaxIdleConnsPerNode bounds the
	// pool.
	ConnsPooled
)

// Config configures a Store. Only Nodes is required; every other zero
// value means the documented default.
type Config struct {
	// Nodes are the memcached servers, "host:port". Their order does not
	// matter, but every process sharing the sessions must use the same
	// address strings (placement hashes them). At most MaxNodes.
	Nodes []string
	// Backup selects the replication: BackupWitness, BackupOn or
	// BackupOff. Default (BackupDefault): BackupWitness with three or
	// more nodes, BackupOn with two, one copy with one node or on the text
	// path. See BackupMode.
	Backup BackupMode
	// Timeout bounds each memcached operation: connect, write and read.
	// A node that does not answer in time is marked down. Default 500 ms.
	Timeout time.Duration
	// MaxIdleConnsPerNode is how many idle connections are kept per
	// node on pooled connections (ConnsPooled, TextProtocol,
	// BackupWitness; pipelined connections do not pool). Default 64, where gomemcache's own default is 2: every
	// operation in flight holds one connection, and a connection released
	// when the idle pool is full is closed, so with 2 a web
	// server with 50 concurrent requests dials and tears down dozens of TCP
	// connections per node every burst (a connect round trip added to most
	// operations, and TIME_WAIT sockets piling up). 64 covers the
	// concurrency of a busy server, while 16 such servers still stay under
	// memcached's default limit of 1024 connections. BackupWitness keeps
	// one more connection per node out of the pool, once two were open at
	// once, to tell a flush from a restart (docs/replication.md, R1).
	MaxIdleConnsPerNode int
	// Conns selects how operations share a node's connections: a few
	// shared connections, each carrying many operations at once
	// (ConnsPipelined, the default), or a pool of connections, one
	// operation at a time on each (ConnsPooled). See ConnMode. The text
	// path (TextProtocol) and the witness scheme (BackupWitness) always
	// use a pool, whatever Conns says.
	Conns ConnMode
	// PipelineConns is the number of connections per node when
	// pipelined, each with one writer and one reader goroutine. Default
	// DefaultPipelineConns (2).
	PipelineConns int
	// HealthCheckInterval is how often a node marked down is probed to
	// bring it back. Default 1 s.
	HealthCheckInterval time.Duration
	// MaxItemSize is the largest value accepted; larger ones fail with
	// provider.ErrTooLarge before anything is written. Default
	// DefaultMaxItemSize, which fits memcached's default -I 1m; set it to
	// the servers' -I less 512 bytes when they run with another limit.
	MaxItemSize int
	// OnEvent, when set, is told of node events: a node marked down
	// (EventNodeDown, followed by EventFailover with BackupOn: its keys
	// are served from their backup copies), a node back up
	// (EventNodeUp), a copy restored on its primary from the newest copy
	// found (EventRepair), an Add whose copies split and were not
	// brought to one value (EventWarning). With BackupWitness: a node failed after
	// FailoverAfter without a reply, or evicting items (EventNodeDown),
	// answering again (EventNodeUp), a session's copy moved off a node
	// (EventFailover), a copy or witness restored (EventRepair), a
	// session created without its witness or a record of another node
	// list met (EventFallback). It is called from the store's goroutines and
	// must not block nor call the Store's Close (Close waits for the
	// goroutine that emits node events); events carry node addresses,
	// never keys. The
	// middleware's Observer.StoreEvent fits it. Default nil: off.
	OnEvent provider.EventFunc

	// TextProtocol talks to the nodes with memcached's text protocol
	// through gomemcache, for servers without meta commands (before
	// memcached 1.6; see ProbeMeta). That path keeps one copy of each
	// session (Backup is ignored: the backup scheme needs meta commands),
	// CompareAndSwap and Add return 0 as the new token (the provider
	// reads again), GetAndTouch is a Get, a CompareAndSwap of the
	// unchanged value and a Get (see the package doc), and TTL fails with
	// provider.ErrServer. Each
	// operation is bounded by Timeout; the context is checked when it
	// starts (gomemcache takes no context). Default false: meta commands.
	TextProtocol bool

	// DialContext opens every connection the Store makes to a node, with
	// a context bounded by the operation's context and Timeout. Default (nil) a net.Dialer. Tests and the fault
	// simulation (stress/sim) set it to run the Store over simulated
	// nodes, for example over net.Pipe inside a testing/synctest bubble,
	// where the Store's timers, deadlines and health checks run on the
	// bubble's clock.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// WholeWrites writes every change as a whole record: the Store does
	// not append lock changes as deltas (CompareAndAppend declines). Set
	// it while servers whose record package predates deltas share the
	// nodes: they read a record followed by deltas as corrupt (see package
	// record). Default false: lock changes of a key with one copy are
	// appended (see the package doc, Bytes on the wire).
	WholeWrites bool

	// The settings below apply to BackupWitness only.

	// MaxTimeout is the longest session timeout (TTL) accepted: a call
	// with a longer one fails with provider.ErrServer, sending nothing.
	// Witness records live 2 × MaxTimeout after the last access of their
	// session (docs/replication.md §2.3). Default 2 h; at most 15 days.
	MaxTimeout time.Duration
	// FailoverAfter is how long a node may leave a command unanswered
	// (counted from the first unanswered one) before this process holds it
	// failed and fails its sessions over (§9). Default 1 s; at most 2.5 s.
	FailoverAfter time.Duration
	// Handles bounds the CAS handles remembered (each names the copies a
	// read returned); an evicted handle's CompareAndSwap fails with
	// provider.ErrCASConflict, sending nothing. Default 65,536.
	Handles int
	// HandleBytes bounds the bytes the handles keep (each keeps a copy of
	// the value it read, to undo a half-applied write). Default 64 MiB.
	HandleBytes int
	// RepairEvery is how often the repair scan runs (§9, "Repair
	// window"): it lists every node's keys (`lru_crawler metadump all`,
	// at most 50,000 keys a second per node) and visits each session not
	// found whole on its nodes (data on two, a witness on the third), so
	// that one nobody touches is repaired or failed over too. Each wait
	// is drawn in [RepairEvery/2, RepairEvery], so that the processes
	// sharing the nodes do not scan in step. Default DefaultRepairEvery
	// (30 s); negative: no scan (sessions are then repaired only when
	// touched).
	RepairEvery time.Duration

	// beforeStart, when set (tests: WithHooks), runs on the new Store
	// before New starts its goroutines: test hooks set there are not
	// written while the repair loop or the scan reads them.
	beforeStart func(*Store)
}

// backupMode returns the replication a Store over cfg runs: for
// BackupDefault the mode the node count and protocol give, BackupOff
// where BackupOn has no effect (one node, the text path), else
// cfg.Backup.
func (cfg *Config) backupMode() BackupMode {
	switch {
	case cfg.Backup == BackupWitness || cfg.Backup == BackupOff:
		return cfg.Backup
	case cfg.TextProtocol || len(cfg.Nodes) < 2:
		return BackupOff // one copy: BackupOn has no effect here
	case cfg.Backup == BackupOn || len(cfg.Nodes) == 2:
		return BackupOn
	}
	return BackupWitness
}

// pipelined reports whether the nodes' meta clients pipeline
// (Config.Conns). The witness scheme reads the node's incarnation on every
// new connection (hello) and checks it per connection, which pipelined
// connections do not do: it stays pooled, as the text path (gomemcache).
func (cfg *Config) pipelined() bool {
	return cfg.Conns == ConnsPipelined && !cfg.TextProtocol && cfg.Backup != BackupWitness
}

// Store is a provider.Store over a pool of memcached nodes, with a backup
// copy of each value, failover and repair. See the package documentation.
// It is safe for concurrent use.
type Store struct {
	cfg    Config
	nodes  []*node  // sorted by address
	seeds  []uint64 // rendezvous seeds of nodes, same order
	backup bool
	baks   *bakCache

	wit *witness // BackupWitness's state, else nil

	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}

	addsMu sync.RWMutex   // orders enterAdd's count of an Add with Close
	adds   sync.WaitGroup // BackupOn Adds in flight (addPrimary) and their settles (settleAdd); Close waits for them

	hooks testHooks
}

// testHooks are called at points where tests interleave other operations
// (export_test.go sets them); nil in production.
type testHooks struct {
	afterTick                func()                      // the witness scheme's loop ended a tick (probe, evictions, the lists' visits)
	witlessVisitFailed       bool                        // the code before: the tick visits listed keys whose witness node is held failed
	loopVisit                func(key string)            // the witness loop is about to visit key (the repair queue's, or a listed one)
	longPassBlind            bool                        // the code before: a tick's pass over the lists neither probes nor works the repair queue until it ends
	afterPrimaryWrite        func(key string)            // a CAS landed on the primary, backup not yet complete
	afterRepairRead          func(key string)            // a repair read the copies, nothing written yet
	beforeTouchCopies        func(key string)            // the witness scheme read a record, its data copies not yet touched
	touchNoFlags             bool                        // broken variant (review 5's m2): touchCopies does not look at what it touched
	ttlBeforeTouch           bool                        // broken variant: a touching read asks for the TTL before its touch (t before T)
	repairCompletesInFlight  bool                        // broken variant (review 5's m4): the repair client completes a write in flight on first sight
	appendNoTouch            bool                        // broken variant: appends leave the TTL as it was
	backupAppendOff          bool                        // the code before backup appends: keys with a backup copy are written whole
	bakAppendNoWhole         bool                        // broken variant: a refused backup append is not completed whole
	witnessWholeWrites       bool                        // the code before witness appends: CompareAndAppend declines in the witness scheme
	appendNoUntouch          bool                        // broken variant: a witness append's touch that landed on another record is left there
	undoWholeBase            bool                        // broken variant: the witness undo writes the base re-encoded whole, not its exact bytes
	appendTwoTrips           bool                        // witness appends never pipeline their touch (tests of the second round trip)
	takeoverPoisoned         func(key string)            // an Add over a lone witness re-stamped the blanks, nothing else written yet
	takeoverNoPoison         bool                        // broken variant: an Add over a lone witness does not re-stamp the blanks first
	takeoverInPlace          bool                        // broken variant: an Add over a lone witness CASes over the witness in place (review-lonewit B1)
	addNoResolve             bool                        // the code before: an Add's CAS with no reply is unknown, not read again
	appendFullByPresence     bool                        // broken variant: an append's NS is "too large" when any item is found after it
	adoptNoTouch             bool                        // broken variant (review-lonewit M1): R9 adopts a same-configuration witness without touching it
	noPromise                bool                        // broken variant (R7 before R11, the model's NoPromise): a new epoch is its base's plus one, nothing is promised, promises are not read
	afterPromise             func(key string)            // a decision stored its promise, its fence not yet sent
	repairQueueOff           bool                        // keys are never queued for R9 (tests run RepairKey themselves)
	notFoundUnfenced         bool                        // broken variant (review-ballot m4, the model's NotFoundUnfenced): R4.1's not found does not re-stamp the blanks it counted
	buryCreation             bool                        // the code before review-lonewit m4 (the model's BuryCreationFenced): R4.1 buries a creation's lone copy too
	decisionNoTouch          bool                        // the code before review-r11 m3: a touching call's decisions keep the t their read saw
	halfEstablishedWaits     bool                        // the code before: no completion of a half-established failover whose copy is expiring (the call waits for both copies to expire)
	noBackoff                bool                        // the code before review-r11 m4: a refused decision is followed by the next read at once
	backoff                  backoffHook                 // a resolve call is about to back off after a refused decision
	keepOldWitness           bool                        // the code before R14: a lone witness of an expired session stays until it expires (TW)
	buryUnfenced             bool                        // broken variant (the model's R14Unfenced): R14 buries the witness without re-stamping the blanks first
	beforeBury               func(key string)            // R14 re-stamped both blanks, its burial CAS not yet sent
	buryFreshToken           bool                        // broken variant: R14's burial CAS carries a token read again just before it, not the deciding read's
	afterAddWitness          func(key string)            // an Add stored its witness, its data CASes not yet sent
	afterDeleteRead          func(key string)            // Delete read the records, nothing deleted yet
	delNoRetry               bool                        // the code before: a Delete refused as of another incarnation is an unknown outcome
	undoOtherIncUnknown      bool                        // the code before: R3's undo refused as of another incarnation (not sent) is an unknown outcome
	undoNoComplete           bool                        // the code before: R3's undo refused while Q holds the write and P its base never completes the write (5 reads, then unknown)
	undoStart                func(key string)            // R3's undo is about to run (completeOwn read P and did not complete the write); tests stall the writer here
	undoForgetsHeld          bool                        // the code before: a read of P that showed it holding the write (or built on it) is not kept, the undo is sent, and a writer reading again past envelope.Lineage versions answers unknown
	undoHeldConflict         bool                        // the code before: the undo's rows of certain conflict answer a conflict though P held the write (the session created again since)
	buryAnyAge               bool                        // broken variant: R14 buries a lone witness whatever its age (an Add's too)
	buryTouched              bool                        // the code before (third session of 2026-12-01): a touching call's R14 goes by the witness's age, as if its own touch had landed before the anomaly read
	holdWitnessTouch         func(key string)            // a witness touch (R2) is sent on a goroutine of its own once this returns (tests: the anomaly read overtakes it)
	adoptNoFence             bool                        // the code before review-r14 B1: R9 adopts a witness for a nowit clear by a touch only (its token kept)
	witnessTouched           func(key string)            // a witness touch's reply was read (touchOp)
	noResume                 bool                        // the code before: a creation of unknown outcome is never resumed by its creator
	resumeDropUnfenced       bool                        // broken variant: the creator stops resuming a creation it finds not found without fencing it out
	resumeAnyCopy            bool                        // broken variant (the first build, review-resume B1): a lone copy on either data candidate is resumed, onto any blank
	resumeAnyBlank           bool                        // broken variant (the second build, review-resume-2 N1): a lone copy on the secondary is resumed onto any blank of the primary
	resumeUnmarked           bool                        // broken variant (the third build, review-resume-3 N2): the resumption's own primary CAS is not recorded before it is sent
	resumeRestoreRefusedOnly bool                        // the code before (rv-pk500 m1): a resumption whose own primary CAS was not sent stays tied to the blank it targeted
	addNoWaitFailed          bool                        // the code before: an Add's read that finds a candidate silent and not yet failed fails at once, not waiting for the failure detection (§9)
	appendTieWide            bool                        // broken variant (rv-tieline): any data record on a witness append's copy is a lost tie
	appendTieLineUnknown     bool                        // the code before: a witness append's copy replaced by a record built on a rival of the same base is a replaced one (beside a refused copy: unknown), only the rival itself a lost tie
	resumeUnsentAtP          bool                        // the code before (fifth session of 2026-12-01): an Add whose primary CAS was not sent is resumed only onto the blank that CAS targeted, as one whose CAS was sent
	resumeUnclaimed          bool                        // broken variant (review-resume-4 N3): a resumption of a key is claimed while another runs
	beforePutBack            func(key string)            // a split Add's settle read the copies, its write not yet sent
	settleOverPrimary        bool                        // the code before rv-d4b MJ2: a split Add's settle whose CAS of the primary was refused reads again and may put the backup copy over a write there
	settleLastUnread         bool                        // the code before rv-mj2 mn-c: a split Add's settle ends after its fourth round's write, stored or refused, without reading the pair again, and says nothing of copies left diverged
	settleUnbounded          bool                        // the code before rv-d4b mn5: the caller of a split Add waits for its settle's end, whatever its deadline
	settleCut                bool                        // broken variant (d76aa64, rv-settle S1): a split Add's settle is itself cut 2 Timeouts after its start, or one Timeout past the caller's deadline, and the caller waits for it
	addUntracked             bool                        // the code before rv-settle2 R1: Close does not wait for a BackupOn Add, only for its settle, which does not start once the Store is closed
	closing                  func()                      // Close set closed and has not yet stopped the health check (which may be in a node's recovery)
	warnBeforeAnswer         bool                        // the code before rv-settle2 R2: the settle's warning is emitted before the caller's answer, while Close still waits for the settle
	undoCompleteOverPromise  bool                        // broken variant (rv-undo7 m1): the undo's completion of its stalled split ignores a promise on Q
	completeOwnOverPromise   bool                        // broken variant (rv-undo7 m1): the writer's own completion ignores a promise on P
	undoBothHeldUntouched    bool                        // the code before (helper undom's model finding): an append's undo that finds both copies holding the write acknowledges without touching P
	backupParallel           bool                        // the code before (bocontract): BackupOn sends a write's backup half in parallel with its primary half, and leaves it where it landed when the primary refused the write
	appendGoneSure           bool                        // the code before (audit4, rvbo M1): an append gone from the primary by its touch answers not found though its backup append's outcome is unknown or it was refused by a changed copy
	noBackupAfterUnknown     bool                        // the code before (rvbo M2): a BackupOn write whose primary outcome is unknown sends no backup half
	landedConflict           bool                        // the code before (sixth session, d4): BackupOn's write that landed on the primary and was then replaced, lost or cut off there before its backup half completed answers ErrCASConflict
	appendGoneIgnored        bool                        // the code before review-oc31 F2: a witness append stored whose touch answered EN counts as stored
	appendBlankStored        bool                        // the first fix of review-oc31 F2: an append's touch that finds a blank where the append stored counts the copy stored (the model's AppendStrayStored)
	appendCompleteUntouched  bool                        // the code before: R3's completion that finds an append's write on Q (a reader's copy of P's appended item) acknowledges it without touching Q (the model's AppendCompleteUntouched)
	appendFailoverNoPromise  bool                        // the code before (the cold review of the merged rules, A2): the failover after the completion's touch found Q gone fences P with its re-read token though a decision promised P above the write's epoch
	appendTouchErrorOK       bool                        // the code before (the append-gone fixes' cold review, W3): a witness append stored whose touch got an error reply is a success with no TTL set
	r9ParallelRestamps       bool                        // the code before: R9 re-stamps both data copies in parallel (concurrent R9s on one key refuse each other: restampBoth)
	appendGoneAsMissing      bool                        // the first fix of review-oc31 F2: a copy appended then gone is missing in every row of R3's table (the model's AppendGoneRefused; the cold review's W1)
	appendStrayStored        bool                        // the code before: a witness append stored whose touch found another item than the append's (not a blank) counts the copy stored, with the append's token (the model's rStray)
	appendTieAnyCopy         bool                        // broken variant (the tie row's cold review, m1): a lost tie on P, or on both copies, beside a refusal is a conflict too
	appendTieUnknown         bool                        // the rule before: a witness append's copy that lost the tie to a rival write of the same base is a replaced one (beside a refused copy: unknown, not a conflict)
	appendReplacedAsGone     bool                        // broken variant: a witness append's copy replaced by its touch is a gone one in every row of R3's table (both replaced: not found)
	completeOverWitness      bool                        // the code before (review-resume-4 N4): R4.4 completes a creation over a witness on its primary
	r9KeepsData              bool                        // the code before review-3 B1: R9 leaves a data record on the third node (it replaces only a blank or another witness)
	reballotKeepsNoWit       bool                        // the code before review-n4b F1: R11.3's re-ballot of a creation copies its nowit mark (none)
	nowitR2Returns           bool                        // the code before review-n4b F2's fix, its R2 half: R2 returns a nowit record
	nowitR43Returns          bool                        // the code before review-n4b F2's fix, its R4.3 half: a plain reader returns a nowit configuration whose third node answered and queues R9
	repairRacesCalls         bool                        // the code before: the repair client decides on a key a call of its own process is resolving
	repairPutsOffAll         bool                        // the first build of r9blank (rv-r9 M1, M2): every visit of a key a call of this process is resolving is put off, without bound, and queued again at once when the last call ends
	putOffUnbounded          bool                        // broken variant (rv-r9 M1): the repair client puts off a call's decisions for as long as calls of its process resolve the key
	putOffRecordKept         bool                        // broken variant (rv-r9b M1): the repair client's putOffs record of a key outlives its episode (r9fix: deleted only by a check with no call resolving, not by a visit not put off nor by a call that answers; the bound by count alone)
	putOffOutlivesEpisode    bool                        // broken variant (rv-r9b M1, its call half): a call that answers leaves the putOffs record of the key (the deletion by a visit not put off kept): a record from an earlier episode still counts
	putOffRecordAges         bool                        // the code before rv-r9c m1 (r9fix2): a putOffs record counts as absent once its last put-off is more than 4 Timeouts old, and a call's answer leaves it
	putOffR8Drop             bool                        // broken variant (rv-r9c m2): R8's drop in R4.1 (forgetting a creation of unknown outcome found not found) is put off too while a call of this process resolves the key
	requeuesStack            bool                        // broken variant (rv-r9d (a)): ending an episode deletes a putOffs record whose re-queue is pending, so the next put-off sets a second re-queue beside it
	addOtherIncExists        bool                        // the code before (rv-label M2): an Add whose CAS was refused as of another incarnation answers ErrExists
	putOffEndsAtLastCall     bool                        // broken variant (rv-r9d (g)): a call's answer ends the episode only when no other call of the process resolves the key
	putOffFirstKept          bool                        // broken variant (rv-r9e m1): an episode's first put-off on a record kept for a pending re-queue keeps the earlier episode's first time, so its bound can fire at once
	requeueFired             func(key string)            // a put-off's re-queue timer fired for key, nothing done yet (tests hold it)
	requeueDropped           func(key string)            // a put-off's re-queue of key was dropped (the repair queue full) and the drop handled: the record kept and retried, or deleted
	requeueDropDeletes       bool                        // the code before (rv-r9d (b)): a put-off's re-queue dropped deletes the record, though a call of the process still resolves the key: the next visit starts the count over
	callResolving            func(key string)            // a call of this process (not the repair client) started resolving key (resolve), no anomaly read sent yet
	sameProcessCompletes     bool                        // the code before (§16 item 2, rv-roll2 M2): a call completes a write in flight seen again that its own process is writing, without waiting for the writer
	writerWait               func(key string)            // a call of this process (not the repair client) is about to wait for its process's write in flight on key to end (decide, waitWriter)
	splitCompletes           bool                        // the code before (§16 item 1, R4.4′): a Q-ahead plain split seen again is completed onto P by any call or the repair client, as a P-ahead one
	rollBackRestamped        func(key string)            // R4.4′'s roll-back re-stamped P, its CAS of Q not yet sent
	beforeCompleteOwn        func(key string)            // R3's row "P refused, Q stored": the writer's replies are in, its own completion's read of P not yet sent; tests hold the writer here
	lifetimeIgnored          bool                        // the code before (§16 item 5): the undo's rows of certain conflict, its "not applied, however far" (neverOnBoth) and primaryShows do not look at the records' lifetimes
	decisionNewLifetime      bool                        // broken variant (§16 item 5): a decision's new configuration (configure: R7, R11.3) draws a new lifetime instead of carrying its base's
	farNotAppliedOff         bool                        // the code before (§16 item 4): the undo answers no write "not applied" past its base's version by L7″ (neverOnBoth); a writer reading again past envelope.Lineage versions answers unknown
	maybeOnPIgnored          bool                        // broken variant (§16 item 4, rv-roll M2): the undo's "not applied, however far" ignores a completion CAS of P sent with no reply
	completeOwnReplyLost     bool                        // fault injection: the writer's completion CAS of P (completeOwn) is stored and its reply lost (as a silent node's)
	rolledBackAsReplaced     bool                        // the code before (§16 item 6): a two-trip append whose touch of Q finds its base again is a replaced copy (unknown), not a roll-back (a conflict)
	carriesOff               bool                        // the code before §17: descent reads no Carries (a record at the write's own version tells by its payload only), no negative slot rule, and the write failover's refusals answer unknown without reading
	carriesPending           bool                        // broken variant (rvcarry B1): a pending fence that carries the write is a Descendant (success)
	carriesNoNegSlot         bool                        // broken variant (rvcarry M2 not applied): no negative slot rule, the parent-slot rule alone
	carriesNoTouch           bool                        // broken variant (rvcarry M5): an append acknowledged from a decision that carries it, its copies not touched with T
	writeFailoverRefused     func(key string)            // the write failover's promise, fence or copy was refused (before it reads again)
	touchMovedOnUnknown      bool                        // the code before (rvcarries2 R3 (a)): touchDecision answers an error when a copy holds a later record of the decision's configuration built on it
	touchDecisionHold        func(key string)            // touchDecision is about to read the decision's copies (tests hold the writer there)
	reclaimedNotOwn          bool                        // the code before (rvcarries2 R2): the write failover's resolution (reclaimed) does not name its own write: a plain split of it on P is answered with its parent at a first sight, or waited for (waitWriter)
	writeFailoverHold        func(key string, read bool) // the write failover is about to read the witness node (read false), or has read it and is about to promise (read true)

	// r9Restamp is called before (done false) and after each of R9's
	// re-stamps.
	r9Restamp func(key string, primary, done bool, err error)
	// r9Clear is called when R9 has read both data copies and is about
	// to CAS them whole with keepExp (clearNoWit: the nowit clear, or a
	// TTL split's re-stamp with the witness in place).
	r9Clear  func(key string)
	r9ExpCut int32 // broken variant: R9's whole-record rewrites (clearNoWit, a split's re-stamp) write keepExp less this many seconds
}

// backoffHook is called with the number n of the refused decision of a
// resolve call and the back-off d it is about to wait.
type backoffHook func(key string, n int, d time.Duration)

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
	_ provider.Appender  = (*Store)(nil)
)

// New returns a Store over cfg.Nodes and starts its health check. It does
// not contact the nodes. Close the Store to stop the health check.
func New(cfg Config) (*Store, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("memcached: no nodes configured")
	}
	if len(cfg.Nodes) > MaxNodes {
		return nil, fmt.Errorf("memcached: %d nodes configured, at most %d supported", len(cfg.Nodes), MaxNodes)
	}
	if cfg.Backup < BackupDefault || cfg.Backup > BackupWitness {
		return nil, fmt.Errorf("memcached: unknown backup mode %d", cfg.Backup)
	}
	cfg.Backup = cfg.backupMode()
	if cfg.Conns != ConnsPipelined && cfg.Conns != ConnsPooled {
		return nil, fmt.Errorf("memcached: unknown connection mode %d", cfg.Conns)
	}
	if err := checkWitnessConfig(&cfg); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxIdleConnsPerNode <= 0 {
		cfg.MaxIdleConnsPerNode = DefaultMaxIdleConnsPerNode
	}
	if cfg.PipelineConns <= 0 {
		cfg.PipelineConns = DefaultPipelineConns
	}
	if cfg.HealthCheckInterval <= 0 {
		cfg.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if cfg.MaxItemSize <= 0 {
		cfg.MaxItemSize = DefaultMaxItemSize
	}
	if cfg.RepairEvery == 0 {
		cfg.RepairEvery = DefaultRepairEvery
	}
	addrs := slices.Clone(cfg.Nodes)
	slices.Sort(addrs)
	cfg.Nodes = addrs
	s := &Store{
		cfg:    cfg,
		backup: cfg.Backup != BackupOff && len(addrs) > 1 && !cfg.TextProtocol,
		baks:   newBakCache(bakCacheSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i, addr := range addrs {
		if i > 0 && addr == addrs[i-1] {
			return nil, fmt.Errorf("memcached: node %s listed twice", addr)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("memcached: node %q: %w", addr, err)
		}
		var text *memcache.Client
		if cfg.TextProtocol {
			var sl memcache.ServerList
			if err := sl.SetServers(addr); err != nil {
				return nil, fmt.Errorf("memcached: node %q: %w", addr, err)
			}
			text = memcache.NewFromSelector(&sl)
			text.Timeout = cfg.Timeout
			text.MaxIdleConns = cfg.MaxIdleConnsPerNode
			text.DialContext = cfg.DialContext
		}
		n := &node{
			idx:      i,
			addr:     addr,
			text:     text,
			meta:     &metaClient{addr: addr, timeout: cfg.Timeout, maxIdle: cfg.MaxIdleConnsPerNode, dial: cfg.DialContext, labelSem: make(chan struct{}, 1)},
			stale:    make(map[string]struct{}),
			maxStale: maxStaleKeys,
			onEvent:  cfg.OnEvent,
			backup:   s.backup,
		}
		if cfg.pipelined() {
			n.meta.pipe = newPipeline(n.meta, cfg.PipelineConns)
		}
		n.up.Store(true)
		s.nodes = append(s.nodes, n)
		s.seeds = append(s.seeds, rendezvous.Seed(addr))
	}
	if cfg.Backup == BackupWitness {
		s.wit = newWitness(s)
	}
	if cfg.beforeStart != nil {
		cfg.beforeStart(s)
	}
	if s.wit != nil {
		go s.wit.loop()
		return s, nil
	}
	go s.healthLoop()
	return s, nil
}

// Backup returns the replication s runs: BackupWitness, BackupOn or
// BackupOff (Config.Backup with BackupDefault resolved, and BackupOn
// reported as BackupOff where it has no effect: one node, the text
// path).
func (s *Store) Backup() BackupMode { return s.cfg.Backup }

// Close stops the health check, waits for the BackupOn Adds in flight and
// the settles of those whose halves split (a few round trips each,
// bounded; see settleAdd), and closes idle connections. Operations after
// Close fail with provider.ErrClosed (an Add caught between its first
// check and its first command too, nothing sent); a second Close does
// nothing. Close must not be called from Config.OnEvent: it waits for
// the health check, which emits events. A settle's EventWarning may come
// just after Close returns (it is emitted once the settle is done).
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if s.hooks.closing != nil {
		s.hooks.closing()
	}
	close(s.stop)
	<-s.done
	s.addsMu.Lock() // from here on, enterAdd counts no Add
	s.addsMu.Unlock()
	s.adds.Wait()
	var first error
	for _, n := range s.nodes {
		n.meta.close()
		if n.text != nil {
			if err := n.text.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// begin checks what every operation checks first.
func (s *Store) begin(ctx context.Context, key string) error {
	if s.closed.Load() {
		return fmt.Errorf("memcached: %w", provider.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return checkKey(key)
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: length %d outside [1, %d]", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			return fmt.Errorf("%w: byte %#x at %d", ErrInvalidKey, key[i], i)
		}
	}
	return nil
}

// checkValue rejects a value over MaxItemSize before anything is written.
func (s *Store) checkValue(key string, value []byte) error {
	if len(value) > s.cfg.MaxItemSize {
		return fmt.Errorf("memcached: key %s: %w: %d bytes, limit %d", key, provider.ErrTooLarge, len(value), s.cfg.MaxItemSize)
	}
	return nil
}

// Get returns the value under key. With the primary up it reads the primary
// (and, in parallel, the backup copy, to learn whether the next lock change
// can be appended to both: backup_append.go); when the primary misses, the
// newest copy found elsewhere (by record Seq) is restored to the primary
// and backup. With the primary down it reads the backup copy.
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := s.begin(ctx, key); err != nil {
		return provider.Entry{}, err
	}
	if s.wit != nil {
		f, err := s.wit.get(ctx, key, false)
		if err != nil {
			return provider.Entry{}, err
		}
		return s.wit.entry(f, true), nil
	}
	rt := s.route(key)
	if rt.p.isUp() {
		var it *metaItem
		var pairBak func() error
		pr := s.newPairRead(ctx, rt)
		if pr != nil {
			pairBak = pr.read
		}
		err, _ := parallel(func() error {
			var err error
			it, err = rt.p.get(ctx, key)
			return err
		}, pairBak)
		switch {
		case err == nil:
			pr.learn(it)
			return entry(rt.p, it.value, it.cas)
		case errors.Is(err, provider.ErrNotFound):
			return s.getMissed(ctx, rt, err)
		case !errors.Is(err, provider.ErrUnavailable) || rt.b == nil:
			return provider.Entry{}, err
		}
		// The primary failed and is now marked down: read the backup.
	}
	if rt.b == nil || !rt.b.isUp() {
		return provider.Entry{}, unavailable(rt)
	}
	it, err := rt.b.get(ctx, rt.bakKey())
	if err != nil {
		return provider.Entry{}, err
	}
	return entry(rt.b, it.value, it.cas)
}

func entry(n *node, value []byte, cas uint64) (provider.Entry, error) {
	t, err := token(n, cas)
	if err != nil {
		return provider.Entry{}, err
	}
	return provider.Entry{Value: value, CAS: t}, nil
}

// Add stores value under key if the key is absent, on the primary and
// then, once the primary took it (or its outcome there is unknown), on
// the backup (primaryThenBackup). It returns ErrExists when the primary
// holds the key, having written nothing. An Add the primary took whose
// backup add is refused (the backup copy holds a record the primary had
// lost, or one a process that takes the primary for down added there)
// brings the copies to one value (settleSplitAdd) and returns
// ErrOutcomeUnknown: its value was on the primary, where others may have
// read it, and may not be the one kept. It returns when the settle ends,
// or one Timeout past ctx's deadline while the settle goes on
// (settleAdd).
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.begin(ctx, key); err != nil {
		return 0, err
	}
	if err := s.checkValue(key, value); err != nil {
		return 0, err
	}
	if s.wit != nil {
		return s.wit.add(ctx, key, value, ttl)
	}
	exp, err := expiration(ttl, time.Now())
	if err != nil {
		return 0, err
	}
	rt := s.route(key)
	for range 2 {
		if rt.p.isUp() {
			return s.addPrimary(ctx, rt, value, exp)
		}
		var t uint64
		err := s.redirect(rt, func(b *node) error {
			cas, err := b.mset(ctx, rt.bakKey(), value, exp, true, 0)
			if err == nil {
				t, err = newToken(b, cas)
			}
			return err
		})
		if !errors.Is(err, errPrimaryBack) {
			return t, err
		}
	}
	return 0, unavailable(rt)
}

func (s *Store) addPrimary(ctx context.Context, rt route, value []byte, exp int32) (uint64, error) {
	if s.backup && !s.hooks.addUntracked {
		if !s.enterAdd() {
			return 0, fmt.Errorf("memcached: %w", provider.ErrClosed)
		}
		defer s.adds.Done()
	}
	var added bakVersion // the backup copy added, when value is a record
	backup := s.backupWrite(rt, func(b *node, key string) error {
		// Without the caller's cancellation, as every backup half: a
		// deadline between the two halves must not leave an Add the
		// primary took on the primary only (cold review rvbo).
		cas, err := b.mset(context.WithoutCancel(ctx), key, value, exp, true, 0)
		if err == nil {
			if h, perr := record.Parse(value); perr == nil {
				added = bakVersion{cas: cas, seq: h.Seq}
				s.baks.put(rt.key, added)
			}
		}
		return err
	})
	var pcas uint64
	primary := func() error {
		var err error
		pcas, err = rt.p.mset(ctx, rt.key, value, exp, true, 0)
		return err
	}
	perr, berr := s.primaryThenBackup(primary, backup)
	switch {
	case perr != nil:
		// Refused or failed unsent at the primary: the backup half was
		// not sent (doc.go, "The unknown-outcome contract"). Of unknown
		// outcome there: it was sent, and the answer stays unknown.
		return 0, perr
	case backup != nil && errors.Is(berr, provider.ErrExists):
		// The backup node holds a copy the primary had lost (or one a
		// process that takes the primary for down added there).
		return 0, s.settleAdd(ctx, rt, value, "the primary's add landed and the backup copy's was refused", berr)
	}
	if added.cas != 0 {
		added.pcas = pcas // both copies hold value: the pair (backup_append.go)
		s.baks.put(rt.key, added)
	}
	return newToken(rt.p, pcas)
}

// tookErr is the error of a write the primary took whose backup half then
// failed with err: the write was stored, so its outcome is unknown
// (provider.ErrOutcomeUnknown), never err's conflict, "not found" or bare
// ErrUnavailable, which say that nothing was written (doc.go, "The
// unknown-outcome contract"). err is kept as text only. With the test
// hook landedConflict (the code before the sixth session's d4), err as is.
func (s *Store) tookErr(rt route, err error) error {
	if errors.Is(err, provider.ErrOutcomeUnknown) || s.hooks.landedConflict {
		return err
	}
	return fmt.Errorf("memcached: %s: the primary took this write, and completing its backup copy failed (%v): %w", rt.key, err, provider.ErrOutcomeUnknown)
}

// primaryThenBackup runs a BackupOn write's primary half, then its
// backup half (when not nil) only when the primary took the write or its
// outcome there is unknown: a write the primary refused, or that failed
// there unsent, touched no other copy, so that its "not written" answers
// are certain (doc.go, "The unknown-outcome contract"). A write whose
// primary outcome is unknown is answered unknown whatever its backup half
// does, and its backup half is sent so that a process that now takes the
// primary for down (this one: the failure marked it) reads what the
// primary may hold, as every process did when both halves went in
// parallel (cold review rvbo M2; with the test hook noBackupAfterUnknown,
// not sent). With the test hook backupParallel, the code before: both
// halves in parallel, and nothing undone when the primary refused.
func (s *Store) primaryThenBackup(primary, backup func() error) (perr, berr error) {
	if s.hooks.backupParallel {
		return parallel(primary, backup)
	}
	perr = primary()
	if backup == nil || perr != nil && (!errors.Is(perr, provider.ErrOutcomeUnknown) || s.hooks.noBackupAfterUnknown) {
		return perr, nil
	}
	return perr, backup()
}

// CompareAndSwap replaces the value under key if its CAS token (from Get)
// is still current, writing the backup copy once the primary took it
// (primaryThenBackup; with the witness, both data copies in parallel:
// docs/replication.md). A token from a
// node that no longer serves the key returns ErrCASConflict. It returns
// the new token (0 on the text path, which cannot report it).
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.begin(ctx, key); err != nil {
		return 0, err
	}
	if err := s.checkValue(key, value); err != nil {
		return 0, err
	}
	if s.wit != nil {
		return s.wit.cas(ctx, key, value, cas, ttl)
	}
	exp, err := expiration(ttl, time.Now())
	if err != nil {
		return 0, err
	}
	rt := s.route(key)
	for range 2 {
		if rt.p.isUp() {
			mcas, ok := parseToken(cas, rt.p)
			if !ok {
				return 0, tokenConflict(rt.p, key)
			}
			return s.casPrimary(ctx, rt, value, mcas, exp)
		}
		var t uint64
		err := s.redirect(rt, func(b *node) error {
			mcas, ok := parseToken(cas, b)
			if !ok {
				return tokenConflict(b, key)
			}
			cas, err := b.mset(ctx, rt.bakKey(), value, exp, false, mcas)
			if err == nil {
				t, err = newToken(b, cas)
			}
			return err
		})
		if !errors.Is(err, errPrimaryBack) {
			return t, err
		}
	}
	return 0, unavailable(rt)
}

func tokenConflict(n *node, key string) error {
	return fmt.Errorf("memcached: node %s: cas %s: %w: token from another node, or from before the node was down", n.addr, key, provider.ErrCASConflict)
}

func (s *Store) casPrimary(ctx context.Context, rt route, value []byte, cas uint64, exp int32) (uint64, error) {
	bw := s.newBakWrite(ctx, rt, value, exp)
	var backup func() error
	if bw != nil {
		backup = bw.send
	}
	var newCAS uint64 // of the primary's copy: tells it from equal bytes written by others
	primary := func() error {
		var err error
		newCAS, err = rt.p.mset(ctx, rt.key, value, exp, false, cas)
		if err == nil && s.hooks.afterPrimaryWrite != nil {
			s.hooks.afterPrimaryWrite(rt.key)
		}
		return err
	}
	if perr, _ := s.primaryThenBackup(primary, backup); perr != nil {
		// Refused: nothing was written, the backup half not sent.
		// Failed (the primary is now marked down): perr says
		// ErrOutcomeUnknown when the request may have landed there,
		// and the backup half was then sent too (primaryThenBackup).
		return 0, perr
	}
	if bw != nil {
		if err := bw.afterPrimary(newCAS); err != nil {
			return 0, s.tookErr(rt, err)
		}
	}
	// A fixPrimary rewrite changed the primary's CAS: the token then
	// only costs the next write a conflict and a read.
	return newToken(rt.p, newCAS)
}

// CompareAndAppend implements provider.Appender: it appends delta (a
// record.Delta) to the value under key if its token is still cas, and sets
// the key's TTL, in one round trip to the primary (`ms <key> <len> MA
// C<cas>` and `mg <key> T<exp>` pipelined: memcached's append keeps the
// item's expiry). A key with a backup copy gets the same append and touch
// on its backup copy once the primary's landed, conditioned on the backup copy's own
// CAS, when this Store knows that the backup copy holds what the primary
// holds at cas (it wrote both, or read both, last: backup_append.go); a
// backup append that is refused is completed with the whole record, read
// back from the primary. It declines with provider.ErrNoAppend, sending nothing, when
// the key has a backup copy this Store cannot pair with cas, when the
// primary is down, on the text path and with Config.WholeWrites.
func (s *Store) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (newCAS, touched uint64, err error) {
	if err := s.begin(ctx, key); err != nil {
		return 0, 0, err
	}
	if s.wit != nil && !s.cfg.WholeWrites {
		newCAS, err = s.wit.casAppend(ctx, key, delta, cas, ttl)
		if err != nil {
			return 0, 0, err
		}
		// The TTL the call set is the new record's (a touch that landed
		// on another record was set back: witness_append.go).
		return newCAS, newCAS, nil
	}
	if s.cfg.TextProtocol || s.cfg.WholeWrites || s.wit != nil {
		return 0, 0, provider.ErrNoAppend
	}
	exp, err := expiration(ttl, time.Now())
	if err != nil {
		return 0, 0, err
	}
	rt := s.route(key)
	if !rt.p.isUp() {
		return 0, 0, provider.ErrNoAppend
	}
	mcas, ok := parseToken(cas, rt.p)
	if !ok {
		return 0, 0, tokenConflict(rt.p, key)
	}
	if s.hooks.appendNoTouch {
		exp = 0
	}
	ba, ok := s.newBakAppend(ctx, rt, delta, mcas, exp)
	if !ok {
		return 0, 0, provider.ErrNoAppend
	}
	var backup func() error
	if ba != nil {
		backup = ba.send
	}
	var mnew, mtouched uint64
	aerr, _ := s.primaryThenBackup(func() error {
		var err error
		mnew, mtouched, err = rt.p.appendTouch(ctx, key, delta, mcas, exp)
		if err == nil && s.hooks.afterPrimaryWrite != nil {
			s.hooks.afterPrimaryWrite(rt.key)
		}
		return err
	}, backup)
	if mtouched != 0 {
		if touched, err = token(rt.p, mtouched); err != nil {
			return 0, 0, err
		}
	}
	if errors.Is(aerr, errAppendedGone) && ba != nil {
		// The primary's append was stored and its copy then gone by its
		// touch (expired, flushed or evicted between the two): the
		// backup append, still conditioned on the pair, carries the
		// change on, as Touch's does ("the backup copy lives on"); the
		// next read restores the primary from it. Answering not found
		// for a change on the backup copy raced that restore
		// (review-oc31 F1). The primary held the append until it was
		// gone, and a reader may have read it there and written a record
		// based on it onto both copies: a backup append refused because
		// the backup copy changed (a conflict), or whose outcome is
		// unknown (its reply lost: it may hold the change the next read
		// restores), leaves the answer unknown, never "not found" (cold
		// re-audit audit4; cold review rvbo M1). A backup copy gone too
		// (not found, or gone by its own touch) holds nothing: the key
		// is gone.
		aerr = s.appendGone(rt, ba, aerr)
	}
	if aerr != nil {
		// Refused or failed unsent at the primary: the backup append
		// was not sent (doc.go, "The unknown-outcome contract"); of
		// unknown outcome there, it was, and the answer stays unknown;
		// with the test hook backupParallel it may have landed, and
		// stays.
		return 0, touched, aerr
	}
	if ba != nil {
		if err := ba.afterPrimary(mnew); err != nil {
			return 0, touched, s.tookErr(rt, err)
		}
	}
	newCAS, err = newToken(rt.p, mnew)
	return newCAS, touched, err
}

// appendGone is CompareAndAppend's answer when the primary's append was
// stored and then gone by its touch (aerr, errAppendedGone): the backup
// append is sent (landed in parallel already with the test hook
// backupParallel); stored, success; refused by a changed copy or of
// unknown outcome, unknown; the backup copy gone too, aerr.
func (s *Store) appendGone(rt route, ba *bakAppend, aerr error) error {
	if ba.newCAS == 0 && !s.hooks.backupParallel {
		ba.send()
	}
	serr := ba.err
	switch {
	case ba.newCAS != 0:
		return nil
	case s.hooks.backupParallel || s.hooks.appendGoneSure:
		return aerr
	case errors.Is(serr, provider.ErrOutcomeUnknown), errors.Is(serr, provider.ErrCASConflict):
		return fmt.Errorf("memcached: %s: append: the primary's copy was gone by its touch, and the backup append was not stored (%w): %w", rt.key, serr, provider.ErrOutcomeUnknown)
	}
	return aerr
}

// Touch sets the TTL of both copies. It succeeds when either copy was
// touched. A backup copy found missing is restored from the primary.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.begin(ctx, key); err != nil {
		return err
	}
	if s.wit != nil {
		return s.wit.touch(ctx, key, ttl)
	}
	exp, err := expiration(ttl, time.Now())
	if err != nil {
		return err
	}
	rt := s.route(key)
	for range 2 {
		if rt.p.isUp() {
			backup := s.backupWrite(rt, func(b *node, key string) error { return b.touch(ctx, key, exp) })
			perr, berr := parallel(func() error { return rt.p.touch(ctx, key, exp) }, backup)
			switch {
			case perr == nil:
				if backup != nil && errors.Is(berr, provider.ErrNotFound) {
					s.restoreBackup(context.WithoutCancel(ctx), rt)
				}
				return nil
			case backup != nil && berr == nil:
				return nil // the primary lost it or died; the backup copy lives on
			default:
				return perr
			}
		}
		err := s.redirect(rt, func(b *node) error { return b.touch(ctx, rt.bakKey(), exp) })
		if !errors.Is(err, errPrimaryBack) {
			return err
		}
	}
	return unavailable(rt)
}

// GetAndTouch implements provider.GetAndToucher. With the primary up and
// holding the key (and meta commands) it is one `mg ... T<exp>` on the primary (and, in
// parallel, a touch of the backup copy, as Touch does). Otherwise (a miss
// to repair, a primary down) it reads with Get and sets the TTL with a
// CompareAndSwap of the unchanged value, which succeeds only if nothing
// changed since the read: the same atomic step, in two operations.
func (s *Store) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if err := s.begin(ctx, key); err != nil {
		return provider.Entry{}, err
	}
	if s.wit != nil {
		return s.wit.getAndTouch(ctx, key, ttl)
	}
	exp, err := expiration(ttl, time.Now())
	if err != nil {
		return provider.Entry{}, err
	}
	rt := s.route(key)
	if rt.p.isUp() && rt.p.text == nil {
		var it *metaItem
		backup := s.backupWrite(rt, func(b *node, key string) error { return b.touch(ctx, key, exp) })
		perr, berr := parallel(func() error {
			var err error
			it, err = rt.p.mgetTouch(ctx, key, exp)
			return err
		}, backup)
		if perr == nil {
			if backup != nil && errors.Is(berr, provider.ErrNotFound) {
				s.restoreBackup(context.WithoutCancel(ctx), rt)
			}
			return entry(rt.p, it.value, it.cas)
		}
		if !errors.Is(perr, provider.ErrNotFound) && !errors.Is(perr, provider.ErrUnavailable) {
			return provider.Entry{}, perr
		}
	}
	for range maxGetAndTouch {
		e, err := s.Get(ctx, key)
		if err != nil {
			return provider.Entry{}, err
		}
		cas, err := s.CompareAndSwap(ctx, key, e.Value, e.CAS, ttl)
		if s.cfg.TextProtocol {
			switch {
			case err == nil:
				// The text path cannot report the new token: read it.
				return s.Get(ctx, key)
			case errors.Is(err, provider.ErrCASConflict):
				// A newer write landed after the read and set its own
				// TTL: the read stands, with its (now stale) token.
				return e, nil
			}
		}
		if err == nil {
			return provider.Entry{Value: e.Value, CAS: cas}, nil
		}
		if !errors.Is(err, provider.ErrCASConflict) {
			return provider.Entry{}, err
		}
	}
	return provider.Entry{}, fmt.Errorf("memcached: get and touch kept conflicting: %w", provider.ErrCASConflict)
}

// maxGetAndTouch bounds GetAndTouch's read-and-swap attempts off the
// common path.
const maxGetAndTouch = 10

// Delete removes both copies of key. It returns ErrNotFound when neither
// existed.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.begin(ctx, key); err != nil {
		return err
	}
	if s.wit != nil {
		return s.wit.del(ctx, key)
	}
	rt := s.route(key)
	s.baks.drop(key)
	for range 2 {
		if rt.p.isUp() {
			backup := s.backupWrite(rt, func(b *node, key string) error { return b.delete(ctx, key) })
			perr, berr := parallel(func() error { return rt.p.delete(ctx, key) }, backup)
			if perr == nil || (backup != nil && berr == nil) {
				return nil
			}
			return perr
		}
		err := s.redirect(rt, func(b *node) error { return b.delete(ctx, rt.bakKey()) })
		if !errors.Is(err, errPrimaryBack) {
			return err
		}
	}
	return unavailable(rt)
}

// TTL returns the remaining time to live of key, read with memcached's
// meta get (`mg <key> t`) from the copy Get would read. Whole seconds; a
// key without expiry reports math.MaxInt64.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	if err := s.begin(ctx, key); err != nil {
		return 0, err
	}
	if s.wit != nil {
		return s.wit.ttl(ctx, key)
	}
	rt := s.route(key)
	var err error
	if rt.p.isUp() {
		var items []*metaItem
		items, err = rt.p.mget(ctx, false, key)
		switch {
		case err == nil && items[0] != nil:
			return ttlOf(items[0]), nil
		case err == nil:
			err = fmt.Errorf("memcached: node %s: ttl %s: %w", rt.p.addr, key, provider.ErrNotFound)
		case !errors.Is(err, provider.ErrUnavailable):
			return 0, err
		}
	}
	if rt.b == nil {
		if err == nil {
			err = unavailable(rt)
		}
		return 0, err
	}
	if !rt.b.isUp() {
		return 0, unavailable(rt)
	}
	items, berr := rt.b.mget(ctx, false, rt.bakKey())
	switch {
	case berr != nil:
		return 0, berr
	case items[0] == nil:
		return 0, fmt.Errorf("memcached: node %s: ttl %s: %w", rt.b.addr, rt.bakKey(), provider.ErrNotFound)
	}
	return ttlOf(items[0]), nil
}

func ttlOf(it *metaItem) time.Duration {
	if it.ttl < 0 {
		return math.MaxInt64
	}
	return time.Duration(it.ttl) * time.Second
}
