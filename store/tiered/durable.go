package tiered

import (
	"context"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// Durable is the durable tier of a Store: a provider.Store that keeps
// provider records (package record) and orders writes of them by their Seq.
// Package sqlstore's *Store implements it on PostgreSQL; any durable store
// can, without this package knowing it.
//
// Its CompareAndSwap tokens must never be reused for a key (a stale token
// never matches a newer row), and Touch must keep a row's token.
type Durable interface {
	provider.Store
	provider.TTLReader
	// GetWithTTL is Get that also returns the remaining time to live.
	GetWithTTL(ctx context.Context, key string) (provider.Entry, time.Duration, error)
	// PutRecord stores value, a provider record, unless the live durable
	// copy holds a record with an equal or higher Seq: an older record
	// never overwrites a newer one, whatever order concurrent writes
	// arrive in. An absent or expired row, or one that is not a record,
	// is replaced.
	PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (PutResult, error)
}

// PutResult is what Durable.PutRecord did.
type PutResult struct {
	// Stored reports that the value was stored.
	Stored bool
	// CAS is the row's new CAS token when the value was stored.
	CAS uint64
	// KeptSeq is the Seq of the record the row keeps when the value was
	// not stored.
	KeptSeq uint64
}
