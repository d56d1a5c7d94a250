package memcached_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// seqOf returns the record Seq of the value s serves for key.
func seqOf(t *testing.T, s *memcached.Store, key string) uint64 {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	h, err := rec.Parse(e.Value)
	require.NoError(t, err)
	return h.Seq
}

// flushSetup starts two nodes shared by two Stores (two app servers) and
// writes key at Seq 75 from s1 and 76 from s2, so that s1's next write
// finds its remembered backup copy outdated and completes the backup write
// after the primary write (the tests make s1 forget what its Get read of
// the backup copy: ForgetBackupCopies).
func flushSetup(t *testing.T, key string) (s1, s2 *memcached.Store, flushPrimary, flushBackup func()) {
	t.Helper()
	servers := startNodes(t, 2)
	s1 = newStore(t, servers, memcached.Config{})
	s2 = newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	_, err := s1.Add(ctx, key, record(75, "seventy-five"), time.Minute)
	require.NoError(t, err)
	e, err := s2.Get(ctx, key)
	require.NoError(t, err)
	_, err = s2.CompareAndSwap(ctx, key, record(76, "seventy-six"), e.CAS, time.Minute)
	require.NoError(t, err)
	p, b := s1.Placement(key)
	flushPrimary = func() { require.NoError(t, serverAt(t, servers, p).FlushAll(ctx)) }
	flushBackup = func() { require.NoError(t, serverAt(t, servers, b).FlushAll(ctx)) }
	return s1, s2, flushPrimary, flushBackup
}

// TestFlushedPrimaryRepairedMidWrite: the primary is flushed right after a
// write of Seq 77 landed on it, before its backup write completes, and the
// other Store repairs the key from the backup copy (Seq 76) in that
// window. Once the write is acknowledged, neither Store serves Seq 76
// again, also after the backup node is flushed in turn.
func TestFlushedPrimaryRepairedMidWrite(t *testing.T) {
	const key = "sl:flushmid"
	s1, s2, flushPrimary, flushBackup := flushSetup(t, key)
	ctx := context.Background()
	e, err := s1.Get(ctx, key)
	require.NoError(t, err)
	memcached.ForgetBackupCopies(s1) // its Get read both copies
	var during uint64
	memcached.SetTestHooks(s1, func(string) {
		flushPrimary()
		during = seqOf(t, s2, key) // repairs the primary from the backup copy
	}, nil)
	_, err = s1.CompareAndSwap(ctx, key, record(77, "seventy-seven"), e.CAS, time.Minute)
	require.NoError(t, err)
	require.GreaterOrEqual(t, during, uint64(76))
	require.Equal(t, uint64(77), seqOf(t, s1, key), "s1 serves an older copy than it acknowledged")
	require.Equal(t, uint64(77), seqOf(t, s2, key), "s2 serves an older copy than s1 acknowledged")
	flushBackup()
	require.Equal(t, uint64(77), seqOf(t, s2, key), "after both flushes")
	require.Equal(t, uint64(77), seqOf(t, s1, key), "after both flushes")
}

// TestFlushedPrimaryRepairReadBeforeBackupWrite: as above, but the repair
// reads the backup copy (Seq 76) before the write's backup copy (Seq 77)
// lands, and writes the primary only after the write was acknowledged.
func TestFlushedPrimaryRepairReadBeforeBackupWrite(t *testing.T) {
	const key = "sl:flushread"
	s1, s2, flushPrimary, flushBackup := flushSetup(t, key)
	ctx := context.Background()
	e, err := s1.Get(ctx, key)
	require.NoError(t, err)
	memcached.ForgetBackupCopies(s1) // its Get read both copies

	read := make(chan struct{})
	resume := make(chan struct{})
	var once sync.Once
	memcached.SetTestHooks(s2, nil, func(string) {
		once.Do(func() {
			close(read)
			<-resume
		})
	})
	repaired := make(chan error, 1)
	memcached.SetTestHooks(s1, func(string) {
		flushPrimary()
		go func() {
			_, err := s2.Get(ctx, key)
			repaired <- err
		}()
		<-read // the repair has read the backup copy, Seq 76
	}, nil)
	_, err = s1.CompareAndSwap(ctx, key, record(77, "seventy-seven"), e.CAS, time.Minute)
	require.NoError(t, err)
	close(resume)
	require.NoError(t, <-repaired)
	require.Equal(t, uint64(77), seqOf(t, s1, key), "s1 serves an older copy than it acknowledged")
	require.Equal(t, uint64(77), seqOf(t, s2, key), "s2 serves an older copy than s1 acknowledged")
	flushBackup()
	require.Equal(t, uint64(77), seqOf(t, s2, key), "after both flushes")
}

// TestFlushedBothNodesMidWrite: the nodes are flushed one after the other
// while a write of Seq 77 is between its primary and backup writes, with a
// repair from the backup copy (Seq 76) in between, so the repair's claim
// on the backup copy is flushed too. The acknowledged write is served.
func TestFlushedBothNodesMidWrite(t *testing.T) {
	const key = "sl:flushboth"
	s1, s2, flushPrimary, flushBackup := flushSetup(t, key)
	ctx := context.Background()
	e, err := s1.Get(ctx, key)
	require.NoError(t, err)
	memcached.ForgetBackupCopies(s1) // its Get read both copies
	memcached.SetTestHooks(s1, func(string) {
		flushPrimary()
		require.Equal(t, uint64(76), seqOf(t, s2, key))
		flushBackup()
	}, nil)
	_, err = s1.CompareAndSwap(ctx, key, record(77, "seventy-seven"), e.CAS, time.Minute)
	require.NoError(t, err)
	require.Equal(t, uint64(77), seqOf(t, s2, key), "s2 serves an older copy than s1 acknowledged")
	require.Equal(t, uint64(77), seqOf(t, s1, key), "s1 serves an older copy than it acknowledged")
}

// TestFlushedPrimaryWriteSupersededIsNotAcknowledged: while a write of Seq
// 77 is between its primary and backup writes, the primary is flushed,
// repaired from the backup copy (Seq 76), and written again from that copy
// by the other Store (Seq 77 with other bytes). The first write is then
// not live: it fails, and both copies hold the other Store's write. It
// fails with ErrOutcomeUnknown, not ErrCASConflict: it was on the primary
// before the flush, where others may have read it (sixth session, d4).
func TestFlushedPrimaryWriteSupersededIsNotAcknowledged(t *testing.T) {
	const key = "sl:superseded"
	s1, s2, flushPrimary, _ := flushSetup(t, key)
	ctx := context.Background()
	other := record(77, "other seventy-seven")
	e, err := s1.Get(ctx, key)
	require.NoError(t, err)
	memcached.ForgetBackupCopies(s1) // its Get read both copies
	memcached.SetTestHooks(s1, func(string) {
		flushPrimary()
		e, err := s2.Get(ctx, key)
		require.NoError(t, err)
		_, err = s2.CompareAndSwap(ctx, key, other, e.CAS, time.Minute)
		require.NoError(t, err)
	}, nil)
	_, err = s1.CompareAndSwap(ctx, key, record(77, "seventy-seven"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.NotErrorIs(t, err, provider.ErrCASConflict, "a conflict says nothing was written")
	for _, s := range []*memcached.Store{s1, s2} {
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, other, e.Value)
	}
	_, backup := s1.Placement(key)
	it, err := raw(t, backup).Get("bak:" + key)
	require.NoError(t, err)
	require.Equal(t, other, it.Value, "the backup copy agrees with the primary")
}
