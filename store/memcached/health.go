package memcached

import (
	"context"
	"errors"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// NodeStatus is the health of one node as this Store sees it.
type NodeStatus struct {
	// Addr is the node's address as configured.
	Addr string
	// Up reports whether operations go to the node.
	Up bool
	// DownSince is when the node was marked down (zero while up).
	DownSince time.Time
}

// Nodes returns the health of every node, sorted by address.
func (s *Store) Nodes() []NodeStatus {
	st := make([]NodeStatus, len(s.nodes))
	for i, n := range s.nodes {
		n.mu.Lock()
		st[i] = NodeStatus{Addr: n.addr, Up: n.up.Load(), DownSince: n.downSince}
		n.mu.Unlock()
	}
	return st
}

// healthLoop probes down nodes every HealthCheckInterval until Close.
func (s *Store) healthLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for _, n := range s.nodes {
			if !n.isUp() {
				s.recover(n)
			}
		}
	}
}

// recover brings a down node back once it answers: it first deletes from
// the node every copy noted stale while it was down (or flushes it when too
// many were), so no outdated copy is ever read from it, then marks it up.
// The last round runs with the node's redirected lock held, so no write
// redirected to the backup is still in flight when the node is marked up.
func (s *Store) recover(n *node) {
	ctx := context.Background()
	if err := n.version(ctx); err != nil {
		return
	}
	// Connections pooled before the failure may lead to a dead process.
	n.closeConns()
	for range 3 {
		keys, overflow := n.takeStale()
		if len(keys) == 0 && !overflow {
			break
		}
		if !s.clean(ctx, n, keys, overflow) {
			return
		}
	}
	s.baks.clear()
	n.redirected.Lock()
	defer n.redirected.Unlock()
	for !n.markUpIfClean() {
		keys, overflow := n.takeStale()
		if !s.clean(ctx, n, keys, overflow) {
			return
		}
	}
}

// clean deletes keys from n (or flushes n on overflow). On failure or Close
// it puts the keys back and reports false.
func (s *Store) clean(ctx context.Context, n *node, keys []string, overflow bool) bool {
	if overflow {
		if err := n.flushAll(ctx); err != nil {
			n.returnStale(nil, true)
			return false
		}
		return true
	}
	for i, k := range keys {
		select {
		case <-s.stop:
			n.returnStale(keys[i:], false)
			return false
		default:
		}
		if err := n.delete(ctx, k); err != nil && !errors.Is(err, provider.ErrNotFound) {
			n.returnStale(keys[i:], false)
			return false
		}
	}
	return true
}
