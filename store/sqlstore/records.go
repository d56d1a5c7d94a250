package sqlstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// Methods for a durable tier that stores provider session records (package
// tiered). A record's Seq (record.Header) is the big-endian bytes at
// record.SeqOffset, so SQL compares two records' Seq by comparing those
// bytes; a row whose value is not a record (no record.Magic and known
// version (record.MinVersion to record.Version), or too short
// for a header) compares lower than any record.

// GetWithTTL is Get that also returns the row's remaining time to live, by
// the database server's clock, in the same statement.
func (s *Store) GetWithTTL(ctx context.Context, key string) (provider.Entry, time.Duration, error) {
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return provider.Entry{}, 0, err
	}
	defer cancel()
	var e provider.Entry
	var version, us int64
	err = p.pool.QueryRow(ctx, s.q.getTTL, key).Scan(&e.Value, &version, &us)
	if errors.Is(err, pgx.ErrNoRows) {
		return provider.Entry{}, 0, fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
	if err != nil {
		return provider.Entry{}, 0, s.wrap(p, "get", err)
	}
	e.CAS = uint64(version)
	return e, max(time.Duration(us)*time.Microsecond, time.Microsecond), nil
}

// PutRecord stores value, a provider record, under key with ttl unless the
// live row holds a record with an equal or higher Seq: an older record
// never overwrites a newer one, whatever order concurrent writers'
// statements arrive in. An absent or expired row, or a row that is not a
// record, is replaced. One statement, two when a concurrent write makes the
// first answer inconclusive. A value that is not a record fails with an
// error wrapping provider.ErrCorrupt.
func (s *Store) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	if err := s.checkValue(value, ttl); err != nil {
		return tiered.PutResult{}, err
	}
	hdr, err := record.Parse(value)
	if err != nil {
		return tiered.PutResult{}, fmt.Errorf("sqlstore: put record: %w", err)
	}
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return tiered.PutResult{}, err
	}
	defer cancel()
	for attempt := 0; ; attempt++ {
		var version *int64
		var seq []byte
		err = p.pool.QueryRow(ctx, s.q.putRecord, key, value, micros(ttl)).Scan(&version, &seq)
		if err != nil {
			return tiered.PutResult{}, s.wrapWrite(p, "put record", err)
		}
		if version != nil {
			return tiered.PutResult{Stored: true, CAS: uint64(*version)}, nil
		}
		// Refused: the row held a record with Seq >= ours when the
		// statement locked it. The statement's snapshot may predate that
		// record; the Seq of a live row only grows, so a snapshot Seq >=
		// ours is the answer, and otherwise the row is read again.
		if len(seq) == 8 && binary.BigEndian.Uint64(seq) >= hdr.Seq {
			return tiered.PutResult{KeptSeq: binary.BigEndian.Uint64(seq)}, nil
		}
		s.statements.Add(1)
		err = p.pool.QueryRow(ctx, s.q.recordSeq, key).Scan(&seq)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return tiered.PutResult{}, s.wrap(p, "put record", err)
		}
		if err == nil && len(seq) == 8 {
			return tiered.PutResult{KeptSeq: binary.BigEndian.Uint64(seq)}, nil
		}
		// The row vanished or stopped being a record since: try again.
		if attempt == 2 {
			return tiered.PutResult{}, fmt.Errorf("sqlstore: partition %s: put record: the row kept changing: %w", p.name, provider.ErrServer)
		}
		s.statements.Add(1)
	}
}

// Claim implements tiered.Durable: CompareAndSwap that also records on the
// row (claimed_version) that the version with token cas was claimed. One
// statement.
func (s *Store) Claim(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return s.compareAndSwap(ctx, "claim", s.q.claim, key, value, cas, ttl)
}

// ClaimOf implements tiered.Durable: whether the row version with token cas
// was claimed. One statement, which reads the row even if it has expired.
// The row records the version its last claim replaced (claimed_version),
// the version its last other write replaced (overwritten_version) and the
// version it was created with (created_version). A version is replaced
// exactly once, so:
//
//   - no row, or a row created after cas was written (it was removed and
//     written again since): ClaimUnknown;
//   - claimed_version = cas: Claimed;
//   - the row's version is cas, or overwritten_version = cas: NotClaimed;
//   - claimed_version < cas: NotClaimed. A claim replaces a version it
//     read, so one made after cas was written claims cas or a version
//     written after it; those took their tokens after cas did (from the
//     sequence), except a PutRecord that drew its token before cas was
//     written and then waited for the row's lock. Such a PutRecord's
//     record was built before any revival of cas, so it cannot replace the
//     revived (higher Seq) record a claim of cas leaves: once cas is
//     claimed, claimed_version stays >= cas;
//   - otherwise (a later claim replaced what the row recorded of cas):
//     ClaimUnknown.
func (s *Store) ClaimOf(ctx context.Context, key string, cas uint64) (tiered.ClaimState, error) {
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return tiered.ClaimUnknown, err
	}
	defer cancel()
	var version, claimed, overwritten, created int64
	err = p.pool.QueryRow(ctx, s.q.claimOf, key).Scan(&version, &claimed, &overwritten, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return tiered.ClaimUnknown, nil
	}
	if err != nil {
		return tiered.ClaimUnknown, s.wrap(p, "claim of", err)
	}
	return tiered.RowTokens{Version: uint64(version), Claimed: uint64(claimed), Overwritten: uint64(overwritten), Created: uint64(created)}.ClaimOf(cas), nil
}
