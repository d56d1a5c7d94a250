package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testproc"
)

// Cluster is a Redis Cluster of local redis-server processes.
type Cluster struct {
	// Servers are the cluster's nodes: the masters first, as
	// redis-cli --cluster create assigned them, then their replicas.
	Servers []*Server
}

// Addrs returns the addresses of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, s := range c.Servers {
		s.Stop()
	}
}

// StartCluster starts masters*(1+replicas) redis-server processes with
// cluster mode on, joins them with redis-cli --cluster create (each master
// gets replicas replicas) and returns once every node reports
// cluster_state:ok and every master's replicas are in sync. The error wraps ErrNoBinary when redis-server or
// redis-cli is missing.
func StartCluster(ctx context.Context, masters, replicas int, cfg Config) (*Cluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("%w: redis-cli: %v", ErrNoBinary, err)
	}
	// Replicas sync at once (Redis waits 5 s by default before a
	// diskless full sync, to batch replicas).
	cfg.Args = append([]string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
		"--repl-diskless-sync-delay", "0"}, cfg.Args...)
	servers, err := StartN(ctx, masters*(1+replicas), cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Servers: servers}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %w: %s", err, out)
	}
	if err := c.waitOK(ctx, replicas, 30*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node reports cluster_state:ok and knows every
// other node, and every master has replicas replicas in sync.
func (c *Cluster) waitOK(ctx context.Context, replicas int, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		ok := true
		for _, s := range c.Servers {
			info, err := s.Do(ctx, "CLUSTER", "INFO").Text()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Servers))) {
				ok = false
				break
			}
			repl, err := s.Do(ctx, "INFO", "replication").Text()
			if err != nil || (strings.Contains(repl, "role:master") && strings.Count(repl, "state=online") < replicas) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not ok within %v", bound)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartClusterForTest starts a cluster for a test and stops it in
// tb.Cleanup, skipping (or failing, with EnvRequire set) when Redis is not
// installed.
func StartClusterForTest(tb testing.TB, masters, replicas int, cfg Config) *Cluster {
	tb.Helper()
	c, err := StartCluster(context.Background(), masters, replicas, cfg)
	testproc.SkipOrFail(tb, err, ErrNoBinary, SkipMessage)
	tb.Cleanup(c.Stop)
	return c
}
