package harness

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// Backends the harness can run against.
const (
	BackendMemory    = "memory"
	BackendMemcached = "memcached"
	BackendTiered    = "tiered"
	BackendCouchbase = "couchbase"
	BackendRedis     = "redis"
)

// The managed Redis Cluster (Config.ManagedCluster): ClusterMasters
// masters with one replica each.
const (
	ClusterMasters = 3
	ClusterNodes   = 2 * ClusterMasters
)

// Defaults of Config.
const (
	DefaultSessions    = 20
	DefaultBurst       = 8
	DefaultConns       = 6
	DefaultRequests    = 10000
	DefaultDuration    = 30 * time.Second
	DefaultSlowTime    = 20 * time.Millisecond
	DefaultTimeout     = 2 * time.Minute
	DefaultLease       = provider.DefaultLease
	DefaultTimelineMax = 20000
)

// Mix is the relative weight of each route in a burst. The zero Mix means
// DefaultMix.
type Mix struct {
	// Incr: exclusive increment of the session's counter.
	Incr int
	// Append: exclusive append to the session's list.
	Append int
	// Read: read-only read of the whole session.
	Read int
	// Free: lock-free write of a key unique to the request.
	Free int
	// Slow: exclusive increment whose handler runs Config.SlowTime.
	Slow int
}

// DefaultMix is the route mix of a run that sets none.
var DefaultMix = Mix{Incr: 4, Append: 2, Read: 3, Free: 2, Slow: 1}

func (m Mix) total() int { return m.Incr + m.Append + m.Read + m.Free + m.Slow }

// String formats m as ParseMix reads it.
func (m Mix) String() string {
	return fmt.Sprintf("incr=%d,append=%d,read=%d,free=%d,slow=%d", m.Incr, m.Append, m.Read, m.Free, m.Slow)
}

// ParseMix reads a route mix such as "incr=4,append=2,read=3,free=2,slow=1".
// Routes left out weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: want route=weight, got %q", s, part)
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: weight of %s must be a non-negative integer", s, name)
		}
		switch strings.TrimSpace(name) {
		case RouteIncr:
			m.Incr = n
		case RouteAppend:
			m.Append = n
		case RouteRead:
			m.Read = n
		case RouteFree:
			m.Free = n
		case RouteSlow:
			m.Slow = n
		default:
			return Mix{}, fmt.Errorf("mix %q: unknown route %q (want incr, append, read, free, slow)", s, name)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix %q: every weight is zero", s)
	}
	return m, nil
}

// At is a moment of the run: a time after the workload started, or a
// fraction of the request budget sent. The zero At means never.
type At struct {
	// After is the time since the workload started.
	After time.Duration
	// Fraction, in (0, 1], is the share of the request budget sent.
	Fraction float64
}

// IsZero reports whether a is unset.
func (a At) IsZero() bool { return a.After == 0 && a.Fraction == 0 }

// String formats a as ParseAt reads it.
func (a At) String() string {
	switch {
	case a.Fraction > 0:
		return strconv.FormatFloat(a.Fraction*100, 'f', -1, 64) + "%"
	case a.After > 0:
		return a.After.String()
	}
	return ""
}

// ParseAt reads a moment: a duration ("2s") or a share of the request
// budget ("50%").
func ParseAt(s string) (At, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return At{}, fmt.Errorf("moment %q: a percentage must be in (0, 100]", s)
		}
		return At{Fraction: f / 100}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return At{}, fmt.Errorf("moment %q: want a positive duration such as 2s, or a percentage such as 50%%", s)
	}
	return At{After: d}, nil
}

// Span is a fault with a duration: it starts at At and lasts For.
type Span struct {
	At  At
	For time.Duration
}

// IsZero reports whether s is unset.
func (s Span) IsZero() bool { return s.At.IsZero() }

// String formats s as ParseSpan reads it.
func (s Span) String() string { return s.At.String() + ":" + s.For.String() }

// ParseSpan reads "T:D": a moment as ParseAt reads it and a positive
// duration, e.g. "3s:1.5s" or "40%:2s".
func ParseSpan(s string) (Span, error) {
	at, d, ok := strings.Cut(s, ":")
	if !ok {
		return Span{}, fmt.Errorf("span %q: want T:D, e.g. 3s:1.5s", s)
	}
	a, err := ParseAt(at)
	if err != nil {
		return Span{}, err
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur <= 0 {
		return Span{}, fmt.Errorf("span %q: want a positive duration after the colon", s)
	}
	return Span{At: a, For: dur}, nil
}

// Couchbase holds the connection settings of the couchbase backend.
type Couchbase struct {
	// ConnStr is the connection string, "couchbase://127.0.0.1".
	ConnStr string
	// Username and Password authenticate.
	Username, Password string
	// Bucket holds the sessions.
	Bucket string
}

// Config describes one run. The zero value (with Backend empty) runs the
// default workload against the embedded store.
type Config struct {
	// Backend is memory (default), memcached, tiered, couchbase or redis.
	Backend string
	// Nodes are the memcached servers of the memcached and tiered
	// backends; Managed starts that many local memcached processes
	// instead (and stops them afterwards).
	Nodes   []string
	Managed int
	// Backup is the memcached store's replication mode (memcached and
	// tiered backends): "" or "default" (the store's default: the
	// witness scheme with 3 nodes or more, a backup copy with 2, one
	// copy with 1), "witness" (two data copies and a witness:
	// docs/replication.md; 3 nodes or more), "on" (a backup copy of each
	// session) or "off" (one copy).
	Backup string
	// PGDSN is the PostgreSQL database of the tiered backend; empty starts
	// a throwaway local server.
	PGDSN string
	// Couchbase configures the couchbase backend.
	Couchbase Couchbase
	// ManagedCluster starts a real Redis Cluster for the redis backend:
	// ClusterMasters masters with one replica each (ClusterNodes local
	// redis-server processes, redistest.StartCluster), instead of
	// -managed 1. Managed is then ClusterNodes; -fault-node indexes the
	// masters first, then their replicas.
	ManagedCluster bool
	// RedisWait is the redis store's WaitReplicas: every write waits for
	// that many replicas (WAIT n RedisWaitTimeout) and is of unknown
	// outcome when fewer acknowledged it. Default 0 (no WAIT).
	RedisWait int
	// RedisWaitTimeout is the redis store's WaitTimeout. Default the
	// store's (100 ms).
	RedisWaitTimeout time.Duration

	// Procs is the number of app servers (default 1). More than one run as
	// separate processes (the harness binary re-executed in serve mode)
	// behind a round-robin, unless InProcess is set.
	Procs int
	// InProcess runs the Procs app servers inside this process, each with
	// its own Provider over the shared store. It is the only way to run
	// several app servers on the memory backend.
	InProcess bool

	// Sessions is the number of simulated browsers, each with its own
	// session. Default 20.
	Sessions int
	// Burst is the number of parallel requests a browser fires at once.
	// Default 8.
	Burst int
	// Conns is each browser's connection limit per host. Default 6.
	Conns int
	// Requests bounds the number of workload requests (0 means the
	// default 10000; negative means no bound but Duration).
	Requests int
	// Duration bounds the workload's time. Default 30 s; negative means
	// no bound but Requests.
	Duration time.Duration
	// Seed makes the route choices repeatable. Default 1.
	Seed uint64
	// Mix weighs the routes. Zero means DefaultMix.
	Mix Mix
	// SlowTime is the handler time of the slow route. Default 20 ms.
	SlowTime time.Duration
	// ReadTime is the handler time of the read-only route. Default 0.
	ReadTime time.Duration
	// Timeout bounds each client request. Default 2 min.
	Timeout time.Duration
	// LateCommit runs the middleware without response buffering
	// (middleware.Config.Unbuffered): the handler's answer goes out before
	// the middleware commits. A commit that then fails (a store node
	// dying) has already been acknowledged, and the harness counts its
	// update as lost. By default the middleware buffers the answer and
	// sends it only once the session is stored, or answers the error
	// instead; the handlers never call Session.Commit themselves.
	LateCommit bool

	// Lease is the providers' lock lease. Default 10 s (the provider's).
	Lease time.Duration
	// Wait selects the waiting strategy (lock.Adaptive or lock.ASPNET).
	Wait lock.Strategy
	// PollCap is the Adaptive strategy's largest poll interval. Zero
	// means the lock package's default.
	PollCap time.Duration

	// KillNode kills one managed memcached node (FaultNode) at that moment.
	KillNode At
	// RestartNode brings the killed (or a running) node back empty. After
	// KillMaster it restarts the killed master, which rejoins the cluster
	// (its nodes.conf is kept) as a replica of the master that replaced it.
	RestartNode At
	// Flush empties one managed memcached node at that moment
	// (flush_all): the node FlushNode names, or with FlushNode -1 one
	// chosen from Seed (printed in the event). With the tiered backend,
	// sessions must survive from the durable tier.
	Flush At
	// FlushNode is the node Flush empties; -1 means one chosen from Seed.
	// Default 0 (the zero value); main's -flush-node defaults to -1.
	FlushNode int
	// FlushAll makes Flush empty every managed node at once, as -flush
	// did before: a double fault no replication survives.
	FlushAll bool
	// FlushCount, above 0, flushes one node FlushCount times (at most
	// MaxFlushCount) at instants drawn from Seed instead of once at Flush:
	// between 10% and 90% of the run (shares of Requests, or of Duration
	// without a request budget), at least FlushGap of the run apart, each
	// on a node drawn from Seed (or FlushNode when not -1). The instants
	// and nodes are printed when the run starts and in each fault event.
	FlushCount int
	// FaultSpacing, above 0, spaces FlushCount's faults by that duration
	// instead of drawing them: fault k (from 1) comes k·FaultSpacing
	// after the workload started, on the nodes in turn (FlushNode, or
	// the node Seed picks when -1, then the next, wrapping), at most
	// MaxSpacedFaults. Spaced beyond the store's repair window (the
	// memcached store's repair scan every RepairEvery, plus its pass:
	// docs/replication.md §9, "Repair window"), each fault is a single
	// fault and the run must hold every invariant; the run's idle
	// sessions (IdleSessions) show that the window was kept.
	FaultSpacing time.Duration
	// SpacedRestart makes every second spaced fault (the 2nd, 4th, …)
	// a restart of its node (killed, then started empty) instead of a
	// flush. Needs FaultSpacing.
	SpacedRestart bool
	// RepairEvery is the memcached store's Config.RepairEvery (the repair
	// scan's period; negative: no scan) for every store of the run (the
	// memcached backend and tiered's cache). Default 0: the store's
	// default (memcached.DefaultRepairEvery, 30 s).
	RepairEvery time.Duration
	// IdleSessions adds that many browsers that load their first page
	// (creating their session) and send nothing more: their sessions are
	// touched by no request until the read-back at the end, so only the
	// store's repair scan restores their copies after a fault. Each must
	// be found then (sessions_lost). With FaultSpacing on the memcached
	// backend's witness scheme, each idle session's records are read on
	// every node (`mg`) right after each spaced fault and right before
	// the next: one not whole then (two data copies and a witness) is a
	// repair window missed (repair_window_exceeded). Default 0: none.
	IdleSessions int
	// PauseNode stops managed node FaultNode with SIGSTOP at PauseNode.At
	// and continues it (SIGCONT) PauseNode.For later: a node that hangs
	// past the client timeout, then runs the commands queued meanwhile.
	PauseNode Span
	// PauseApp stops one app process (PauseAppIndex) with SIGSTOP at
	// PauseApp.At and continues it PauseApp.For later (set For past the
	// lease): its locks must be taken over and its late writes fenced.
	// Needs -procs 2 or more, not -inproc.
	PauseApp Span
	// PauseAppIndex is the app process PauseApp stops. Default 0.
	PauseAppIndex int
	// Partition cuts managed node FaultNode off from app process
	// PartitionApp at Partition.At for Partition.For: that process
	// reaches the node through a proxy of its own (same address for
	// placement, Config.DialContext), which holds every byte and new
	// connection until the partition heals. The other processes are not
	// affected. Needs the memcached backend and -procs 2 or more, not
	// -inproc.
	Partition Span
	// PartitionApp is the app process Partition cuts off. Default 0.
	PartitionApp int
	// KillMaster kills (SIGKILL), at that moment, the master of the
	// managed Redis Cluster that holds the most keys (DBSIZE; a tie goes
	// to the lowest index), named in the event (kind FaultKillMaster).
	// Needs ManagedCluster.
	KillMaster At
	// StallReplicas, with KillMaster, forces the window in which Redis's
	// asynchronous replication loses acknowledged writes: at KillMaster
	// the chosen master's replicas are stopped (SIGSTOP) and the master
	// closes its links to them (CLIENT KILL TYPE replica), so that nothing
	// it executes from then on reaches them; the master is killed
	// StallReplicas later and its replicas continued at once. Every write the master
	// acknowledged meanwhile is lost when a replica is promoted, unless
	// WAIT (RedisWait) kept it from being acknowledged. Keep it below the
	// cluster's node timeout (2 s), or the stopped replicas are failed
	// too. Default 0, off.
	StallReplicas time.Duration
	// FaultNode is the index of the managed node KillNode and RestartNode
	// act on. Default 0.
	FaultNode int
	// AllowUnreachedFaults keeps a fault that was configured but never
	// reached (the workload ended first) from failing the run; by default
	// it fails ("faults_not_reached"), since the run did not test what it
	// was asked to.
	AllowUnreachedFaults bool
	// RunPastFailover keeps the workload going past its request budget
	// until RunPastFailover after a failover time (FailoverTime) after
	// the last fault injected ended, so that requests are sent while
	// issue 13's availability check applies (Result.FailedAfterFailover);
	// a fault still being injected (a restart until the node listens
	// again) keeps it going too. The deadline (Duration) still ends it.
	// 0: the budget alone does.
	RunPastFailover time.Duration
	// ExpiryProbes adds that many browsers, apart from the workload's,
	// whose sessions have a short own timeout (ExpiryTimeout) and are
	// left idle past it while the faults happen: probe i of n increments
	// its session through the round-robin, one request at a time, until
	// (i+1)/n of the first half of the run (of Requests, else of
	// Duration), then stops. Once every copy must have expired (the
	// store's expiry bound after its last request and after the last
	// fault ended) each session is read back through every live app
	// server: it must not be found (a new session, a fresh id), never
	// come back with its old values (Result.ExpiredRevived). Default 0:
	// none.
	ExpiryProbes int
	// ExpiryTimeout is the probes' sessions' own timeout. Default
	// session.MinTimeout (1 s).
	ExpiryTimeout time.Duration
	// ExpirySkew moves the expiry of every item on managed memcached node
	// ExpirySkewNode by that much (whole seconds, at least 2 s either
	// way), as if that node's clock ran behind (positive: its copies
	// outlive the others') or ahead (negative: they die first), from the
	// start of the workload until it ends: the harness lists the node's
	// items (`lru_crawler metadump all`) and sets each one's remaining
	// TTL (`mg <key> T<n>`) every 250 ms, since the store sets it again
	// on every access (skew.go). memcached and tiered backends (tiered's
	// cache nodes). With expiry probes, the read-back waits a positive
	// skew longer (the session lives as long as its last copy), and on
	// the memcached backend each probe's session is also read in the
	// skew's window (Result.ExpirySkewWindowReads). Default 0, off.
	ExpirySkew time.Duration
	// ExpirySkewNode is the node ExpirySkew acts on. Default 0.
	ExpirySkewNode int
	// CrashHolder kills one app process while it holds session locks,
	// half way through the run, and reports the takeover time.
	CrashHolder bool
	// Latency delays every store round trip by Latency each way, through
	// an in-process TCP proxy (network backends) or a delaying store
	// wrapper (memory).
	Latency time.Duration

	// TimelineMax bounds the requests drawn in the HTML timeline (see its
	// sampling rule in the timeline's doc). Default 20000.
	TimelineMax int
	// Progress, when set, receives a live progress line (for a terminal).
	Progress io.Writer

	// WrapStore, when set, wraps the store each in-process app server
	// uses: the harness's own tests inject deliberately broken stores to
	// prove the harness catches them. The checks read the store unwrapped.
	WrapStore func(provider.Store) provider.Store
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = BackendMemory
	}
	if c.Procs == 0 {
		c.Procs = 1
	}
	if c.Sessions == 0 {
		c.Sessions = DefaultSessions
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Requests == 0 {
		c.Requests = DefaultRequests
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	if c.SlowTime == 0 {
		c.SlowTime = DefaultSlowTime
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.ExpiryProbes > 0 && c.ExpiryTimeout == 0 {
		c.ExpiryTimeout = session.MinTimeout
	}
	if c.TimelineMax == 0 {
		c.TimelineMax = DefaultTimelineMax
	}
	if c.ManagedCluster && c.Managed == 0 && len(c.Nodes) == 0 {
		c.Managed = ClusterNodes
	}
	return c
}

// ErrConfig is wrapped by every error about a bad Config.
var ErrConfig = errors.New("harness: bad configuration")

// check reports the first problem of a defaulted Config.
func (c Config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch c.Backend {
	case BackendMemory, BackendMemcached, BackendTiered, BackendCouchbase, BackendRedis:
	default:
		return bad("unknown backend %q (want memory, memcached, tiered, couchbase or redis)", c.Backend)
	}
	usesMemcached := c.Backend == BackendMemcached || c.Backend == BackendTiered
	switch {
	case c.Procs < 1:
		return bad("-procs must be at least 1, got %d", c.Procs)
	case c.Sessions < 1:
		return bad("-sessions must be at least 1, got %d", c.Sessions)
	case c.Burst < 1:
		return bad("-burst must be at least 1, got %d", c.Burst)
	case c.Conns < 1:
		return bad("-conns must be at least 1, got %d", c.Conns)
	case c.Requests < 0 && c.Duration < 0:
		return bad("the run needs a bound: a request count or a duration")
	case c.Mix.Incr < 0 || c.Mix.Append < 0 || c.Mix.Read < 0 || c.Mix.Free < 0 || c.Mix.Slow < 0:
		return bad("mix weights must not be negative")
	case c.SlowTime < 0 || c.ReadTime < 0 || c.Timeout < 0 || c.Latency < 0 || c.PollCap < 0:
		return bad("durations must not be negative")
	case c.Wait != lock.Adaptive && c.Wait != lock.ASPNET:
		return bad("unknown wait strategy %v", c.Wait)
	case c.Backend == BackendMemory && c.Procs > 1 && !c.InProcess:
		return bad("-procs %d with the memory backend: memory is not shared between processes (each would lock and store on its own); use -backend memcached -managed 3, or -inproc to run the app servers in this process", c.Procs)
	case c.Backend == BackendMemory && (len(c.Nodes) > 0 || c.Managed > 0):
		return bad("-nodes and -managed are for the memcached and tiered backends")
	case usesMemcached && len(c.Nodes) == 0 && c.Managed < 1:
		return bad("backend %s needs memcached nodes: -nodes host:port,... or -managed N", c.Backend)
	case usesMemcached && len(c.Nodes) > 0 && c.Managed > 0:
		return bad("give either -nodes or -managed, not both")
	case c.Backup != "" && !usesMemcached:
		return bad("-backup is for the memcached and tiered backends")
	case c.ManagedCluster && (c.Backend != BackendRedis || len(c.Nodes) > 0 || c.Managed != ClusterNodes):
		return bad("-managed-cluster starts its own %d-node Redis Cluster: it needs -backend redis, without -nodes or -managed", ClusterNodes)
	case c.ManagedCluster && c.Latency > 0:
		return bad("-latency is not supported with -managed-cluster (cluster clients learn the nodes' addresses from the cluster)")
	case c.Backend == BackendRedis && !c.ManagedCluster && len(c.Nodes)+c.Managed != 1:
		return bad("backend redis needs one server: -nodes host:port or -managed 1 (or -managed-cluster)")
	case c.RedisWait < 0 || c.RedisWaitTimeout < 0 || (c.RedisWait > 0 && c.Backend != BackendRedis):
		return bad("-redis-wait %d: a number of replicas, for -backend redis", c.RedisWait)
	case !c.KillMaster.IsZero() && !c.ManagedCluster:
		return bad("-kill-master needs -backend redis -managed-cluster")
	case c.StallReplicas < 0 || (c.StallReplicas > 0 && c.KillMaster.IsZero()):
		return bad("-stall-replicas %v: a duration, with -kill-master", c.StallReplicas)
	case c.Backend == BackendCouchbase && (c.Couchbase.ConnStr == "" || c.Couchbase.Bucket == ""):
		return bad("backend couchbase needs -cb-conn and -cb-bucket")
	case (!c.KillNode.IsZero() || !c.RestartNode.IsZero() || !c.Flush.IsZero()) && c.Managed < 1:
		return bad("-kill-node, -restart-node and -flush need managed memcached nodes (-managed N)")
	case (!c.KillNode.IsZero() || !c.RestartNode.IsZero()) && (c.FaultNode < 0 || c.FaultNode >= c.Managed):
		return bad("-fault-node %d: there are %d managed nodes", c.FaultNode, c.Managed)
	case c.CrashHolder && (c.Procs < 2 || c.InProcess):
		return bad("-crash-holder needs at least 2 app processes (-procs 2 or more, not -inproc) so that the others take over")
	case c.CrashHolder && c.WrapStore != nil:
		return bad("-crash-holder runs separate processes, which cannot use WrapStore")
	case c.WrapStore != nil && c.Procs > 1 && !c.InProcess:
		return bad("WrapStore applies to in-process app servers only")
	case c.ExpiryProbes < 0 || (c.ExpiryProbes > 0 && session.CheckTimeout(c.ExpiryTimeout) != nil):
		return bad("-expiry-probes %d, -expiry-timeout %v: a number of sessions, and a session timeout of at least %v", c.ExpiryProbes, c.ExpiryTimeout, session.MinTimeout)
	}
	switch {
	case (!c.PauseNode.IsZero()) && c.Managed < 1:
		return bad("-pause-node needs managed memcached nodes (-managed N)")
	case !c.PauseNode.IsZero() && (c.FaultNode < 0 || c.FaultNode >= c.Managed):
		return bad("-fault-node %d: there are %d managed nodes", c.FaultNode, c.Managed)
	case !c.Flush.IsZero() && !c.FlushAll && (c.FlushNode < -1 || c.FlushNode >= c.Managed):
		return bad("-flush-node %d: there are %d managed nodes", c.FlushNode, c.Managed)
	case c.FlushCount < 0 || (c.FaultSpacing == 0 && c.FlushCount > MaxFlushCount) || c.FlushCount > MaxSpacedFaults:
		return bad("-flush-count %d: want 0 to %d (%d with -fault-spacing)", c.FlushCount, MaxFlushCount, MaxSpacedFaults)
	case c.FaultSpacing < 0 || (c.FaultSpacing > 0 && c.FlushCount == 0):
		return bad("-fault-spacing %v: a positive duration, with -flush-count", c.FaultSpacing)
	case c.SpacedRestart && c.FaultSpacing == 0:
		return bad("-spaced-restart needs -fault-spacing")
	case c.RepairEvery != 0 && !usesMemcached:
		return bad("-repair-every is for the memcached and tiered backends")
	case c.IdleSessions < 0:
		return bad("-idle-sessions must not be negative, got %d", c.IdleSessions)
	case c.FlushCount > 0 && (!c.Flush.IsZero() || c.FlushAll || c.Managed < 1):
		return bad("-flush-count needs managed memcached nodes (-managed N) and neither -flush nor -flush-all")
	case c.FlushCount > 0 && (c.FlushNode < -1 || c.FlushNode >= c.Managed):
		return bad("-flush-node %d: there are %d managed nodes", c.FlushNode, c.Managed)
	case !c.Partition.IsZero() && (c.Backend != BackendMemcached && c.Backend != BackendTiered || c.Managed < 1 || c.Procs < 2 || c.InProcess):
		return bad("-partition needs -backend memcached or tiered with managed nodes and at least 2 app processes (not -inproc)")
	case !c.Partition.IsZero() && (c.FaultNode < 0 || c.FaultNode >= c.Managed || c.PartitionApp < 0 || c.PartitionApp >= c.Procs):
		return bad("-partition: node %d or app %d out of range", c.FaultNode, c.PartitionApp)
	case c.ExpirySkew != 0 && (!usesMemcached || c.Managed < 1):
		return bad("-expiry-skew needs -backend memcached or tiered with managed nodes (-managed N)")
	case c.ExpirySkew != 0 && (c.ExpirySkew.Abs() < minExpirySkew || c.ExpirySkewNode < 0 || c.ExpirySkewNode >= c.Managed):
		return bad("-expiry-skew %v on node %d: at least %v either way, on one of the %d managed nodes", c.ExpirySkew, c.ExpirySkewNode, minExpirySkew, c.Managed)
	case !c.PauseApp.IsZero() && (c.Procs < 2 || c.InProcess):
		return bad("-pause-app needs at least 2 app processes (-procs 2 or more, not -inproc)")
	case !c.PauseApp.IsZero() && (c.PauseAppIndex < 0 || c.PauseAppIndex >= c.Procs):
		return bad("-pause-app-index %d: there are %d app processes", c.PauseAppIndex, c.Procs)
	}
	if _, err := backupMode(c.Backup); err != nil {
		return bad("%v", err)
	}
	for _, a := range []At{c.KillNode, c.RestartNode, c.Flush, c.PauseNode.At, c.PauseApp.At, c.Partition.At, c.KillMaster} {
		if a.Fraction > 0 && c.Requests < 0 {
			return bad("a moment given as a percentage needs a request budget (-requests)")
		}
	}
	return nil
}
