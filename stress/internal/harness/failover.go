package harness

import (
	"context"
	"fmt"
	"net"
	"time"
)

// FaultKillMaster is the Event.Kind of -kill-master: a Redis Cluster
// master killed (SIGKILL), its replica to be promoted by the cluster.
const FaultKillMaster = "kill_master"

// FaultStallReplicas is the Event.Kind of StallReplicas: the replicas of
// the master -kill-master is about to kill are stopped and cut off from
// it, so that its later writes never reach them.
const FaultStallReplicas = "stall_replicas"

// killMaster kills the master of the managed cluster that holds the most
// keys, and records which. With StallReplicas it first stalls that
// master's replicas (stallReplicas) and kills it StallReplicas later.
func (r *runner) killMaster(ctx context.Context) {
	i, keys, err := r.be.busiestMaster(ctx)
	if err != nil {
		r.event(FaultError, "redis cluster", "-kill-master: %v", err)
		return
	}
	n := r.be.nodes[i]
	r.masterReplicas = r.be.replicasOf(ctx, i)
	if r.cfg.StallReplicas > 0 {
		if !r.stallReplicas(ctx, i) {
			return
		}
		defer r.continueReplicas(i)
	}
	n.Kill()
	r.killedMaster = &i
	r.event(FaultKillMaster, r.nodeName(i), "killed redis master %d (%s), the master holding the most keys (%d); its replica is to take over (wait replicas %d)",
		i, n.Addr(), keys, r.cfg.RedisWait)
}

// stallReplicas stops (SIGSTOP) the replicas of master i, has i close
// its replication links (CLIENT KILL TYPE replica: a stopped replica
// cannot connect again to fetch what it missed), and waits StallReplicas:
// every write i acknowledges from then on is on i alone. It reports
// false, with a FaultError event, when the stall could not be set up
// (the replicas are continued then).
func (r *runner) stallReplicas(ctx context.Context, i int) bool {
	master := r.be.cluster.Servers[i]
	if len(r.masterReplicas) == 0 {
		r.event(FaultError, r.nodeName(i), "-stall-replicas: redis master %d has no replica", i)
		return false
	}
	for _, j := range r.masterReplicas {
		if err := r.be.nodes[j].Pause(); err != nil {
			r.event(FaultError, r.nodeName(j), "-stall-replicas: stopping redis node %d: %v", j, err)
			r.continueReplicas(i)
			return false
		}
	}
	cut, err := master.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Int64()
	if err == nil && cut < int64(len(r.masterReplicas)) {
		err = fmt.Errorf("%d replication links closed, want %d", cut, len(r.masterReplicas))
	}
	if err != nil {
		r.event(FaultError, r.nodeName(i), "-stall-replicas: cutting redis master %d off its replicas: %v", i, err)
		r.continueReplicas(i)
		return false
	}
	r.record(Event{Kind: FaultStallReplicas, Target: r.nodeName(i), DurationMs: ms(int64(r.cfg.StallReplicas)),
		What: fmt.Sprintf("replicas %v of redis master %d stopped (SIGSTOP) and cut off (CLIENT KILL TYPE replica): the master's writes from now on reach no replica; it is killed in %v",
			r.masterReplicas, i, r.cfg.StallReplicas)})
	r.say("fault at %.0f ms: stalled the replicas of redis master %d for %v before killing it", ms(int64(time.Since(r.start))), i, r.cfg.StallReplicas)
	t := time.NewTimer(r.cfg.StallReplicas)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// continueReplicas continues (SIGCONT) the replicas of master i that
// stallReplicas stopped.
func (r *runner) continueReplicas(i int) {
	for _, j := range r.masterReplicas {
		if err := r.be.nodes[j].Resume(); err != nil {
			r.event(FaultError, r.nodeName(j), "-stall-replicas: continuing redis node %d (replica of %d): %v", j, i, err)
		}
	}
}

// restartMaster restarts the master killMaster killed, once one of its
// replicas has been promoted (bounded by promotionBound): an empty master
// back before the failover would keep its slots, and its replica would
// copy its emptiness. Its directory, and so its nodes.conf, is kept: it
// rejoins the cluster as a replica of the master that took its slots.
func (r *runner) restartMaster(ctx context.Context) {
	i := *r.killedMaster
	n := r.be.nodes[i]
	// Not cut short by the workload's end: the restart is recorded even
	// when the failover outlasts the workload (bounded by promotionBound).
	waited, err := r.be.waitPromoted(context.WithoutCancel(ctx), r.masterReplicas)
	if err != nil {
		r.event(FaultError, r.nodeName(i), "restarting redis node %d: %v", i, err)
		return
	}
	if err := n.Restart(context.WithoutCancel(ctx)); err != nil {
		r.event(FaultError, r.nodeName(i), "restarting redis node %d failed: %v", i, err)
		return
	}
	r.event(FaultRestartNode, r.nodeName(i), "restarted the killed master, redis node %d (%s), empty, once its replica had taken over (waited %v): it rejoins the cluster as a replica",
		i, n.Addr(), waited.Round(time.Millisecond))
}

// promotionBound bounds restartMaster's wait for the failover.
const promotionBound = 30 * time.Second

// replicasOf returns the indexes of the managed cluster's nodes that
// replicate node master (ROLE on each).
func (b *backend) replicasOf(ctx context.Context, master int) []int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, port, _ := net.SplitHostPort(b.cluster.Servers[master].Addr())
	var out []int
	for i, s := range b.cluster.Servers {
		role, err := s.Do(ctx, "ROLE").Slice()
		if err != nil || len(role) < 3 || role[0] != "slave" {
			continue
		}
		if fmt.Sprint(role[2]) == port {
			out = append(out, i)
		}
	}
	return out
}

// waitPromoted waits until one of nodes reports the master role, and
// returns how long it waited.
func (b *backend) waitPromoted(ctx context.Context, nodes []int) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(promotionBound)
	for {
		for _, i := range nodes {
			role, err := b.cluster.Servers[i].Do(ctx, "ROLE").Slice()
			if err == nil && len(role) > 0 && role[0] == "master" {
				return time.Since(start), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no replica of it (nodes %v) was promoted within %v", nodes, promotionBound)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
	}
}

// busiestMaster returns the index of the managed cluster's master holding
// the most keys (a tie goes to the lowest index) and its key count.
func (b *backend) busiestMaster(ctx context.Context) (best int, keys int64, err error) {
	if b.cluster == nil {
		return 0, 0, fmt.Errorf("no managed Redis Cluster")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	best = -1
	for i, s := range b.cluster.Servers {
		if !s.Running() {
			continue
		}
		role, err := s.Do(ctx, "ROLE").Slice()
		if err != nil {
			return 0, 0, fmt.Errorf("ROLE of %s: %w", s.Addr(), err)
		}
		if len(role) == 0 || role[0] != "master" {
			continue
		}
		n, err := s.Do(ctx, "DBSIZE").Int64()
		if err != nil {
			return 0, 0, fmt.Errorf("DBSIZE of %s: %w", s.Addr(), err)
		}
		if best < 0 || n > keys {
			best, keys = i, n
		}
	}
	if best < 0 {
		return 0, 0, fmt.Errorf("no running master")
	}
	return best, keys, nil
}

// recoveryMargin is how long the workload must have gone on without a
// failure after the last one for a run to count as recovered.
const recoveryMargin = time.Second

// recovery measures, for a run with a kill_node or kill_master fault, the
// time from the first kill to the answer of the last workload request
// that failed after it (0 when none failed), and whether the failures
// ended: a request sent recoveryMargin or more after that answer
// succeeded.
func recovery(o observations) (recoveryMs float64, recovered bool) {
	kill := int64(-1)
	for _, e := range o.events {
		if (e.Kind == FaultKillMaster || e.Kind == FaultKillNode) && !e.Missed {
			kill = o.start + int64(e.AtMs*float64(time.Millisecond))
			break
		}
	}
	if kill < 0 {
		return 0, false
	}
	last := int64(0)
	for _, r := range o.requests {
		if !r.ok() && r.Sent >= o.start && r.Recv >= kill {
			last = max(last, r.Recv)
		}
	}
	if last == 0 {
		return 0, true
	}
	for _, r := range o.requests {
		if r.ok() && r.Sent >= last+int64(recoveryMargin) {
			recovered = true
			break
		}
	}
	return ms(last - kill), recovered
}
