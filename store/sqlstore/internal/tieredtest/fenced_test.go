package tieredtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/store/tiered/durabletest"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// A commit durable in SQL whose cache CAS fails (its lock was taken over)
// can be adopted by a revival after a cache loss before the writer has
// decided its outcome: the revival claims the durable row and serves it,
// and later commits build on it. The writer must then not report the lock
// lost (which says nothing was written) for a change that is applied
// (docs/replication.md §15, "fenced but applied"). Real memcached and
// PostgreSQL; the revival is forced by hooks on the durable tier:
//
//   - BeforeTheUndo: the writer found the cache moved on without its change
//     and is about to undo its durable write;
//   - BeforeTheCacheWrite: the writer's durable write is done and its cache
//     write not yet sent;
//   - RevivedTwiceBeforeTheUndo: as BeforeTheUndo, with two cache losses
//     (two revivals, two commits): the durable tier cannot tell any more
//     whether the first revival claimed the write, and the writer must say
//     so (ErrOutcomeUnknown).
//
// Each runs also against the old decision (durabletest.OldClaimCheck: adopted only if
// the durable copy is still exactly the revival of the write), which the
// test must catch reporting ErrLockLost for the applied commit.
func TestFencedButApplied(t *testing.T) {
	servers := mcserver.StartForTest(t, 2, mcserver.Config{})
	for _, tc := range []struct {
		at     string
		losses int   // cache losses, each followed by a revival and a commit
		want   error // the writer's answer: nil (committed) or an error it wraps
	}{
		{"BeforeTheUndo", 1, nil},
		{"BeforeTheCacheWrite", 1, nil},
		// Two claims since the write: the durable tier no longer knows
		// whether the first claimed it, so the writer cannot tell.
		{"RevivedTwiceBeforeTheUndo", 2, provider.ErrOutcomeUnknown},
	} {
		t.Run(tc.at, func(t *testing.T) {
			flushAll(t, servers)
			commitErr, err := fencedButApplied(t, servers, tc.at, tc.losses, false)
			require.NoError(t, err)
			if tc.want == nil {
				require.NoError(t, commitErr)
			} else {
				require.ErrorIs(t, commitErr, tc.want)
			}
		})
		t.Run(tc.at+"/OldUndoIsCaught", func(t *testing.T) {
			flushAll(t, servers)
			_, err := fencedButApplied(t, servers, tc.at, tc.losses, true)
			require.ErrorIs(t, err, errAppliedButLost, "the old decision must be caught")
		})
	}
}

var errAppliedButLost = errors.New("the commit is applied, but its writer was told its lock was lost")

// fencedButApplied runs the scenario (see TestFencedButApplied) and
// returns the writer's answer and a violation, or nil when that answer
// fits what happened.
func fencedButApplied(t *testing.T, servers []*mcserver.Server, at string, losses int, old bool) (commitErr, violation error) {
	ctx := context.Background()
	var durable tiered.Durable = newDurable(t, pg.NewDatabase(t))
	if old {
		durable = durabletest.OldClaimCheck(durable)
	}
	hooks := &hookedDurable{Durable: durable}
	s, err := tiered.New(tiered.Config{Cache: newMemcached(t, servers), Durable: hooks})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	other, err := provider.New(s, provider.Config{}) // another process's requests
	require.NoError(t, err)
	id := createSession(t, p, time.Hour)

	writer, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, writer.Data.Values.Set("n", 1))

	// The cache is lost; a request revives the session, which serves the
	// writer's durable change; a second request commits on top of it.
	var served int
	var takenOver *provider.Item
	loseAndRevive := func() {
		for i := 0; i < losses; i++ {
			flushAll(t, servers)
			n := counter(t, other, id)
			if i == 0 {
				served = n
			}
			require.Equal(t, acked, increment(ctx, t, other, id))
		}
	}
	var writerToken atomic.Uint64
	hooks.afterPut = once(func(res tiered.PutResult) {
		writerToken.Store(res.CAS)
		if at == "BeforeTheCacheWrite" {
			loseAndRevive()
			return
		}
		// The writer's lock is broken (its holder looked dead) and taken
		// over before its cache write.
		breakLock(ctx, t, other, id)
		var err error
		takenOver, err = other.GetItemExclusive(ctx, id)
		require.NoError(t, err)
	})
	hooks.beforeCAS = func(cas uint64) {
		if at != "BeforeTheCacheWrite" && cas == writerToken.Load() {
			hooks.beforeCAS = nil
			loseAndRevive()
		}
	}

	commitErr = p.SetAndReleaseItemExclusive(ctx, id, writer.Data, writer.LockID, false)
	require.Equal(t, 1, served, "the revival served the writer's change")
	require.Equal(t, 1+losses, counter(t, p, id), "and later commits built on it")
	if takenOver != nil {
		require.ErrorIs(t, other.ReleaseItemExclusive(ctx, id, takenOver.LockID), provider.ErrLockLost,
			"the lock taken over in the lost cache is fenced")
	}
	switch {
	case commitErr == nil:
		require.EqualValues(t, 1, s.Stats().Adopted)
		return nil, nil
	case errors.Is(commitErr, provider.ErrLockLost), errors.Is(commitErr, provider.ErrCASConflict):
		return commitErr, fmt.Errorf("%w: %v", errAppliedButLost, commitErr)
	case errors.Is(commitErr, provider.ErrOutcomeUnknown):
		require.NotZero(t, s.Stats().UnknownOutcomes)
		return commitErr, nil // true, if less precise
	}
	return commitErr, commitErr
}

// once returns f, run by its first caller only.
func once[T any](f func(T)) func(T) {
	var done atomic.Bool
	return func(v T) {
		if done.CompareAndSwap(false, true) {
			f(v)
		}
	}
}

// hookedDurable calls afterPut after each stored PutRecord and beforeCAS
// before each CompareAndSwap (tiered's undo of a durable write).
type hookedDurable struct {
	tiered.Durable
	afterPut  func(tiered.PutResult)
	beforeCAS func(cas uint64)
}

func (d *hookedDurable) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	res, err := d.Durable.PutRecord(ctx, key, value, ttl)
	if err == nil && res.Stored && d.afterPut != nil {
		d.afterPut(res)
	}
	return res, err
}

func (d *hookedDurable) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if d.beforeCAS != nil {
		d.beforeCAS(cas)
	}
	return d.Durable.CompareAndSwap(ctx, key, value, cas, ttl)
}
