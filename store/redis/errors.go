package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionlock/sessionlock/provider"
)

// unavailablePrefixes are the server errors that say the server cannot
// serve the key now and executed nothing: a replica refusing writes
// (READONLY, during a failover), a server loading its data, a cluster
// without a master for the slot, a busy script, too many clients.
var unavailablePrefixes = []string{"READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MOVED", "ASK", "ERR max number of clients"}

// fail turns a client error into the provider's error kinds. A write
// whose command may have reached the server (a timeout, a lost
// connection, a context that ended while waiting for the reply) wraps
// provider.ErrOutcomeUnknown as well as provider.ErrUnavailable: it may
// have been applied. Errors the server answered with, and connections
// that could not be made, mean nothing was executed.
func (s *Store) fail(ctx context.Context, op, key string, err error, write bool) error {
	if errors.Is(err, goredis.Nil) {
		s.ok()
		return fmt.Errorf("redis: %s %s: %w", op, key, provider.ErrNotFound)
	}
	if s.closed.Load() || errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: %s %s: %w", op, key, provider.ErrClosed)
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range unavailablePrefixes {
			if strings.HasPrefix(msg, p) {
				if p == "CLUSTERDOWN" || p == "MOVED" || p == "ASK" {
					s.nodeDown(err)
				}
				return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrUnavailable, err)
			}
		}
		if strings.HasPrefix(msg, "WRONGTYPE") {
			// Something else stored a non-string under the key.
			return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrCorrupt, err)
		}
		// OOM (maxmemory reached, write refused), auth and permission
		// errors, script errors.
		return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrServer, err)
	}
	if notSent(err) {
		s.nodeDown(err)
		return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrUnavailable, err)
	}
	if cerr := ctxErr(ctx); cerr != nil {
		// The caller's context ended while the command was in flight.
		if write {
			return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrOutcomeUnknown, cerr)
		}
		return fmt.Errorf("redis: %s: %s %s: %w", s.cfg.Addr, op, key, cerr)
	}
	// A timeout or a broken connection after the command was sent.
	s.nodeDown(err)
	if write {
		return fmt.Errorf("redis: %s: %s %s: %w (%w): %w", s.cfg.Addr, op, key, provider.ErrOutcomeUnknown, provider.ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %s: %s %s: %w: %w", s.cfg.Addr, op, key, provider.ErrUnavailable, err)
}

// ctxErr returns ctx's error, or context.DeadlineExceeded once its
// deadline has passed: the socket deadline go-redis derives from it can
// fire a moment before the context itself is done.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// notSent reports errors that happen before a command is written: no
// connection could be made (dialError, or a dial error of go-redis's own
// dialer), or none was free in time.
func notSent(err error) bool {
	var de *dialError
	var op *net.OpError
	if errors.As(err, &de) || (errors.As(err, &op) && op.Op == "dial") {
		return true
	}
	return errors.Is(err, goredis.ErrPoolTimeout)
}

// nodeDown reports the server down, once until it answers again. On a
// cluster it also has the client reload the slot map (debounced by
// go-redis), so that a failover is found at once rather than at the next
// periodic reload (every 60 s).
func (s *Store) nodeDown(err error) {
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
	if s.down.CompareAndSwap(false, true) {
		s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventNodeDown, Node: s.cfg.Addr, Detail: "not answering", Err: err})
	}
}

// ok reports the server up again after it was reported down.
func (s *Store) ok() {
	if s.down.Load() && s.down.CompareAndSwap(true, false) {
		s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventNodeUp, Node: s.cfg.Addr, Detail: "answering again"})
	}
}
