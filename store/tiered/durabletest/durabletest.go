// Package durabletest holds deliberately broken variants of tiered's
// durable tier (tiered.Durable), for tests that must show their checkers
// catch what the variant breaks (the simulation's, and the PostgreSQL
// tests of store/sqlstore).
package durabletest

import (
	"context"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// OldClaimCheck wraps d as tiered saw the durable tier before revivals
// recorded their claims: a write replaced since counts as adopted only if
// the durable copy is, when asked, exactly the revival of that write (its
// Seq advanced by one revival, the same data); otherwise as not adopted,
// which the writer reports as a conflict (and its provider as
// ErrLockLost).
func OldClaimCheck(d tiered.Durable) tiered.Durable {
	return &oldClaimCheck{Durable: d, written: make(map[uint64][]byte)}
}

type oldClaimCheck struct {
	tiered.Durable
	mu      sync.Mutex
	written map[uint64][]byte // the value of each stored PutRecord, by token
}

func (d *oldClaimCheck) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	res, err := d.Durable.PutRecord(ctx, key, value, ttl)
	if err == nil && res.Stored {
		d.mu.Lock()
		d.written[res.CAS] = value
		d.mu.Unlock()
	}
	return res, err
}

func (d *oldClaimCheck) ClaimOf(ctx context.Context, key string, cas uint64) (tiered.ClaimState, error) {
	d.mu.Lock()
	value := d.written[cas]
	d.mu.Unlock()
	cur, err := d.Durable.Get(ctx, key)
	if err != nil {
		return tiered.NotClaimed, nil
	}
	ch, cerr := record.Parse(cur.Value)
	vh, verr := record.Parse(value)
	if cerr == nil && verr == nil && ch.Seq == vh.Seq+record.ReviveGap && record.SameData(cur.Value, value) {
		return tiered.Claimed, nil
	}
	return tiered.NotClaimed, nil
}
