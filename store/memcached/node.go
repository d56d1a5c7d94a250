package memcached

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionlock/sessionlock/provider"
)

// node is one memcached server: a gomemcache client whose server list is
// that one address (so gomemcache never picks a server), a meta-command
// client, and the node's health.
type node struct {
	idx  int // position in Store.nodes (sorted by address); encoded in CAS tokens
	addr string
	mc   *memcache.Client
	meta *metaClient

	up atomic.Bool

	mu        sync.Mutex
	downSince time.Time
	// stale holds the node-local keys (key or "bak:"+key) whose copy on
	// this node may be out of date because they were written elsewhere,
	// or not at all, while it was down. They are deleted from the node
	// before it is marked up again. Past maxStale keys, overflow is set and
	// the whole node is flushed instead.
	stale    map[string]struct{}
	overflow bool
	maxStale int

	onEvent provider.EventFunc // Config.OnEvent
	backup  bool               // keys have backup copies (failover)

	// redirected is held for reading by every write that this node's keys
	// send to their backup node while it is down. The health check holds it
	// for writing when it marks the node up, so no redirected write is in
	// flight once reads return to the node.
	redirected rwLock
}

// rwLock is a readers-writer lock like sync.RWMutex (a waiting writer
// blocks new readers), built on sync.Cond. Its holders wait on the network
// while holding it, and a goroutine waiting in sync.Cond.Wait is durably
// blocked in a testing/synctest bubble where one waiting on a
// sync.RWMutex is not: with sync.RWMutex the fault simulation (stress/sim)
// would stop its clock while a redirected write waits for a reply.
type rwLock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	readers int
	writer  bool
	waiting int // writers waiting
}

func (l *rwLock) wait() {
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	l.cond.Wait()
}

func (l *rwLock) RLock() {
	l.mu.Lock()
	for l.writer || l.waiting > 0 {
		l.wait()
	}
	l.readers++
	l.mu.Unlock()
}

func (l *rwLock) RUnlock() {
	l.mu.Lock()
	l.readers--
	if l.readers == 0 && l.cond != nil {
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}

func (l *rwLock) Lock() {
	l.mu.Lock()
	l.waiting++
	for l.writer || l.readers > 0 {
		l.wait()
	}
	l.waiting--
	l.writer = true
	l.mu.Unlock()
}

func (l *rwLock) Unlock() {
	l.mu.Lock()
	l.writer = false
	if l.cond != nil {
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}

func (n *node) isUp() bool { return n.up.Load() }

// markDown marks the node down and notes localKey (if any) as possibly
// stale on it. Idle connections are closed: they may lead to a dead process.
func (n *node) markDown(localKey string) {
	n.mu.Lock()
	wasUp := n.up.Load()
	if wasUp {
		n.up.Store(false)
		n.downSince = time.Now()
		_ = n.mc.Close()
		n.meta.closeIdle()
	}
	n.noteLocked(localKey)
	n.mu.Unlock()
	if wasUp {
		n.onEvent.Emit(provider.Event{Kind: provider.EventNodeDown, Node: n.addr, Detail: "not answering; probed until it answers again"})
		if n.backup {
			n.onEvent.Emit(provider.Event{Kind: provider.EventFailover, Node: n.addr, Detail: "its keys are served from their backup copies"})
		}
	}
}

// noteIfDown notes localKey as possibly stale and reports true when the
// node is down; it reports false (noting nothing) when the node is up. The
// check and the note are one step, so a node is never marked up between
// them.
func (n *node) noteIfDown(localKey string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up.Load() {
		return false
	}
	n.noteLocked(localKey)
	return true
}

func (n *node) noteLocked(localKey string) {
	if localKey == "" || n.overflow {
		return
	}
	if len(n.stale) >= n.maxStale {
		n.overflow = true
		n.stale = make(map[string]struct{})
		return
	}
	n.stale[localKey] = struct{}{}
}

// takeStale removes and returns the noted keys and the overflow flag.
func (n *node) takeStale() (keys []string, overflow bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.takeStaleLocked()
}

func (n *node) takeStaleLocked() (keys []string, overflow bool) {
	for k := range n.stale {
		keys = append(keys, k)
	}
	overflow = n.overflow
	n.stale = make(map[string]struct{})
	n.overflow = false
	return keys, overflow
}

// returnStale puts back keys a failed clean-up did not delete.
func (n *node) returnStale(keys []string, overflow bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if overflow {
		n.overflow = true
		n.stale = make(map[string]struct{})
		return
	}
	for _, k := range keys {
		n.noteLocked(k)
	}
}

// markUpIfClean marks the node up when no stale key is left and reports
// whether it did.
func (n *node) markUpIfClean() bool {
	n.mu.Lock()
	if len(n.stale) > 0 || n.overflow {
		n.mu.Unlock()
		return false
	}
	wasDown := !n.up.Load()
	n.up.Store(true)
	n.downSince = time.Time{}
	n.mu.Unlock()
	if wasDown {
		n.onEvent.Emit(provider.Event{Kind: provider.EventNodeUp, Node: n.addr, Detail: "answering again; stale copies removed"})
	}
	return true
}

// The operations below return errors classified by check. localKey names
// the key whose copy on this node a failed write leaves in doubt.

func (n *node) get(key string) (*memcache.Item, error) {
	it, err := n.mc.Get(key)
	return it, n.check("get", "", err)
}

func (n *node) add(key string, value []byte, exp int32) error {
	return n.check("add", key, n.mc.Add(&memcache.Item{Key: key, Value: value, Expiration: exp}))
}

func (n *node) set(key string, value []byte, exp int32) error {
	return n.check("set", key, n.mc.Set(&memcache.Item{Key: key, Value: value, Expiration: exp}))
}

func (n *node) cas(key string, value []byte, cas uint64, exp int32) error {
	return n.check("cas", key, n.mc.CompareAndSwap(&memcache.Item{Key: key, Value: value, Expiration: exp, CasID: cas}))
}

func (n *node) touch(key string, exp int32) error {
	return n.check("touch", key, n.mc.Touch(key, exp))
}

func (n *node) delete(key string) error {
	return n.check("delete", key, n.mc.Delete(key))
}

func (n *node) flushAll() error {
	return n.check("flush_all", "", n.mc.FlushAll())
}

// mget reads keys with their CAS and remaining TTL (and value when asked)
// in one pipelined round trip; missing keys give nil entries.
func (n *node) mget(withValue bool, keys ...string) ([]*metaItem, error) {
	items, err := n.meta.get(withValue, keys...)
	return items, n.check("mg", "", err)
}

// mgetTouch reads key and sets its expiration in one step; a miss is
// ErrNotFound.
func (n *node) mgetTouch(key string, exp int32) (*metaItem, error) {
	it, err := n.meta.getTouch(key, exp)
	if err == nil && it == nil {
		err = memcache.ErrCacheMiss
	}
	return it, n.check("mg", "", err)
}

// mset stores value with a meta set and client flags 0 and returns the
// new CAS; see metaClient.set. add maps "not stored" to ErrExists.
func (n *node) mset(key string, value []byte, exp int32, add bool, cas uint64) (uint64, error) {
	return n.msetFlags(key, value, exp, 0, add, cas)
}

// msetFlags is mset with client flags.
func (n *node) msetFlags(key string, value []byte, exp int32, flags uint32, add bool, cas uint64) (uint64, error) {
	newCAS, err := n.meta.set(key, value, exp, flags, add, cas)
	op := "ms"
	if add {
		op = "add"
	}
	return newCAS, n.check(op, key, err)
}

// deleteIf removes key only if its CAS is still cas.
func (n *node) deleteIf(key string, cas uint64) error {
	return n.check("md", key, n.meta.deleteIf(key, cas))
}

// check maps a client error to the provider's sentinels, wrapped with the
// node's address:
//
//	cache miss                      -> provider.ErrNotFound
//	not stored (add)                -> provider.ErrExists
//	not stored (cas: item evicted)  -> provider.ErrNotFound
//	cas conflict                    -> provider.ErrCASConflict
//	SERVER_ERROR object too large   -> provider.ErrTooLarge
//	SERVER_ERROR, CLIENT_ERROR, ERROR -> provider.ErrServer
//	anything else (refused, reset, closed, timeout, garbled reply)
//	                                -> provider.ErrUnavailable, and the node is marked down
func (n *node) check(op, localKey string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		sentinel = provider.ErrNotFound
	case errors.Is(err, memcache.ErrNotStored):
		sentinel = provider.ErrNotFound
		if op == "add" {
			sentinel = provider.ErrExists
		}
	case errors.Is(err, memcache.ErrCASConflict):
		sentinel = provider.ErrCASConflict
	case errors.Is(err, memcache.ErrMalformedKey):
		sentinel = ErrInvalidKey
	default:
		msg := err.Error()
		switch {
		case strings.Contains(msg, "SERVER_ERROR object too large"):
			sentinel = provider.ErrTooLarge
		case strings.Contains(msg, "SERVER_ERROR"), strings.Contains(msg, "CLIENT_ERROR"), strings.Contains(msg, `"ERROR`):
			sentinel = provider.ErrServer
		default:
			sentinel = provider.ErrUnavailable
			n.markDown(localKey)
		}
	}
	return fmt.Errorf("memcached: node %s: %s: %w: %v", n.addr, op, sentinel, err)
}
