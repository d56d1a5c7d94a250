package memcached_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// copiesOf decodes key's item on each of addrs and requires them to be the
// same record (every envelope field, payload), returning it and the
// trailers each carries.
func copiesOf(t *testing.T, key string, addrs ...string) (envelope.Envelope, []byte, []int) {
	t.Helper()
	var env envelope.Envelope
	var payload []byte
	var trailers []int
	for i, a := range addrs {
		raw := rawGet(t, a, key).value
		e, p, err := envelope.Decode(raw)
		require.NoError(t, err, a)
		n, ok := envelope.Trailers(raw)
		require.True(t, ok)
		trailers = append(trailers, n)
		if i == 0 {
			env, payload = e, p
			continue
		}
		require.Equal(t, env, e, "the copies' envelopes differ")
		require.Equal(t, payload, p, "the copies' payloads differ")
	}
	return env, payload, trailers
}

// TestWitnessAppend: CompareAndAppend in the witness scheme appends a
// trailer to both data copies (the same record on both: the envelope a
// whole write would carry, the payload with the delta), sets the caller's
// TTL, returns a handle the next append or CAS uses; the trailers are
// bounded (MaxTrailers, then ErrNoAppend: the change is written whole,
// which compacts); a stale handle is refused with nothing changed,
// including the TTL of the other writer's record (the touch follows only a
// stored append).
func TestWitnessAppend(t *testing.T) {
	servers, s := witnessSetup(t, memcached.Config{})
	ctx := context.Background()
	key := "app"
	cands := memcached.WitnessCandidates(s, key)
	id, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.NoError(t, err)
	base, _, _ := copiesOf(t, key, cands[0], cands[1])
	want := "v1"
	for i := range memcached.MaxTrailers {
		d := "d" + strconv.Itoa(i)
		newID, touched, err := s.CompareAndAppend(ctx, key, []byte(d), id, 30*time.Minute)
		require.NoError(t, err, "append %d", i)
		require.Equal(t, newID, touched)
		require.NotEqual(t, id, newID)
		id, want = newID, want+d
		env, payload, trailers := copiesOf(t, key, cands[0], cands[1])
		require.Equal(t, want, string(payload))
		require.Equal(t, []int{i + 1, i + 1}, trailers)
		require.Equal(t, base.V+uint64(i)+1, env.V)
		require.Equal(t, uint32(1800), env.Timeout)
		for _, a := range cands[:2] {
			require.InDelta(t, 1800, rawGet(t, a, key).ttl, 2, "the append's TTL on %s", a)
		}
	}
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, want, string(e.Value))
	_, _, err = s.CompareAndAppend(ctx, key, []byte("x"), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNoAppend, "past MaxTrailers")
	id, err = s.CompareAndSwap(ctx, key, []byte("w"), e.CAS, time.Minute)
	require.NoError(t, err)
	_, _, trailers := copiesOf(t, key, cands[0], cands[1])
	require.Equal(t, []int{0, 0}, trailers, "a whole write compacts")
	_, _, err = s.CompareAndAppend(ctx, key, []byte("y"), id, time.Minute)
	require.NoError(t, err)

	// A stale handle: another process's write since. Refused, nothing
	// changed, that writer's TTL kept: with a handle just read the touch
	// goes with the append and lands on the other record, whose own T is
	// put back (the broken variant, memcached.SetAppendNoUntouch, leaves
	// the caller's); with the handle of a write the touch is not sent.
	other := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	for _, tc := range []struct {
		name         string
		read, broken bool
	}{{"read", true, false}, {"written", false, false}, {"read, broken", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.broken {
				memcached.SetAppendNoUntouch(s)
			}
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			stale := e.CAS
			if !tc.read {
				stale, err = s.CompareAndSwap(ctx, key, []byte("mine"), e.CAS, time.Minute)
				require.NoError(t, err)
			}
			o, err := other.Get(ctx, key)
			require.NoError(t, err)
			_, err = other.CompareAndSwap(ctx, key, []byte("other"), o.CAS, 40*time.Second)
			require.NoError(t, err)
			before := [2]rawItem{rawGet(t, cands[0], key), rawGet(t, cands[1], key)}
			_, _, err = s.CompareAndAppend(ctx, key, []byte("z"), stale, 30*time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict)
			for i, a := range cands[:2] {
				after := rawGet(t, a, key)
				require.Equal(t, before[i].value, after.value)
				require.Equal(t, before[i].cas, after.cas)
				if tc.broken {
					require.Greater(t, after.ttl, int64(1000), "the broken variant kept its T: the test cannot tell")
					continue
				}
				require.LessOrEqual(t, after.ttl, int64(45), "the refused append's touch left its T on the other writer's record")
			}
		})
	}

	// A handle just read (the record another process's): the touch goes
	// with the append, and sets the new record's T.
	e, err = s.Get(ctx, key)
	require.NoError(t, err)
	_, _, err = s.CompareAndAppend(ctx, key, []byte("p"), e.CAS, 20*time.Minute)
	require.NoError(t, err)
	_, payload, _ := copiesOf(t, key, cands[0], cands[1])
	require.Equal(t, "otherp", string(payload))
	for _, a := range cands[:2] {
		require.InDelta(t, 1200, rawGet(t, a, key).ttl, 3, "the pipelined append's TTL on %s", a)
	}
}

// TestWitnessAppendUndoExactPreImage: an append stored on Q and refused by
// P (P holds a competitor: another write of the same version) is undone:
// Q gets back the exact bytes it held, trailers included (the handle's
// base), and the call fails with ErrCASConflict. The broken variant
// (memcached.SetUndoWholeBase: the base re-encoded whole, the same
// identity) is caught.
func TestWitnessAppendUndoExactPreImage(t *testing.T) {
	_, s := witnessSetup(t, memcached.Config{})
	ctx := context.Background()
	for _, broken := range []bool{false, true} {
		key := "undo" + strconv.FormatBool(broken)
		cands := memcached.WitnessCandidates(s, key)
		if broken {
			memcached.SetUndoWholeBase(s)
		}
		id, err := s.Add(ctx, key, []byte("v1"), time.Minute)
		require.NoError(t, err)
		_, _, err = s.CompareAndAppend(ctx, key, []byte("d1"), id, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		pre := rawGet(t, cands[1], key).value
		_, _, trailers := copiesOf(t, key, cands[0], cands[1])
		require.Equal(t, []int{1, 1}, trailers)

		// P: a competitor, the next version of another write.
		env, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
		require.NoError(t, err)
		comp := env.Next(12345, env.Timeout)
		rawSet(t, cands[0], key, comp.Wrap(append(payload, "c"...)), 60, 1)

		_, _, err = s.CompareAndAppend(ctx, key, []byte("d2"), e.CAS, time.Minute)
		require.ErrorIs(t, err, provider.ErrCASConflict)
		got := rawGet(t, cands[1], key).value
		if broken {
			require.False(t, bytes.Equal(pre, got), "the broken variant restored the exact bytes: the test cannot tell")
			continue
		}
		require.Equal(t, pre, got, "the undo did not restore Q's exact pre-image")
	}
}

// TestWitnessAppendTooLarge: an append that would make the items exceed
// memcached's item size (-I) is refused by both copies with nothing
// written: CompareAndAppend fails with ErrTooLarge (the provider then
// writes whole), the copies unchanged; a whole CAS still works.
func TestWitnessAppendTooLarge(t *testing.T) {
	servers := mcserver.StartForTest(t, 3, mcserver.Config{MemoryMB: 32, MaxItemSize: 1024, Args: []string{"-o", "slab_chunk_max=1024"}})
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
	ctx := context.Background()
	// The largest value that fits, within 8 bytes: an append of 30 bytes
	// then does not.
	var key string
	var id uint64
	for n := 1000; n > 0; n -= 8 {
		key = "big" + strconv.Itoa(n)
		var err error
		if id, err = s.Add(ctx, key, bytes.Repeat([]byte("x"), n), time.Minute); err == nil {
			break
		}
	}
	require.NotZero(t, id)
	cands := memcached.WitnessCandidates(s, key)
	before := [2][]byte{rawGet(t, cands[0], key).value, rawGet(t, cands[1], key).value}
	_, _, err := s.CompareAndAppend(ctx, key, bytes.Repeat([]byte("d"), 30), id, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	for i, a := range cands[:2] {
		require.Equal(t, before[i], rawGet(t, a, key).value)
	}
	_, err = s.CompareAndSwap(ctx, key, []byte("small"), id, time.Minute)
	require.NoError(t, err)
}

// TestWitnessAppendAfterFlushNotTooLarge (the simulation's note in commit
// a9e5645): both data copies are flushed between the read and the append,
// so each append is answered NS (the key is gone); right after P's reply a
// reader's anomaly read makes a blank there (`mg … N30`). The look that
// tells "gone" from "too large" then finds the blank, which is not the
// item the append was conditioned on: the copy was lost, and
// CompareAndAppend reports the session not found, never ErrTooLarge.
// SetAppendFullByPresence (the code before: any item found means too
// large) reports ErrTooLarge: the negative control. Both with the touch
// in the append's round trip and in a second one.
func TestWitnessAppendAfterFlushNotTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name             string
		twoTrips, broken bool
	}{{"pipelined", false, false}, {"two-trips", true, false}, {"pipelined/broken", false, true}, {"two-trips/broken", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "appflush"
			var blankAt string
			servers, s, cands, arm := afterReplyStore(t, key, 0, func(*memcached.Store) { rawBlank(t, blankAt, key) })
			blankAt = cands[0]
			if tc.twoTrips {
				memcached.SetAppendTwoTrips(s)
			}
			if tc.broken {
				memcached.SetAppendFullByPresence(s)
			}
			ctx := context.Background()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.NoError(t, err)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			for _, a := range cands[:2] {
				require.NoError(t, serverAt(t, servers, a).FlushAll(ctx))
			}
			arm()
			_, _, err = s.CompareAndAppend(ctx, key, []byte("d"), e.CAS, time.Minute)
			require.Error(t, err)
			require.True(t, rawGet(t, cands[0], key).found, "the reader's blank on P")
			if tc.broken {
				require.ErrorIs(t, err, provider.ErrTooLarge, "the code before: the blank taken for the item")
				return
			}
			require.NotErrorIs(t, err, provider.ErrTooLarge)
			require.ErrorIs(t, err, provider.ErrNotFound, "both copies lost")
		})
	}
}

// rawBlank makes a blank of key on addr as an anomaly read does (`mg <key>
// N30` on a miss).
func rawBlank(t testing.TB, addr, key string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Write([]byte("mg " + key + " c N30\r\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "HD"), line)
}
