package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// Params shape one simulated run.
type Params struct {
	Nodes        int           // memcached nodes
	Apps         int           // app servers, each with its own Store and Provider
	Workers      int           // concurrent requests per app server
	OpsPerWorker int           // requests each worker makes
	Sessions     int           // sessions the requests share
	Lease        time.Duration // provider lease
	Timeout      time.Duration // memcached client timeout
	Horizon      time.Duration // faults start within it
	Kinds        []FaultKind   // fault kinds drawn (all when empty)
	// MinLatency and MaxLatency bound each command's network latency,
	// drawn per command from the connection's own random source (and
	// each way of a durable statement's).
	MinLatency, MaxLatency time.Duration
	// Backup is the memcached Store's replication mode
	// (memcached.Config.Backup; the zero value is the Store's default:
	// the witness scheme on 3 or more nodes, BackupOn on 2, one copy on
	// 1; Params.scheme).
	Backup memcached.BackupMode
	// Tiered runs the tiered store (store/tiered) instead of the
	// memcached Store alone: the memcached Store over the simulated
	// nodes is its cache, a DurableNode with store/sqlstore's semantics
	// its durable tier. Its kinds are TieredFaultKinds.
	Tiered bool
	// Creates is how many sessions a seed creates during the run, under
	// its faults (docs/simulation.md, "Sessions created under faults"):
	// each a browser whose first request creates its session through the
	// provider as the middleware does (CreateNewStoreData, then
	// SetAndReleaseItemExclusive with newItem: the store's Add, R8 of
	// docs/replication.md) and, once that is acknowledged, makes
	// createFollowUps requests of the workload's kinds through random app
	// servers. They are sessions Sessions to Sessions+Creates-1, checked
	// as the others (Creation). The first starts just before the
	// schedule's first fault that strikes at an instant (or, of
	// flush-step, has a flush after the CreateCmd-th node command on its
	// key); the others at instants spread over the run.
	Creates int
	// DurableTimeout bounds each durable statement, as sqlstore's
	// Config.Timeout does; default 2 s (more than a lease, so that a
	// statement held for a takeover can still answer).
	DurableTimeout time.Duration

	// ttlSkew is added to every TTL the provider gives the store: a
	// deliberately broken variant for the checker's tests (a store that
	// keeps sessions too long, or too short, when negative).
	ttlSkew time.Duration
	// noGetAndTouch hides the Store's GetAndTouch from the provider in
	// every seed (otherwise only in odd seeds): its read path then reads
	// with Get and slides with a CAS.
	noGetAndTouch bool
	// appends hands the Store's appends (provider.Appender) to the
	// provider in every seed: its lock changes are appended to the record
	// as deltas (to both copies with two or more nodes). Off, the default
	// scheme's and the witness scheme's seeds 4 to 7 modulo 8 append
	// (production's write path, so that every fault kind meets both it
	// and whole writes; Result.Appends) and the others, and every seed of
	// the tiered store, write every change whole.
	appends bool
	// conns chooses the Stores' connections (memcached.Config.Conns):
	// by default half the seeds pipelined (the Store's default) and half
	// pooled (Result.Pooled); the witness scheme is always pooled.
	conns connChoice
	// seqStamp: the provider reads every record with DataSeq 0, so that
	// its lock stamp (LockID + Seq - DataSeq) moves with every write, as
	// the stamp did when it was the record's Seq: a deliberately broken
	// variant for the checker's test of stuck-while-written
	// (TestAbandonCheckerCatchesSeqStamp).
	seqStamp bool
	// dropCreateWitness: the nodes acknowledge, and do not keep, the
	// witness record of a session created during the run while its
	// creation is under way (Network.unstore): its Store believes it
	// created the session with a witness. A deliberately broken variant
	// for the checker's test of the D6 allowance
	// (TestCreateCheckerCatchesMissingWitness): a creation without its
	// witness that the Store did not report must not be allowed a loss.
	dropCreateWitness bool
	// wrapDurable, when set, wraps each app server's durable client: a
	// deliberately broken variant of the durable tier for the checker's
	// tests.
	wrapDurable func(tiered.Durable) tiered.Durable
	// noFinalRetry: a final request does not retry an AcquireItem of
	// unknown outcome (runner.final), so that such a request counts as
	// stuck on every store: the checker as it was before finals retried,
	// for TestFinalRetriesUnknownOutcome.
	noFinalRetry bool
}

// connChoice says which connections a run's memcached Stores use
// (memcached.Config.Conns).
type connChoice int

const (
	// connsMixed (the default): seeds 2 and 3 modulo 4 pooled, the others
	// pipelined, so that every fault kind meets both (with and without
	// GetAndTouch, which goes by the seed's parity).
	connsMixed connChoice = iota
	// connsPipelined: every seed pipelined.
	connsPipelined
	// connsPooled: every seed pooled.
	connsPooled
)

// appendsIn reports whether the provider appends lock changes in seed
// (Params.appends).
func (p Params) appendsIn(seed uint64) bool {
	return p.appends || ((p.scheme() == memcached.BackupOn || p.scheme() == memcached.BackupWitness) && !p.Tiered && seed%8 >= 4)
}

// scheme returns the replication the run's Stores use: Params.Backup,
// with memcached.BackupDefault resolved as memcached.New resolves it
// (memcached.Store.Backup; TestSchemeIsStoreDefault checks they agree).
func (p Params) scheme() memcached.BackupMode {
	switch {
	case p.Backup == memcached.BackupWitness || p.Backup == memcached.BackupOff:
		return p.Backup
	case p.Nodes < 2:
		return memcached.BackupOff
	case p.Backup == memcached.BackupOn || p.Nodes == 2:
		return memcached.BackupOn
	}
	return memcached.BackupWitness
}

// pooled reports whether seed's Stores use pooled connections (the
// witness scheme always does: memcached.Config.Conns).
func (p Params) pooled(seed uint64) bool {
	switch {
	case p.scheme() == memcached.BackupWitness || p.conns == connsPooled:
		return true
	case p.conns == connsPipelined:
		return false
	}
	return seed%4 >= 2
}

func (p Params) durableTimeout() time.Duration {
	if p.DurableTimeout > 0 {
		return p.DurableTimeout
	}
	return 2 * time.Second
}

// DefaultParams are the parameters of the independent fault test that
// found the four defects: 3 nodes, 4 app servers, lease 1.5 s, client
// timeout 300 ms; 4 apps x 2 workers x 8 requests = 64 requests a seed.
func DefaultParams() Params {
	return Params{
		Nodes: 3, Apps: 4, Workers: 2, OpsPerWorker: 8, Sessions: 3,
		Lease: 1500 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Horizon:    2500 * time.Millisecond,
		MinLatency: 50 * time.Microsecond, MaxLatency: 2 * time.Millisecond,
	}
}

// expectedStoreOps is a rough count of store operations in a run, where
// operation-triggered faults are placed.
func (p Params) expectedStoreOps() int { return p.Apps * p.Workers * p.OpsPerWorker * 3 }

// kinds returns the fault kinds the seeds take in turn.
func (p Params) kinds() []FaultKind {
	switch {
	case len(p.Kinds) > 0:
		return p.Kinds
	case p.Tiered:
		return TieredFaultKinds
	case p.scheme() == memcached.BackupWitness:
		return WitnessFaultKinds
	}
	return FaultKinds
}

// Ops returns the number of requests of a run.
func (p Params) Ops() int { return p.Apps * p.Workers * p.OpsPerWorker }

// ReqKind is a request's kind.
type ReqKind string

// Request kinds of the workload.
const (
	ReqIncr     ReqKind = "incr"      // locked read-modify-write of the counter
	ReqRead     ReqKind = "read"      // read-only request
	ReqLockFree ReqKind = "lock-free" // lock-free write of a key of its own
	ReqFinal    ReqKind = "final"     // the check after the faults healed
	ReqCreate   ReqKind = "create"    // a new session's first request (Params.Creates)
)

// createFollowUps is how many requests a browser makes with the session
// it created (Params.Creates), once its creation is acknowledged.
const createFollowUps = 2

// Creation is a session created during the run (Params.Creates).
type Creation struct {
	Session int      // its index: Params.Sessions and up
	Req     *Request // the creating request
	// Reported: within the creating request's own store calls (its
	// goroutine, while a call ran), its Store reported a creation
	// without a witness (EventFallback, R8's failed-candidate case) or
	// a failover (EventFailover: R7 completing an Add abandoned at its
	// primary, which marks it nowit).
	Reported bool
	// NoWitness: when its Add returned success, or its request returned
	// (whatever it was told), some node held a data record of the session
	// and no node its witness record (dataFlags, witnessFlags). Witness:
	// one of those looks saw a witness record; Data: how many nodes held
	// a data record at the last look.
	NoWitness, Witness bool
	Data               int
	// Losses: the instants a fault erased (flush_all, kill, restart) a
	// node that held a data record of the session while no node held its
	// witness record, from its creation's start: a data copy lost in the
	// window of a creation without its witness, before R9 stores it
	// (docs/replication.md, R8 and section 6, review-4 D6).
	Losses []time.Duration
	// NoWitLosses: those of Losses at which an erased data record carried
	// the nowit mark of its envelope (noWitMarked): a copy of a
	// configuration the Store established without its witness (R8's
	// two-record creation; R7's failover of a creation's record, as after
	// an Add abandoned at its primary), whichever of its goroutines did it
	// (opposite seeds 208 and 2859: the creating process's repair client
	// failed the creation over).
	NoWitLosses []time.Duration

	done bool // its creating request returned (runner.mu)
}

// Witless reports whether c went without its witness by R8's stated
// exception: the Store reported it (Reported) and no witness record was
// found when it returned (NoWitness).
func (c *Creation) Witless() bool { return c.Reported && c.NoWitness }

// StoreOp is one store operation of a request, as the provider issued it.
type StoreOp struct {
	Name      string // get, lock, commit-get, commit, renew, touch, ...
	Call, Ret time.Duration
	Err       error
}

// Request is one request of the history.
type Request struct {
	ID        string
	App       int
	Session   int
	Kind      ReqKind
	Call, Ret time.Duration // whole request
	// Read: the counter and the id of the write it came from, as the
	// request saw them (incr: at acquire; read: the value read).
	N      int
	W      string
	Seen   bool // N and W were read
	Acq    bool // incr: the lock was taken
	LockID uint64
	Err    error // the request's final error (nil: acknowledged)
	// CommitCall is when the incr's commit started (0: none).
	CommitCall time.Duration
	Key        string // lock-free: the key written
	LFKeys     []string
	Ops        []StoreOp
	// Retried is, for a final request, the error of a first AcquireItem
	// of unknown outcome that it retried (runner.final), and RetryOp the
	// index in Ops of the retry's first operation; Err, N, W and Seen are
	// the retry's.
	Retried error
	RetryOp int

	phase string
}

// Outcome of a request's write.
type Outcome int

// Outcomes.
const (
	Acked   Outcome = iota // acknowledged
	Unknown                // may or may not have been applied
	Failed                 // reported as not written
)

// outcome classifies a write's error.
func outcome(err error) Outcome {
	switch {
	case err == nil:
		return Acked
	case errors.Is(err, provider.ErrLockLost), errors.Is(err, provider.ErrNotFound),
		errors.Is(err, provider.ErrCASConflict), errors.Is(err, provider.ErrExists):
		return Failed
	}
	return Unknown
}

// FaultHit is a fault as it struck.
type FaultHit struct {
	Fault
	Start, End time.Duration
	Nodes      []int // the nodes it struck
	// Expiry: how many of the session's copies were live on their
	// nodes when the probe started (1 of 2: they expire at different
	// instants and the probe reads between them).
	LiveCopies int
}

// Result is one seed's run.
type Result struct {
	Seed     uint64
	Params   Params
	Schedule Schedule
	Hits     []FaultHit
	Requests []*Request
	Finals   []*Request
	Elapsed  time.Duration // virtual time of the run
	// Timeouts holds each session's own timeout when the schedule gave
	// it a short one (FaultExpiry), 0 otherwise (the 20-minute default);
	// Created is when the sessions had been created.
	Timeouts []time.Duration
	Created  time.Duration
	// GetAndTouch: the provider read through the Store's GetAndTouch
	// (production's read path; even seeds); otherwise with Get and a
	// CAS that slides the expiry (odd seeds: the path of stores without
	// it, and the memcached Store's own fallback).
	GetAndTouch bool
	// Pooled: the memcached Stores took a pooled connection per
	// operation (memcached.ConnsPooled: seeds 2 and 3 modulo 4 unless
	// Params chose one mode, and every seed of the witness scheme);
	// otherwise they multiplexed their operations over shared, pipelined
	// connections (the default).
	Pooled bool
	// Appends: the provider appended lock changes as deltas
	// (Params.appendsIn: seeds 4 to 7 modulo 8 of the default scheme
	// unless Params chose); otherwise it wrote every change whole.
	Appends bool
	// Creations are the sessions created during the run
	// (Params.Creates), in order.
	Creations []*Creation
	// Violations found by Check.
	Violations []Violation
	// Tiered: the tiered Stores' counters, summed over the app servers
	// (Params.Tiered).
	Tiered tiered.Stats

	appended int64 // lock changes appended as deltas (Result.Appends)

	// RollBacks counts the writes on a secondary alone that the
	// memcached Stores rolled back (R4.4′, docs/replication.md §16: their
	// repair events).
	RollBacks int64
}

type reqKey struct{}

// recStore wraps an app's Store: it records each operation in the
// request found in the context, stalls while its app is paused, and
// counts operations to fire operation-triggered faults.
type recStore struct {
	provider.Store
	app   int
	run   *runner
	start time.Time
}

func (s *recStore) record(ctx context.Context, key, name string, fn func() error) error {
	s.run.waitApp(s.app)
	rq, _ := ctx.Value(reqKey{}).(*Request)
	call := time.Since(s.start)
	creating := rq != nil && rq.Kind == ReqCreate
	if creating {
		g := goid()
		s.run.mu.Lock()
		s.run.crGo[g] = rq.Session - s.run.p.Sessions
		s.run.mu.Unlock()
		defer func() {
			s.run.mu.Lock()
			delete(s.run.crGo, g)
			s.run.mu.Unlock()
		}()
	}
	err := fn()
	if creating && name == "add" && err == nil {
		s.run.lookAtCreation(rq.Session-s.run.p.Sessions, key)
	}
	if rq != nil {
		ph := rq.phase
		if ph != "" {
			name = ph + "-" + name
		}
		rq.Ops = append(rq.Ops, StoreOp{Name: name, Call: call, Ret: time.Since(s.start), Err: err})
	}
	s.run.afterOp(key)
	return err
}

// ttl applies the broken variant's skew, if any.
func (s *recStore) ttl(ttl time.Duration) time.Duration {
	if s.run.p.ttlSkew == 0 || ttl <= 0 {
		return ttl
	}
	return max(ttl+s.run.p.ttlSkew, time.Millisecond)
}

// stamp applies the broken variant Params.seqStamp, if set: the record
// read is given DataSeq 0.
func (s *recStore) stamp(e provider.Entry) provider.Entry {
	if !s.run.p.seqStamp || e.Value == nil {
		return e
	}
	rec, err := record.Decode(e.Value)
	if err != nil {
		return e
	}
	rec.DataSeq = 0
	e.Value = rec.Encode()
	return e
}

func (s *recStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	var e provider.Entry
	err := s.record(ctx, key, "get", func() (err error) { e, err = s.Store.Get(ctx, key); return err })
	return s.stamp(e), err
}

func (s *recStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	var c uint64
	err := s.record(ctx, key, "add", func() (err error) { c, err = s.Store.Add(ctx, key, value, s.ttl(ttl)); return err })
	return c, err
}

func (s *recStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	var c uint64
	err := s.record(ctx, key, "cas", func() (err error) { c, err = s.Store.CompareAndSwap(ctx, key, value, cas, s.ttl(ttl)); return err })
	return c, err
}

// CompareAndAppend is the Store's append (recorded as "cas": it is the
// same conditional write, which sets the expiry) when the run appends
// (Result.Appends), and declines otherwise.
func (s *recStore) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (uint64, uint64, error) {
	ap, ok := s.Store.(provider.Appender)
	if !ok || !s.run.appends {
		return 0, 0, provider.ErrNoAppend
	}
	var c, touched uint64
	err := s.record(ctx, key, "cas", func() (err error) {
		c, touched, err = ap.CompareAndAppend(ctx, key, delta, cas, s.ttl(ttl))
		if err == nil {
			s.run.appended.Add(1)
		}
		return err
	})
	return c, touched, err
}

// gtStore is a recStore over a store that reads and touches in one step
// (provider.GetAndToucher, as the memcached Store does): the provider's
// read path then takes it, as it does in production.
type gtStore struct {
	*recStore
	gt provider.GetAndToucher
}

func (s gtStore) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	var e provider.Entry
	err := s.record(ctx, key, "gat", func() (err error) { e, err = s.gt.GetAndTouch(ctx, key, s.ttl(ttl)); return err })
	return s.stamp(e), err
}

func (s *recStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return s.record(ctx, key, "touch", func() error { return s.Store.Touch(ctx, key, s.ttl(ttl)) })
}

// runner is one seed's run in progress.
type runner struct {
	p       Params
	appends bool // Result.Appends
	nw      *Network
	db      *DurableNode // Params.Tiered
	start   time.Time
	stores  []*memcached.Store // the memcached Stores (the caches, when tiered)
	sched   Schedule
	// settles: the Stores' reads settle writes of unknown outcome
	// (provider.OutcomeReader), so the provider resolves them itself.
	settles bool

	mu       sync.Mutex
	hits     []FaultHit
	opCount  atomic.Int64
	appended atomic.Int64
	// rollBacks: the Stores' roll-back events (Result.RollBacks).
	rollBacks atomic.Int64
	appGate   []chan struct{} // non-nil while the app is paused
	triggers  map[int][]Fault
	// dbTriggers: FaultReviveMidCommit by durable record write; dbPuts
	// counts those writes.
	dbTriggers map[int][]Fault
	dbPuts     int
	// cmdTriggers: FaultFlushStep by node command; cmds counts the
	// commands the nodes executed.
	cmdTriggers map[int][]Fault
	cmds        int
	// The sessions created during the run (Params.Creates): crKey maps
	// each one's key to its index in crs from its creation's start;
	// crGo maps the goroutine of a creating request to it while the
	// request calls the Store; crTriggers holds FaultFlushStep by the
	// count crCmds of node commands on the first one's key.
	crs        []*Creation
	crKey      map[string]int
	crGo       map[uint64]int
	crTriggers map[int][]Fault
	crCmds     int
	opNode     int // the node of the seed's first fault; -1 before
	opNode2    int // and its second node (pause+kill)
	faults     sync.WaitGroup
}

func (r *runner) now() time.Duration { return time.Since(r.start) }

func (r *runner) waitApp(app int) {
	r.mu.Lock()
	g := r.appGate[app]
	r.mu.Unlock()
	if g != nil {
		<-g
	}
}

func (r *runner) afterOp(key string) {
	n := int(r.opCount.Add(1))
	r.mu.Lock()
	fs := r.triggers[n]
	delete(r.triggers, n)
	r.mu.Unlock()
	for _, f := range fs {
		primary, backup := r.stores[0].Placement(key)
		addr := primary
		if f.Role == "backup" && backup != "" {
			addr = backup
		}
		for i, a := range r.nw.Addrs() {
			if a == addr {
				f.Node = i
			}
		}
		r.strike(f)
	}
}

// strike applies f now; faults with a duration end in their own
// goroutine.
func (r *runner) strike(f Fault) {
	if f.Kind != FaultPauseApp && f.Kind != FaultFlushEach && !dbKind(f.Kind) && !f.Double {
		// One node per seed: the first fault's.
		r.mu.Lock()
		if r.opNode < 0 {
			r.opNode, r.opNode2 = f.Node, f.Node2
			if r.opNode2 == r.opNode {
				r.opNode2 = (r.opNode + 1) % r.p.Nodes
			}
		}
		f.Node, f.Node2 = r.opNode, r.opNode2
		r.mu.Unlock()
	}
	addrs := r.nw.Addrs()
	nd := r.nw.Node(addrs[f.Node])
	h := FaultHit{Fault: f, Start: r.now(), Nodes: []int{f.Node}}
	var end func()
	switch f.Kind {
	case FaultFlush, FaultFlushEach, FaultFlushStep:
		r.erase([]int{f.Node}, func(nd *Node, flush func(*Node)) { flush(nd) })
	case FaultFlushAll, FaultReviveMidCommit:
		h.Nodes = nil
		for i := range addrs {
			h.Nodes = append(h.Nodes, i)
		}
		r.erase(h.Nodes, func(nd *Node, flush func(*Node)) { flush(nd) })
	case FaultRestart:
		r.erase([]int{f.Node}, func(nd *Node, _ func(*Node)) { nd.Restart() })
	case FaultKill:
		r.erase([]int{f.Node}, func(nd *Node, _ func(*Node)) { nd.Kill() })
		end = nd.Start
	case FaultPause:
		nd.Pause()
		end = nd.Resume
	case FaultPartition:
		clients := make([]string, len(f.Apps))
		for i, a := range f.Apps {
			clients[i] = appName(a)
		}
		nd.Partition(clients...)
		end = func() { nd.Heal(clients...) }
	case FaultDelay:
		nd.Delay(f.Dur, f.MaxDelay)
		// Nothing to undo (the delay runs out by itself), but the run
		// waits for it: the final requests come after the faults healed.
		end = func() {}
	case FaultPauseApp:
		// A stopped process sends nothing and reads nothing: its new
		// operations wait, and what it has in flight gets no answer
		// until it runs again (its timeouts then fire, as they do when a
		// SIGCONTed process's timers catch up).
		h.Nodes = nil
		r.mu.Lock()
		g := make(chan struct{})
		r.appGate[f.Apps[0]] = g
		r.mu.Unlock()
		for _, a := range addrs {
			r.nw.Node(a).Partition(appName(f.Apps[0]))
		}
		end = func() {
			for _, a := range addrs {
				r.nw.Node(a).Heal(appName(f.Apps[0]))
			}
			r.mu.Lock()
			r.appGate[f.Apps[0]] = nil
			r.mu.Unlock()
			close(g)
		}
	case FaultPauseKill:
		n2 := r.nw.Node(addrs[f.Node2])
		h.Nodes = append(h.Nodes, f.Node2)
		nd.Pause()
		r.erase([]int{f.Node2}, func(nd *Node, _ func(*Node)) { nd.Kill() })
		end = func() { nd.Resume(); n2.Start() }
	case FaultOpposite:
		// Node f.Node unreachable from f.Apps, f.Node2 from the other
		// app servers; the third node flushed half way through.
		var cut, rest []string
		for a := range r.p.Apps {
			if slices.Contains(f.Apps, a) {
				cut = append(cut, appName(a))
			} else {
				rest = append(rest, appName(a))
			}
		}
		n2 := r.nw.Node(addrs[f.Node2])
		third := -1
		for i := range addrs {
			if i != f.Node && i != f.Node2 && third < 0 {
				third = i
			}
		}
		h.Nodes = append(h.Nodes, f.Node2, third)
		nd.Partition(cut...)
		n2.Partition(rest...)
		if third >= 0 {
			r.faults.Add(1)
			go func() {
				defer r.faults.Done()
				time.Sleep(f.Dur / 2)
				r.erase([]int{third}, func(nd *Node, flush func(*Node)) { flush(nd) })
			}()
		}
		end = func() { nd.Heal(cut...); n2.Heal(rest...) }
	case FaultDBDelay:
		h.Nodes = nil
		r.db.Delay(f.Dur, f.MaxDelay)
	case FaultDBPause:
		h.Nodes = nil
		r.db.Pause()
		end = r.db.Resume
	}
	if end == nil || f.Dur <= 0 {
		h.End = h.Start
		r.addHit(h)
		return
	}
	r.faults.Add(1)
	go func() {
		defer r.faults.Done()
		time.Sleep(f.Dur)
		end()
		h.End = r.now()
		r.addHit(h)
	}()
}

// afterCmd runs after each command a node executes (Network.onCmd), with
// its key: it strikes the FaultFlushStep faults triggered by it (by the
// count of the nodes' commands, or of those on the first created
// session's key: Fault.CreateCmd).
func (r *runner) afterCmd(key string) {
	r.mu.Lock()
	r.cmds++
	fs := r.cmdTriggers[r.cmds]
	delete(r.cmdTriggers, r.cmds)
	if i, ok := r.crKey[key]; ok && i == 0 {
		r.crCmds++
		fs = append(fs, r.crTriggers[r.crCmds]...)
		delete(r.crTriggers, r.crCmds)
	}
	r.mu.Unlock()
	for _, f := range fs {
		r.strike(f)
	}
}

// afterDBPut runs after each durable record write that stored its record
// (DurableNode.afterPut): it strikes the FaultReviveMidCommit faults
// triggered by it and returns how long the write's answer is held.
func (r *runner) afterDBPut() time.Duration {
	r.mu.Lock()
	r.dbPuts++
	fs := r.dbTriggers[r.dbPuts]
	delete(r.dbTriggers, r.dbPuts)
	r.mu.Unlock()
	var hold time.Duration
	for _, f := range fs {
		r.strike(f)
		hold = max(hold, f.Dur)
	}
	return hold
}

// erase applies a fault that erases the memory of nodes (act on each:
// flush, flush_all, kill or restart) while no node runs a command
// (Network.frozen), after noting, for each session created during the
// run whose creation has started, whether one of those nodes held a data
// record of it while no node held its witness record (Creation.Losses),
// and whether such a record was marked nowit (Creation.NoWitLosses).
func (r *runner) erase(nodes []int, act func(nd *Node, flush func(*Node))) {
	addrs := r.nw.Addrs()
	if r.p.Creates == 0 {
		for _, n := range nodes {
			act(r.nw.Node(addrs[n]), (*Node).Flush)
		}
		return
	}
	r.nw.frozen(func(items map[*Node]map[string]seenItem, flush func(*Node)) {
		r.mu.Lock()
		now := r.now()
		for key, i := range r.crKey {
			wit := false
			for _, m := range items {
				wit = wit || m[key].flags == witnessFlags
			}
			if wit {
				continue
			}
			lost, marked := false, false
			for _, n := range nodes {
				if it := items[r.nw.Node(addrs[n])][key]; it.flags == dataFlags {
					lost, marked = true, marked || it.noWit
				}
			}
			if lost {
				r.crs[i].Losses = append(r.crs[i].Losses, now)
			}
			if marked {
				r.crs[i].NoWitLosses = append(r.crs[i].NoWitLosses, now)
			}
		}
		r.mu.Unlock()
		for _, n := range nodes {
			act(r.nw.Node(addrs[n]), flush)
		}
	})
}

// lookAtCreation notes whether the nodes hold a witness record of
// created session i (key), and how many a data record: after its Add
// returned success, and after its request returned (Creation.NoWitness).
func (r *runner) lookAtCreation(i int, key string) {
	r.nw.frozen(func(items map[*Node]map[string]seenItem, _ func(*Node)) {
		data, wit := 0, false
		for _, m := range items {
			switch m[key].flags {
			case dataFlags:
				data++
			case witnessFlags:
				wit = true
			}
		}
		r.mu.Lock()
		c := r.crs[i]
		c.Data = data
		c.Witness = c.Witness || wit
		c.NoWitness = c.NoWitness || (data > 0 && !wit)
		r.mu.Unlock()
	})
}

// onEvent takes a Store's node events (memcached.Config.OnEvent): a
// roll-back is counted (Result.RollBacks); one emitted by a creating
// request's own store call (its goroutine) that reports a creation
// without its witness or a failover marks that creation Reported.
func (r *runner) onEvent(e provider.Event) {
	if e.Kind == provider.EventRepair && strings.Contains(e.Detail, "rolled back") {
		r.rollBacks.Add(1)
		return
	}
	if !(e.Kind == provider.EventFallback && strings.Contains(e.Detail, "without its witness")) && e.Kind != provider.EventFailover {
		return
	}
	g := goid()
	r.mu.Lock()
	if i, ok := r.crGo[g]; ok {
		r.crs[i].Reported = true
	}
	r.mu.Unlock()
}

// goid returns the calling goroutine's id, from its stack trace's first
// line ("goroutine N [...").
func goid() uint64 {
	var buf [64]byte
	f := strings.Fields(string(buf[:runtime.Stack(buf[:], false)]))
	if len(f) < 2 {
		return 0
	}
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

// create runs a browser's first request: it creates session id as the
// middleware does (CreateNewStoreData, then SetAndReleaseItemExclusive
// with newItem), with the values every session starts with.
func (r *runner) create(pv *provider.Provider, id string, rq *Request) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), reqKey{}, rq), 2*r.p.Lease+2*time.Second)
	defer cancel()
	rq.Call = r.now()
	defer func() { rq.Ret = r.now() }()
	d := pv.CreateNewStoreData(0)
	_ = d.Values.Set("n", 0)
	_ = d.Values.Set("w", "init")
	rq.phase = "create"
	rq.CommitCall = rq.Call
	rq.Err = pv.SetAndReleaseItemExclusive(ctx, id, d, 0, true)
}

// drawKind draws a workload request's kind: 60 % locked increments,
// 25 % reads, 15 % lock-free writes.
func drawKind(rng *rand.Rand) ReqKind {
	switch x := rng.IntN(100); {
	case x < 60:
		return ReqIncr
	case x < 85:
		return ReqRead
	}
	return ReqLockFree
}

// timedFault returns the schedule's first fault that strikes at an
// instant of its own (not triggered by an operation or a command), if
// any.
func timedFault(sched Schedule) (Fault, bool) {
	for _, f := range sched {
		if f.AfterOp == 0 && f.AfterCmd == 0 && f.AfterDBWrite == 0 && f.CreateCmd == 0 && f.Kind != FaultExpiry && f.Kind != FaultAbandon {
			return f, true
		}
	}
	return Fault{}, false
}

func (r *runner) addHit(h FaultHit) {
	r.mu.Lock()
	r.hits = append(r.hits, h)
	r.mu.Unlock()
}

// busySession returns s, or when an expiry fault idles s now, the next
// session that is not idle (s itself when every session is).
func (r *runner) busySession(s int) int {
	now := r.now()
	for k := range r.p.Sessions {
		c := (s + k) % r.p.Sessions
		idle := false
		for _, f := range r.sched {
			if f.Kind == FaultExpiry && f.Session == c && now >= f.At && now < f.At+f.Dur {
				idle = true
			}
		}
		if !idle {
			return c
		}
	}
	return s
}

// liveCopies counts the nodes that hold a live copy of session id.
func (r *runner) liveCopies(pv *provider.Provider, id string) int {
	key, err := pv.Key(id)
	if err != nil {
		return 0
	}
	n := 0
	for _, a := range r.nw.Addrs() {
		if r.nw.Node(a).Live(key) {
			n++
		}
	}
	return n
}

// nodesOf returns the indexes of the nodes that hold session id's
// copies.
func (r *runner) nodesOf(id string, pv *provider.Provider) []int {
	key, err := pv.Key(id)
	if err != nil {
		return nil
	}
	primary, backup := r.stores[0].Placement(key)
	var out []int
	for i, a := range r.nw.Addrs() {
		if a == primary || a == backup {
			out = append(out, i)
		}
	}
	return out
}

func appName(i int) string { return fmt.Sprintf("app%d", i) }

// Run runs one seed. It must be called inside a testing/synctest bubble
// (synctest.Test): the whole run, its timeouts and its faults take virtual
// time only.
func Run(seed uint64, p Params) *Result {
	rng := rand.New(rand.NewPCG(seed, 0x5e55))
	sched := NewSchedule(rng, p, KindOf(seed, p.kinds()))
	return RunSchedule(seed, p, sched)
}

// RunSchedule runs one seed with the given schedule.
func RunSchedule(seed uint64, p Params, sched Schedule) *Result {
	rng := rand.New(rand.NewPCG(seed, 0x7a11))
	// The sessions created during the run draw from their own source, so
	// that the schedule, the workload and the sessions of a seed are
	// what they are without them. Of flush-step, one more flush of the
	// seed's node strikes right after the CreateCmd-th node command on
	// the first created session's key: inside its creation (the
	// provider's read, then R8's Add) or its first requests.
	crng := rand.New(rand.NewPCG(seed, 0xadd))
	if p.Creates > 0 && len(sched) > 0 && sched[0].Kind == FaultFlushStep && !sched[0].Double {
		sched = append(slices.Clone(sched), Fault{Kind: FaultFlushStep, Node: sched[0].Node, CreateCmd: 1 + crng.IntN(12)})
	}
	nw := NewNetwork(p.Nodes, rng)
	nw.minLat, nw.maxLat = p.MinLatency, p.MaxLatency
	r := &runner{p: p, appends: p.appendsIn(seed), nw: nw, start: time.Now(), sched: sched, appGate: make([]chan struct{}, p.Apps), triggers: make(map[int][]Fault), dbTriggers: make(map[int][]Fault), cmdTriggers: make(map[int][]Fault), opNode: -1,
		crKey: make(map[string]int), crGo: make(map[uint64]int), crTriggers: make(map[int][]Fault)}
	nw.onCmd = r.afterCmd
	if p.dropCreateWitness {
		nw.unstore = func(fields []string) bool {
			if fields[0] != "ms" || !slices.Contains(fields, "F"+strconv.Itoa(witnessFlags)) {
				return false
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			i, ok := r.crKey[fields[1]]
			return ok && !r.crs[i].done
		}
	}
	res := &Result{Seed: seed, Params: p, Schedule: sched, GetAndTouch: !p.noGetAndTouch && seed%2 == 0, Pooled: p.pooled(seed), Appends: p.appendsIn(seed)}
	conns := memcached.ConnsPipelined
	if res.Pooled {
		conns = memcached.ConnsPooled
	}
	if p.Tiered {
		r.db = NewDurableNode()
		r.db.afterPut = r.afterDBPut
	}
	for _, f := range sched {
		if dbKind(f.Kind) && !p.Tiered {
			panic(fmt.Sprintf("sim: fault kind %s strikes the durable tier: it needs Params.Tiered (-tiered)", f.Kind))
		}
	}

	provs := make([]*provider.Provider, p.Apps)
	var closers []provider.Store
	var tstores []*tiered.Store
	for a := range p.Apps {
		// RepairEvery −1: the simulated nodes have no lru_crawler (the
		// repair scan would only dial them and be answered ERROR).
		cfg := memcached.Config{Nodes: nw.Addrs(), Timeout: p.Timeout, DialContext: nw.Dialer(appName(a)), Backup: p.Backup, Conns: conns, RepairEvery: -1}
		cfg.OnEvent = r.onEvent
		mc, err := memcached.New(cfg)
		if err != nil {
			panic(err)
		}
		r.stores = append(r.stores, mc)
		var st provider.Store = mc
		if p.Tiered {
			var dur tiered.Durable = r.db.Client(rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), p.durableTimeout(), p.MinLatency, p.MaxLatency)
			if p.wrapDurable != nil {
				dur = p.wrapDurable(dur)
			}
			ts, err := tiered.New(tiered.Config{Cache: mc, Durable: dur})
			if err != nil {
				panic(err)
			}
			tstores = append(tstores, ts)
			st = ts
		}
		closers = append(closers, st)
		var rs provider.Store = &recStore{Store: st, app: a, run: r, start: r.start}
		if gt, ok := st.(provider.GetAndToucher); ok && res.GetAndTouch {
			rs = gtStore{recStore: rs.(*recStore), gt: gt}
		}
		r.settles = rs.(provider.OutcomeReader).ReadsSettleOutcomes()
		pv, err := provider.New(rs, provider.Config{App: "sim", Lease: p.Lease})
		if err != nil {
			panic(err)
		}
		provs[a] = pv
	}
	defer func() {
		for _, st := range closers {
			st.Close()
		}
		if r.db != nil {
			r.db.Shutdown()
		}
		nw.Shutdown()
	}()

	// The sessions, created before any fault; those an expiry fault
	// idles have its short own timeout.
	res.Timeouts = make([]time.Duration, p.Sessions)
	for _, f := range sched {
		if f.Kind == FaultExpiry {
			res.Timeouts[f.Session] = f.Timeout
		}
	}
	ids := make([]string, p.Sessions)
	for i := range ids {
		ids[i] = sessionID(rng)
		d := provs[0].CreateNewStoreData(res.Timeouts[i])
		_ = d.Values.Set("n", 0)
		_ = d.Values.Set("w", "init")
		if err := provs[0].SetAndReleaseItemExclusive(context.Background(), ids[i], d, 0, true); err != nil {
			panic(fmt.Sprintf("sim: creating session: %v", err))
		}
	}

	res.Created = r.now()

	// The faults. Commands count from here: the sessions' creation is
	// not part of the run's windows.
	r.mu.Lock()
	r.cmds = 0
	r.mu.Unlock()
	var reqMu sync.Mutex
	for _, f := range sched {
		if f.Kind == FaultExpiry {
			// The session idles from At (the workers leave it alone)
			// until At+Dur, when the probe reads it.
			r.faults.Add(1)
			go func() {
				defer r.faults.Done()
				time.Sleep(f.At + f.Dur - r.now())
				live := r.liveCopies(provs[0], ids[f.Session])
				rq := &Request{ID: fmt.Sprintf("probe%d", f.Session), App: f.Probe, Session: f.Session, Kind: ReqRead}
				r.request(provs[f.Probe], ids[f.Session], rq, nil)
				reqMu.Lock()
				res.Requests = append(res.Requests, rq)
				reqMu.Unlock()
				r.addHit(FaultHit{Fault: f, Start: f.At, End: rq.Call, Nodes: r.nodesOf(ids[f.Session], provs[0]), LiveCopies: live})
			}()
			continue
		}
		if f.Kind == FaultAbandon {
			r.faults.Add(1)
			go func() {
				defer r.faults.Done()
				r.abandon(f, seed, provs, ids[f.Session], func(rq *Request) {
					reqMu.Lock()
					res.Requests = append(res.Requests, rq)
					reqMu.Unlock()
				})
			}()
			continue
		}
		if f.CreateCmd > 0 {
			r.crTriggers[f.CreateCmd] = append(r.crTriggers[f.CreateCmd], f)
			continue
		}
		if f.AfterOp > 0 {
			r.triggers[f.AfterOp] = append(r.triggers[f.AfterOp], f)
			continue
		}
		if f.AfterDBWrite > 0 {
			r.dbTriggers[f.AfterDBWrite] = append(r.dbTriggers[f.AfterDBWrite], f)
			continue
		}
		if f.AfterCmd > 0 {
			r.cmdTriggers[f.AfterCmd] = append(r.cmdTriggers[f.AfterCmd], f)
			continue
		}
		r.faults.Add(1)
		go func() {
			defer r.faults.Done()
			time.Sleep(f.At - r.now())
			r.strike(f)
		}()
	}

	// The workload.
	var wg sync.WaitGroup
	crIDs := make([]string, p.Creates)
	for i := range p.Creates {
		s := p.Sessions + i
		app := crng.IntN(p.Apps)
		at := time.Duration(crng.Int64N(int64(p.Horizon + 3*time.Second)))
		if f, ok := timedFault(sched); ok && i == 0 {
			at = max(0, f.At-time.Duration(crng.Int64N(int64(20*time.Millisecond))))
		}
		crIDs[i] = sessionID(crng)
		frng := rand.New(rand.NewPCG(seed, uint64(1_000_000+i)))
		rq := &Request{ID: fmt.Sprintf("c%d", i), App: app, Session: s, Kind: ReqCreate}
		key, err := provs[app].Key(crIDs[i])
		if err != nil {
			panic(err)
		}
		r.crs = append(r.crs, &Creation{Session: s, Req: rq})
		wg.Go(func() {
			time.Sleep(at - r.now())
			r.mu.Lock()
			r.crKey[key] = i
			r.mu.Unlock()
			r.create(provs[app], crIDs[i], rq)
			r.mu.Lock()
			r.crs[i].done = true
			r.mu.Unlock()
			r.lookAtCreation(i, key)
			reqMu.Lock()
			res.Requests = append(res.Requests, rq)
			reqMu.Unlock()
			if rq.Err != nil {
				return
			}
			for o := range createFollowUps {
				time.Sleep(time.Duration(frng.Int64N(int64(300 * time.Millisecond))))
				fq := &Request{ID: fmt.Sprintf("c%do%d", i, o), App: frng.IntN(p.Apps), Session: s}
				fq.Kind = drawKind(frng)
				r.request(provs[fq.App], crIDs[i], fq, frng)
				reqMu.Lock()
				res.Requests = append(res.Requests, fq)
				reqMu.Unlock()
			}
		})
	}
	for a := range p.Apps {
		for w := range p.Workers {
			wrng := rand.New(rand.NewPCG(seed, uint64(a*1000+w+1)))
			wg.Go(func() {
				for o := range p.OpsPerWorker {
					time.Sleep(time.Duration(wrng.Int64N(int64(300 * time.Millisecond))))
					rq := &Request{ID: fmt.Sprintf("a%dw%do%d", a, w, o), App: a}
					rq.Session = r.busySession(wrng.IntN(p.Sessions))
					rq.Kind = drawKind(wrng)
					r.request(provs[a], ids[rq.Session], rq, wrng)
					reqMu.Lock()
					res.Requests = append(res.Requests, rq)
					reqMu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	// Operation-triggered faults not reached strike now, so every seed
	// has its faults.
	r.mu.Lock()
	var late []Fault
	for _, fs := range r.triggers {
		late = append(late, fs...)
	}
	for _, fs := range r.dbTriggers {
		late = append(late, fs...)
	}
	for _, fs := range r.cmdTriggers {
		late = append(late, fs...)
	}
	for _, fs := range r.crTriggers {
		late = append(late, fs...)
	}
	r.triggers, r.dbTriggers, r.cmdTriggers, r.crTriggers = nil, nil, nil, nil
	r.mu.Unlock()
	for _, f := range late {
		f.AfterOp, f.CreateCmd = 0, 0
		r.strike(f)
	}
	r.faults.Wait()

	// After the faults healed: every session can be taken within two
	// leases (health checks bring nodes back within a second) and holds
	// what was acknowledged.
	time.Sleep(2 * time.Second)
	for s, id := range ids {
		for a := range p.Apps {
			rq := &Request{ID: fmt.Sprintf("final%d.%d", s, a), App: a, Session: s, Kind: ReqFinal}
			r.final(provs[a], id, rq)
			res.Finals = append(res.Finals, rq)
		}
	}
	// A created session's final lock: by one app server, the one after
	// its creator's (the stage's time budget: Params.Creates).
	for i, id := range crIDs {
		s := p.Sessions + i
		for _, a := range []int{(r.crs[i].Req.App + 1) % p.Apps} {
			rq := &Request{ID: fmt.Sprintf("final%d.%d", s, a), App: a, Session: s, Kind: ReqFinal}
			r.final(provs[a], id, rq)
			res.Finals = append(res.Finals, rq)
		}
	}
	r.mu.Lock()
	res.Creations = r.crs
	r.mu.Unlock()
	res.Elapsed = r.now()
	res.appended = r.appended.Load()
	res.RollBacks = r.rollBacks.Load()
	for _, ts := range tstores {
		res.Tiered = addStats(res.Tiered, ts.Stats())
	}
	r.mu.Lock()
	res.Hits = append(res.Hits, r.hits...)
	r.mu.Unlock()
	return res
}

// addStats returns the sum of two tiered Stores' counters.
func addStats(a, b tiered.Stats) tiered.Stats {
	return tiered.Stats{
		DurableWrites:   a.DurableWrites + b.DurableWrites,
		Refreshes:       a.Refreshes + b.Refreshes,
		Revivals:        a.Revivals + b.Revivals,
		StaleWrites:     a.StaleWrites + b.StaleWrites,
		RefreshErrors:   a.RefreshErrors + b.RefreshErrors,
		Undone:          a.Undone + b.Undone,
		Adopted:         a.Adopted + b.Adopted,
		UnknownOutcomes: a.UnknownOutcomes + b.UnknownOutcomes,

		UnconfirmedDeleted: a.UnconfirmedDeleted + b.UnconfirmedDeleted,
	}
}

func sessionID(rng *rand.Rand) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 32)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// request runs one request of the workload and records it.
func (r *runner) request(pv *provider.Provider, id string, rq *Request, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), reqKey{}, rq), 2*r.p.Lease+2*time.Second)
	defer cancel()
	rq.Call = r.now()
	defer func() { rq.Ret = r.now() }()
	switch rq.Kind {
	case ReqRead:
		rq.phase = "read"
		it, err := pv.ReadItem(ctx, id)
		if rq.Err = err; err == nil {
			rq.N, rq.W, rq.Seen = values(it.Data.Values)
		}
	case ReqLockFree:
		lf := pv.LockFree()
		rq.phase = "lf"
		it, err := lf.GetItemExclusive(ctx, id)
		if err != nil {
			rq.Err = err
			return
		}
		rq.Key = "lf." + rq.ID
		_ = it.Data.Values.Set(rq.Key, 1)
		rq.phase = "lf-commit"
		rq.CommitCall = r.now()
		rq.Err = lf.SetAndReleaseItemExclusive(ctx, id, it.Data, 0, false)
	case ReqIncr:
		rq.phase = ""
		it, err := pv.AcquireItem(ctx, id)
		if err != nil {
			rq.Err = err
			return
		}
		rq.Acq, rq.LockID = true, it.LockID
		rq.N, rq.W, rq.Seen = values(it.Data.Values)
		// The handler: usually short; one in ten runs past a lease,
		// renewing it.
		work := time.Duration(rng.Int64N(int64(80 * time.Millisecond)))
		if rng.IntN(10) == 0 {
			work = r.p.Lease + time.Duration(rng.Int64N(int64(r.p.Lease)))
		}
		rq.phase = "renew"
		for work > 0 {
			step := min(work, r.p.Lease/3)
			time.Sleep(step)
			work -= step
			if work > 0 {
				_ = pv.RenewLease(ctx, id, it.LockID)
			}
		}
		_ = it.Data.Values.Set("n", rq.N+1)
		_ = it.Data.Values.Set("w", rq.ID)
		rq.phase = "commit"
		rq.CommitCall = r.now()
		rq.Err = pv.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false)
	}
}

// final takes the session's lock once the faults healed and records what
// it holds. On a store whose reads do not settle writes of unknown
// outcome (memcached.BackupOn) the provider passes ErrOutcomeUnknown to
// its caller, the user sees an error and tries again: so a final whose
// AcquireItem returns it tries once more within the same deadline, and is
// stuck only if that fails too. Where reads settle outcomes the provider
// has already tried to resolve it: no retry, the error is final.
func (r *runner) final(pv *provider.Provider, id string, rq *Request) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), reqKey{}, rq), 2*r.p.Lease+time.Second)
	defer cancel()
	rq.Call = r.now()
	defer func() { rq.Ret = r.now() }()
	it, err := pv.AcquireItem(ctx, id)
	if errors.Is(err, provider.ErrOutcomeUnknown) && !r.settles && !r.p.noFinalRetry {
		rq.Retried, rq.RetryOp = err, len(rq.Ops)
		it, err = pv.AcquireItem(ctx, id)
	}
	if err != nil {
		rq.Err = err
		return
	}
	rq.Acq, rq.LockID = true, it.LockID
	rq.N, rq.W, rq.Seen = values(it.Data.Values)
	for _, k := range it.Data.Values.Keys() {
		if len(k) > 3 && k[:3] == "lf." {
			rq.LFKeys = append(rq.LFKeys, k)
		}
	}
	rq.phase = "release"
	if err := pv.ReleaseItemExclusive(ctx, id, it.LockID); err != nil {
		rq.Err = fmt.Errorf("release: %w", err)
	}
}

func values(v *session.Values) (n int, w string, ok bool) {
	n, ok1, _ := session.Get[int](v, "n")
	w, ok2, _ := session.Get[string](v, "w")
	return n, w, ok1 && ok2
}

// ReadsSettleOutcomes forwards provider.OutcomeReader, so that the
// simulated app servers' providers resolve writes of unknown outcome as
// they would on the store itself (provider/protocol.go, "Writes of
// unknown outcome"): the simulation checks that resolution too.
func (s *recStore) ReadsSettleOutcomes() bool {
	r, ok := s.Store.(provider.OutcomeReader)
	return ok && r.ReadsSettleOutcomes()
}
