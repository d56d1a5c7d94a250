package memcached_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// The primary loses a session's key (an eviction, or a flush of its node)
// while the backup copy keeps it; the app server that wrote the session
// last locks it next from its cached token, with no read first: the
// primary refuses the write (not found). Its backup half (an append, or
// a whole write) used to land on the backup copy, and its undo deleted
// that copy, the only one left: the session was lost (review of
// 2026-11-29, F1; the same at 8efee5d for whole writes). Now the backup
// half is sent only after the primary took the write (doc.go, "The
// unknown-outcome contract"), so nothing is undone: another server still
// reads the session, and the next lock gets it. (The broken variant of
// then, an undo that deletes, has no code left to break.)
func TestPrimaryLostKeyKeepsSession(t *testing.T) {
	for _, c := range []struct {
		whole, flush bool
	}{
		{false, false}, {false, true}, {true, false}, {true, true},
	} {
		name := fmt.Sprintf("whole=%v/flush=%v", c.whole, c.flush)
		t.Run(name, func(t *testing.T) {
			e := newAppendEnv(t, false)
			if c.whole {
				memcached.SetBackupWholeWrites(e.s1)
			}
			ctx := context.Background()
			it, err := e.p1.GetItemExclusive(ctx, e.id)
			require.NoError(t, err)
			require.NoError(t, e.p1.SetAndReleaseItemExclusive(ctx, e.id, it.Data, it.LockID, false))
			if c.flush {
				require.NoError(t, raw(t, e.primary).FlushAll())
			} else {
				require.NoError(t, raw(t, e.primary).Delete(e.key))
			}
			it, lerr := e.p1.GetItemExclusive(ctx, e.id)
			t.Logf("p1's lock after the primary lost the key: %v", lerr)
			_, perr := e.p2.GetItem(ctx, e.id)
			require.NotErrorIs(t, perr, provider.ErrNotFound, "the session was lost")
			if lerr == nil {
				require.NoError(t, e.p1.ReleaseItemExclusive(ctx, e.id, it.LockID))
			}
			// Whatever p1's outcome, the session can be locked and read
			// again: by p1 now, or by p2 once an unknown outcome's lock
			// has been taken over.
			got, err := e.p2.GetItemExclusive(ctx, e.id)
			for err != nil {
				var le *provider.LockedError
				require.ErrorAs(t, err, &le, "p2's lock")
				require.NoError(t, e.p2.BreakLock(ctx, e.id, le.Stamp))
				got, err = e.p2.GetItemExclusive(ctx, e.id)
			}
			require.NoError(t, e.p2.ReleaseItemExclusive(ctx, e.id, got.LockID))
			p, b := e.copies(t)
			require.NotNil(t, p, "the primary restored")
			require.NotNil(t, b, "the backup copy")
		})
	}
}
