package memcached

import (
	"errors"
	"fmt"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
)

// route is where a key lives: its primary node and, with backup on, its
// backup node (nil otherwise).
type route struct {
	key  string
	p, b *node
}

func (r route) bakKey() string { return backupPrefix + r.key }

func (s *Store) route(key string) route {
	// Equal scores go to the lower index; nodes are sorted by address,
	// so that too is independent of the configured order.
	first, second := rendezvous.Top2(s.seeds, key)
	rt := route{key: key, p: s.nodes[first]}
	if s.backup {
		rt.b = s.nodes[second]
	}
	return rt
}

// Placement returns the addresses of key's primary node and backup node
// (empty without backup). It does not depend on node health. With
// BackupWitness they are the key's home primary and secondary (its first
// two candidates; the third holds the witness).
func (s *Store) Placement(key string) (primary, backup string) {
	if s.wit != nil {
		cs := s.wit.candidates(key)
		return cs[0].addr, cs[1].addr
	}
	rt := s.route(key)
	if rt.b != nil {
		backup = rt.b.addr
	}
	return rt.p.addr, backup
}

// parallel runs primary here and backup (if not nil) in a goroutine, and
// returns both results once both are done: a write and its backup copy
// cost one round trip of latency.
func parallel(primary, backup func() error) (perr, berr error) {
	if backup == nil {
		return primary(), nil
	}
	done := make(chan error, 1)
	go func() { done <- backup() }()
	perr = primary()
	berr = <-done
	return perr, berr
}

// errPrimaryBack tells an operation that was about to be redirected that
// the primary came back meanwhile: it retries on the primary.
var errPrimaryBack = errors.New("memcached: primary is back")

// unavailable is the error of a key whose serving nodes are all down.
func unavailable(rt route) error {
	if rt.b == nil {
		return fmt.Errorf("memcached: node %s: %w: marked down", rt.p.addr, provider.ErrUnavailable)
	}
	return fmt.Errorf("memcached: nodes %s and %s: %w: both marked down", rt.p.addr, rt.b.addr, provider.ErrUnavailable)
}

// redirect runs a write of a key whose primary is down on its backup copy
// (which then acts as the primary). The key is noted as stale on the
// primary, and the primary's redirected lock is held for reading while the
// write runs, so the primary cannot come back before the write is done.
func (s *Store) redirect(rt route, write func(b *node) error) error {
	if rt.b == nil {
		return unavailable(rt)
	}
	rt.p.redirected.RLock()
	defer rt.p.redirected.RUnlock()
	if !rt.p.noteIfDown(rt.key) {
		return errPrimaryBack
	}
	if !rt.b.isUp() {
		return unavailable(rt)
	}
	s.baks.drop(rt.key) // the backup copy changes outside backup.go's bookkeeping
	return write(rt.b)
}

// backupWrite returns the backup half of a write, or nil when there is no
// backup or the backup node is down (then the backup copy is noted stale).
func (s *Store) backupWrite(rt route, write func(b *node, key string) error) func() error {
	if rt.b == nil || rt.b.noteIfDown(rt.bakKey()) {
		return nil
	}
	return func() error { return write(rt.b, rt.bakKey()) }
}
