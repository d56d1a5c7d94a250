package memcached_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// recvWithin returns what ch carries, failing t if nothing comes within a
// generous bound (the bound of a wait on a condition, not an assertion on
// how long it took).
func recvWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: nothing within 20s", what)
		panic("unreachable")
	}
}

// TestSameProcessWaitsForWriter is §16's item 2 (rv-roll2 M2): in one
// process (one Store: the conformance suite, an app server's goroutines) a
// write P refused (re-stamped) and Q stored is, while its writer has not
// yet read P, a plain split that the process's own calls see: the first
// Get returns the parent (first sight), the second would complete it.
// Completing it raced the writer: once the session moved more than
// envelope.Lineage versions on, the writer could not tell it was completed
// (ErrOutcomeUnknown, the stalled writer's reason, with no fault). The
// second Get now waits for the writer's call to end (at most one Timeout
// and its context), P keeping the parent meanwhile, then reads again:
//   - waits: the writer released, its own completion stores the write, it
//     answers success and the waiting Get returns the write;
//   - code-before (SetSameProcessCompletes, with SetSplitCompletes and
//     SetFarNotAppliedOff: the code before §16 items 1 and 4 too): the
//     second Get completes the write onto P while the writer is held;
//     Lineage+1 writes through the same Store move the session on;
//     released, the writer answers ErrOutcomeUnknown, the stalled writer
//     (item 4's row without item 1's rule would answer ErrCASConflict
//     here, for a write built on: the row holds only because no call but
//     the writer's own completes such a split);
//   - past-the-bound: the writer held past one Timeout (a small one): the
//     Get rolls the split back (R4.4′, §16 item 1: no call but the
//     writer's own completes it) and returns the parent with a usable
//     handle; the writer, released, finds both copies holding the parent:
//     ErrCASConflict (not applied), and the Get's handle writes;
//     past-half-the-deadline: the same with a Get whose deadline is nearer
//     than one Timeout (its budget is half the time left);
//   - context-ends: the waiting Get's context ends: ErrUnavailable, and
//     nothing was completed (P holds the parent).
func TestSameProcessWaitsForWriter(t *testing.T) {
	const key = "samewait"
	for _, c := range []struct {
		name       string
		timeout    time.Duration
		codeBefore bool
		cancel     bool
		release    bool          // release the writer once the second Get waits
		deadline   time.Duration // the second Get's deadline (0: none)
	}{
		// Timeouts above recvWithin's bound where the Get must be woken by
		// the writer's end or its context, not by the budget running out
		// (cold review rv-wait M1: with 10 s, a reader never woken by the
		// writer's end, or deaf to its context, passed).
		{name: "waits", timeout: time.Minute, release: true},
		{name: "code-before", timeout: 10 * time.Second, codeBefore: true},
		{name: "past-the-bound", timeout: time.Second},
		// A Get whose deadline (2 s) is nearer than the budget's end (one
		// Timeout, a minute) waits at most half the time left, then
		// completes as before and answers in time (rv-wait m2: it waited
		// to its deadline and failed).
		{name: "past-half-the-deadline", timeout: time.Minute, deadline: 2 * time.Second},
		{name: "context-ends", timeout: time.Minute, cancel: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			servers := startNodes(t, 3)
			s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: c.timeout, FailoverAfter: 2 * time.Second})
			cands := memcached.WitnessCandidates(s, key)
			ctx := context.Background()
			e := writtenOnce(t, s, key)
			if c.codeBefore {
				memcached.SetSameProcessCompletes(s)
				memcached.SetSplitCompletes(s)
				memcached.SetFarNotAppliedOff(s)
			}
			held, release := make(chan struct{}), make(chan struct{})
			var holdOnce sync.Once
			memcached.SetBeforeCompleteOwn(s, func(k string) {
				if k == key {
					holdOnce.Do(func() { close(held) })
					<-release
				}
			})
			waits := make(chan struct{}, 8)
			memcached.SetWriterWait(s, func(k string) {
				if k == key {
					waits <- struct{}{}
				}
			})
			parentOnP := func(why string) {
				t.Helper()
				_, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
				require.NoError(t, err)
				require.Equal(t, "v2", string(payload), why)
			}
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token, Q stores it.
			rawSet(t, cands[0], key, rawGet(t, cands[0], key).value, 60, 1)
			wrote := make(chan error, 1)
			go func() {
				_, err := s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
				wrote <- err
			}()
			recvWithin(t, held, "the writer held before its own completion reads P")
			defer func() {
				// Never leave the writer held (a failed assertion).
				select {
				case <-release:
				default:
					close(release)
				}
			}()

			first, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v2", string(first.Value), "first sight: the parent")
			require.Zero(t, first.CAS, "first sight: no usable handle")

			gctx, cancel := context.WithCancel(ctx)
			if c.deadline > 0 {
				gctx, cancel = context.WithTimeout(ctx, c.deadline)
			}
			defer cancel()
			type got struct {
				e   provider.Entry
				err error
			}
			second := make(chan got, 1)
			go func() {
				e, err := s.Get(gctx, key)
				second <- got{e, err}
			}()

			if c.codeBefore {
				g := recvWithin(t, second, "the second Get")
				require.NoError(t, g.err)
				require.Equal(t, "v3", string(g.e.Value), "the code before: the second sight completes the write")
				require.Empty(t, waits, "the code before: no wait")
				for i := range envelope.Lineage + 1 {
					cur, err := s.Get(ctx, key)
					require.NoError(t, err)
					_, err = s.CompareAndSwap(ctx, key, fmt.Appendf(cur.Value, "+%d", i), cur.CAS, time.Minute)
					require.NoError(t, err, "write %d through the same Store", i)
				}
				close(release)
				err := recvWithin(t, wrote, "the writer's answer")
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the stalled writer")
				require.ErrorContains(t, err, stalledWriter)
				return
			}

			select {
			case <-waits:
			case g := <-second:
				t.Fatalf("the second Get answered (%q, %v) without waiting for the writer", g.e.Value, g.err)
			case <-time.After(20 * time.Second):
				t.Fatal("the second Get neither waits for the writer nor answers within 20s")
			}
			parentOnP("while the Get waits, nothing completes the write onto P")
			switch {
			case c.cancel:
				cancel()
				g := recvWithin(t, second, "the second Get")
				require.ErrorIs(t, g.err, provider.ErrUnavailable, "the Get's context ended while it waited")
				parentOnP("a Get that gave up waiting completed nothing")
				close(release)
				require.NoError(t, recvWithin(t, wrote, "the writer's answer"), "the writer's own completion")
				requireSessionIs(t, servers, key, "v3", "the writer completed its write")
			case c.release:
				select {
				case g := <-second:
					t.Fatalf("the second Get answered (%q, %v) while the writer was held", g.e.Value, g.err)
				default:
				}
				close(release)
				require.NoError(t, recvWithin(t, wrote, "the writer's answer"), "the writer's own completion")
				g := recvWithin(t, second, "the second Get")
				require.NoError(t, g.err)
				require.Equal(t, "v3", string(g.e.Value), "read again after the writer ended: its write")
				require.NotZero(t, g.e.CAS)
			default: // past the bound (one Timeout, or half the deadline): the writer still held
				g := recvWithin(t, second, "the second Get")
				require.NoError(t, g.err, "past its budget the Get rolls the split back")
				require.Equal(t, "v2", string(g.e.Value), "rolled back: the parent")
				require.NotZero(t, g.e.CAS, "rolled back: a usable handle")
				require.Empty(t, wrote, "the writer is still held")
				require.Equal(t, rawGet(t, cands[0], key).value, rawGet(t, cands[1], key).value, "rolled back: Q holds P's bytes")
				parentOnP("rolled back: P keeps the parent")
				close(release)
				require.ErrorIs(t, recvWithin(t, wrote, "the writer's answer"), provider.ErrCASConflict, "rolled back: the write was not applied")
				_, err := s.CompareAndSwap(ctx, key, []byte("v4"), g.e.CAS, time.Minute)
				require.NoError(t, err, "the roll-back's handle writes")
				requireSessionIs(t, servers, key, "v4", "the Get's handle wrote")
				return
			}
			requireSessionIs(t, servers, key, "v3", "the write is the session")
		})
	}
}
