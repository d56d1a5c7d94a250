package memcached_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestReclaimedCompletesOwn is rvcarries2 R2: the writer's write (v3, or
// the append of 3: v23) is on P alone (Q cut for it), its write failover held after its read of
// the witness node. The rig re-stamps P (the write's bytes, a new token:
// a reader's or R9's re-stamp), so the writer's fence on P is refused,
// and Q answers the writer again: its resolution (reclaimed) reads the
// plain split, the write on P and its parent on Q.
//
// seen: a Get in the writer's Store had its first sight of the split
// (and returned the parent). The resolution completes the write at once:
// success, no wait for its own in-flight mark. The code before
// (SetReclaimedNotOwn) waited one Timeout on the writer itself
// (waitWriter, counted by SetWriterWait) and then completed it.
//
// unseen: no call had seen the split. The resolution completes the
// write: success. The code before took the first sight itself, returned
// the parent and answered ErrOutcomeUnknown ("resolved to another
// record").
//
// Both: the write is the session, read by another Store, in its own
// configuration (no decision made); an append's two copies have its T
// (reclaimed touches them).
func TestReclaimedCompletesOwn(t *testing.T) {
	for _, c := range []struct {
		name           string
		seen, appended bool
		want           string
	}{{"seen", true, false, "v3"}, {"unseen", false, false, "v3"}, {"seen-append", true, true, "v23"}, {"unseen-append", false, true, "v23"}} {
		t.Run(c.name, func(t *testing.T) {
			eachVariant(t, "own", "code-before", memcached.SetReclaimedNotOwn, func(t *testing.T, broken bool, set func(*memcached.Store)) {
				const key = "reclaimown"
				r := heldWriteFailover(t, key, true, c.appended, set)
				var waits atomic.Int32
				memcached.SetWriterWait(r.a, func(k string) {
					if k == key {
						waits.Add(1)
					}
				})
				p := rawGet(t, r.cands[0], key)
				env, payload, _ := envAt(t, r.cands[0], key)
				require.Equal(t, c.want, payload, "the rig: P holds the write")
				life := 60
				if c.appended {
					life = 5 // the append's T (1 min) on both copies is then the writer's touch
				}
				rawSet(t, r.cands[0], key, p.value, life, p.flags) // re-stamped: the fence is refused
				r.cut.Store(false)                                 // Q answers the writer again
				q, _, _ := envAt(t, r.cands[1], key)
				require.Equal(t, env.V-1, q.V, "the rig: Q holds the write's parent")
				if c.seen {
					got, err := r.a.Get(context.Background(), key)
					require.NoError(t, err)
					require.Equal(t, "v2", string(got.Value), "the first sight of the split returns the parent")
					require.Zero(t, waits.Load(), "the rig: the Get did not wait")
				}
				r.release()
				err := recvWithin(t, r.wrote, "the writer's answer")
				require.Equal(t, int32(1), r.refused.Load(), "the fence was refused and the session resolved")
				switch {
				case broken && c.seen:
					require.NoError(t, err, "the code before: completed after the wait")
					require.Equal(t, int32(1), waits.Load(), "the code before: the writer waited on its own write")
				case broken:
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the parent at the first sight")
					require.ErrorContains(t, err, "resolved to another record")
					require.Zero(t, waits.Load())
					return
				default:
					require.NoError(t, err, "the writer completes its own write")
					require.Zero(t, waits.Load(), "no wait on the writer's own in-flight mark")
				}
				for _, addr := range []string{r.cands[0], r.cands[1]} {
					got, _, _ := envAt(t, addr, key)
					require.Equal(t, env.ID(), got.ID(), "the write itself on %s: completed in its own configuration", addr)
				}
				if c.appended {
					requireTouched(t, key, false, r.cands[0], r.cands[1])
				}
				requireSessionIs(t, r.servers, key, c.want, "the write is the session")
			})
		})
	}
}
