package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// rv-d4 m1 (BackupOn, real memcached): the primary's memcached is killed
// while the Store still takes it for up, and a write (a whole CAS, or an
// append) is sent with its backup half in parallel (the Store knows the
// pair: it added the key). The primary's request is never sent: the
// Store has no connection to it (they were closed, as when the node was
// marked down: CloseIdle), and the dial is refused: ErrUnavailable,
// nothing written there (notSentError). A Store that still holds a
// connection the kill closed sends the write on it and answers unknown
// already (EOF after the request was sent). The
// backup half lands, and the backup copy serves the key from now on: to
// this Store, and to s2, which reads the write there. The write's outcome
// is unknown, not ErrUnavailable alone, which callers take for "nothing
// written". The broken variant (SetUnavailableBare) answers
// ErrUnavailable alone, as before.
func TestUnsentPrimaryBackupLanded(t *testing.T) {
	for _, conns := range []memcached.ConnMode{memcached.ConnsPooled, memcached.ConnsPipelined} {
		for _, op := range []string{"cas", "append"} {
			for _, broken := range []bool{false, true} {
				name := map[memcached.ConnMode]string{memcached.ConnsPooled: "pooled", memcached.ConnsPipelined: "pipelined"}[conns] + "/" + op + map[bool]string{false: "", true: "/broken"}[broken]
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					servers := startNodes(t, 2)
					s1 := newStore(t, servers, memcached.Config{Conns: conns, HealthCheckInterval: time.Hour})
					s2 := newStore(t, servers, memcached.Config{})
					if broken {
						memcached.SetUnavailableBare(s1)
					}
					const key = "sl:unsent"
					_, err := s1.Add(ctx, key, record(1, "one"), time.Minute)
					require.NoError(t, err)
					en, _, delta := readLocking(t, s1, key)
					primary, backup := s1.Placement(key)
					srv := serverAt(t, servers, primary)
					srv.Kill()
					require.False(t, srv.Running())
					// Its connections are closed, as after the node was
					// marked down and up again: the next request dials.
					memcached.CloseIdle(s1)
					var want []byte
					switch op {
					case "cas":
						want = record(2, "two")
						_, err = s1.CompareAndSwap(ctx, key, want, en.CAS, time.Minute)
					case "append":
						want = append(append([]byte(nil), en.Value...), delta...)
						_, _, err = s1.CompareAndAppend(ctx, key, delta, en.CAS, time.Minute)
					}
					t.Logf("%s: %v", op, err)
					require.ErrorIs(t, err, provider.ErrUnavailable)
					it, gerr := raw(t, backup).Get("bak:" + key)
					require.NoError(t, gerr)
					require.Equal(t, want, it.Value, "the backup half landed")
					got, gerr := s2.Get(ctx, key)
					require.NoError(t, gerr)
					require.Equal(t, want, got.Value, "another Store reads the write on the backup copy")
					if broken {
						require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary's request was not sent")
						return
					}
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				})
			}
		}
	}
}
