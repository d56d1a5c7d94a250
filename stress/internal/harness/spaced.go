package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/store/memcached"
)

// Spaced faults (Config.FaultSpacing): repeated single faults further
// apart than the store's repair window (docs/replication.md §9, "Repair
// window": the memcached store's repair scan every RepairEvery, each wait
// drawn in [RepairEvery/2, RepairEvery], plus its pass; R9's queue for the
// sessions a request touches). Each is a single fault, and the run must
// hold every invariant. The idle sessions (Config.IdleSessions), which no
// request touches, are repaired by the scan alone: their records are read
// on every node right after each fault (broken: the fault hit them) and
// right before the next (whole again: the window was kept).

// MaxSpacedFaults bounds Config.FlushCount with Config.FaultSpacing.
const MaxSpacedFaults = 100

// spacedFault is one of Config.FaultSpacing's faults.
type spacedFault struct {
	at      time.Duration // since the workload started
	node    int
	restart bool // a restart (killed, started empty) instead of a flush
}

// seededFlushes is the number of FlushCount's flushes drawn from the seed
// (flushPlan): none when they are spaced.
func seededFlushes(cfg Config) int {
	if cfg.FaultSpacing > 0 {
		return 0
	}
	return cfg.FlushCount
}

// spacedPlan returns cfg's spaced faults: fault k (from 0) at
// (k+1)·FaultSpacing, on the nodes in turn from FlushNode (or from the
// node Seed picks when -1), every second one a restart with
// SpacedRestart.
func spacedPlan(cfg Config, nodes int) []spacedFault {
	if cfg.FaultSpacing <= 0 || cfg.FlushCount <= 0 || nodes <= 0 {
		return nil
	}
	first := cfg.FlushNode
	if first < 0 {
		first = int(cfg.Seed % uint64(nodes))
	}
	plan := make([]spacedFault, cfg.FlushCount)
	for k := range plan {
		plan[k] = spacedFault{
			at:      time.Duration(k+1) * cfg.FaultSpacing,
			node:    (first + k) % nodes,
			restart: cfg.SpacedRestart && k%2 == 1,
		}
	}
	return plan
}

// spacedCounts are the idle sessions' record checks around the spaced
// faults (checkIdle), under runner.mu.
type spacedCounts struct {
	after, brokenAfter   int // checks right after a fault; idle sessions not whole then, summed
	afterMin             int // the fewest idle sessions one fault left not whole
	before, brokenBefore int // checks right before a later fault; idle sessions not whole then, summed
	notes                []string
}

// repairEvery is the repair scan's period the run's stores use.
func repairEvery(cfg Config) time.Duration {
	if cfg.RepairEvery == 0 {
		return memcached.DefaultRepairEvery
	}
	return cfg.RepairEvery
}

// checksIdle reports whether the run reads its idle sessions' records
// around the spaced faults: the memcached backend's witness scheme (two
// data copies and a witness, on managed nodes).
func checksIdle(cfg Config) bool {
	mode, err := backupMode(cfg.Backup)
	witness := err == nil && (mode == memcached.BackupWitness || mode == memcached.BackupDefault && cfg.Managed >= 3)
	return cfg.FaultSpacing > 0 && cfg.IdleSessions > 0 && cfg.Backend == BackendMemcached && witness
}

// spacedFault injects spaced fault k: the idle sessions' records checked
// first (from the second fault on: the previous fault's damage must be
// repaired by now), then the flush or restart, then the records again.
func (r *runner) spacedFault(ctx context.Context, k int, sf spacedFault) {
	check := checksIdle(r.cfg)
	if check && k > 0 {
		r.checkIdle(ctx, k, true)
	}
	if sf.restart {
		if !r.restartNode(ctx, sf.node, fmt.Sprintf("spaced fault %d of %d, %v after the workload started", k+1, r.cfg.FlushCount, sf.at)) {
			return
		}
	} else {
		n := r.be.nodes[sf.node]
		if err := n.FlushAll(context.WithoutCancel(ctx)); err != nil {
			r.event(FaultError, r.nodeName(sf.node), "flushing memcached node %d failed: %v", sf.node, err)
			return
		}
		r.event(FaultFlush, r.nodeName(sf.node), "flushed memcached node %d (%s): spaced fault %d of %d, %v after the workload started", sf.node, n.Addr(), k+1, r.cfg.FlushCount, sf.at)
	}
	r.say("fault at %.0f ms: spaced fault %d of %d on memcached node %d", ms(int64(time.Since(r.start))), k+1, r.cfg.FlushCount, sf.node)
	if check {
		r.checkIdle(ctx, k, false)
	}
}

// restartNode restarts managed node i (killed, then started empty) and
// records the fault, from the kill until the node listens again; note,
// when set, is added to its description. It reports whether the node was
// restarted.
func (r *runner) restartNode(ctx context.Context, i int, note string) bool {
	kind := r.nodeKind()
	n := r.be.nodes[i]
	// The fault begins with the kill (connections reset) and lasts until
	// the node listens again, empty.
	began := time.Since(r.start)
	if err := n.Restart(context.WithoutCancel(ctx)); err != nil {
		r.event(FaultError, r.nodeName(i), "restarting %s node %d failed: %v", kind, i, err)
		return false
	}
	down := time.Since(r.start) - began
	what := fmt.Sprintf("restarted %s node %d (%s), empty", kind, i, n.Addr())
	if note != "" {
		what += ": " + note
	}
	r.record(Event{Kind: FaultRestartNode, Target: r.nodeName(i), AtMs: ms(int64(began)), DurationMs: ms(int64(down)), What: what})
	return true
}

// checkIdle reads each idle session's record on every node (`mg <key>
// f`: client flags 1 on a data copy, 2 on a witness) and counts those
// not whole (two data copies and a witness), before spaced fault k or
// right after it.
func (r *runner) checkIdle(ctx context.Context, k int, before bool) {
	var broken []string
	idle := 0
	for _, b := range r.work.browsers {
		if !b.idle || b.sid == "" {
			continue
		}
		idle++
		key := "sl:" + b.sid // provider.Config's default KeyPrefix, no App, no HashIDs
		data, wit := 0, 0
		var lines []string
		for i, n := range r.be.nodes {
			line := metaCmd(ctx, n.Addr(), "mg "+key+" f")
			switch {
			case strings.HasPrefix(line, "HD") && strings.Contains(line+" ", " f1 "):
				data++
			case strings.HasPrefix(line, "HD") && strings.Contains(line+" ", " f2 "):
				wit++
			}
			lines = append(lines, fmt.Sprintf("node %d [%s]", i, line))
		}
		if data != 2 || wit != 1 {
			broken = append(broken, fmt.Sprintf("%s… (%s)", sidTag(b.sid), strings.Join(lines, ", ")))
		}
	}
	at := ms(int64(time.Since(r.start)))
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.spaced
	if !before {
		if c.after == 0 || len(broken) < c.afterMin {
			c.afterMin = len(broken)
		}
		c.after++
		c.brokenAfter += len(broken)
		return
	}
	c.before++
	c.brokenBefore += len(broken)
	for _, x := range broken[:min(len(broken), 3)] {
		scan := "repair scan every " + repairEvery(r.cfg).String()
		if r.cfg.RepairEvery < 0 {
			scan = "repair scan off"
		}
		c.notes = append(c.notes, fmt.Sprintf("repair window exceeded: idle session %s not whole at %.0f ms, before spaced fault %d (%v after the one before; %s): %d of %d idle sessions so",
			x, at, k+1, r.cfg.FaultSpacing, scan, len(broken), idle))
	}
}

// spacedLine says what the spaced faults were and what the idle
// sessions' checks found, with the spacing's justification.
func spacedLine(r *Result) string {
	every := time.Duration(r.RepairEveryMs * float64(time.Millisecond))
	spacing := time.Duration(r.FaultSpacingMs * float64(time.Millisecond))
	s := fmt.Sprintf("%d faults %v apart (%s), ", r.SpacedFaults, spacing, r.SpacedKinds)
	switch {
	case every < 0:
		s += "no repair scan (RepairEvery negative): the spacing keeps no window"
	case spacing > every:
		s += fmt.Sprintf("repair scan every %v (each wait drawn in [%v, %v], plus its pass)", every, every/2, every)
		s += fmt.Sprintf(": the spacing leaves %v past the longest wait for the scan's pass", spacing-every)
	default:
		s += fmt.Sprintf("repair scan every %v: the spacing is within the window (a double fault)", every)
	}
	if r.IdleChecksAfter > 0 || r.IdleChecksBefore > 0 {
		s += fmt.Sprintf("; %d idle sessions (touched by no request): %d not whole right after the faults (%d checks, at least %d each; the scan may repair some before the check reads them), %d not whole right before the next (%d checks)",
			r.IdleSessions, r.IdleBrokenAfter, r.IdleChecksAfter, r.IdleBrokenAfterMin, r.RepairWindowExceeded, r.IdleChecksBefore)
	} else if r.IdleSessions > 0 {
		s += fmt.Sprintf("; %d idle sessions, records not checked (the memcached backend's witness scheme only)", r.IdleSessions)
	}
	return s
}

// spacedResult copies the spaced faults' figures into res.
func (r *runner) spacedResult(res *Result) {
	cfg := r.cfg
	res.IdleSessions = cfg.IdleSessions
	if cfg.FaultSpacing <= 0 {
		return
	}
	r.mu.Lock()
	c := r.spaced
	r.mu.Unlock()
	res.SpacedFaults = cfg.FlushCount
	res.FaultSpacingMs = ms(int64(cfg.FaultSpacing))
	res.RepairEveryMs = ms(int64(repairEvery(cfg)))
	res.SpacedKinds = "flushes on the nodes in turn"
	if cfg.SpacedRestart {
		res.SpacedKinds = "flushes and restarts alternating, on the nodes in turn"
	}
	res.IdleChecksAfter, res.IdleBrokenAfter, res.IdleBrokenAfterMin = c.after, c.brokenAfter, c.afterMin
	res.IdleChecksBefore, res.RepairWindowExceeded = c.before, c.brokenBefore
	res.Findings = append(res.Findings, c.notes...)
}
