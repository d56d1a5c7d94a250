package memcached_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestStalledWriterNotApplied is docs/replication.md §16 item 4 (L7″,
// "not applied, however far"): a write stored on its secondary Q alone
// (P refused it: re-stamped) whose writer stalls before any read of P
// while another app server takes it off Q (a roll-back, R4.4′: P
// re-stamped, Q CASed back to P's bytes; by raw writes, and for real by
// the other app server's reads) and moves the session on. No
// completion CAS of P of the writer's may have stored, and Q holds
// another record of the write's configuration and lifetime: the write was
// never on both copies, so it is not applied however far the session
// went (ErrCASConflict; the provider's retry then writes it). The code
// before (SetFarNotAppliedOff) answered ErrOutcomeUnknown past
// envelope.Lineage versions (the stalled writer). And the guard,
// maybeOnP (rv-roll M2): the writer's completion CAS of P stored with its
// reply lost (SetCompleteOwnReplyLost), a read returning the write on both
// copies and the session written on it past the ancestors while the
// writer stalls at its undo: the writer cannot know, and never answers
// "not applied" (the broken variant SetMaybeOnPIgnored does).
func TestStalledWriterNotApplied(t *testing.T) {
	const key = "notapplied"
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond}
	far := envelope.Lineage + 4
	for _, c := range []struct {
		name      string
		replyLost bool // the writer's completion CAS of P stored, its reply lost; held at the undo's start
		rollBack  bool // the other app server rolls the split back first
		writes    int  // then writes the session this many times
		hook      func(*memcached.Store)
		check     func(t *testing.T, err error, session string)
	}{
		{"rolled-back/far", false, true, far, nil, func(t *testing.T, err error, session string) {
			require.ErrorIs(t, err, provider.ErrCASConflict, "never on both copies: not applied, however far")
			require.NotContains(t, session, "v3", "the rig: the session is not built on the write")
		}},
		{"rolled-back-by-reader/far", false, false, far, nil, func(t *testing.T, err error, session string) {
			require.ErrorIs(t, err, provider.ErrCASConflict, "R4.4′ by another app server's reads: not applied, however far")
			require.NotContains(t, session, "v3", "the rig: the session is not built on the write")
		}},
		{"rolled-back/far/code-before", false, true, far, memcached.SetFarNotAppliedOff, func(t *testing.T, err error, session string) {
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the stalled writer")
		}},
		{"rolled-back/near", false, true, 2, nil, func(t *testing.T, err error, session string) {
			require.ErrorIs(t, err, provider.ErrCASConflict, "the control: later versions built on another write")
		}},
		{"reply-lost/far", true, false, far, nil, func(t *testing.T, err error, session string) {
			require.True(t, strings.HasPrefix(session, "v3"), "the rig: the session %q is built on the write", session)
			require.NotErrorIs(t, err, provider.ErrCASConflict, "a write a read returned and built on is never reported not applied")
		}},
		{"reply-lost/far/maybe-on-p-ignored", true, false, far, memcached.SetMaybeOnPIgnored, func(t *testing.T, err error, session string) {
			require.True(t, strings.HasPrefix(session, "v3"), "the rig: the session %q is built on the write", session)
			require.ErrorIs(t, err, provider.ErrCASConflict, "the broken variant: a write built on reported not applied")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			servers := startNodes(t, 3)
			s := newStore(t, servers, cfg)
			memcached.SetRepairQueueOff(s)
			if c.hook != nil {
				c.hook(s)
			}
			if c.replyLost {
				memcached.SetCompleteOwnReplyLost(s)
			}
			other := newStore(t, servers, cfg)
			memcached.SetRepairQueueOff(other)
			cands := memcached.WitnessCandidates(s, key)
			ctx := context.Background()
			e := writtenOnce(t, s, key)

			var hw *heldWriter
			if c.replyLost {
				hw = newHeldWriterAt(key, func(hold func(string)) { memcached.SetUndoStart(s, hold) })
			} else {
				hw = newHeldWriter(s, key)
			}
			release := hw.arm(t)
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token, Q stores it.
			it := rawGet(t, cands[0], key)
			rawSet(t, cands[0], key, it.value, int(it.ttl), it.flags)
			wrote := make(chan error, 1)
			go func() {
				_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
				wrote <- err
			}()
			recvWithin(t, hw.held, "the writer held")

			if c.rollBack {
				// R4.4′ (another app server): P re-stamped, then Q CASed
				// to P's bytes as read.
				p := rawGet(t, cands[0], key)
				rawSet(t, cands[0], key, p.value, int(p.ttl), p.flags)
				rawSet(t, cands[1], key, p.value, int(p.ttl), p.flags)
			}
			if !c.rollBack && !c.replyLost {
				// R4.4′ for real: the other app server's first sight of
				// the split returns the parent (handle 0), its second
				// rolls it back and returns the parent.
				for range 2 {
					got, err := other.Get(ctx, key)
					require.NoError(t, err)
					require.Equal(t, "v2", string(got.Value), "the parent, never the write")
				}
				require.Equal(t, rawGet(t, cands[0], key).value, rawGet(t, cands[1], key).value, "rolled back: Q holds P's bytes")
			}
			for i := range c.writes {
				got, err := other.Get(ctx, key)
				require.NoError(t, err)
				if i == 0 && c.replyLost {
					require.Equal(t, "v3", string(got.Value), "the rig: the write, on both copies, returned")
				}
				_, err = other.CompareAndSwap(ctx, key, fmt.Appendf(got.Value, "+%d", i), got.CAS, time.Minute)
				require.NoError(t, err, "the other app server's write %d", i)
			}

			release()
			err := recvWithin(t, wrote, "the writer's answer")
			session := ""
			if got, gerr := other.Get(ctx, key); gerr == nil {
				session = string(got.Value)
			}
			t.Logf("the writer's answer: %v; the session: %q", err, session)
			c.check(t, err, session)
		})
	}
}
