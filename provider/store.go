package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionlock/sessionlock/session"
)

// Store is the small compare-and-swap key-value interface every backend
// implements. The provider keeps one record per session under one key and
// changes it only through Add and CompareAndSwap, so no state change is a
// blind write.
//
// TTLs are durations from now. A TTL of zero or less is invalid: every record
// the provider writes expires. Backends round TTLs up to their own
// granularity, so that a key never expires before its TTL has passed
// (memcached: whole seconds plus two, as its clock ticks once a second and
// can lag by almost two).
//
// Errors are reported by wrapping the sentinels below, so callers match them
// with errors.Is whatever the backend.
type Store interface {
	// Get returns the value stored under key and its CAS token.
	// It returns ErrNotFound when the key is absent or expired.
	Get(ctx context.Context, key string) (Entry, error)

	// Add stores value under key only if the key is absent (or expired).
	// It returns ErrExists when the key is present. The returned CAS is the
	// new token, or 0 when the backend cannot report it without another
	// round trip.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) (cas uint64, err error)

	// CompareAndSwap replaces the value under key only if its CAS token is
	// still cas. It returns ErrCASConflict when the value changed since it was
	// read and ErrNotFound when the key is gone. The returned CAS is the new
	// token, or 0 when the backend cannot report it.
	CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (newCAS uint64, err error)

	// Touch sets the key's TTL without changing its value. It returns
	// ErrNotFound when the key is absent. Touch may or may not change the CAS
	// token (memcached keeps it, Couchbase changes it); the provider relies on
	// neither.
	Touch(ctx context.Context, key string, ttl time.Duration) error

	// Delete removes key unconditionally. It returns ErrNotFound when the key
	// is absent. The provider never deletes a live record (RemoveItem fences
	// through CompareAndSwap); Delete exists for administration and tests.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources. Calls after Close fail with
	// ErrClosed.
	Close() error
}

// GetAndToucher is implemented by stores that can read a key and set its
// TTL in one atomic step (memcached's `mg <key> v c T<ttl>`, SQL's
// UPDATE ... RETURNING). The provider reads sessions through it on its
// read path (GetItem, ResetItemTimeout), so that no commit can land
// between the read and the touch: a late touch would otherwise give the
// session the timeout it had before the commit (I4 under concurrency).
// Stores without it are read with Get and slid with a CompareAndSwap of
// the unchanged value, which is as exact but sends the value back.
type GetAndToucher interface {
	// GetAndTouch returns the value under key and its CAS token and, in
	// the same atomic step, sets the key's TTL to ttl. It returns
	// ErrNotFound when the key is absent. Like Touch, it may or may not
	// change the CAS token; the returned token is the key's token after
	// the touch.
	GetAndTouch(ctx context.Context, key string, ttl time.Duration) (Entry, error)
}

// Appender is implemented by stores that can append a few bytes to a
// stored value under its CAS token (memcached's meta append). The provider
// writes a change of the lock state alone (taking, releasing, renewing or
// breaking the lock, handing over the action flags) through it as a
// record.Delta of record.DeltaLen bytes instead of the whole record, and
// writes the record whole again on the next change of its data or once it
// carries record.MaxDeltas deltas. The value and its deltas are one value
// under one token, which record.Decode reads as one record: lock and data
// still change together or not at all (I5).
type Appender interface {
	// CompareAndAppend appends delta to the value under key only if its
	// CAS token is still cas, sets the key's TTL to ttl, and returns the
	// new token. Like CompareAndSwap it returns ErrCASConflict when the
	// value changed and ErrNotFound when the key is gone; it returns
	// ErrNoAppend, having sent nothing, when it cannot append to this key
	// now: the caller writes the whole value with CompareAndSwap instead.
	//
	// touched is the token of the value whose TTL the call set, 0 when it
	// set none. A store whose append keeps the old TTL (memcached) sets
	// it in a second step right after the append, which lands on whatever
	// the key holds by then: when the append failed, or another write
	// landed in between, touched differs from newCAS, and the caller must
	// make sure that value has its own TTL (I4).
	CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (newCAS, touched uint64, err error)
}

// OutcomeReader is implemented by stores whose reads can settle a write
// of unknown outcome: after a write returned ErrOutcomeUnknown, a Get of
// the key returns the current state (never a lagging replica's), and a
// write it shows stands (no failover or repair can drop it: the store
// reports no write unknown because it is applied but not yet safe). The
// provider resolves writes of unknown outcome by reading the record again
// (docs/protocol.md, "Writes of unknown outcome") only on a store that
// implements OutcomeReader and returns true; on any other it returns
// ErrOutcomeUnknown at once. A wrapper that holds its Store as an
// interface hides it; one that embeds a concrete store type inherits that
// store's answer, and must answer itself if it reports unknown outcomes
// of its own (a replication layer over a memstore.Store must not pass as
// a memstore).
type OutcomeReader interface {
	// ReadsSettleOutcomes reports whether the store's reads settle its
	// writes of unknown outcome, as the interface describes, with its
	// configuration.
	ReadsSettleOutcomes() bool
}

// Entry is a value read from a Store with its CAS token.
type Entry struct {
	Value []byte
	CAS   uint64
}

// TTLReader is implemented by stores that can report how long a key has
// left to live. The conformance suite uses it to prove that every operation
// sets the session's own timeout as the TTL.
type TTLReader interface {
	// TTL returns the remaining time to live of key, or ErrNotFound.
	TTL(ctx context.Context, key string) (time.Duration, error)
}

// Sentinel errors of the Store contract. Backends wrap them with %w.
var (
	// ErrNotFound: the key is absent or expired.
	ErrNotFound = errors.New("sessionlock: not found")
	// ErrExists: Add found the key present.
	ErrExists = errors.New("sessionlock: key exists")
	// ErrCASConflict: the value changed since it was read.
	ErrCASConflict = errors.New("sessionlock: cas conflict")
	// ErrTooLarge: the value exceeds what the backend can store. Nothing
	// was written. It is the same value as session.ErrTooLarge.
	ErrTooLarge = session.ErrTooLarge
	// ErrUnavailable: the backend (or the node that owns the key) could not
	// be reached: connection refused or closed, timeouts. The outcome of a
	// write that fails this way may be unknown.
	ErrUnavailable = errors.New("sessionlock: store unavailable")
	// ErrServer: the backend answered with an error of its own.
	ErrServer = errors.New("sessionlock: store server error")
	// ErrCorrupt: a stored value could not be decoded. It is the same
	// value as session.ErrCorrupt.
	ErrCorrupt = session.ErrCorrupt
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("sessionlock: store closed")
	// ErrOutcomeUnknown: a write was sent but whether it took effect
	// cannot be known (a timeout or a lost connection after the request
	// left, a replica set that disagrees). The change may have been
	// applied; it is never reported as "not written". Callers must read
	// again before acting on it. The provider does so once for the writes
	// of the lock protocol (docs/protocol.md, "Writes of unknown
	// outcome"): where that read shows the write landed or did not, it
	// answers accordingly; otherwise it returns this error, never
	// ErrLockLost. The middleware answers it without Retry-After and
	// releases the request's lock.
	ErrOutcomeUnknown = errors.New("sessionlock: outcome of write unknown")
	// ErrSessionLost: the session should still be alive, but every copy
	// of its data is gone (a double fault: memcached's witness replication
	// found its witness touched less than a timeout ago and no data). It
	// wraps ErrNotFound, so callers that treat it as not found (the
	// provider starts a new session) need no change.
	ErrSessionLost = fmt.Errorf("sessionlock: session lost: %w", ErrNotFound)
	// ErrUnconfirmed: the store holds a record of the key that it cannot
	// confirm, and serves nothing: one copy of a replicated record whose
	// other copies all answered empty, with nothing to tell whether it is
	// the session's last copy or what is left of an unfinished write
	// (memcached's witness replication: a creation's or a witness-less
	// record left alone, docs/replication.md R4.1). It stays so until it
	// is written over or expires. It wraps ErrUnavailable, so callers
	// that treat it as unavailable need no change. A store that holds the
	// session's data elsewhere may replace it: tiered deletes it from its
	// cache and revives its durable copy.
	ErrUnconfirmed = fmt.Errorf("sessionlock: record unconfirmed: %w", ErrUnavailable)
	// ErrNoAppend: an Appender did not append (it cannot for this key
	// now) and sent nothing; write the whole value instead.
	ErrNoAppend = errors.New("sessionlock: store did not append")
)

// EventKind says what a store noticed about one of its nodes.
type EventKind int

// The kinds of store events.
const (
	// EventNodeDown: a node stopped answering and is no longer used.
	EventNodeDown EventKind = iota + 1
	// EventNodeUp: a node that was down answers again.
	EventNodeUp
	// EventFailover: a session's operations moved to another copy.
	EventFailover
	// EventRepair: a lost or stale copy was restored.
	EventRepair
	// EventFallback: an operation fell back to a slower path (a replica
	// read, a whole-document write instead of a partial one, ...).
	EventFallback
	// EventWarning: a node answers, but one of its settings breaks an
	// assumption of the store (a server too old for its protocol, LRU
	// eviction left on); the node is still used, and the Detail says
	// what to change. Or the store could not bring a session's copies
	// to one value (memcached's BackupOn: an Add whose copies split);
	// the Detail says what may follow.
	EventWarning
)

var eventKindNames = [...]string{EventNodeDown: "node_down", EventNodeUp: "node_up",
	EventFailover: "failover", EventRepair: "repair", EventFallback: "fallback", EventWarning: "warning"}

// String returns the kind's name as metrics and logs show it, for
// example "node_down".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "unknown"
}

// Event is something a store noticed about its nodes. Stores deliver
// events through the one callback in their Config (OnEvent, nil = off);
// the middleware's observer turns them into metrics and log lines. An
// Event never carries a session id or key.
type Event struct {
	Kind EventKind
	// Node names the node (its address), empty when not about one node.
	Node string
	// Detail says more in a few words, for logs; may be empty.
	Detail string
	// Err is the error that caused the event, if any.
	Err error
}

// EventFunc receives store events. It is called synchronously from the
// store's goroutines and must not block nor call the store's Close (which
// may wait for the goroutine that called it); a nil EventFunc is off.
type EventFunc func(Event)

// Emit calls f with e when f is not nil.
func (f EventFunc) Emit(e Event) {
	if f != nil {
		f(e)
	}
}
