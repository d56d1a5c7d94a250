package sqlstore

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// sessionRecord returns a session record with no values and the given
// Seq.
func sessionRecord(t testing.TB, seq uint64) []byte {
	t.Helper()
	return record.Record{Header: record.Header{Seq: seq, DataSeq: seq, Timeout: time.Minute}}.Encode()
}

func seqIn(t testing.TB, b []byte) uint64 {
	t.Helper()
	h, err := record.Parse(b)
	require.NoError(t, err)
	return h.Seq
}

func TestPutRecordKeepsTheNewest(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	ctx := context.Background()
	get := func() uint64 {
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		return seqIn(t, e.Value)
	}

	res, err := s.PutRecord(ctx, "k", sessionRecord(t, 5), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored, "absent row")
	require.EqualValues(t, 5, get())
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, e.CAS, res.CAS, "the new token is reported")

	res, err = s.PutRecord(ctx, "k", sessionRecord(t, 7), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored, "higher Seq")
	require.EqualValues(t, 7, get())

	for _, seq := range []uint64{6, 7} {
		res, err := s.PutRecord(ctx, "k", sessionRecord(t, seq), time.Minute)
		require.NoError(t, err)
		require.False(t, res.Stored, "Seq %d <= 7", seq)
		require.EqualValues(t, 7, res.KeptSeq)
		require.EqualValues(t, 7, get())
	}

	// Big-endian byte order compares like the numbers, high bits too.
	res, err = s.PutRecord(ctx, "k", sessionRecord(t, 1<<32+1), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored)
	res, err = s.PutRecord(ctx, "k", sessionRecord(t, 1<<32-1), time.Minute)
	require.NoError(t, err)
	require.False(t, res.Stored)
	require.EqualValues(t, uint64(1<<32+1), res.KeptSeq)

	// An expired row is replaced whatever its Seq, and TTL is set.
	exec(t, c, `UPDATE records SET expires_at = now() - interval '1 second'`)
	res, err = s.PutRecord(ctx, "k", sessionRecord(t, 2), 3*time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored)
	e, ttl, err := s.GetWithTTL(ctx, "k")
	require.NoError(t, err)
	require.EqualValues(t, 2, seqIn(t, e.Value))
	require.InDelta(t, (3 * time.Minute).Seconds(), ttl.Seconds(), 5)
	require.Equal(t, res.CAS, e.CAS)

	// A row that is not a record is replaced.
	_, err = s.Add(ctx, "garbage", []byte("SL\x01 not a record"), time.Minute)
	require.NoError(t, err)
	res, err = s.PutRecord(ctx, "garbage", sessionRecord(t, 1), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored)

	// A value that is not a record is refused before any statement.
	before := s.Stats().Statements
	_, err = s.PutRecord(ctx, "k", []byte("nope"), time.Minute)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	require.Equal(t, before, s.Stats().Statements)

	_, _, err = s.GetWithTTL(ctx, "missing")
	require.ErrorIs(t, err, provider.ErrNotFound)
}

func TestPutRecordConcurrentWritersKeepTheHighestSeq(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}, MaxConns: 8})
	ctx := context.Background()
	const n = 60
	seqs := rand.Perm(n)
	records := make([][]byte, n)
	for i := range records {
		records[i] = sessionRecord(t, uint64(seqs[i]+1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 6 {
				seq := uint64(seqs[i] + 1)
				res, err := s.PutRecord(ctx, "k", records[i], time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if !res.Stored && res.KeptSeq < seq {
					t.Errorf("Seq %d refused for an older kept Seq %d", seq, res.KeptSeq)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.EqualValues(t, n, seqIn(t, e.Value))
}

// TestPutRecordOrdersVersion2Records: records of format version 2 (with
// a creation time) are records to the ordered upsert too: a lower Seq
// never replaces a higher one, across versions. Before version 2 was known
// here, a version 2 row counted as "not a record" and anything replaced it.
func TestPutRecordOrdersVersion2Records(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}, Table: "records"})
	ctx := context.Background()
	v2 := func(seq uint64) []byte {
		b := record.Record{Header: record.Header{Seq: seq, DataSeq: seq, Timeout: time.Minute, Created: time.Unix(1_700_000_000, 0)}}.Encode()
		require.Equal(t, record.PrefixV2, string(b[:len(record.PrefixV2)]))
		return b
	}
	res, err := s.PutRecord(ctx, "k", v2(9), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored)
	for _, older := range [][]byte{v2(8), sessionRecord(t, 8)} {
		res, err = s.PutRecord(ctx, "k", older, time.Minute)
		require.NoError(t, err)
		require.False(t, res.Stored, "a lower Seq must not replace a version 2 record")
		require.EqualValues(t, 9, res.KeptSeq)
	}
	res, err = s.PutRecord(ctx, "k", sessionRecord(t, 10), time.Minute)
	require.NoError(t, err)
	require.True(t, res.Stored, "a version 1 record with a higher Seq replaces it")
}

// ClaimOf tells a writer whether its row version was claimed, for every way
// the version can be replaced.
func TestClaimOf(t *testing.T) {
	s := newStore(t, Config{DSNs: []string{pg.NewDatabase(t)}})
	ctx := context.Background()
	claimOf := func(key string, cas uint64) tiered.ClaimState {
		t.Helper()
		st, err := s.ClaimOf(ctx, key, cas)
		require.NoError(t, err)
		return st
	}
	rec := func(seq uint64) []byte { return sessionRecord(t, seq) }

	v1, err := s.Add(ctx, "k", rec(1), time.Hour)
	require.NoError(t, err)
	require.Equal(t, tiered.NotClaimed, claimOf("k", v1), "current")
	require.Equal(t, tiered.ClaimUnknown, claimOf("k", 0))
	require.Equal(t, tiered.ClaimUnknown, claimOf("absent", v1))

	// Replaced by a claim: claimed, and it stays so through later writes.
	v2, err := s.Claim(ctx, "k", rec(2), v1, time.Hour)
	require.NoError(t, err)
	require.Equal(t, tiered.Claimed, claimOf("k", v1))
	res, err := s.PutRecord(ctx, "k", rec(3), time.Hour)
	require.NoError(t, err)
	require.True(t, res.Stored)
	v4, err := s.CompareAndSwap(ctx, "k", rec(4), res.CAS, time.Hour)
	require.NoError(t, err)
	require.NoError(t, s.Touch(ctx, "k", time.Hour))
	require.Equal(t, tiered.Claimed, claimOf("k", v1))
	// Replaced by other writes: not claimed.
	require.Equal(t, tiered.NotClaimed, claimOf("k", v2), "overwritten by PutRecord, after the last claim")
	require.Equal(t, tiered.NotClaimed, claimOf("k", res.CAS), "overwritten by CompareAndSwap")
	require.Equal(t, tiered.NotClaimed, claimOf("k", v4))

	// A version overwritten, then a later one claimed: the last overwrite
	// still tells.
	res5, err := s.PutRecord(ctx, "k", rec(5), time.Hour)
	require.NoError(t, err)
	_, err = s.Claim(ctx, "k", rec(6), res5.CAS, time.Hour)
	require.NoError(t, err)
	require.Equal(t, tiered.NotClaimed, claimOf("k", v4), "overwritten by PutRecord, then its successor claimed")
	require.Equal(t, tiered.Claimed, claimOf("k", res5.CAS))
	require.Equal(t, tiered.ClaimUnknown, claimOf("k", v1), "claimed, but a later claim replaced the record of it")

	// Removed and written again: nothing is known of the old versions.
	require.NoError(t, s.Delete(ctx, "k"))
	require.Equal(t, tiered.ClaimUnknown, claimOf("k", res5.CAS))
	res7, err := s.PutRecord(ctx, "k", rec(7), time.Hour)
	require.NoError(t, err)
	require.Equal(t, tiered.ClaimUnknown, claimOf("k", res5.CAS))
	require.Equal(t, tiered.NotClaimed, claimOf("k", res7.CAS), "the version the row was created with")
	_, err = s.Claim(ctx, "k", rec(8), res7.CAS, time.Hour)
	require.NoError(t, err)
	require.Equal(t, tiered.Claimed, claimOf("k", res7.CAS))

	// A claim of a stale version writes nothing.
	_, err = s.Claim(ctx, "k", rec(9), res7.CAS, time.Hour)
	require.ErrorIs(t, err, provider.ErrCASConflict)
}
