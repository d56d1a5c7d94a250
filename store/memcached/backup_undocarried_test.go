package memcached_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// Review-oc31 F1, part 3 (BackupOn, real memcached): the primary lost the
// key (its append answers not found) while the backup append lands; the
// backup copy then changes before the undo reads it (goneDialer holds the
// undo's first read of the backup copy, `mg bak:<key>`, until the change
// is made). A change that may carry the append (a reader's repair
// claiming the copy and restoring the primary from it; a later write)
// makes the outcome unknown; "not found" said nothing was written though
// the append is on the copies. A change that cannot carry it (another
// write of the append's Seq) leaves "not found". The same with the
// primary's append refused for a CAS conflict (conflict): only the append
// itself, claimed, may carry it; a later write is based on the record the
// primary held (the round's winner). The broken variant
// (SetUndoCarriedRefused) answers the primary's error whatever the
// change.
func TestAppendUndoFindsCopyChanged(t *testing.T) {
	for _, c := range []struct {
		name     string
		conflict bool // the primary refuses with a CAS conflict, not "not found"
		carried  bool // the changed copy may carry the append
		// primary: the change is made before the undo's read of the
		// primary's copy (after its read of the backup copy), not before
		// its read of the backup copy.
		primary bool
		// change changes the backup copy, which holds the append.
		change func(e *appendEnv, cur rec.Record) error
	}{
		{"repair", false, true, false, func(e *appendEnv, _ rec.Record) error {
			// A reader on another Store misses on the primary, claims
			// the backup copy (the same bytes, a new CAS) and restores
			// the primary from it.
			_, err := e.s2.Get(context.Background(), e.key)
			return err
		}},
		{"repair-after-read", false, true, true, func(e *appendEnv, _ rec.Record) error {
			// The same, once the undo has read the backup copy (still
			// the append's): the undo's write over it is refused.
			_, err := e.s2.Get(context.Background(), e.key)
			return err
		}},
		{"repair-backup-gone", false, true, false, func(e *appendEnv, _ rec.Record) error {
			// The same, and then the backup copy is gone (evicted):
			// the primary's copy, restored from it, carries the append.
			if _, err := e.s2.Get(context.Background(), e.key); err != nil {
				return err
			}
			return memcache.New(e.backup).Delete(e.bakKey)
		}},
		{"newer", false, true, false, func(e *appendEnv, cur rec.Record) error {
			// A write based on the append (Seq + 2), as a write
			// redirected to the backup copy after a read of it is.
			return rewriteBackup(e, cur, func(r *rec.Record) {
				r.Seq++
				r.Locked = false
			})
		}},
		{"conflict-claimed", true, true, false, func(e *appendEnv, _ rec.Record) error {
			// The backup copy rewritten with the same bytes (a repair's
			// claim, had the primary lost the key after refusing).
			mc := memcache.New(e.backup)
			defer func() { _ = mc.Close() }()
			it, err := mc.Get(e.bakKey)
			if err != nil {
				return err
			}
			return mc.Set(it)
		}},
		{"conflict-newer", true, false, false, func(e *appendEnv, cur rec.Record) error {
			// A later write on the backup copy: the winner's round,
			// based on what the primary held.
			return rewriteBackup(e, cur, func(r *rec.Record) {
				r.Seq++
				r.Locked = false
			})
		}},
		{"other", false, false, false, func(e *appendEnv, cur rec.Record) error {
			// Another write of the append's Seq, based on the record
			// before it (not ending with the delta): it cannot carry
			// the append.
			return rewriteBackup(e, cur, func(r *rec.Record) {
				*r = cur
				r.Seq++
				r.Locked, r.LockID, r.LockedAt = true, cur.LockID+1, time.Unix(1, 0)
			})
		}},
	} {
		for _, broken := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: "", true: "/broken"}[broken], func(t *testing.T) {
				e, d := newGoneEnv(t)
				if broken {
					memcached.SetUndoCarriedRefused(e.s1)
				}
				ctx := context.Background()
				en, cur, delta := e.lockDelta(t)
				perr := provider.ErrNotFound
				if c.conflict {
					newCAS(t, e.primary, e.key) // the token is stale there
					perr = provider.ErrCASConflict
				} else {
					require.NoError(t, raw(t, e.primary).Delete(e.key))
				}
				d.mu.Lock()
				var herr error
				d.beforeKey = e.bakKey
				if c.primary {
					d.beforeKey = e.key
				}
				d.beforeRead = func() {
					// On s1's goroutine that writes the read: errors are
					// checked once CompareAndAppend returned.
					err := c.change(e, cur)
					d.mu.Lock()
					herr = err
					d.mu.Unlock()
				}
				d.mu.Unlock()
				_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
				d.mu.Lock()
				require.Nil(t, d.beforeRead, "the undo read the backup copy")
				require.NoError(t, herr, "changing the backup copy")
				d.mu.Unlock()
				require.Error(t, err)
				if !c.carried || broken {
					require.ErrorIs(t, err, perr)
					require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "the append cannot be carried: the primary's answer")
				} else {
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the append may be on the copies")
				}
				p, b := e.copies(t)
				require.NotNil(t, b, "the changed backup copy is left alone, or restored")
				if strings.HasPrefix(c.name, "repair") {
					require.NotNil(t, p, "the reader restored the primary")
					require.Equal(t, cur.Seq+1, p.Seq, "from the backup copy holding the append")
					require.Equal(t, p.Header, b.Header)
					require.True(t, p.Locked)
				}
			})
		}
	}
}

// TestReleaseUndoCarriedNotLockLost is the same race at the provider: a
// release written from the provider's cached token after the primary
// lost the key (appended, or whole: a CompareAndSwap's undo has the same
// race, its backup copy recognised by its bytes, which the claim keeps);
// the reader's repair restores the primary from the backup copy, which
// holds the release, before the undo reads it. The release is on both
// copies: its outcome is unknown at worst. The broken variant reports not
// found, and the provider's next decision finds the lock released and
// answers ErrLockLost, which says nothing was written.
func TestReleaseUndoCarriedNotLockLost(t *testing.T) {
	for _, c := range []struct{ whole, broken bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		broken := c.broken
		t.Run(fmt.Sprintf("whole=%v/broken=%v", c.whole, c.broken), func(t *testing.T) {
			e, d := newGoneEnv(t)
			if c.whole {
				memcached.SetBackupWholeWrites(e.s1)
			}
			if broken {
				memcached.SetUndoCarriedRefused(e.s1)
			}
			ctx := context.Background()
			item, err := e.p1.GetItemExclusive(ctx, e.id)
			require.NoError(t, err)
			require.NoError(t, raw(t, e.primary).Delete(e.key))
			d.mu.Lock()
			var herr error
			d.beforeKey, d.beforeRead = e.bakKey, func() {
				_, err := e.s2.Get(ctx, e.key)
				d.mu.Lock()
				herr = err
				d.mu.Unlock()
			}
			d.mu.Unlock()
			err = e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID)
			d.mu.Lock()
			require.Nil(t, d.beforeRead, "the undo read the backup copy")
			require.NoError(t, herr, "the reader's Get")
			d.mu.Unlock()
			p, b := e.copies(t)
			require.NotNil(t, p, "the reader restored the primary")
			require.NotNil(t, b)
			require.False(t, p.Locked, "the release is the record stored")
			require.Equal(t, item.LockID, p.LockID)
			require.Equal(t, p.Header, b.Header)
			if broken {
				require.ErrorIs(t, err, provider.ErrLockLost, "the broken variant: told nothing was written")
				return
			}
			require.NotErrorIs(t, err, provider.ErrLockLost, "the release was written")
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			got, err := e.p2.GetItemExclusive(ctx, e.id)
			require.NoError(t, err, "released: another process takes the lock")
			require.NoError(t, e.p2.ReleaseItemExclusive(ctx, e.id, got.LockID))
		})
	}
}

// rewriteBackup rewrites the backup copy, which must hold the append of a
// lock change of cur, whole with the record change makes of it.
func rewriteBackup(e *appendEnv, cur rec.Record, change func(r *rec.Record)) error {
	mc := memcache.New(e.backup)
	defer func() { _ = mc.Close() }()
	it, err := mc.Get(e.bakKey)
	if err != nil {
		return err
	}
	r, err := rec.Decode(it.Value)
	if err != nil {
		return err
	}
	if r.Seq != cur.Seq+1 {
		return fmt.Errorf("the backup copy holds Seq %d, not the append's %d", r.Seq, cur.Seq+1)
	}
	change(&r)
	it.Value = r.Encode()
	return mc.CompareAndSwap(it)
}
