package memcached

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// evictionEvery is how often every node's `stats` evictions counter is
// read (§11.2): memcached's LRU eviction is amnesia, which the scheme
// counts as a fault; an increase is reported.
const evictionEvery = 10 * time.Second

// checkEvictions reads every node's evictions counter and emits
// EventNodeDown ("evictions") for each node whose counter grew since the
// last read. The first read of a node sets its baseline, and reads its
// `stats settings`: a node that may evict (memcached's default; -M turns
// it off) is reported once with EventWarning.
func (w *witness) checkEvictions(ctx context.Context) {
	defer w.evictChecks.Add(1)
	for i, n := range w.s.nodes {
		v, err := n.stat(ctx, w.s.cfg.Timeout, "stats", "evictions")
		if err != nil {
			continue
		}
		c, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			continue
		}
		if w.evicted[i].seen && c > w.evicted[i].count {
			w.emit(provider.EventNodeDown, n, "evictions: "+strconv.FormatUint(c, 10)+" items evicted in all; evicted sessions count as a fault (run memcached with -M or more memory)", nil)
		}
		if !w.evicted[i].seen {
			if on, err := n.stat(ctx, w.s.cfg.Timeout, "stats settings", "evictions"); err == nil && on == "on" && n.warnedEvict.CompareAndSwap(false, true) {
				w.emit(provider.EventWarning, n, "evictions on: memcached may evict sessions under memory pressure, which the store counts as a fault (run it with -M, and memory for every session)", nil)
			}
		}
		w.evicted[i] = evictionCount{count: c, seen: true}
	}
}

// evictionPeriod returns how often evictions are checked.
func (w *witness) evictionPeriod() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evictEvery
}

// evictionCount is the last evictions counter read from one node.
type evictionCount struct {
	count uint64
	seen  bool
}

// stat sends cmd ("stats" or "stats settings") and returns the value
// of its STAT line name ("" when there is none).
func (n *node) stat(ctx context.Context, timeout time.Duration, cmd, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var val string
	err := n.meta.do(ctx, func(cn *metaConn) error {
		if err := send(cn, cmd, nil); err != nil {
			return err
		}
		for {
			line, err := readLine(cn.rw.Reader)
			if err != nil {
				return err
			}
			if line == "END" {
				return nil
			}
			if !strings.HasPrefix(line, "STAT ") {
				return replyError(cmd, line)
			}
			if v, ok := strings.CutPrefix(line, "STAT "+name+" "); ok {
				val = v
			}
		}
	})
	return val, err
}
