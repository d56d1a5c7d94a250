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
	// Claim is CompareAndSwap that also records, on the row, that the
	// version with token cas was claimed: a revival adopts the durable
	// copy it read by claiming it before serving it.
	Claim(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error)
	// ClaimOf reports whether the row version with token cas was claimed.
	// Once that version is no longer the row's (replaced or removed), the
	// answer is final: Claimed if a Claim replaced it, NotClaimed if it
	// was replaced otherwise, ClaimUnknown if the durable tier cannot tell
	// (the row was removed or created again since, or claimed again).
	ClaimOf(ctx context.Context, key string, cas uint64) (ClaimState, error)
}

// ClaimState is what the durable tier knows of whether a row version was
// claimed (Durable.ClaimOf).
type ClaimState int

// The answers of Durable.ClaimOf.
const (
	// ClaimUnknown: the durable tier cannot tell.
	ClaimUnknown ClaimState = iota
	// Claimed: a Claim replaced that version.
	Claimed
	// NotClaimed: that version is still the row's, or was replaced by a
	// write that was not a Claim.
	NotClaimed
)

func (c ClaimState) String() string {
	switch c {
	case Claimed:
		return "claimed"
	case NotClaimed:
		return "not claimed"
	default:
		return "claim unknown"
	}
}

// RowTokens are the tokens a durable row records for ClaimOf: its
// current version, the version its last Claim replaced (Claimed), the
// version its last other write replaced (Overwritten) and the version it
// was created with (Created). Tokens come from one increasing sequence,
// and no version has token 0.
type RowTokens struct{ Version, Claimed, Overwritten, Created uint64 }

// ClaimOf is Durable.ClaimOf's decision for the row version with token
// cas, from the row's tokens: ClaimUnknown when the row was created after
// cas (or cas is 0); Claimed when a Claim replaced cas; NotClaimed when
// cas is still the row's, was replaced by another write, or no Claim has
// happened since it; ClaimUnknown otherwise (a later Claim replaced what
// the row recorded of cas). store/sqlstore decides with it, and so does
// the simulated durable tier of stress/sim.
func (r RowTokens) ClaimOf(cas uint64) ClaimState {
	switch {
	case cas == 0 || r.Created > cas:
		return ClaimUnknown
	case r.Claimed == cas:
		return Claimed
	case r.Version == cas || r.Overwritten == cas || r.Claimed < cas:
		return NotClaimed
	default:
		return ClaimUnknown
	}
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
