package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind is one kind of scheduled fault.
type FaultKind string

// The fault kinds of a schedule.
const (
	// FaultFlush: flush_all on one node.
	FaultFlush FaultKind = "flush"
	// FaultRestart: a node restarts at once, empty.
	FaultRestart FaultKind = "restart"
	// FaultKill: a node dies (connections reset, dials refused) and comes
	// back empty after Dur.
	FaultKill FaultKind = "kill"
	// FaultPause: a node stops for Dur (SIGSTOP) and then runs what
	// queued meanwhile (SIGCONT).
	FaultPause FaultKind = "pause"
	// FaultPartition: a node is unreachable from some app servers for Dur.
	FaultPartition FaultKind = "partition"
	// FaultDelay: a node's commands wait up to MaxDelay each for Dur,
	// reordering them across connections.
	FaultDelay FaultKind = "delay"
	// FaultPauseApp: an app server stops for Dur (past its lease): its
	// store operations, renewals included, wait.
	FaultPauseApp FaultKind = "pause-app"
	// FaultPauseKill: a node is paused for Dur while another is killed
	// for Dur (the double fault of defect 3).
	FaultPauseKill FaultKind = "pause+kill"
	// FaultFlushAll: every node flushed at once, as the stress harness's
	// -flush did before it took a node (a double fault: sessions are
	// lost, but never silently, and a failed write is never applied).
	FaultFlushAll FaultKind = "flush-all"
	// FaultFlushEach: the seed's 1 to 3 flushes strike different nodes,
	// one after the other (a double fault when a session's copies are
	// flushed in turn before a read repairs them).
	FaultFlushEach FaultKind = "flush-each"
	// FaultExpiry: a session with a short own timeout (1 to 4 s, set
	// through the provider) goes idle for Dur from At, past its expiry
	// or not, while every node's clock ticks as memcached's does, at its
	// own phase and drift, skipping a second now and then (clockModel),
	// so its copies expire at different instants on different nodes; at
	// the end of the idle time an app server reads it (the probe). No
	// node fails.
	FaultExpiry FaultKind = "expiry"
)

// Fault kinds that the witness scheme's tests draw (docs/replication.md
// section 14); today's scheme runs them by name (-kinds).
const (
	// FaultFlushStep: flush_all on one node right after the AfterCmd-th
	// command the nodes execute (counted over all nodes), before its
	// reply is sent: between any two commands of one request
	// (SimFlushEveryStep).
	FaultFlushStep FaultKind = "flush-step"
	// FaultOpposite: node Node unreachable from the app servers Apps and
	// node Node2 from the others (each process suspects another copy:
	// opposite failovers) for Dur, and the third node flushed half way
	// through (SimOppositeFailovers).
	FaultOpposite FaultKind = "opposite"
	// FaultDouble: two single faults (flush, restart, kill, pause or
	// partition, drawn) on two different nodes, each at its own instant
	// (SimDoubleFaults). Its faults carry their own kinds, with Double
	// set.
	FaultDouble FaultKind = "double"
)

// doubleParts are the kinds a FaultDouble combines.
var doubleParts = []FaultKind{FaultFlush, FaultRestart, FaultKill, FaultPause, FaultPartition}

// The fault kinds of the tiered store's durable tier (Params.Tiered).
const (
	// FaultDBDelay: the durable tier's statements wait up to MaxDelay
	// each for Dur, reordering them; those that take longer than the
	// client's timeout end with an unknown outcome, and run anyway.
	FaultDBDelay FaultKind = "db-delay"
	// FaultDBPause: the durable tier stops for Dur; its statements queue
	// and run late, in order.
	FaultDBPause FaultKind = "db-pause"
	// FaultReviveMidCommit: every cache node is flushed as the
	// AfterDBWrite-th data change written to the durable tier runs there,
	// and that statement's answer is held for Dur (less than the durable
	// client's timeout): requests meanwhile miss the cache, revive the
	// session from the durable tier (claiming the change's durable
	// version) and commit on top of it, before its writer learns that its
	// durable write is done (docs/replication.md section 15, "fenced but
	// applied").
	FaultReviveMidCommit FaultKind = "revive-mid-commit"
)

// FaultKinds lists every kind of the memcached nodes, in the order
// coverage prints them.
var FaultKinds = []FaultKind{FaultFlush, FaultRestart, FaultKill, FaultPause, FaultPartition, FaultDelay, FaultPauseApp, FaultPauseKill, FaultFlushAll, FaultFlushEach, FaultExpiry}

// WitnessFaultKinds lists the kinds a run of the witness scheme draws
// (Params.Backup = memcached.BackupWitness): every node kind and those of
// its section 14 tests.
var WitnessFaultKinds = append(slices.Clone(FaultKinds), FaultFlushStep, FaultOpposite, FaultDouble)

// TieredFaultKinds lists the kinds a tiered run draws: every kind of the
// memcached nodes (its cache), those of the witness scheme's tests (its
// default cache's) and those of its durable tier.
var TieredFaultKinds = append(slices.Clone(WitnessFaultKinds), FaultDBDelay, FaultDBPause, FaultReviveMidCommit)

// allKinds lists every kind once, in the order reports print them.
func allKinds() []FaultKind {
	out := append(slices.Clone(TieredFaultKinds), FaultAbandon)
	for _, k := range WitnessFaultKinds {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// dbKind reports whether k strikes the durable tier, not a memcached node.
func dbKind(k FaultKind) bool {
	return k == FaultDBDelay || k == FaultDBPause || k == FaultReviveMidCommit
}

// Fault is one scheduled fault. It strikes at virtual time At, or, when
// AfterOp > 0, as soon as the AfterOp-th store operation of the run
// (counted over all app servers) returns, on the node that holds Role
// ("primary" or "backup") of that operation's key.
type Fault struct {
	Kind    FaultKind
	At      time.Duration
	AfterOp int
	// AfterDBWrite: FaultReviveMidCommit strikes as the AfterDBWrite-th
	// durable write of a record (PutRecord) that stores it runs.
	AfterDBWrite int
	// AfterCmd: FaultFlushStep strikes right after the AfterCmd-th
	// command the nodes execute.
	AfterCmd int
	// CreateCmd: FaultFlushStep strikes right after the CreateCmd-th
	// node command on the key of the first session created during the
	// run (Params.Creates), from its creation's start.
	CreateCmd int
	// Double: the fault is one of a FaultDouble's two; it strikes its
	// own Node.
	Double   bool
	Role     string
	Node     int   // node index, when not chosen by Role
	Node2    int   // the node killed by pause+kill
	Apps     []int // partition: the app servers cut off; pause-app: the app
	Dur      time.Duration
	MaxDelay time.Duration
	// Expiry: the session that goes idle, its own timeout, and the app
	// server that reads it when the idle time ends.
	Session int
	Timeout time.Duration
	Probe   int
	// Abandon: the holder runs again after the writes and commits.
	Resume bool
}

func (f Fault) String() string {
	var b strings.Builder
	if f.Double {
		b.WriteString("double: ")
	}
	if f.Kind == FaultAbandon {
		fmt.Fprintf(&b, "abandon: app %d takes session %d's lock at %v and stops; the other apps write it lock-free for %v; app %d waits for the lock", f.Apps[0], f.Session, f.At, f.Dur, f.Probe)
		if f.Resume {
			b.WriteString("; the holder resumes and commits half a lease after the writes")
		}
		return b.String()
	}
	if f.Kind == FaultExpiry {
		fmt.Fprintf(&b, "expiry: session %d (timeout %v) idle from %v for %v, then read by app %d", f.Session, f.Timeout, f.At, f.Dur, f.Probe)
		return b.String()
	}
	switch {
	case f.CreateCmd > 0:
		fmt.Fprintf(&b, "%s after node command #%d on the first created session's key on node %d", f.Kind, f.CreateCmd, f.Node)
	case f.AfterCmd > 0:
		fmt.Fprintf(&b, "%s after node command #%d on node %d", f.Kind, f.AfterCmd, f.Node)
	case f.AfterDBWrite > 0:
		fmt.Fprintf(&b, "%s: every cache node flushed at durable record write #%d, its answer held", f.Kind, f.AfterDBWrite)
	case f.AfterOp > 0:
		fmt.Fprintf(&b, "%s after store op #%d on its key's %s", f.Kind, f.AfterOp, f.Role)
	default:
		fmt.Fprintf(&b, "%s at %v", f.Kind, f.At)
		if f.Kind != FaultPauseApp && !dbKind(f.Kind) {
			fmt.Fprintf(&b, " on node %d", f.Node)
		}
	}
	if f.Kind == FaultPauseKill {
		fmt.Fprintf(&b, ", kill node %d", f.Node2)
	}
	if f.Kind == FaultOpposite {
		fmt.Fprintf(&b, " from apps %v, node %d from the others, the third node flushed half way", f.Apps, f.Node2)
		f.Apps = nil
	}
	if len(f.Apps) > 0 {
		fmt.Fprintf(&b, " apps %v", f.Apps)
	}
	if f.Dur > 0 {
		fmt.Fprintf(&b, " for %v", f.Dur)
	}
	if f.MaxDelay > 0 {
		fmt.Fprintf(&b, " delays up to %v", f.MaxDelay)
	}
	return b.String()
}

// Schedule is a seed's faults.
type Schedule []Fault

func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, f := range s {
		parts[i] = f.String()
	}
	return strings.Join(parts, "; ")
}

// KindOf is the fault kind of seed: seeds take the kinds in turn, so that
// what a kind finds can be told apart from what another finds. Without
// kinds, FaultKinds.
func KindOf(seed uint64, kinds []FaultKind) FaultKind {
	if len(kinds) == 0 {
		kinds = FaultKinds
	}
	return kinds[seed%uint64(len(kinds))]
}

// NewSchedule draws 1 to 3 faults of one kind from rng, striking within
// the first p.Horizon of a run.
func NewSchedule(rng *rand.Rand, p Params, kind FaultKind) Schedule {
	switch kind {
	case FaultExpiry:
		return newExpirySchedule(rng, p)
	case FaultAbandon:
		return newAbandonSchedule(rng, p)
	case FaultDouble:
		// Two single faults on two nodes, each drawn as its kind's
		// schedule draws it (its first fault), at instants only.
		a := rng.IntN(p.Nodes)
		b := (a + 1 + rng.IntN(p.Nodes-1)) % p.Nodes
		var s Schedule
		for _, node := range []int{a, b} {
			f := NewSchedule(rng, p, doubleParts[rng.IntN(len(doubleParts))])[0]
			f.AfterOp, f.Role = 0, ""
			f.Node, f.Double = node, true
			s = append(s, f)
		}
		return s
	}
	n := 1 + rng.IntN(3)
	if kind == FaultOpposite {
		n = 1 // two at once would cut one app server off from two nodes
	}
	s := make(Schedule, 0, n)
	// Every fault of a seed strikes the same node (and, when triggered by
	// an operation, the node of the first trigger's key), so that a seed
	// is a single fault repeated, never a double fault, except for
	// pause+kill.
	node := rng.IntN(p.Nodes)
	role := []string{"primary", "backup"}[rng.IntN(2)]
	app := rng.IntN(p.Apps) // pause-app: one app server per seed
	for i := range n {
		f := Fault{Kind: kind}
		f.At = time.Duration(rng.Int64N(int64(p.Horizon)))
		f.Node = node
		if kind == FaultFlushEach {
			f.Node = (node + i) % p.Nodes
		}
		// Half the node faults strike right after a store operation,
		// on its key's primary or backup node: the windows between a
		// request's operations are narrow in time.
		switch f.Kind {
		case FaultFlush, FaultRestart, FaultKill, FaultPause, FaultFlushAll, FaultFlushEach:
			if rng.IntN(2) == 0 {
				f.AfterOp = 1 + rng.IntN(p.expectedStoreOps())
				f.Role = role
			}
		}
		switch f.Kind {
		case FaultKill:
			f.Dur = time.Duration(200+rng.IntN(2000)) * time.Millisecond
		case FaultPause, FaultPartition:
			f.Dur = time.Duration(600+rng.IntN(2000)) * time.Millisecond
		case FaultDelay:
			f.Dur = time.Duration(500+rng.IntN(2000)) * time.Millisecond
			f.MaxDelay = time.Duration(20+rng.IntN(2*int(p.Timeout/time.Millisecond))) * time.Millisecond
		case FaultPauseApp:
			f.Apps = []int{app}
			f.Dur = p.Lease + time.Duration(rng.IntN(2000))*time.Millisecond
		case FaultPauseKill:
			f.Dur = time.Duration(600+rng.IntN(2000)) * time.Millisecond
			f.Node2 = (f.Node + 1 + rng.IntN(p.Nodes-1)) % p.Nodes
		case FaultDBDelay:
			f.Dur = time.Duration(500+rng.IntN(2000)) * time.Millisecond
			f.MaxDelay = time.Duration(20+rng.IntN(2*int(p.durableTimeout()/time.Millisecond))) * time.Millisecond
		case FaultDBPause:
			f.Dur = time.Duration(600+rng.IntN(3000)) * time.Millisecond
		case FaultFlushStep:
			// A request makes about 3 store operations of 1 to 5
			// commands each.
			f.AfterCmd = 1 + rng.IntN(4*p.expectedStoreOps())
		case FaultOpposite:
			f.Dur = time.Duration(600+rng.IntN(2000)) * time.Millisecond
			f.Node2 = (f.Node + 1 + rng.IntN(p.Nodes-1)) % p.Nodes
		case FaultReviveMidCommit:
			// About 45 records are written durably in a run (the
			// commits of increments and lock-free writes).
			f.AfterDBWrite = 1 + rng.IntN(30)
			f.Dur = time.Duration(rng.Int64N(int64(p.durableTimeout() * 9 / 10)))
		}
		if f.Kind == FaultPartition || f.Kind == FaultOpposite {
			k := 1 + rng.IntN(p.Apps-1)
			for _, a := range rng.Perm(p.Apps)[:k] {
				f.Apps = append(f.Apps, a)
			}
		}
		s = append(s, f)
	}
	return s
}

// newExpirySchedule draws 1 or 2 sessions (always leaving one for the
// workload) with own timeouts of 1 to 4 s, each idle from an instant
// within p.Horizon: 6 in 10 idle past the timeout and the store's
// rounding (whole seconds rounded up, plus two, on a clock that may run
// maxClockDrift slow: they must be gone), 2 in 10 inside that rounding
// window (either), 2 in 10 for less than the timeout (they must be
// there).
func newExpirySchedule(rng *rand.Rand, p Params) Schedule {
	n := 1
	if p.Sessions > 2 {
		n += rng.IntN(2)
	}
	sessions := rng.Perm(p.Sessions)
	s := make(Schedule, 0, n)
	for i := range min(n, p.Sessions) {
		f := Fault{Kind: FaultExpiry, Session: sessions[i], Probe: rng.IntN(p.Apps)}
		f.Timeout = time.Duration(1000+rng.IntN(3000)) * time.Millisecond
		f.At = time.Duration(rng.Int64N(int64(p.Horizon)))
		switch x := rng.IntN(10); {
		case x < 6:
			f.Dur = f.Timeout + 4*time.Second + time.Duration(rng.IntN(2000))*time.Millisecond
		case x < 8:
			f.Dur = f.Timeout + time.Duration(rng.IntN(4000))*time.Millisecond
		default:
			f.Dur = f.Timeout/2 + time.Duration(rng.Int64N(int64(f.Timeout/2)))
		}
		s = append(s, f)
	}
	return s
}
