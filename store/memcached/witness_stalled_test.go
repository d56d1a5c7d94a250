package memcached_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestUndoStalledAfterPrimaryHeld is the stalled writer (the contention
// row's residual; a clean-clone CI run's TestRealFaults/flush-one-node,
// second session of 2026-12-02: an append answered ErrOutcomeUnknown, "the
// session was more than 8 versions past this write when its writer read
// it again"). P refused the write (re-stamped: R9 after a flush), Q stored
// it, and before the writer's own completion read P a reader's R4.4
// completed the write onto P (re-stamped Q, copied Q's record onto P). The
// writer's read of P then showed P holding its write; the writer stalled
// (here: held at the undo's start) while another app server wrote the
// session envelope.Lineage+1 times over. The code before sent the undo
// (refused by the completion's re-stamp of Q) and read both copies, which
// were past the ancestors the records keep: unknown. The read of P had
// already proved the write on the configuration's one chain of versions:
// the writer now keeps that (held) and answers success; every later
// version was built on it.
//
// beaten is the opposite proof kept as before: a competitor of the same
// version on P (and completed onto Q) before the writer's read of P, the
// same stall: a certain conflict.
func TestUndoStalledAfterPrimaryHeld(t *testing.T) {
	for _, c := range []struct {
		name           string
		append, beaten bool
		broken         bool
	}{
		{"held/cas", false, false, false},
		{"held/append", true, false, false},
		{"held/cas/code-before", false, false, true},
		{"held/append/code-before", true, false, true},
		{"beaten/cas", false, true, false},
		{"beaten/cas/code-before", false, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "stalled"
			var cands []string
			// Right after Q stored the write, before the writer reads P:
			// a reader's completion (held), or a competitor of the same
			// version stored on P and completed onto Q (beaten).
			servers, s, cs, arm := afterReplyStore(t, key, 1, func(*memcached.Store) {
				p, q := cands[0], cands[1]
				if c.beaten {
					base, payload, err := envelope.Decode(rawGet(t, p, key).value)
					require.NoError(t, err)
					other := base.Next(rand.Uint64(), base.Timeout).Wrap(append(payload, "-other"...))
					rawSet(t, p, key, other, 60, 1)
					rawSet(t, q, key, other, 60, 1)
					return
				}
				it := rawGet(t, q, key)
				rawSet(t, q, key, it.value, 60, 1) // R4.4's re-stamp of Q
				rawSet(t, p, key, it.value, 60, 1) // its CAS of P
			})
			cands = cs
			if c.broken {
				memcached.SetUndoForgetsHeld(s)
			}
			ctx := context.Background()
			e := writtenOnce(t, s, key)
			// Another app server, which writes the session over while the
			// writer is stalled.
			other := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			undos := 0
			memcached.SetUndoStart(s, func(string) {
				undos++
				for i := range envelope.Lineage + 1 {
					got, err := other.Get(ctx, key)
					require.NoError(t, err)
					_, err = other.CompareAndSwap(ctx, key, fmt.Appendf(got.Value, "+%d", i), got.CAS, time.Minute)
					require.NoError(t, err, "the other app server's write %d", i)
				}
			})
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token.
			rawSet(t, cands[0], key, rawGet(t, cands[0], key).value, 60, 1)
			arm()
			var err error
			mine := "v3"
			if c.append {
				mine = "v2d"
				_, _, err = s.CompareAndAppend(ctx, key, []byte("d"), e.CAS, time.Minute)
			} else {
				_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			}
			require.Equal(t, 1, undos, "the rig: the writer reached the undo once")
			got, gerr := other.Get(ctx, key)
			require.NoError(t, gerr)
			last := fmt.Sprintf("+%d", envelope.Lineage)
			require.True(t, strings.HasSuffix(string(got.Value), last), "the rig: the other app server's writes are the session: %q", got.Value)
			switch {
			case c.beaten:
				require.ErrorIs(t, err, provider.ErrCASConflict, "a competitor held P's version: the write is on no chain")
				require.False(t, strings.HasPrefix(string(got.Value), mine), "the session %q is not built on the write", got.Value)
			case c.broken:
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the undo's reads past the ancestors")
				require.ErrorContains(t, err, stalledWriter)
			default:
				require.NoError(t, err, "P held the write before the stall: applied")
				require.True(t, strings.HasPrefix(string(got.Value), mine+"+0"), "the session %q is built on the write", got.Value)
			}
		})
	}
}
