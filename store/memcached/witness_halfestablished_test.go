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

// The simulation's expiry seed 11238 (seventh session of 2026-12-01): a
// failover's fence left pending on P and the copy it made on Q, a base
// of 3 or 4 s giving the copy 1 or 2 (copyExp): §4's Half-established
// state with an expiring copy. A reader must complete it (re-stamp Q,
// keeping its expiry; clear P's flag with a second less than P had, so
// that no chain of decisions keeps the session alive untouched: cold
// review rv-half m1) and return the session at once. Another record on P
// (not the fence of Q's) lends Q nothing: no decision (rv-half m2). The code before (SetHalfEstablishedWaits) took the expiring copy
// for an expiring base, made no decision and waited a second per read,
// until Q expired and then P did: the simulation's final request waited
// out its 4 s deadline on a session that was still alive.
func TestHalfEstablishedExpiringCompleted(t *testing.T) {
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
		other  bool // P holds another record (not Q's, pending): no completion
	}{{"fix", nil, false}, {"code-before", memcached.SetHalfEstablishedWaits, false}, {"another-record", nil, true}} {
		t.Run(c.name, func(t *testing.T) {
			servers, s, cands := addedSession(t, "halfest")
			const key = "halfest"
			failOverToWitness(t, servers, s, cands, key)
			// Give Q's copy 2 s (below copyExp's margin). c.other: another
			// record on P (rv-half m2), not the fence of Q's record, so
			// nothing may lend its life to Q's expiring copy: no decision,
			// as on any expiring base.
			env := fenceBackPending(t, cands, key, c.other)
			require.NoError(t, raw(t, cands[2]).Touch(key, 2))

			s2 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			if c.broken != nil {
				c.broken(s2)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
			defer cancel()
			e, err := s2.Get(ctx, key)
			if c.broken != nil || c.other {
				require.ErrorIs(t, err, provider.ErrUnavailable, "no decision on the expiring copy: the read waits for it")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "v1", string(e.Value))
			p, q := rawGet(t, cands[0], key), rawGet(t, cands[2], key)
			penv, _, err := envelope.Decode(p.value)
			require.NoError(t, err)
			require.False(t, penv.Pending, "the fence's flag cleared")
			require.Equal(t, env.ID(), penv.ID(), "P completed to the record Q holds")
			require.LessOrEqual(t, q.ttl, int64(2), "the completion extended Q's copy")
			require.LessOrEqual(t, p.ttl, int64(29), "P's copy completed with a second less than it had (rv-half m1)")
			require.Greater(t, p.ttl, int64(20), "the completion shortened P's copy by more than that")
		})
	}
}

// fenceBackPending leaves key, failed over by failOverToWitness (from c0
// onto c2, R7's x and third: P = c0, Q = c2, c1 the witness), §4's
// Half-established: the fence back on P, pending, with 30 s. other: a
// record on P that is not that fence (its nonce moved). It returns the
// record Q holds.
func fenceBackPending(t *testing.T, cands []string, key string, other bool) envelope.Envelope {
	t.Helper()
	env, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
	require.NoError(t, err)
	require.Equal(t, [2]uint8{0, 2}, [2]uint8{env.P, env.Q}, "the configuration failed over to")
	fence := env
	fence.Pending = true
	if other {
		fence.Nonce++
	}
	rawSet(t, cands[0], key, fence.Wrap(payload), 30, 1)
	return env
}
