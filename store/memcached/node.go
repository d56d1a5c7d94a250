package memcached

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionlock/sessionlock/provider"
)

// node is one memcached server: its client (meta commands, or on the text
// path a gomemcache client whose server list is that one address) and the
// node's health.
type node struct {
	idx  int // position in Store.nodes (sorted by address); encoded in CAS tokens
	addr string
	meta *metaClient      // the node's one client (meta commands)
	text *memcache.Client // the text path (Config.TextProtocol), else nil

	up atomic.Bool
	// epoch changes whenever the node is marked down or up; CAS tokens
	// carry it (token), so a token from before a down never matches after.
	epoch atomic.Uint32

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

	wh witHealth // failure detection of the witness scheme (§9)

	// warned is set once the node was reported (EventWarning) for a
	// setting that breaks an assumption of the store; one report each.
	warnedOld, warnedEvict atomic.Bool
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
		n.epoch.Add(1)
		n.up.Store(false)
		n.downSince = time.Now()
		n.closeConns()
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

// noteLocked notes localKey as possibly stale on n. Only keys with a
// backup copy are noted: a key's copy on n is outdated only when writes
// went to its backup while n was down. A key with one copy (BackupOff, one
// node, the text protocol) has nowhere else to be written, so its copy on
// n is the only one and deleting it would lose the session: after a write
// whose outcome is unknown it holds either the old or the new record, and
// the provider's next read settles which.
func (n *node) noteLocked(localKey string) {
	if localKey == "" || n.overflow || !n.backup {
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
	if wasDown {
		n.epoch.Add(1)
	}
	n.up.Store(true)
	n.downSince = time.Time{}
	n.mu.Unlock()
	if wasDown {
		n.onEvent.Emit(provider.Event{Kind: provider.EventNodeUp, Node: n.addr, Detail: "answering again; stale copies removed"})
	}
	return true
}

// The operations below return errors classified by check. localKey names
// the key whose copy on this node a failed write leaves in doubt. On the
// text path (Config.TextProtocol) they go through gomemcache, which offers
// no TTL read, no client flags on CAS writes and no conditional delete:
// that path keeps one copy (see Config.TextProtocol).

func (n *node) get(ctx context.Context, key string) (*metaItem, error) {
	if n.text != nil {
		it, err := n.text.Get(key)
		if err != nil {
			return nil, n.check(ctx, "get", "", textError(err))
		}
		return &metaItem{value: it.Value, cas: it.CasID, ttl: -1, flags: it.Flags}, nil
	}
	it, err := n.meta.getOne(ctx, key, 0)
	return it, n.check(ctx, "mg", "", err)
}

func (n *node) add(ctx context.Context, key string, value []byte, exp int32) error {
	_, err := n.mset(ctx, key, value, exp, true, 0)
	return err
}

func (n *node) set(ctx context.Context, key string, value []byte, exp int32) error {
	_, err := n.mset(ctx, key, value, exp, false, 0)
	return err
}

func (n *node) cas(ctx context.Context, key string, value []byte, cas uint64, exp int32) error {
	_, err := n.mset(ctx, key, value, exp, false, cas)
	return err
}

func (n *node) touch(ctx context.Context, key string, exp int32) error {
	if n.text != nil {
		return n.check(ctx, "touch", key, textError(n.text.Touch(key, exp)))
	}
	return n.check(ctx, "touch", key, n.meta.touch(ctx, key, exp))
}

func (n *node) delete(ctx context.Context, key string) error {
	if n.text != nil {
		return n.check(ctx, "delete", key, textError(n.text.Delete(key)))
	}
	return n.check(ctx, "md", key, n.meta.del(ctx, key, 0))
}

func (n *node) flushAll(ctx context.Context) error {
	if n.text != nil {
		return n.check(ctx, "flush_all", "", textError(n.text.FlushAll()))
	}
	return n.check(ctx, "flush_all", "", n.meta.simple(ctx, "flush_all", "OK"))
}

// errNoMeta is returned on the text path by operations it cannot do.
var errNoMeta = errors.New("memcached: the text protocol (Config.TextProtocol) cannot do this; it needs meta commands (memcached 1.6 or later)")

// mget reads keys with their CAS and remaining TTL (and value when asked)
// in one pipelined round trip; missing keys give nil entries.
func (n *node) mget(ctx context.Context, withValue bool, keys ...string) ([]*metaItem, error) {
	if n.text != nil {
		return nil, fmt.Errorf("memcached: node %s: %w: %w", n.addr, provider.ErrServer, errNoMeta)
	}
	items, err := n.meta.get(ctx, withValue, keys...)
	return items, n.check(ctx, "mg", "", err)
}

// mgetTouch reads key and sets its expiration in one step; a miss is
// ErrNotFound.
func (n *node) mgetTouch(ctx context.Context, key string, exp int32) (*metaItem, error) {
	it, err := n.meta.getOne(ctx, key, exp)
	return it, n.check(ctx, "mg", "", err)
}

// mset stores value with client flags 0 and returns the new CAS (0 on the
// text path); see metaClient.set. add maps "not stored" to ErrExists.
func (n *node) mset(ctx context.Context, key string, value []byte, exp int32, add bool, cas uint64) (uint64, error) {
	return n.msetFlags(ctx, key, value, exp, 0, add, cas)
}

// msetFlags is mset with client flags.
func (n *node) msetFlags(ctx context.Context, key string, value []byte, exp int32, flags uint32, add bool, cas uint64) (uint64, error) {
	op := "ms"
	if add {
		op = "add"
	}
	if n.text != nil {
		it := &memcache.Item{Key: key, Value: value, Expiration: exp, Flags: flags, CasID: cas}
		var err error
		switch {
		case add:
			err = n.text.Add(it)
		case cas != 0:
			err = n.text.CompareAndSwap(it)
		default:
			err = n.text.Set(it)
		}
		if cas != 0 && errors.Is(err, memcache.ErrNotStored) {
			err = memcache.ErrCacheMiss // cas of an absent item
		}
		return 0, n.check(ctx, op, key, textError(err))
	}
	newCAS, err := n.meta.set(ctx, key, value, exp, flags, add, cas)
	return newCAS, n.check(ctx, op, key, err)
}

// appendTouch appends data to key if its CAS is still cas and then sets
// its expiration (metaClient.appendTouch); meta commands only.
func (n *node) appendTouch(ctx context.Context, key string, data []byte, cas uint64, exp int32) (newCAS, touched uint64, err error) {
	newCAS, touched, err = n.meta.appendTouch(ctx, key, data, cas, exp)
	if errors.Is(err, errAppendedGone) {
		// Kept distinct (node.check keeps no sentinel of its own):
		// CompareAndAppend's backup copy may hold the same append.
		return newCAS, touched, fmt.Errorf("memcached: node %s: append: %w: %w", n.addr, provider.ErrNotFound, err)
	}
	return newCAS, touched, n.check(ctx, "append", key, err)
}

// deleteIf removes key only if its CAS is still cas.
func (n *node) deleteIf(ctx context.Context, key string, cas uint64) error {
	if n.text != nil {
		return fmt.Errorf("memcached: node %s: %w: %w", n.addr, provider.ErrServer, errNoMeta)
	}
	return n.check(ctx, "md", key, n.meta.del(ctx, key, cas))
}

// version checks that the node answers.
func (n *node) version(ctx context.Context) error {
	if n.text != nil {
		return textError(n.text.Ping())
	}
	return n.meta.version(ctx)
}

// closeConns closes the node's idle connections.
func (n *node) closeConns() {
	if n.text != nil {
		_ = n.text.Close()
	}
	n.meta.closeIdle()
}

// textError types gomemcache's errors like the meta client's: its reply
// sentinels become errMiss, errNotStored and errExists; its other errors
// are network errors (net.Error, EOF, closed connection), kept as they
// are (failures to connect as *notSentError: nothing was sent), or replies
// it did not understand, typed as *serverError.
func textError(err error) error {
	var ne net.Error
	var oe *net.OpError
	var ct *memcache.ConnectTimeoutError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, memcache.ErrCacheMiss):
		return errMiss
	case errors.Is(err, memcache.ErrNotStored):
		return errNotStored
	case errors.Is(err, memcache.ErrCASConflict):
		return errExists
	case errors.Is(err, memcache.ErrMalformedKey):
		return fmt.Errorf("%w: %w", ErrInvalidKey, err)
	case errors.As(err, &ct), errors.As(err, &oe) && oe.Op == "dial", errors.Is(err, memcache.ErrNoServers):
		return &notSentError{err} // gomemcache could not connect
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return err
	}
	return &serverError{cmd: "gomemcache", line: err.Error()}
}

// check maps a client error to the provider's sentinels, wrapped with the
// node's address:
//
//	miss (EN, NF)                   -> provider.ErrNotFound
//	not stored (add)                -> provider.ErrExists
//	not stored (other)              -> provider.ErrNotFound
//	cas mismatch (EX)               -> provider.ErrCASConflict
//	append not stored (NS)          -> provider.ErrTooLarge
//	SERVER_ERROR object too large   -> provider.ErrTooLarge
//	SERVER_ERROR, CLIENT_ERROR, ERROR -> provider.ErrServer (ERROR also
//	                                   ErrNoMetaProtocol)
//	the context ended mid-operation -> the context's error (and
//	                                   provider.ErrOutcomeUnknown for writes)
//	anything else (refused, reset, closed, timeout, garbled reply)
//	                                -> provider.ErrUnavailable, and the node is marked down;
//	                                   for writes also provider.ErrOutcomeUnknown unless
//	                                   nothing was sent (notSentError: the dial failed)
func (n *node) check(ctx context.Context, op, localKey string, err error) error {
	if err == nil {
		return nil
	}
	var se *serverError
	var ce *ctxError
	var sentinel error
	switch {
	case errors.Is(err, errMiss):
		sentinel = provider.ErrNotFound
	case errors.Is(err, errNotStored):
		sentinel = provider.ErrNotFound
		if op == "add" {
			sentinel = provider.ErrExists
		}
	case errors.Is(err, errExists):
		sentinel = provider.ErrCASConflict
	case errors.Is(err, errAppendFull):
		sentinel = provider.ErrTooLarge
	case errors.Is(err, ErrInvalidKey):
		return fmt.Errorf("memcached: node %s: %s: %w", n.addr, op, err)
	case errors.As(err, &se) && se.tooLarge():
		sentinel = provider.ErrTooLarge
	case errors.As(err, &se):
		sentinel = provider.ErrServer
	case errors.As(err, &ce):
		if localKey != "" {
			return fmt.Errorf("memcached: node %s: %s: %w: %w", n.addr, op, provider.ErrOutcomeUnknown, ce.err)
		}
		return fmt.Errorf("memcached: node %s: %s: %w", n.addr, op, ce.err)
	default:
		sentinel = provider.ErrUnavailable
		n.markDown(localKey)
		var ns *notSentError
		if localKey != "" && !errors.As(err, &ns) {
			// A write handed to the socket with no whole reply (timeout,
			// reset, EOF): it may have landed.
			return fmt.Errorf("memcached: node %s: %s: %w: %w: %v", n.addr, op, sentinel, provider.ErrOutcomeUnknown, err)
		}
	}
	if errors.Is(err, ErrNoMetaProtocol) {
		return fmt.Errorf("memcached: node %s: %s: %w: %w", n.addr, op, sentinel, err)
	}
	return fmt.Errorf("memcached: node %s: %s: %w: %v", n.addr, op, sentinel, err)
}
