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
// clear P's flag, each keeping its own expiry) and return the session at
// once. The code before (SetHalfEstablishedWaits) took the expiring copy
// for an expiring base, made no decision and waited a second per read,
// until Q expired and then P did: the simulation's final request waited
// out its 4 s deadline on a session that was still alive.
func TestHalfEstablishedExpiringCompleted(t *testing.T) {
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
	}{{"fix", nil}, {"code-before", memcached.SetHalfEstablishedWaits}} {
		t.Run(c.name, func(t *testing.T) {
			servers, s, cands := addedSession(t, "halfest")
			const key = "halfest"
			failOverToWitness(t, servers, s, cands, key)
			// The failover went from c0 onto c2 (R7's x and third): P = c0,
			// Q = c2, c1 the witness. Put the fence back on P, pending,
			// with 30 s, and give Q's copy 2 s (below copyExp's margin).
			env, payload, err := envelope.Decode(rawGet(t, cands[0], key).value)
			require.NoError(t, err)
			require.Equal(t, [2]uint8{0, 2}, [2]uint8{env.P, env.Q}, "the configuration failed over to")
			fence := env
			fence.Pending = true
			rawSet(t, cands[0], key, fence.Wrap(payload), 30, 1)
			require.NoError(t, raw(t, cands[2]).Touch(key, 2))

			s2 := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			if c.broken != nil {
				c.broken(s2)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
			defer cancel()
			e, err := s2.Get(ctx, key)
			if c.broken != nil {
				require.ErrorIs(t, err, provider.ErrUnavailable, "the code before waits for the expiring copy")
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
			require.LessOrEqual(t, p.ttl, int64(30), "the completion extended P's copy")
			require.Greater(t, p.ttl, int64(20), "the completion shortened P's copy")
		})
	}
}
