package memcached_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-resume-4 N4 (reproduced on real memcached, no node fault): an
// Add's secondary CAS gets no reply (it lands late), so the Add reports
// ErrOutcomeUnknown, its primary CAS never sent, and its creator lists it
// as unknown at the secondary (R8's resumption: any blank on the primary
// will do). A stale R9 witness CAS of an earlier session of the id, of
// configuration (c1, c2) whose third node is c0, sent with the token of
// the very blank the Add read on c0, lands there. A reader's R4.4 then
// completed the creation over that witness (a present y): the session
// whole and served with the creator's entry unchanged; a Delete that does
// not hear the secondary removes the primary's copy and the witness (an
// unknown outcome), a reader not hearing the secondary is told "not
// found", and the creator's next visit resumed the lone copy: served
// again, with no Add after the "not found".
//
// The fix: the reader re-ballots the creation over the foreign witness
// (R11.3's steps, the witness's node as w), a new identity, nowit, which
// the creator's resumption of its Add never matches; and it runs R9
// before it returns that nowit configuration (review-n4b F2): the
// witness of the new configuration replaces the Add's on c2, nowit
// cleared. The code before (SetCompleteOverWitness) serves the session
// again; nowit-fast-path (SetNoWitFastPath, the re-ballot before F2's
// fix) returns it nowit, R9 left to the queue (then-R9: run after).
func TestUnknownCreationForeignWitnessOnPrimary(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		before, fastPath, witR9 bool
	}{{"fix", false, false, false}, {"nowit-fast-path", false, true, false}, {"nowit-fast-path-then-R9", false, true, true}, {"code-before", true, false, false}} {
		t.Run(tc.name, func(t *testing.T) { foreignWitnessOnPrimary(t, tc.before, tc.fastPath, tc.witR9) })
	}
}

// foreignWitnessOnPrimary runs N4's trace; before: with the code before
// the fix; fastPath: the reader returns the nowit configuration before
// R9 (the code before review-n4b F2's fix); witR9: after the re-ballot,
// R9 instead of the Delete.
func foreignWitnessOnPrimary(t *testing.T, before, fastPath, witR9 bool) {
	const key = "resume-foreignwit"
	r := newResumeRig(t, key)
	ctx := context.Background()
	// The creator: its Add's secondary CAS is held in the network
	// (unreachQ then refuses new connections there); from then on
	// its messages are late until cut is cleared.
	var cut, wUnreach, unreachQ atomic.Bool
	armed := false
	var heldQ *heldConn
	s := r.cutCreator(t, &cut, &wUnreach, func(a string) bool { return unreachQ.Load() && a == r.cands[1] },
		func(a string, c net.Conn) net.Conn {
			if a != r.cands[1] {
				return c
			}
			return &heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armed, key: key},
				hook: func() { unreachQ.Store(true) }, onHold: func(h *heldConn) { heldQ = h }}
		})
	memcached.SetRepairQueueOff(s)
	var evMu sync.Mutex
	var details []string
	r.cfg.OnEvent = func(e provider.Event) {
		evMu.Lock()
		defer evMu.Unlock()
		details = append(details, e.Detail)
	}
	reader := r.store(t, nil)
	r.cfg.OnEvent = nil
	memcached.SetRepairQueueOff(reader)
	if before {
		memcached.SetCompleteOverWitness(reader)
	}
	if fastPath {
		memcached.SetNoWitFastPath(reader)
	}
	// The Add read three blanks, stored its witness on c2; its
	// CAS on c1 is held: unknown at the secondary.
	r.arm(&armed)
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	cut.Store(true)
	h := r.held(&heldQ)
	require.NotNil(t, h)
	reply, err := h.release()
	require.NoError(t, err)
	require.Equal(t, "HD", reply[:2], "the Add's secondary CAS landed late")
	require.Equal(t, 1, memcached.UnknownAdds(s))

	// The stale R9 witness CAS of configuration (c1, c2) lands on
	// c0's blank, with that blank's token (the one the Add read).
	mc := raw(t, r.cands[0])
	it, err := mc.Get(key)
	require.NoError(t, err)
	require.Empty(t, it.Value, "c0 holds the blank the Add read")
	v, f := memcached.WitnessItem(s, 0, 1, 2)
	it.Value, it.Flags, it.Expiration = v, f, 120
	require.NoError(t, mc.CompareAndSwap(it), "the late witness CAS lands")
	require.Equal(t, [3]uint32{2, 1, 2}, kinds(t, r.cands, key), "a foreign witness on the primary, the creation on the secondary, its witness")

	got, err := reader.Get(ctx, key)
	require.NoError(t, err, "the reader returns the creation")
	require.Equal(t, "v1", string(got.Value), "whole, served")
	require.Equal(t, 1, memcached.UnknownAdds(s), "the creator's entry: still unknown at the secondary")
	if !before {
		// Re-balloted: both data copies hold one record of a new
		// epoch, c1 its primary; nowit and c2 still the Add's witness
		// with fastPath (R9 not run: the queue is off), else R9 run by
		// the reader: the new configuration's witness on c2, nowit
		// cleared.
		require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, r.cands, key))
		var envs [2]envelope.Envelope
		for i := range envs {
			env, _, err := envelope.Decode(rawGet(t, r.cands[i], key).value)
			require.NoError(t, err)
			envs[i] = env
		}
		require.Equal(t, envs[0].ID(), envs[1].ID(), "one record on both copies")
		require.Positive(t, envs[1].E, "a new epoch, not the creation's record")
		require.Equal(t, [2]uint8{1, 0}, [2]uint8{envs[1].P, envs[1].Q}, "the holder its primary, the witness's node its secondary")
		require.Equal(t, fastPath, envs[1].NoWit, "nowit until R9 stores its witness")
		wit, _, err := envelope.Decode(rawGet(t, r.cands[2], key).value)
		require.NoError(t, err)
		require.Equal(t, !fastPath, [3]uint32{envs[1].E, 1, 0} == [3]uint32{wit.E, uint32(wit.P), uint32(wit.Q)}, "the re-balloted configuration's witness on c2 (%+v) once R9 ran", wit)
		evMu.Lock()
		require.Contains(t, details, "a creation re-balloted over a foreign witness", "the reader's event")
		evMu.Unlock()
		if witR9 {
			memcached.RepairKey(reader, key)
			require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, r.cands, key), "two data copies and a witness")
			wit, _, err := envelope.Decode(rawGet(t, r.cands[2], key).value)
			require.NoError(t, err)
			require.Equal(t, [3]uint32{envs[1].E, 1, 0}, [3]uint32{wit.E, uint32(wit.P), uint32(wit.Q)}, "R9: the witness of the re-balloted configuration")
			for i := range 2 {
				env, _, err := envelope.Decode(rawGet(t, r.cands[i], key).value)
				require.NoError(t, err)
				require.False(t, env.NoWit, "R9 cleared nowit on c%d", i)
			}
			got, err := reader.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value))
			return
		}
	}
	// A Delete that does not hear the secondary: the other
	// present records removed, the outcome unknown (no fault).
	var refuseQ atomic.Bool
	refuseQ.Store(true)
	require.ErrorIs(t, r.store(t, refusingDial(r.cands[1], &refuseQ, nil)).Delete(ctx, key), provider.ErrOutcomeUnknown)
	require.ErrorIs(t, r.blindGet(t), provider.ErrNotFound, "a reader not hearing the secondary")

	// The creator's messages flow again; its visits.
	cut.Store(false)
	unreachQ.Store(false)
	for range 3 {
		memcached.RepairKey(s, key)
	}
	_, err = reader.Get(ctx, key)
	if before {
		require.NoError(t, err, "the code before: served again after \"not found\", with no Add since")
		return
	}
	require.Error(t, err, "not served again after \"not found\"")
	if fastPath {
		require.NotErrorIs(t, err, provider.ErrNotFound, "a record survives (the lone nowit copy): unconfirmed, not silence")
	} else {
		// R9 cleared nowit: the lone copy beside two empties is the
		// Delete's leftover, "not found" as the blind reader was told.
		require.ErrorIs(t, err, provider.ErrNotFound, "the Delete took effect")
	}
	t.Logf("after the Delete and the creator's visits: %v", err)
}
