package memcached_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-n4b's traces (the cold review of review-resume-4 N4's fix,
// docs/replication-review-resume.md), on real memcached. An earlier
// session's late R9 witness CAS lands on the blank an Add A read on its
// primary c0, so A's primary CAS is refused; A undoes its witness on c2
// (stored) and its record on c1 (held in the network, refused later). A
// reader R finds the creation on c1, a foreign witness on c0 and c2
// blank, and re-ballots the creation onto (c1, c0). A write v2 is
// acknowledged, then c0 is flushed. Before review-n4b F2's fix R9 had not
// stored a witness by then (the repair queue is off); now R runs it
// before it returns the nowit configuration.
//
// TestCreationReballotLostPromise (review-n4b F1): R's fence on c1 is held
// too, so only its promise on c0 lands; R's next decision is R11.3's
// re-ballot of a promised copy, which copied the creation's nowit mark
// (none): after the flush R4.1 buried the lone copy and v2 was lost
// ("not found"). A creation's re-ballot is nowit now (as R7's failover),
// and R runs R9 before returning it (F2's fix): the witness is on c2
// before v2, and after the flush v2 is served (the code before F2's fix:
// the lone copy ErrUnconfirmed, TestCreationReballotUndoneWitness).
func TestCreationReballotLostPromise(t *testing.T) {
	t.Run("fix", func(t *testing.T) { creationReballot(t, true, "") })
	t.Run("code-before", func(t *testing.T) { creationReballot(t, true, "keeps-nowit") })
}

// TestCreationReballotUndoneWitness (review-n4b F2): the same trace, R's
// re-ballot not interrupted. With the completion over the witness of the
// code before (SetCompleteOverWitness), the configuration was whole, not
// nowit, with no witness: after the flush every reader was told "not
// found" (v2 lost). With the re-ballot (nowit) but R2 and R4.3 returning
// a nowit configuration before R9 (SetNoWitFastPath, the code before
// F2's fix) a reader hearing c1 gets ErrUnconfirmed and one not hearing
// c1 "not found" (R8's D6 window with every candidate answering). R
// runs R9 before it returns the nowit configuration now: the witness is
// on c2 before v2 is written, so after the flush v2 is served.
func TestCreationReballotUndoneWitness(t *testing.T) {
	t.Run("fix", func(t *testing.T) { creationReballot(t, false, "") })
	t.Run("nowit-fast-path", func(t *testing.T) { creationReballot(t, false, "nowit-fast-path") })
	t.Run("code-before", func(t *testing.T) { creationReballot(t, false, "complete") })
}

// creationReballot runs review-n4b's trace; holdFence: R's first fence on
// c1 is held (F1); before: "" the code now, "keeps-nowit"
// (SetReballotKeepsNoWit) or "complete" (SetCompleteOverWitness) the code
// before.
func creationReballot(t *testing.T, holdFence bool, before string) {
	const key = "creation-reballot"
	r := newResumeRig(t, key)
	ctx := context.Background()

	// The creator A: just before its primary CAS on c0 is sent, the
	// late witness CAS of (E3, c1, c2) lands on c0's blank (its token
	// the one A read), so A's CAS is refused; its undo on c1 is held.
	fwv, fwf := memcached.WitnessItem(r.store(t, nil), 3, 1, 2)
	armedQ := false
	var heldUndo *heldConn
	var msCount atomic.Int32
	creator := r.store(t, func(dctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(dctx, network, a)
		if err != nil {
			return nil, err
		}
		switch a {
		case r.cands[0]:
			return &hookConn{Conn: c, count: &msCount, nth: 1, key: key, hook: func() {
				mc := raw(t, r.cands[0])
				it, err := mc.Get(key)
				if err != nil || len(it.Value) != 0 {
					t.Errorf("c0 should hold the blank the Add read: %v", err)
					return
				}
				it.Value, it.Flags, it.Expiration = fwv, fwf, 120
				if err := mc.CompareAndSwap(it); err != nil {
					t.Errorf("the late witness CAS: %v", err)
				}
				r.arm(&armedQ)
			}}, nil
		case r.cands[1]:
			return &heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armedQ, key: key},
				onHold: func(h *heldConn) { heldUndo = h }}, nil
		}
		return c, nil
	})
	memcached.SetRepairQueueOff(creator)
	_, err := creator.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "A's undo on c1 got no reply")
	require.Equal(t, [3]uint32{2, 1, 0}, kinds(t, r.cands, key), "a foreign witness on c0, the creation on c1, A's witness undone on c2")
	require.NotNil(t, r.held(&heldUndo), "A's undo on c1 is held")

	// The reader R: with holdFence, its first write to c1 (the
	// re-ballot's fence) is held.
	armedR := holdFence
	var heldFence *heldConn
	reader := r.holdingStore(t, &armedR, "", &heldFence)
	memcached.SetRepairQueueOff(reader)
	switch before {
	case "keeps-nowit":
		memcached.SetReballotKeepsNoWit(reader)
	case "complete":
		memcached.SetCompleteOverWitness(reader)
	case "nowit-fast-path":
		memcached.SetNoWitFastPath(reader)
	}
	got, err := reader.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v1", string(got.Value), "served (observed)")
	require.Equal(t, holdFence, r.held(&heldFence) != nil, "R's first fence held")
	e1, _, err := envelope.Decode(rawGet(t, r.cands[1], key).value)
	require.NoError(t, err)
	if before == "" {
		// F2's fix: R ran R9 before it returned: the witness of the
		// re-balloted configuration is on c2, and nowit cleared.
		require.Equal(t, uint32(2), kinds(t, r.cands, key)[2], "the witness on the third node (R9 run by the reader)")
		require.False(t, e1.NoWit, "nowit cleared after R9's witness (%+v)", e1)
	} else {
		require.Equal(t, uint32(0), kinds(t, r.cands, key)[2], "no witness on the third node (R9 not run)")
		require.Equal(t, before == "nowit-fast-path", e1.NoWit, "nowit on the configuration served (%+v)", e1)
	}

	// The held messages land late, refused.
	r.held(&heldUndo).release()
	if holdFence {
		r.held(&heldFence).release()
	}
	_, err = reader.CompareAndSwap(ctx, key, []byte("v2"), got.CAS, time.Minute)
	require.NoError(t, err, "v2 acknowledged")

	// One fault: c0 flushed before R9.
	require.NoError(t, serverAt(t, r.servers, r.cands[0]).FlushAll(ctx))
	blind := r.blindGet(t)
	got, err = r.store(t, nil).Get(ctx, key)
	switch before {
	case "":
		require.NoError(t, err, "the witness on c2: a failover from c1's copy")
		require.Equal(t, "v2", string(got.Value))
		require.NotErrorIs(t, blind, provider.ErrNotFound, "a reader not hearing c1 sees the witness: never \"not found\"")
	case "nowit-fast-path":
		require.ErrorIs(t, err, provider.ErrUnconfirmed, "a reader hearing c1: the lone nowit copy, unconfirmed, not silence")
		require.Equal(t, uint32(1), kinds(t, r.cands, key)[1], "v2's copy survives on c1")
		// R8's D6 window: a reader not hearing c1 is told "not found".
		require.ErrorIs(t, blind, provider.ErrNotFound)
	default:
		require.ErrorIs(t, err, provider.ErrNotFound, "the code before: v2 lost, silently")
	}
}

// TestNoWitCreationReadRunsR9 (review-n4b F2's fix, its R2 half; the cold
// review's m3): R8's two-record creation, its creator holding the witness
// node c2 failed, leaves both copies nowit and c2 blank. A reader that
// hears c2 takes the record to the anomaly read (R2 does not return a
// nowit record) and runs R9 there before returning it (R4.3), so v2 is
// written with the witness in place and survives a flush of c0. With R2
// returning the record (SetNoWitR2Returns, or the code before,
// SetNoWitFastPath) R4.3 is never reached: after the flush the lone
// nowit copy is ErrUnconfirmed, and "not found" to a reader not hearing
// c1.
func TestNoWitCreationReadRunsR9(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook func(*memcached.Store)
	}{{"fix", nil}, {"r2-returns", memcached.SetNoWitR2Returns}, {"code-before", memcached.SetNoWitFastPath}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "nowit-r2"
			r := newResumeRig(t, key)
			ctx := context.Background()
			var cut, wUnreach atomic.Bool
			wUnreach.Store(true)
			creator := r.cutCreator(t, &cut, &wUnreach, nil, nil)
			r.suspectWitness(t, creator)
			_, err := creator.Add(ctx, key, []byte("v1"), time.Minute)
			require.NoError(t, err, "R8's two-record creation")
			require.Equal(t, uint32(0), kinds(t, r.cands, key)[2], "no witness on c2")

			cfg := r.cfg
			reader := newStore(t, r.servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				memcached.SetRepairQueueOff(s)
				if tc.hook != nil {
					tc.hook(s)
				}
			}))
			got, err := reader.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value))
			_, err = reader.CompareAndSwap(ctx, key, []byte("v2"), got.CAS, time.Minute)
			require.NoError(t, err, "v2 acknowledged")
			witnessed := kinds(t, r.cands, key)[2] == 2
			require.NoError(t, serverAt(t, r.servers, r.cands[0]).FlushAll(ctx), "c0 flushed")
			blind := r.blindGet(t)
			got, err = r.store(t, nil).Get(ctx, key)
			if tc.hook == nil {
				require.True(t, witnessed, "the reader's R9 stored the witness on c2 before v2")
				require.NoError(t, err, "a failover from c1's copy")
				require.Equal(t, "v2", string(got.Value))
				require.NotErrorIs(t, blind, provider.ErrNotFound, "a reader not hearing c1 sees the witness")
				return
			}
			require.False(t, witnessed, "R2 returned the nowit record: no R9")
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "the lone nowit copy")
			require.ErrorIs(t, blind, provider.ErrNotFound, "D6's window: v2 lost to a reader not hearing c1")
		})
	}
}
