// Package durabletest holds deliberately broken variants of tiered's
// durable tier (tiered.Durable), for tests that must show their checkers
// catch what the variant breaks (the simulation's, and the PostgreSQL
// tests of store/sqlstore), and Twin, a durable tier that runs a second
// request inside a first one's write-through.
package durabletest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"

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

// Twin is a durable tier of one row (one key) ordered by Seq, as
// tiered.Durable's PutRecord is: a record whose Seq is not above the
// stored one's is refused. Race runs a second request inside a first
// one's write-through, between its durable half and its cache half.
type Twin struct {
	tiered.Durable
	mu      sync.Mutex
	value   []byte
	cas     uint64
	during  func()
	refused chan struct{} // closed at the first PutRecord refused
}

// Race runs first, and second whole inside first's durable write: second
// starts within the first PutRecord that the Twin stores, which returns
// once second has returned or a durable write of second's was refused
// (second then retries until first's cache write lands, as against a
// writer between its two halves). It returns when both have, with an
// error when first stored no record or second neither returned nor was
// refused within 10 s.
func (d *Twin) Race(first, second func()) error {
	done := make(chan struct{})
	refused := make(chan struct{})
	var stuck error
	d.mu.Lock()
	d.refused = refused
	d.during = func() {
		go func() {
			defer close(done)
			second()
		}()
		select {
		case <-done:
		case <-refused:
		case <-time.After(10 * time.Second):
			stuck = errors.New("durabletest: the second request neither returned nor was refused")
		}
	}
	d.mu.Unlock()
	first()
	d.mu.Lock()
	ran := d.during == nil
	d.during, d.refused = nil, nil
	d.mu.Unlock()
	if !ran {
		return errors.New("durabletest: the first request stored no durable record")
	}
	<-done
	return stuck
}

// Add stores value.
func (d *Twin) Add(_ context.Context, _ string, value []byte, _ time.Duration) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.value = value
	d.cas++
	return d.cas, nil
}

// PutRecord stores value when its Seq is above the stored record's.
func (d *Twin) PutRecord(_ context.Context, _ string, value []byte, _ time.Duration) (tiered.PutResult, error) {
	d.mu.Lock()
	next, err := record.Parse(value)
	if err != nil {
		d.mu.Unlock()
		return tiered.PutResult{}, err
	}
	if cur, err := record.Parse(d.value); err == nil && cur.Seq >= next.Seq {
		refused := d.refused
		d.refused = nil
		d.mu.Unlock()
		if refused != nil {
			close(refused)
		}
		return tiered.PutResult{KeptSeq: cur.Seq}, nil
	}
	d.value = value
	d.cas++
	res := tiered.PutResult{Stored: true, CAS: d.cas}
	during := d.during
	d.during = nil
	d.mu.Unlock()
	if during != nil {
		during()
	}
	return res, nil
}

// GetWithTTL returns the stored record, with a TTL of a minute.
func (d *Twin) GetWithTTL(context.Context, string) (provider.Entry, time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.value == nil {
		return provider.Entry{}, 0, provider.ErrNotFound
	}
	return provider.Entry{Value: d.value, CAS: d.cas}, time.Minute, nil
}

// Touch does nothing.
func (d *Twin) Touch(context.Context, string, time.Duration) error { return nil }

// Close does nothing.
func (d *Twin) Close() error { return nil }
