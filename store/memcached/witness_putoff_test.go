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

// The repair client puts off the decisions a call of its own process
// resolving the same key makes too (TestRepairLeavesKeyToResolvingCall);
// the tests below are the cold review rv-r9's. SetRepairPutsOffAll is the
// first build of that change: every visit put off while a call resolves
// the key, without bound, and queued again at once when the last call
// ends.

// holdFirstCall makes s's first call that starts resolving key wait until
// the returned release is called (the call counts as resolving key all
// that time); held is closed once it waits.
func holdFirstCall(s *memcached.Store, key string) (held <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	var once sync.Once
	memcached.SetCallResolving(s, func(k string) {
		if k != key {
			return
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(h)
			<-r
		}
	})
	var rel sync.Once
	return h, func() { rel.Do(func() { close(r) }) }
}

// getStream runs k goroutines calling s.Get(key) until the returned stop
// is called (which waits for them); ok counts the Gets that returned the
// session.
func getStream(s *memcached.Store, key string, k int) (ok *atomic.Int64, stop func()) {
	ok = new(atomic.Int64)
	var done atomic.Bool
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for !done.Load() {
				if _, err := s.Get(context.Background(), key); err == nil {
					ok.Add(1)
				}
			}
		})
	}
	return ok, func() { done.Store(true); wg.Wait() }
}

// TestRepairResumesCreationUnderOwnGets (rv-r9 M1 a): R8's resumption is
// the repair client's alone; a call of the creator reading its creation
// of unknown outcome (one copy, two empties) answers ErrUnconfirmed and
// decides nothing. The creator's own Gets of the key, one of them held
// inside its anomaly reads all along, never stop the repair client from
// resuming it at its first probe tick. The first build put the
// resumption off while any call of the process was resolving the key:
// with 16 to 32 of the creator's Gets in a loop it was never resumed
// (none served in 4 s), and past the creation's timeout it was dropped.
func TestRepairResumesCreationUnderOwnGets(t *testing.T) {
	for _, firstBuild := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "first-build"}[firstBuild], func(t *testing.T) {
			const key = "resume-own-gets"
			r := newResumeRig(t, key)
			var unreachable atomic.Bool
			armed := false
			s := r.creator(t, 0, &armed, &unreachable, func(c armedConn, lost func()) net.Conn {
				return &droppedConn{armedConn: c, hook: lost}
			})
			if firstBuild {
				memcached.SetRepairPutsOffAll(s)
			}
			held, release := holdFirstCall(s, key)
			defer release()
			ctx := context.Background()
			r.arm(&armed)
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary CAS lost")
			require.NoError(t, serverAt(t, r.servers, r.cands[2]).FlushAll(ctx))
			require.Equal(t, 1, memcached.UnknownAdds(s))
			unreachable.Store(false)

			heldErr := make(chan error, 1)
			go func() {
				_, err := s.Get(ctx, key)
				heldErr <- err
			}()
			<-held
			ok, stop := getStream(s, key, 16)
			resumed := func() bool { return memcached.UnknownAdds(s) == 0 && ok.Load() > 0 }
			if firstBuild {
				require.Never(t, resumed, 1500*time.Millisecond, 10*time.Millisecond,
					"the first build resumed the creation while a call of its process was resolving the key")
				stop()
				t.Logf("the first build: not resumed in 1.5 s (6 probe ticks), %d unknown add", memcached.UnknownAdds(s))
				return
			}
			require.Eventually(t, resumed, 5*time.Second, 5*time.Millisecond,
				"the creation resumed and served while the creator's own Gets resolve it")
			stop()
			release()
			require.NoError(t, <-heldErr, "the held Get, released, returns the session")
		})
	}
}

// TestRepairClearsNoWitUnderOwnGets (rv-r9 M1 b, M2): a nowit
// configuration whose third node already holds its witness (R9's nowit
// clear refused). Every read of it is an anomaly read (R2), and R4.3
// returns it and queues the key: only the repair client clears nowit. A
// stream of 32 Gets of the same process has it cleared all the same, and
// the loop visits the key a few times, not once per call. The first
// build put the clear off while any Get was resolving (not cleared in 3 s
// at 32 Gets) and queued the key again at every last call's end (2,186
// visits in 3 s).
func TestRepairClearsNoWitUnderOwnGets(t *testing.T) {
	const maxVisits = 50 // the fix: 1 to 5 (each visit clears or finds it cleared); the first build: hundreds
	for _, firstBuild := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "first-build"}[firstBuild], func(t *testing.T) {
			const key = "nowit-own-gets"
			servers, cfg, cands := noWitBlankThird(t, key)
			ctx := context.Background()
			acfg := cfg
			acfg.OnEvent = func(e provider.Event) {
				if e.Detail == "witness restored" {
					rawRestamp(t, cands[0], key) // R9's nowit clear is refused
				}
			}
			a := newStore(t, servers, memcached.WithHooks(acfg, memcached.SetRepairQueueOff))
			_, err := a.Get(ctx, key)
			require.NoError(t, err)
			nowit := func() bool {
				env, _, err := envelope.Decode(rawGet(t, cands[0], key).value)
				require.NoError(t, err)
				return env.NoWit
			}
			require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "the witness on c1")
			require.True(t, nowit(), "setup: the witness there, nowit not cleared")

			var visits atomic.Int64
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if firstBuild {
					memcached.SetRepairPutsOffAll(s)
				}
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						visits.Add(1)
					}
				})
			}))
			_, stop := getStream(r, key, 32)
			cleared := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !cleared; {
				cleared = !nowit()
				if !cleared {
					time.Sleep(5 * time.Millisecond) // polls the node (the condition), bounded by the deadline
				}
			}
			stop()
			n := visits.Load()
			t.Logf("cleared %v; %d loop visits of the key", cleared, n)
			if firstBuild {
				require.False(t, cleared && n <= maxVisits, "the first build: cleared with few visits (%d)", n)
				return
			}
			require.True(t, cleared, "nowit cleared while the process's Gets resolve the key")
			require.LessOrEqual(t, n, int64(maxVisits), "the loop's visits of the key")
		})
	}
}

// TestRepairPutOffBounded (rv-r9 M1's bound): a call of the process held
// inside its anomaly reads of a nowit configuration with a blank third
// node: R9 there is a decision the call makes itself (R4.3), so the
// repair client puts its visits off, but only PutOffBound in a row: the
// next one runs R9. SetPutOffUnbounded and the first build put it off for
// as long as the call runs.
func TestRepairPutOffBounded(t *testing.T) {
	for _, variant := range []string{"fix", "unbounded", "first-build"} {
		t.Run(variant, func(t *testing.T) {
			const key = "putoff-bound"
			servers, cfg, cands := noWitBlankThird(t, key)
			ctx := context.Background()
			var held <-chan struct{}
			var release func()
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				switch variant {
				case "unbounded":
					memcached.SetPutOffUnbounded(s)
				case "first-build":
					memcached.SetRepairPutsOffAll(s)
				}
				held, release = holdFirstCall(s, key)
			}))
			defer release()
			heldErr := make(chan error, 1)
			go func() {
				_, err := r.Get(ctx, key)
				heldErr <- err
			}()
			<-held
			witnessed := func() bool { return kinds(t, cands, key)[1] == 2 }

			memcached.RepairKey(r, key)
			require.False(t, witnessed(), "the first visit is put off: R9 is the held call's decision")
			visits := 1
			for ; visits < 2*(memcached.PutOffBound+1) && !witnessed(); visits++ {
				memcached.RepairKey(r, key)
			}
			if variant != "fix" {
				require.False(t, witnessed(), "%s: R9 run while the call is held", variant)
				return
			}
			require.True(t, witnessed(), "R9 run after at most %d visits put off", memcached.PutOffBound)
			require.LessOrEqual(t, visits, memcached.PutOffBound+1)
			release()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
		})
	}
}
