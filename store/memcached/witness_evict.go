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
// last read. The first read of a node sets its baseline.
func (w *witness) checkEvictions(ctx context.Context) {
	for i, n := range w.s.nodes {
		c, err := n.evictions(ctx, w.s.cfg.Timeout)
		if err != nil {
			continue
		}
		if w.evicted[i].seen && c > w.evicted[i].count {
			w.emit(provider.EventNodeDown, n, "evictions: "+strconv.FormatUint(c, 10)+" items evicted in all; evicted sessions count as a fault (run memcached with -M or more memory)", nil)
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

// evictions reads the node's `stats` evictions counter.
func (n *node) evictions(ctx context.Context, timeout time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var count uint64
	err := n.meta.do(ctx, func(cn *metaConn) error {
		if err := send(cn, "stats", nil); err != nil {
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
			if v, ok := strings.CutPrefix(line, "STAT evictions "); ok {
				if count, err = strconv.ParseUint(v, 10, 64); err != nil {
					return replyError("stats", line)
				}
			}
		}
	})
	return count, err
}
