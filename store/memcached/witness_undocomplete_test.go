package memcached_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestUndoCompletesStalledCompletion (make soak's repair-every-default, 4 s
// after a flush, no fault in flight: an append answered 500, "cas: undoing
// the secondary: outcome of write unknown: cas mismatch / cas mismatch"):
// P refused the write only because it was re-stamped (R9 re-making the
// flushed witness re-stamps P, then Q, whose re-stamp the write then
// refuses), Q stored it, and a reader's R4.4 completion of the write
// re-stamped Q before the writer's own completion (completeOwn) could, then
// stalled before its CAS of P (a descheduled goroutine). The writer's
// re-stamp of Q and its undo were both refused by that re-stamp, and the
// undo read both copies five times in a row, each showing P the base and Q
// the write: unknown, though the split is one any reader completes, and
// completes to the write. The undo now completes it itself as R4.4 does
// (Q re-stamped, then P CASed, with the tokens just read), and the next
// read of both copies finds the write on both: success.
// SetUndoNoComplete is the code before.
func TestUndoCompletesStalledCompletion(t *testing.T) {
	for _, c := range []struct {
		name           string
		append, broken bool
	}{
		{"cas", false, false},
		{"append", true, false},
		{"cas, code before", false, true},
		{"append, code before", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "undostall"
			var q string
			// Right after Q stored the write: the reader's re-stamp of Q
			// (its CAS of P never comes: stalled).
			servers, s, cands, arm := afterReplyStore(t, key, 1, func(*memcached.Store) {
				it := rawGet(t, q, key)
				rawSet(t, q, key, it.value, 60, 1)
			})
			q = cands[1]
			if c.broken {
				memcached.SetUndoNoComplete(s)
			}
			ctx := context.Background()
			e := writtenOnce(t, s, key)
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token.
			rawSet(t, cands[0], key, rawGet(t, cands[0], key).value, 60, 1)
			arm()
			var err error
			want := "v3"
			if c.append {
				want = "v2d"
				_, _, err = s.CompareAndAppend(ctx, key, []byte("d"), e.CAS, time.Minute)
			} else {
				_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			}
			if c.broken {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the rig: the undo refused, the completion stalled")
				require.ErrorContains(t, err, "cas: undoing the secondary")
				return
			}
			require.NoError(t, err, "the split (P the base, Q the write) completes to the write")
			for _, a := range cands[:2] {
				require.Contains(t, string(rawGet(t, a, key).value), want, "the write on %s", a)
			}
			requireSessionIs(t, servers, key, want, "the write is the session")
		})
	}
}

// TestUndoCompletionNotOverPromise (rv-undo7 m1): the undo's completion
// of its stalled split (TestUndoCompletesStalledCompletion's rig) writes
// no record over a promise (R11.3): a decision's promise of epoch 9 on Q
// right after Q stored the write (in place of the reader's re-stamp), or
// on P (in place of R9's re-stamp). The call answers unknown and the
// promise stays. The broken variants drop one check each and write over
// the promise.
func TestUndoCompletionNotOverPromise(t *testing.T) {
	for _, c := range []struct {
		name      string
		onQ       bool
		broken    func(*memcached.Store)
		violation bool
	}{
		{name: "Q promised", onQ: true},
		{name: "P promised"},
		{name: "Q promised, check dropped", onQ: true, broken: memcached.SetUndoCompleteOverPromise, violation: true},
		{name: "P promised, check dropped", broken: memcached.SetCompleteOwnOverPromise, violation: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			const key = "undopromise"
			var q string
			_, s, cands, arm := afterReplyStore(t, key, 1, func(*memcached.Store) {
				if c.onQ {
					promiseAt(t, q, key, 9)
					return
				}
				it := rawGet(t, q, key)
				rawSet(t, q, key, it.value, 60, 1) // the stalled reader's re-stamp
			})
			q = cands[1]
			if c.broken != nil {
				c.broken(s)
			}
			e := writtenOnce(t, s, key)
			promised := cands[0]
			if c.onQ {
				rawSet(t, cands[0], key, rawGet(t, cands[0], key).value, 60, 1) // R9's re-stamp of P
				promised = q
			} else {
				promiseAt(t, cands[0], key, 9)
			}
			arm()
			_, err := s.CompareAndSwap(context.Background(), key, []byte("v3"), e.CAS, time.Minute)
			_, _, prom := envAt(t, promised, key)
			if c.violation {
				require.NoError(t, err, "the broken variant completes the write")
				require.Zero(t, prom, "the broken variant wrote over the promise")
				return
			}
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.Equal(t, uint32(9), prom, "no record written over the promise")
			_, payload, _ := envAt(t, cands[0], key)
			require.Equal(t, "v2", payload, "P keeps the base")
		})
	}
}

// TestUndoBothHeldTouchesPrimary (helper undom's model finding,
// UndoBothHeldUntouched): an append that P refused (re-stamped by R9) and
// Q stored; a reader completing it re-stamps Q (so the writer's own
// completion and its undo are refused) and copies Q's appended item onto
// P before Q's touch, giving P Q's old life (here 3 s). The undo's read
// finds the write on both copies and acknowledges it, touching P with the
// write's T first: P lives as long as the session. The code before
// (SetUndoBothHeldUntouched) acknowledged it with P about to expire, one
// flush of Q from losing the write.
func TestUndoBothHeldTouchesPrimary(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "undobothheld"
			var p, q string
			var started atomic.Bool
			var writes atomic.Int32
			servers, s, cands, arm := armedStore(t, key, 1, 700*time.Millisecond, func(c armedConn) net.Conn {
				return &stagedConn{
					afterReplyConn: afterReplyConn{armedConn: c, hook: func() {
						// The reader's re-stamp of Q, right after Q stored
						// the append.
						rawSet(t, q, key, rawGet(t, q, key).value, 60, 1)
						started.Store(true)
					}},
					before: func() {
						// Before the undo's CAS of Q (the second write of
						// Q after the append: the writer's completion's is
						// the first), the reader's copy onto P, old life.
						if started.Load() && writes.Add(1) == 2 {
							rawSet(t, p, key, rawGet(t, q, key).value, 3, 1)
						}
					},
				}
			})
			p, q = cands[0], cands[1]
			if broken {
				memcached.SetUndoBothHeldUntouched(s)
			}
			ctx := context.Background()
			e := writtenOnce(t, s, key)
			rawSet(t, p, key, rawGet(t, p, key).value, 60, 1) // R9's re-stamp of P
			arm()
			_, _, err := s.CompareAndAppend(ctx, key, []byte("d"), e.CAS, time.Minute)
			require.NoError(t, err, "the write on both copies: applied")
			require.EqualValues(t, 2, writes.Load(), "the rig: the undo's CAS of Q sent after the copy")
			ttl := rawGet(t, p, key).ttl // before any read touches it
			require.Equal(t, rawGet(t, q, key).value, rawGet(t, p, key).value, "the appended item on both copies")
			requireSessionIs(t, servers, key, "v2d", "the write is the session")
			if broken {
				require.LessOrEqual(t, ttl, int64(3), "the code before: P keeps the old life")
				return
			}
			require.Greater(t, ttl, int64(3), "P touched with the write's T before the acknowledgement")
		})
	}
}

// stagedConn is afterReplyConn that also runs before ahead of each
// `ms <key>` it writes.
type stagedConn struct {
	afterReplyConn
	before func()
}

func (c *stagedConn) Write(b []byte) (int, error) {
	if strings.HasPrefix(string(b), "ms "+c.key+" ") {
		c.before()
	}
	return c.afterReplyConn.Write(b)
}
