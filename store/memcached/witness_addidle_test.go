package memcached_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestAddIdleProcessDeadCandidate (§9, R8; found by running 1,200 seeds
// of the simulation's kill kind, SimFailoverTime, seeds 192, 367, 707,
// 957): a process that has sent nothing to a dead candidate since its
// death, whose first call is an Add of a new session, creates the
// session (on the other two, nowit) once FailoverAfter has passed since
// that Add's unanswered read, as R4.5's anomaly read waits for the
// failure detection. The code before (SetAddNoWaitFailed) failed such an
// Add ErrUnavailable at once, however long the node had been dead: the
// failover time held only for processes that had traffic to the node.
func TestAddIdleProcessDeadCandidate(t *testing.T) {
	for _, before := range []bool{false, true} {
		for _, dead := range []int{2, 0} {
			name := map[bool]string{false: "fix", true: "code-before"}[before] + "/c" + strconv.Itoa(dead)
			t.Run(name, func(t *testing.T) {
				servers, s := witnessSetup(t, memcached.Config{})
				ctx := context.Background()
				key := "addidle" + strconv.Itoa(dead)
				cands := memcached.WitnessCandidates(s, key)
				serverAt(t, servers, cands[dead]).Kill()

				// A process with no traffic to the dead node yet.
				var fallbacks atomic.Int32
				cfg := memcached.Config{
					Backup:        memcached.BackupWitness,
					Timeout:       memcached.DefaultTimeout,
					FailoverAfter: 700 * time.Millisecond,
					OnEvent: func(e provider.Event) {
						if e.Kind == provider.EventFallback {
							fallbacks.Add(1)
						}
					},
				}
				idle := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
					if before {
						memcached.SetAddNoWaitFailed(s)
					}
				}))
				require.False(t, memcached.NodeFailed(idle, cands[dead]))
				_, err := idle.Add(ctx, key, []byte("v1"), time.Minute)
				if before {
					require.ErrorIs(t, err, provider.ErrUnavailable, "the code before: the Add fails at once")
					require.False(t, memcached.NodeFailed(idle, cands[dead]))
					return
				}
				require.NoError(t, err, "the Add waits for the failure detection, then creates the session without its witness")
				require.True(t, memcached.NodeFailed(idle, cands[dead]))
				require.Equal(t, int32(1), fallbacks.Load(), "created without its witness")
				for i, a := range cands {
					if i == dead {
						continue
					}
					env, _, err := envelope.Decode(rawGet(t, a, key).value)
					require.NoError(t, err)
					require.True(t, env.NoWit, "a data copy on %s, nowit", a)
				}
				e, err := s.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "v1", string(e.Value))
			})
		}
	}
}

// TestAddWaitEndsWhenNodeAnswers: an Add waiting for the failure
// detection of a silent candidate (addRead) reads the candidates again
// as soon as the node answers another command, and creates the session
// with its witness.
func TestAddWaitEndsWhenNodeAnswers(t *testing.T) {
	servers, s := witnessSetup(t, memcached.Config{})
	ctx := context.Background()
	const key = "addwait"
	cands := memcached.WitnessCandidates(s, key)
	srv := serverAt(t, servers, cands[2])
	srv.Kill()

	// A long FailoverAfter: the Add cannot end by the detection.
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2500 * time.Millisecond}
	var waiting atomic.Bool
	waitingCh := make(chan struct{})
	idle := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		memcached.SetWaitingFailed(s, cands[2], func() {
			if waiting.CompareAndSwap(false, true) {
				close(waitingCh)
			}
		})
	}))
	done := make(chan error, 1)
	go func() {
		_, err := idle.Add(ctx, key, []byte("v1"), time.Minute)
		done <- err
	}()
	select {
	case <-waitingCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the Add never waited for the failure detection")
	}
	require.NoError(t, srv.Restart(ctx))
	// Another command of the same process reaches the node (a Get of a
	// key whose primary it is): its reply ends the wait.
	other := ""
	for i := 0; other == ""; i++ {
		if k := "other" + strconv.Itoa(i); memcached.WitnessCandidates(idle, k)[0] == cands[2] {
			other = k
		}
	}
	_, err := idle.Get(ctx, other)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.NoError(t, <-done)
	require.False(t, memcached.NodeFailed(idle, cands[2]))
	require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, cands, key), "data on c0 and c1, the witness on c2")
}
