package provider

import (
	"context"
	"errors"
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
// granularity (whole seconds for memcached).
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
)
