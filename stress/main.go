// Command stress fires concurrent AJAX-like bursts from simulated browsers
// at real HTTP servers running the session middleware, checks that no
// update, lock or session was lost, and measures lock waits and makespans.
//
//	go run ./stress                                   # embedded store, defaults
//	go run ./stress -backend memcached -managed 3 -procs 2 -kill-node 50%
//	go run ./stress -compare -sessions 1 -burst 32 -mix slow=1 -slow 5ms
//
// It exits with status 0 when every invariant held, 1 when one was
// violated (a fault configured but never reached counts, unless
// -allow-unreached-faults), and 2 when the run could not be made.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

func main() {
	if harness.IsChild() {
		os.Exit(harness.ServeChild())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stdout))
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK        = 0
	exitViolation = 1
	exitError     = 2
)

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// options are the command line, parsed.
type options struct {
	cfg      harness.Config
	compare  bool
	jsonFile string
	htmlFile string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	c := &o.cfg
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./stress [flags]\n\nWith no flags it runs the default workload against the embedded store.\n\n")
		fs.PrintDefaults()
	}
	var killMaster string
	var nodes, mix, wait, killAt, restartAt, flushAt, pauseNode, pauseApp, partition string
	fs.StringVar(&c.Backend, "backend", harness.BackendMemory, "store: memory, memcached, tiered (memcached + PostgreSQL), couchbase or redis")
	fs.StringVar(&nodes, "nodes", "", "memcached nodes host:port,... (memcached and tiered backends), or the one redis server")
	fs.StringVar(&c.Backup, "backup", "", "memcached and tiered: the memcached store's replication: witness (two data copies and a witness, 3+ nodes; docs/replication.md), on (a backup copy, opt-in on 3+ nodes: not safe under every single fault), or off (one copy); default the store's default: witness with 3+ nodes, on with 2, one copy with 1")
	fs.IntVar(&c.Managed, "managed", 0, "start `N` local memcached processes (redis: 1 redis-server) for the run and stop them afterwards")
	fs.BoolVar(&c.ManagedCluster, "managed-cluster", false, "redis: start a local Redis Cluster of 3 masters with one replica each (6 redis-server processes; -fault-node 0-2 are the masters) instead of -managed 1")
	fs.IntVar(&c.RedisWait, "redis-wait", 0, "redis: WAIT for `N` replicas after every write (the store's WaitReplicas; fewer within -redis-wait-timeout is an unknown outcome)")
	fs.DurationVar(&c.RedisWaitTimeout, "redis-wait-timeout", 0, "redis: bound of each WAIT (default the store's 100 ms)")
	fs.StringVar(&killMaster, "kill-master", "", "kill -9, at `T`, the master of the -managed-cluster holding the most keys (printed); its replica takes over. -restart-node then restarts it, as a replica")
	fs.DurationVar(&c.StallReplicas, "stall-replicas", 0, "with -kill-master: stop the master's replicas and cut it off from them at that moment, and kill it `D` later (under the cluster's 2 s node timeout): writes it acknowledged meanwhile are lost in the failover unless -redis-wait kept them unacknowledged")
	fs.StringVar(&c.PGDSN, "pg-dsn", "", "PostgreSQL DSN of the tiered backend (default: start a throwaway local server)")
	fs.StringVar(&c.Couchbase.ConnStr, "cb-conn", "", "Couchbase connection string, e.g. couchbase://127.0.0.1")
	fs.StringVar(&c.Couchbase.Username, "cb-user", "", "Couchbase user name")
	fs.StringVar(&c.Couchbase.Password, "cb-pass", "", "Couchbase password")
	fs.StringVar(&c.Couchbase.Bucket, "cb-bucket", "", "Couchbase bucket")
	fs.IntVar(&c.Procs, "procs", 1, "app servers behind a round-robin; more than 1 run as separate processes")
	fs.BoolVar(&c.InProcess, "inproc", false, "run the -procs app servers in this process, each with its own provider")
	fs.IntVar(&c.Sessions, "sessions", harness.DefaultSessions, "simulated browsers, one session each")
	fs.IntVar(&c.Burst, "burst", harness.DefaultBurst, "parallel requests per burst")
	fs.IntVar(&c.Conns, "conns", harness.DefaultConns, "connections per browser and host")
	fs.IntVar(&c.Requests, "requests", harness.DefaultRequests, "workload requests, the run's target (negative: bounded by -duration only); the first page loads and probes before it are counted apart")
	fs.DurationVar(&c.Duration, "duration", harness.DefaultDuration, "workload time bound (negative: bounded by -requests only)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the route choices")
	fs.StringVar(&mix, "mix", harness.DefaultMix.String(), "route weights: incr, append (exclusive), read (read-only), free (lock-free), slow (exclusive, -slow long)")
	fs.DurationVar(&c.SlowTime, "slow", harness.DefaultSlowTime, "handler time of the slow route")
	fs.DurationVar(&c.ReadTime, "read-time", 0, "handler time of the read-only route")
	fs.DurationVar(&c.Timeout, "timeout", harness.DefaultTimeout, "bound of each request")
	fs.BoolVar(&c.LateCommit, "late-commit", false, "run the middleware unbuffered: the answer goes out before the commit, so a failed commit loses an acknowledged write (default: answers are held until the session is stored)")
	fs.DurationVar(&c.Lease, "lease", harness.DefaultLease, "lock lease of the providers (negative: ASP.NET's 110 s lock timeout)")
	fs.StringVar(&wait, "wait", "adaptive", "waiting strategy: adaptive (ours) or aspnet (fixed 500 ms polls)")
	fs.DurationVar(&c.PollCap, "poll-cap", 0, "largest poll interval of the adaptive strategy (default the lock package's 50 ms)")
	fs.StringVar(&killAt, "kill-node", "", "kill -9 managed memcached node -fault-node at `T` (a duration such as 2s, or a share of the requests such as 50%)")
	fs.StringVar(&restartAt, "restart-node", "", "restart managed memcached node -fault-node, empty, at `T`")
	fs.StringVar(&flushAt, "flush", "", "flush one managed memcached node (flush_all) at `T`: -flush-node, or one chosen from -seed (printed)")
	fs.IntVar(&c.FlushNode, "flush-node", -1, "index of the managed node -flush empties (-1: chosen from -seed)")
	fs.IntVar(&c.FlushCount, "flush-count", 0, "flush one managed memcached node `N` times, at instants and on nodes drawn from -seed (printed), 10% to 90% into the run, at least 10% apart")
	fs.DurationVar(&c.FaultSpacing, "fault-spacing", 0, "with -flush-count: space its faults by `D` instead (at D, 2D, ... after the workload starts), on the managed nodes in turn from -flush-node (-1: from -seed); spaced beyond the repair window (-repair-every plus its pass) each is a single fault")
	fs.BoolVar(&c.SpacedRestart, "spaced-restart", false, "with -fault-spacing: every second spaced fault restarts its node (kill -9, started empty) instead of flushing it")
	fs.DurationVar(&c.RepairEvery, "repair-every", 0, "memcached and tiered: the memcached store's repair scan period (Config.RepairEvery; default the store's 30s; negative: no scan)")
	fs.IntVar(&c.IdleSessions, "idle-sessions", 0, "add `N` sessions that are created and then touched by no request until the read-back (only the repair scan restores their copies); with -fault-spacing on memcached's witness scheme their records are checked whole before each next fault (repair_window_exceeded)")
	fs.BoolVar(&c.FlushAll, "flush-all", false, "make -flush empty every managed node at once (a double fault)")
	fs.StringVar(&pauseNode, "pause-node", "", "stop managed memcached node -fault-node (SIGSTOP) at `T:D`, e.g. 3s:1.5s, and continue it (SIGCONT) D later")
	fs.StringVar(&pauseApp, "pause-app", "", "stop app process -pause-app-index (SIGSTOP) at `T:D` and continue it D later; make D longer than -lease (needs -procs 2 or more)")
	fs.IntVar(&c.PauseAppIndex, "pause-app-index", 0, "index of the app process -pause-app stops")
	fs.StringVar(&partition, "partition", "", "cut managed memcached node -fault-node off from app process -partition-app at `T:D`, healing D later (through that process's own proxy; needs -procs 2 or more)")
	fs.IntVar(&c.PartitionApp, "partition-app", 0, "index of the app process -partition cuts off")
	fs.IntVar(&c.FaultNode, "fault-node", 0, "index of the managed node -kill-node and -restart-node act on")
	fs.BoolVar(&c.AllowUnreachedFaults, "allow-unreached-faults", false, "do not fail the run when a configured fault was never reached (the workload ended first)")
	fs.IntVar(&c.ExpiryProbes, "expiry-probes", 0, "add N sessions of a short own timeout, left idle past it across the faults, and read them back once they must have expired: each must be a new session (expired_session_revived)")
	fs.DurationVar(&c.ExpiryTimeout, "expiry-timeout", 0, "the -expiry-probes sessions' own timeout (default 1s)")
	fs.DurationVar(&c.ExpirySkew, "expiry-skew", 0, "move the expiry of every item on managed memcached node -expiry-skew-node by `D` (whole seconds, at least 2s either way; re-applied every 250 ms until the workload ends, via lru_crawler metadump and mg T), as if its clock ran behind (+: its copies outlive the others') or ahead (-: they die first); with -expiry-probes the read-back waits a positive D longer, and each probe's session is also read between the copies' expiries")
	fs.IntVar(&c.ExpirySkewNode, "expiry-skew-node", 0, "index of the managed node -expiry-skew acts on")
	fs.BoolVar(&c.CrashHolder, "crash-holder", false, "kill an app process while it holds locks, half way through, and report the takeover time (needs -procs 2 or more)")
	fs.DurationVar(&c.Latency, "latency", 0, "delay added to the store's traffic each way, through an in-process TCP proxy")
	fs.BoolVar(&o.compare, "compare", false, "run the workload with our waiting strategy and with ASP.NET's, and print the ratios")
	fs.StringVar(&o.jsonFile, "json", "", "write the results as JSON to `FILE`")
	fs.StringVar(&o.htmlFile, "html", "", "write a self-contained HTML report to `FILE`")
	fs.IntVar(&c.TimelineMax, "timeline-max", harness.DefaultTimelineMax, "most requests drawn in the HTML timeline")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if nodes != "" {
		for _, n := range strings.Split(nodes, ",") {
			if n = strings.TrimSpace(n); n != "" {
				c.Nodes = append(c.Nodes, n)
			}
		}
	}
	var err error
	if c.Mix, err = harness.ParseMix(mix); err != nil {
		return o, err
	}
	if c.Wait, err = lock.ParseStrategy(wait); err != nil {
		return o, err
	}
	if o.compare && c.Wait != lock.Adaptive {
		return o, errors.New("-compare runs both strategies; leave -wait out")
	}
	if killAt != "" {
		if c.KillNode, err = harness.ParseAt(killAt); err != nil {
			return o, fmt.Errorf("-kill-node: %w", err)
		}
	}
	if killMaster != "" {
		if c.KillMaster, err = harness.ParseAt(killMaster); err != nil {
			return o, fmt.Errorf("-kill-master: %w", err)
		}
	}
	if flushAt != "" {
		if c.Flush, err = harness.ParseAt(flushAt); err != nil {
			return o, fmt.Errorf("-flush: %w", err)
		}
	}
	if pauseNode != "" {
		if c.PauseNode, err = harness.ParseSpan(pauseNode); err != nil {
			return o, fmt.Errorf("-pause-node: %w", err)
		}
	}
	if partition != "" {
		if c.Partition, err = harness.ParseSpan(partition); err != nil {
			return o, fmt.Errorf("-partition: %w", err)
		}
	}
	if pauseApp != "" {
		if c.PauseApp, err = harness.ParseSpan(pauseApp); err != nil {
			return o, fmt.Errorf("-pause-app: %w", err)
		}
	}
	if restartAt != "" {
		if c.RestartNode, err = harness.ParseAt(restartAt); err != nil {
			return o, fmt.Errorf("-restart-node: %w", err)
		}
	}
	if c.Seed == 0 {
		return o, errors.New("-seed must not be 0")
	}
	return o, nil
}

// run is the command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, terminal bool) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "stress:", err)
		return exitError
	}
	if terminal {
		o.cfg.Progress = stdout
	}
	var (
		results []*harness.Result
		report  any
		ok      bool
	)
	if o.compare {
		c, err := harness.Compare(ctx, o.cfg)
		if err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
		err = harness.WriteComparison(stdout, c)
		results, report, ok = []*harness.Result{c.Ours, c.ASPNET}, c, c.OK()
		if err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
	} else {
		r, err := harness.Run(ctx, o.cfg)
		if err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
		if err := harness.WriteSummary(stdout, r); err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
		if !o.cfg.KillMaster.IsZero() || !o.cfg.KillNode.IsZero() {
			fmt.Fprintf(stdout, "recovery: last failed request answered %.0f ms after the kill; failures ended before the run did: %v\n", r.RecoveryMs, r.Recovered)
		}
		results, report, ok = []*harness.Result{r}, r, r.OK()
	}
	if o.jsonFile != "" {
		if err := writeFile(o.jsonFile, func(w io.Writer) error { return harness.WriteJSON(w, report) }); err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
	}
	if o.htmlFile != "" {
		title := strings.TrimSpace("sessionlock stress report " + strings.Join(args, " "))
		if err := writeFile(o.htmlFile, func(w io.Writer) error { return harness.WriteHTML(w, title, results...) }); err != nil {
			fmt.Fprintln(stderr, "stress:", err)
			return exitError
		}
	}
	if !ok {
		return exitViolation
	}
	return exitOK
}

func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Close()
}
