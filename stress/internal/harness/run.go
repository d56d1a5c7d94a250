// Package harness is the stress harness behind go run ./stress: it starts
// the stores (embedded, managed or given memcached, PostgreSQL, Redis,
// Couchbase) and app servers running the session middleware, fires
// concurrent AJAX-like bursts at sessions, injects faults (kills, pauses,
// flushes, partitions, failovers), checks that no update, lock or session
// was lost, and writes the text and HTML reports. It is internal to the
// tools module: its one importer is the stress command.
package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/internal/netdelay"
	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// Run runs the workload cfg describes, injects its faults, checks the
// invariants and returns the measurements. An error means the run could
// not be made (bad configuration, store unreachable); violated invariants
// are reported in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, control: &http.Client{Timeout: 10 * time.Second}}
	defer r.close()
	return r.run(ctx)
}

// Compare runs the workload twice, with our waiting strategy and with
// ASP.NET's fixed 500 ms polling, and compares them.
func Compare(ctx context.Context, cfg Config) (*Comparison, error) {
	ours, theirs := cfg, cfg
	ours.Wait, theirs.Wait = lock.Adaptive, lock.ASPNET
	a, err := Run(ctx, ours)
	if err != nil {
		return nil, err
	}
	b, err := Run(ctx, theirs)
	if err != nil {
		return nil, err
	}
	return compare(a, b), nil
}

// server is one app server as the runner sees it: in this process or a
// child process.
type server struct {
	addr  string
	local *appServer
	proc  *child
	dead  bool // killed by -crash-holder
}

// runner holds the state of one run.
type runner struct {
	cfg     Config
	be      *backend
	servers []*server
	stores  []provider.Store // stores of in-process app servers
	front   *front
	control *http.Client
	work    *workload

	paused sync.WaitGroup  // faults with a duration still running (pauseFor)
	cut    *netdelay.Proxy // the partitioned process's own proxy to its node
	// killedMaster is the index of the node -kill-master killed, which
	// -restart-node then restarts; nil before.
	killedMaster   *int
	masterReplicas []int // its replicas when it was killed

	mu     sync.Mutex
	events []Event
	crash  *crash
	start  time.Time
	// sentBefore counts the requests sent before the workload started
	// (first page loads, probes).
	sentBefore int64
	// injecting counts the faults being injected now (injectFaults): a
	// fault whose event is recorded when it ends (a restart, recorded
	// with its duration once the node listens again) is under way before
	// its event exists, and unsettled must see it.
	injecting int

	// lateFaults (tests only) is the broken variant before injecting:
	// unsettled saw a fault only once its event was recorded, so the
	// workload could spend its budget and end during a restart (a
	// restart-node run with no request after the failover time).
	lateFaults bool

	// skewStats are Config.ExpirySkew's counts (runExpirySkew), under
	// mu; windows runs its window reads (skewWindowReads), whose counts
	// are skewWindows, under mu.
	skewStats skewStats
	// spaced are the idle sessions' checks around Config.FaultSpacing's
	// faults (checkIdle), under mu.
	spaced      spacedCounts
	windows     sync.WaitGroup
	skewWindows skewWindowCounts

	// failUnavailable (tests only) is the read-back before
	// sessions_unavailable, kept as a broken variant: a session still
	// unavailable at the end failed the whole run, which then had no
	// verdict on any other session.
	failUnavailable bool
}

func (r *runner) close() {
	if r.work != nil {
		r.work.close()
	}
	if r.front != nil {
		_ = r.front.Close()
	}
	for _, s := range r.servers {
		switch {
		case s.local != nil:
			_ = s.local.close()
		case s.proc != nil && !s.dead:
			_ = s.proc.stop()
		}
	}
	for _, s := range r.stores {
		_ = s.Close()
	}
	r.control.CloseIdleConnections()
	if r.be != nil {
		r.be.close()
	}
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	var err error
	if r.be, err = startBackend(ctx, cfg); err != nil {
		return nil, err
	}
	if err := r.startServers(ctx); err != nil {
		return nil, err
	}
	base := "http://" + r.servers[0].addr
	if len(r.servers) > 1 {
		addrs := make([]string, len(r.servers))
		for i, s := range r.servers {
			addrs[i] = s.addr
		}
		if r.front, err = startFront(addrs); err != nil {
			return nil, err
		}
		base = r.front.URL()
	}

	r.work = newWorkload(cfg, base)
	if cfg.RunPastFailover > 0 {
		r.work.more = r.unsettled
	}
	if err := r.work.open(ctx); err != nil {
		return nil, fmt.Errorf("harness: the app servers do not serve: %w", err)
	}
	single := r.work.probe(ctx)
	probes, err := r.openProbes(ctx)
	if err != nil {
		return nil, err
	}

	r.start = time.Now()
	r.sentBefore = r.work.sent.Load()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = r.start.Add(cfg.Duration)
	}
	faultCtx, stopFaults := context.WithCancel(ctx)
	var faults sync.WaitGroup
	faults.Add(1)
	go func() {
		defer faults.Done()
		r.injectFaults(faultCtx)
	}()
	if cfg.ExpirySkew != 0 {
		faults.Add(1)
		go func() {
			defer faults.Done()
			r.runExpirySkew(faultCtx)
		}()
	}
	stopProgress := r.progress()
	probeCtx, stopProbes := context.WithCancel(ctx)
	stopped := make([]chan struct{}, len(probes))
	for i := range stopped {
		stopped[i] = make(chan struct{})
	}
	if cfg.ExpirySkew != 0 && cfg.Backend == BackendMemcached && len(probes) > 0 {
		r.windows.Add(1)
		go func() {
			defer r.windows.Done()
			r.skewWindowReads(ctx, probes, stopped)
		}()
	}
	var probing sync.WaitGroup
	probing.Add(1)
	go func() {
		defer probing.Done()
		r.runProbes(probeCtx, probes, stopped)
	}()
	r.work.run(ctx, deadline)
	end := time.Now()
	stopProbes()
	probing.Wait()
	stopFaults()
	faults.Wait()
	r.paused.Wait() // everything paused is running again before the checks
	stopProgress()

	if err := r.quiesce(ctx); err != nil {
		return nil, err
	}
	o := observations{
		cfg:      cfg,
		requests: r.work.requests,
		bursts:   r.work.bursts,
		single:   single,
		events:   r.events,
		crash:    r.crash,
		start:    r.start.UnixNano(),
		end:      end.UnixNano(),
	}
	for _, b := range r.work.browsers {
		o.sids = append(o.sids, b.sid)
	}
	if o.timings, o.fenced, err = r.collect(ctx); err != nil {
		return nil, err
	}
	if o.states, err = r.readSessions(ctx, o); err != nil {
		return nil, err
	}
	if err := dumpObservations(o); err != nil {
		return nil, err
	}
	res := analyze(o)
	if cfg.ExpirySkew != 0 {
		r.mu.Lock()
		st := r.skewStats
		r.mu.Unlock()
		res.ExpirySkewS, res.ExpirySkewNode = skewSecs(cfg.ExpirySkew), cfg.ExpirySkewNode
		res.ExpirySkewRounds, res.ExpirySkewBusy, res.ExpirySkewShifted, res.ExpirySkewLapsed = st.rounds, st.busy, st.shifted, st.lapsed
	}
	r.spacedResult(res)
	if err := r.checkExpiry(ctx, probes, res); err != nil {
		return nil, err
	}
	return res, nil
}

// startServers starts the app servers: in this process, or as processes.
func (r *runner) startServers(ctx context.Context) error {
	cfg := r.cfg
	for i := range cfg.Procs {
		ac := appConfig{
			Proc: i, Store: r.be.spec, Lease: cfg.Lease, Wait: cfg.Wait.String(),
			PollCap: cfg.PollCap, SlowTime: cfg.SlowTime, ReadTime: cfg.ReadTime,
			LateCommit: cfg.LateCommit,
		}
		if !cfg.Partition.IsZero() && i == cfg.PartitionApp {
			if err := r.partitionProxy(&ac); err != nil {
				return err
			}
		}
		if cfg.Procs > 1 && !cfg.InProcess {
			c, err := startChild(ctx, ac)
			if err != nil {
				return err
			}
			r.servers = append(r.servers, &server{addr: c.addr, proc: c})
			continue
		}
		st, err := r.be.store(ctx)
		if err != nil {
			return err
		}
		r.stores = append(r.stores, st)
		if cfg.WrapStore != nil {
			st = cfg.WrapStore(st)
		}
		a, err := newApp(ac, st, nil)
		if err != nil {
			return err
		}
		s, err := startAppServer(a)
		if err != nil {
			return err
		}
		r.servers = append(r.servers, &server{addr: s.addr(), local: s})
	}
	return nil
}

// event records a fault of kind on target at the current moment of the
// run.
func (r *runner) event(kind, target string, format string, args ...any) {
	r.record(Event{Kind: kind, Target: target, What: fmt.Sprintf(format, args...)})
}

// record adds e to the run's events, at the current moment unless e.AtMs
// is set.
func (r *runner) record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.AtMs == 0 {
		e.AtMs = ms(int64(time.Since(r.start)))
	}
	r.events = append(r.events, e)
}

// unsettled reports whether a fault is being injected, or was injected
// and ended less than a failover time and Config.RunPastFailover ago
// (Config.RunPastFailover).
func (r *runner) unsettled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.injecting > 0 && !r.lateFaults {
		return true
	}
	since := time.Since(r.start)
	for _, e := range r.events {
		if e.Missed || e.Kind == FaultError {
			continue
		}
		end := time.Duration((e.AtMs + e.DurationMs) * float64(time.Millisecond))
		if since < end+FailoverTime+r.cfg.RunPastFailover {
			return true
		}
	}
	return false
}

// reached reports whether the moment a has come.
func (r *runner) reached(a At) bool {
	switch {
	case a.After > 0:
		return time.Since(r.start) >= a.After
	case a.Fraction > 0:
		return float64(r.work.sent.Load()-r.sentBefore) >= a.Fraction*float64(r.cfg.Requests)
	}
	return false
}

// injectFaults runs the configured faults at their moments, until ctx ends
// (the workload is over).
func (r *runner) injectFaults(ctx context.Context) {
	cfg := r.cfg
	type fault struct {
		at   At
		kind string
		name string
		do   func(context.Context)
	}
	var pending []fault
	kind := r.nodeKind()
	if !cfg.KillMaster.IsZero() {
		pending = append(pending, fault{cfg.KillMaster, FaultKillMaster, "kill redis master", r.killMaster})
	}
	if !cfg.KillNode.IsZero() {
		pending = append(pending, fault{cfg.KillNode, FaultKillNode, "kill " + kind + " node", func(context.Context) {
			n := r.be.nodes[cfg.FaultNode]
			n.Kill()
			r.event(FaultKillNode, r.nodeName(cfg.FaultNode), "killed %s node %d (%s)", kind, cfg.FaultNode, n.Addr())
		}})
	}
	if !cfg.RestartNode.IsZero() {
		pending = append(pending, fault{cfg.RestartNode, FaultRestartNode, "restart " + kind + " node", func(ctx context.Context) {
			if r.killedMaster != nil {
				r.restartMaster(ctx)
				return
			}
			r.restartNode(ctx, cfg.FaultNode, "")
		}})
	}
	if !cfg.Flush.IsZero() && cfg.FlushAll {
		pending = append(pending, fault{cfg.Flush, FaultFlush, "flush " + kind, func(ctx context.Context) {
			for i, n := range r.be.nodes {
				if err := n.FlushAll(context.WithoutCancel(ctx)); err != nil {
					r.event(FaultError, r.nodeName(i), "flushing %s node %d failed: %v", kind, i, err)
					return
				}
			}
			r.event(FaultFlush, "every "+kind+" node", "flushed all %d %s nodes", len(r.be.nodes), kind)
		}})
	}
	if !cfg.Flush.IsZero() && !cfg.FlushAll {
		i := cfg.FlushNode
		if i < 0 {
			i = int(cfg.Seed % uint64(len(r.be.nodes)))
		}
		pending = append(pending, fault{cfg.Flush, FaultFlush, "flush " + kind + " node", func(ctx context.Context) {
			n := r.be.nodes[i]
			if err := n.FlushAll(context.WithoutCancel(ctx)); err != nil {
				r.event(FaultError, r.nodeName(i), "flushing %s node %d failed: %v", kind, i, err)
				return
			}
			r.event(FaultFlush, r.nodeName(i), "flushed %s node %d (%s), chosen by seed %d", kind, i, n.Addr(), cfg.Seed)
		}})
	}
	for k, sf := range spacedPlan(cfg, len(r.be.nodes)) {
		what := "flush"
		if sf.restart {
			what = "restart"
		}
		r.say("spaced fault %d of %d: %s of memcached node %d at %v", k+1, cfg.FlushCount, what, sf.node, sf.at)
		pending = append(pending, fault{At{After: sf.at}, FaultFlush, fmt.Sprintf("spaced fault %d (%s of memcached node %d)", k+1, what, sf.node), func(ctx context.Context) {
			r.spacedFault(ctx, k, sf)
		}})
	}
	for k, pf := range flushPlan(cfg.Seed, seededFlushes(cfg), len(r.be.nodes), cfg.FlushNode) {
		at := At{Fraction: pf.frac}
		if cfg.Requests < 0 {
			at = At{After: time.Duration(pf.frac * float64(cfg.Duration))}
		}
		i, when := pf.node, fmt.Sprintf("%.2f%% of the run", pf.frac*100)
		if cfg.Requests < 0 {
			when = at.After.Round(time.Millisecond).String()
		}
		r.say("flush %d of %d (seed %d): memcached node %d at %s", k+1, cfg.FlushCount, cfg.Seed, i, when)
		pending = append(pending, fault{at, FaultFlush, fmt.Sprintf("flush %d of memcached node %d", k+1, i), func(ctx context.Context) {
			n := r.be.nodes[i]
			if err := n.FlushAll(context.WithoutCancel(ctx)); err != nil {
				r.event(FaultError, r.nodeName(i), "flushing memcached node %d failed: %v", i, err)
				return
			}
			r.event(FaultFlush, r.nodeName(i), "flushed memcached node %d (%s): flush %d of %d, at %s drawn from seed %d", i, n.Addr(), k+1, cfg.FlushCount, when, cfg.Seed)
			r.say("fault at %.0f ms: flushed memcached node %d (flush %d of %d)", ms(int64(time.Since(r.start))), i, k+1, cfg.FlushCount)
		}})
	}
	if !cfg.PauseNode.IsZero() {
		i, span := cfg.FaultNode, cfg.PauseNode
		pending = append(pending, fault{span.At, FaultPauseNode, "pause " + kind + " node", func(ctx context.Context) {
			r.pauseFor(ctx, FaultPauseNode, r.nodeName(i), span.For, r.be.nodes[i].Pause, r.be.nodes[i].Resume,
				fmt.Sprintf("%s node %d (%s) stopped (SIGSTOP) for %v, then continued", kind, i, r.be.nodes[i].Addr(), span.For))
		}})
	}
	if !cfg.Partition.IsZero() {
		i, j, span := cfg.FaultNode, cfg.PartitionApp, cfg.Partition
		pending = append(pending, fault{span.At, FaultPartition, "partition", func(ctx context.Context) {
			r.pauseFor(ctx, FaultPartition, fmt.Sprintf("%s from app %d", r.nodeName(i), j), span.For, func() error { r.cut.Hold(); return nil }, func() error { r.cut.Release(); return nil },
				fmt.Sprintf("%s node %d unreachable from app %d (only) for %v, then healed", kind, i, j, span.For))
		}})
	}
	if !cfg.PauseApp.IsZero() {
		i, span := cfg.PauseAppIndex, cfg.PauseApp
		pending = append(pending, fault{span.At, FaultPauseApp, "pause app process", func(ctx context.Context) {
			s := r.servers[i]
			if s.proc == nil {
				r.event(FaultError, fmt.Sprintf("app %d", i), "app %d is not a process", i)
				return
			}
			r.pauseFor(ctx, FaultPauseApp, fmt.Sprintf("app %d", i), span.For, s.proc.pause, s.proc.resume,
				fmt.Sprintf("app process %d stopped (SIGSTOP) for %v (lease %v), then continued", i, span.For, cfg.Lease))
		}})
	}
	if cfg.CrashHolder {
		at := At{Fraction: 0.5}
		if cfg.Requests < 0 {
			at = At{After: cfg.Duration / 2}
		}
		pending = append(pending, fault{at, FaultCrashHolder, "crash a lock holder", r.crashHolder})
	}
	if len(pending) == 0 {
		return
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			for _, f := range pending {
				r.record(Event{Kind: f.kind, Missed: true, What: fmt.Sprintf("%s at %s: not reached, the workload ended first", f.name, f.at)})
			}
			return
		case <-tick.C:
		}
		rest := pending[:0]
		for _, f := range pending {
			if r.reached(f.at) {
				r.inject(ctx, f.do)
			} else {
				rest = append(rest, f)
			}
		}
		pending = rest
	}
}

// inject runs one fault's injection, counted in r.injecting meanwhile
// (unsettled).
func (r *runner) inject(ctx context.Context, do func(context.Context)) {
	r.mu.Lock()
	r.injecting++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.injecting--
		r.mu.Unlock()
	}()
	do(ctx)
}

// MaxFlushCount bounds Config.FlushCount: its instants lie between 10 %
// and 90 % of the run, at least FlushGap apart.
const MaxFlushCount = 8

// FlushGap is the least share of the run between two of FlushCount's
// flushes.
const FlushGap = 0.1

// plannedFlush is one of FlushCount's flushes: a share of the run and a
// node.
type plannedFlush struct {
	frac float64
	node int
}

// flushPlan draws count flush instants in [0.1, 0.9] of the run, at
// least FlushGap apart and in order, each on a node drawn from seed
// (or node, when not -1). The same seed gives the same plan. Spaced
// faults (Config.FaultSpacing) are spacedPlan's instead: none.
func flushPlan(seed uint64, count, nodes, node int) []plannedFlush {
	if count <= 0 || nodes <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0xf105))
	slack := 0.8 - float64(count-1)*FlushGap
	fracs := make([]float64, count)
	for i := range fracs {
		fracs[i] = rng.Float64() * slack
	}
	slices.Sort(fracs)
	plan := make([]plannedFlush, count)
	for i, f := range fracs {
		plan[i] = plannedFlush{frac: math.Round((0.1+f+float64(i)*FlushGap)*1e4) / 1e4, node: node}
		if node < 0 {
			plan[i].node = rng.IntN(nodes)
		}
	}
	return plan
}

// say prints a line about the run's faults to cfg.Progress (the
// terminal), if any, above the progress line.
func (r *runner) say(format string, args ...any) {
	if r.cfg.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.cfg.Progress, "\r\033[K"+format+"\n", args...)
}

// partitionProxy gives app server ac its own proxy to node FaultNode,
// which -partition cuts: the node keeps its address for placement and ac
// dials the proxy instead.
func (r *runner) partitionProxy(ac *appConfig) error {
	node := r.be.spec.Nodes[r.cfg.FaultNode]
	p, err := netdelay.Start(node, 0)
	if err != nil {
		return err
	}
	r.be.proxies = append(r.be.proxies, p)
	r.cut = p
	spec := ac.Store
	spec.Dial = map[string]string{node: p.Addr()}
	ac.Store = spec
	return nil
}

// pauseFor stops something (pause), records the fault, and continues it
// (resume) d later in its own goroutine; the run waits for it before its
// checks (r.paused).
func (r *runner) pauseFor(ctx context.Context, kind, target string, d time.Duration, pause, resume func() error, what string) {
	if err := pause(); err != nil {
		r.event(FaultError, target, "%s: pausing failed: %v", target, err)
		return
	}
	r.record(Event{Kind: kind, Target: target, DurationMs: ms(int64(d)), What: what})
	r.paused.Add(1)
	go func() {
		defer r.paused.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		<-t.C
		if err := resume(); err != nil {
			r.event(FaultError, target, "%s: continuing failed: %v", target, err)
		}
	}()
}

// nodeKind names the managed nodes' server in events: memcached or redis.
func (r *runner) nodeKind() string {
	if r.cfg.Backend == BackendRedis {
		return "redis"
	}
	return "memcached"
}

// nodeName names managed node i in events: "memcached node 1".
func (r *runner) nodeName(i int) string { return fmt.Sprintf("%s node %d", r.nodeKind(), i) }

// crashHolder makes the last app process hold the locks of a few
// sessions, kills it, and lets the others take over.
func (r *runner) crashHolder(ctx context.Context) {
	victimIdx := len(r.servers) - 1
	victim := r.servers[victimIdx]
	r.front.markDown(victimIdx)
	n := min(3, len(r.work.browsers))
	want := map[string]bool{}
	var holds sync.WaitGroup
	for _, b := range r.work.browsers[:n] {
		want[b.sid] = true
		holds.Add(1)
		go func() {
			defer holds.Done()
			r.work.do(ctx, b, "http://"+victim.addr, RouteHold)
		}()
	}
	// Wait until the victim holds all of them (bounded: a hold queues
	// behind the browser's other requests, at most a lease if the lock
	// had to be taken over).
	deadline := time.Now().Add(r.cfg.Lease + 30*time.Second)
	var held []string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var st appState
		if err := getJSON(ctx, r.control, victim.addr, pathState, &st); err == nil {
			held = held[:0]
			for _, sid := range st.Holding {
				if want[sid] {
					held = append(held, sid)
				}
			}
			if len(held) == len(want) {
				break
			}
		}
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	victim.proc.kill()
	victim.dead = true
	at := time.Now()
	r.mu.Lock()
	r.crash = &crash{At: at.UnixNano(), Proc: victimIdx, SIDs: append([]string(nil), held...)}
	r.mu.Unlock()
	r.event(FaultCrashHolder, fmt.Sprintf("app %d", victimIdx), "killed app process %d holding the locks of %d session(s)", victimIdx, len(held))
	holds.Wait()
	// Each crashed holder's session is then wanted by a new request, which
	// must take it over after one lease.
	for _, b := range r.work.browsers[:n] {
		if want[b.sid] {
			holds.Add(1)
			go func() {
				defer holds.Done()
				r.work.do(context.WithoutCancel(ctx), b, r.work.base, RouteIncr)
			}()
		}
	}
	holds.Wait()
}

// progress prints a live progress line to cfg.Progress until the returned
// function is called.
func (r *runner) progress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	okBefore, failBefore := r.work.okCount.Load(), r.work.failCount.Load() // setup requests
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(r.cfg.Progress, "\r\033[K")
				return
			case <-tick.C:
			}
			el := time.Since(r.start)
			sent := r.work.sent.Load() - r.sentBefore
			fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", progressLine(r.cfg, el, sent, r.work.okCount.Load()-okBefore, r.work.failCount.Load()-failBefore))
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// quiesce waits until no live app server has a request in flight, so that
// every commit and release has ended before the locks are checked.
func (r *runner) quiesce(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := 0
		for _, s := range r.servers {
			if s.dead {
				continue
			}
			var st appState
			if err := getJSON(ctx, r.control, s.addr, pathState, &st); err != nil {
				return fmt.Errorf("harness: app server %s: %w", s.addr, err)
			}
			busy += int(st.InFlight)
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: %d requests still running in the app servers 30 s after the workload ended", busy)
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// collect gathers the live app servers' timings and fenced-write counts.
func (r *runner) collect(ctx context.Context) (map[uint64]timing, int64, error) {
	timings := map[uint64]timing{}
	var fenced int64
	for _, s := range r.servers {
		if s.dead {
			continue
		}
		var ts []timing
		if err := getJSON(ctx, r.control, s.addr, pathTimings, &ts); err != nil {
			return nil, 0, err
		}
		for _, t := range ts {
			timings[t.ID] = t
		}
		var st appState
		if err := getJSON(ctx, r.control, s.addr, pathState, &st); err != nil {
			return nil, 0, err
		}
		fenced += st.Fenced
	}
	return timings, fenced, nil
}

// readSessions reads every session the browsers were told about straight
// from the store: its lock state and its values.
func (r *runner) readSessions(ctx context.Context, o observations) (map[string]sessionState, error) {
	var st provider.Store
	if r.be.mem != nil {
		st = nopCloser{r.be.mem}
	} else {
		var err error
		if st, err = openStore(ctx, r.be.spec); err != nil {
			return nil, err
		}
	}
	defer st.Close()
	ac := appConfig{Lease: r.cfg.Lease, Wait: r.cfg.Wait.String()}
	pcfg, err := ac.providerConfig()
	if err != nil {
		return nil, err
	}
	p, err := provider.New(st, pcfg)
	if err != nil {
		return nil, err
	}
	sids := map[string]bool{}
	for _, sid := range o.sids {
		if sid != "" {
			sids[sid] = true
		}
	}
	for _, req := range o.requests {
		if req.ok() && req.SID != "" {
			sids[req.SID] = true
		}
	}
	states := make(map[string]sessionState, len(sids))
	for sid := range sids {
		s, err := readSession(ctx, p, sid)
		if errors.Is(err, provider.ErrUnavailable) && !r.failUnavailable && ctx.Err() == nil {
			// Still unavailable after readSession's retries: the end of
			// a double fault may leave a session so (docs/replication.md
			// section 8). Its final value is unknown; the analysis leaves
			// it out of the checks that need it and counts it
			// (Result.SessionsUnavailable).
			states[sid] = sessionState{Unavailable: true}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("harness: read session %s… back: %w", sid[:min(len(sid), 6)], err)
		}
		states[sid] = s
	}
	return states, nil
}

// readSession reads one session: whether it is locked (GetItem refuses a
// locked session) and its values (a lock-free read ignores the lock).
func readSession(ctx context.Context, p *provider.Provider, sid string) (sessionState, error) {
	var st sessionState
	var item *provider.Item
	var err error
	for attempt := 0; ; attempt++ {
		_, err = p.GetItem(ctx, sid)
		if errors.Is(err, provider.ErrLocked) {
			// A fresh store's first read of a write in flight may return
			// the write's parent (memcached's witness scheme, R4: one
			// copy holds the write); a second read completes it. A lock
			// found is read again.
			_, err = p.GetItem(ctx, sid)
		}
		st.Locked = errors.Is(err, provider.ErrLocked)
		if le := (*provider.LockedError)(nil); errors.As(err, &le) {
			st.LockedAt = time.Now().Add(-le.LockAge).UnixNano()
		}
		if errors.Is(err, provider.ErrNotFound) {
			return st, nil
		}
		if err == nil || st.Locked {
			item, err = p.LockFree().GetItem(ctx, sid)
		}
		if errors.Is(err, provider.ErrNotFound) {
			return st, nil
		}
		// A store that just lost a node may fail a few reads while its
		// clients fail over.
		if err == nil || attempt >= 20 || !errors.Is(err, provider.ErrUnavailable) {
			break
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return st, ctx.Err()
		}
	}
	if err != nil {
		return st, err
	}
	st.Found = true
	v := item.Data.Values
	if st.Counter, _, err = session.Get[int](v, keyCounter); err != nil {
		return st, err
	}
	if st.List, _, err = session.Get[[]string](v, keyList); err != nil {
		return st, err
	}
	st.Free = map[string]bool{}
	for _, k := range v.Keys() {
		if key, ok := strings.CutPrefix(k, keyFreePref); ok {
			st.Free[key] = true
		}
	}
	return st, nil
}
