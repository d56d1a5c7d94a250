package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestUndoRefusedOtherIncDecided (the flush-seeded 500 of 2026-12-01:
// "cas: undoing the secondary: outcome of write unknown: cas mismatch /
// token of another incarnation of the node; not sent", two seconds after
// the last flush): flush_all keeps the pool's connections, labelled with
// the incarnation they read when they opened, and the first connection
// opened after the flush (seconds later, when load needs one) makes a new
// incarnation, and drops the idle ones. A write whose handle was read on
// the old connections found P holding another write of its version (a
// competitor) and stored on Q; meanwhile the competitor's writer completed
// its write onto Q, and a new connection learnt the new label. The undo of
// Q, its token of the old label, was refused unsent, and wcasAgain, Q
// changed, could not send it again: the call answered unknown, though
// both copies hold the competitor, a certain conflict (as when the undo
// is refused by EX). Now decided from both copies: ErrCASConflict.
func TestUndoRefusedOtherIncDecided(t *testing.T) {
	for _, broken := range []bool{false, true} {
		name := "fixed"
		if broken {
			name = "before"
		}
		t.Run(name, func(t *testing.T) {
			key := "undoinc-" + name
			var competitor []byte
			var q string
			// Right after the write was stored on Q: the competitor's
			// completion onto Q, and a new connection to every node
			// (another key's Add), which makes and learns the flushed
			// nodes' new incarnation.
			servers, s, cands, arm := afterReplyStore(t, key, 1, func(s *memcached.Store) {
				rawSet(t, q, key, competitor, 60, 1)
				memcached.CloseIdle(s)
				_, _ = s.Add(context.Background(), key+"-other", []byte("x"), time.Minute)
			})
			q = cands[1]
			if broken {
				memcached.SetUndoOtherIncUnknown(s)
			}
			ctx := context.Background()
			e := writtenOnce(t, s, key) // the handle, read on pooled connections
			// flush_all's label: the incarnation key gone from every node
			// (the session's copies restored since, as repairs do), the
			// pool's connections still of the old one.
			for _, a := range cands {
				require.NoError(t, raw(t, a).Delete("__sl_inc"))
			}
			// Another server's write of the same version, stored on P, its
			// completion onto Q still to come.
			env, _, err := envelope.Decode(rawGet(t, cands[0], key).value)
			require.NoError(t, err)
			next := env.Next(env.Nonce^0x5a5a5a5a, env.Timeout)
			next.Digest = env.Digest
			competitor = next.Wrap([]byte("v3 of another server"))
			rawSet(t, cands[0], key, competitor, 60, 1)
			arm()
			_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			if broken {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the rig: the undo refused as of another incarnation")
				require.ErrorContains(t, err, "token of another incarnation of the node; not sent")
				return
			}
			require.ErrorIs(t, err, provider.ErrCASConflict, "both copies hold another write of its version: %v", err)
			requireSessionIs(t, servers, key, "v3 of another server", "the competitor is the session")
		})
	}
}
