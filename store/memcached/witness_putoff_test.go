package memcached_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
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

// startHeldGet starts s.Get(key) and returns once the call waits in
// holdFirstCall (held closed); the call's error comes on the returned
// channel once it is released.
func startHeldGet(s *memcached.Store, key string, held <-chan struct{}) <-chan error {
	heldErr := make(chan error, 1)
	go func() {
		_, err := s.Get(context.Background(), key)
		heldErr <- err
	}()
	<-held
	return heldErr
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
// resuming it at its first probe tick, with no bound (SetPutOffUnbounded:
// a build that put the resumption off, bounded, resumed it all the same
// after a few visits). The first build put the
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
			} else {
				memcached.SetPutOffUnbounded(s) // only the narrowing can resume it while a call is held (rv-r9b m3)
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

			heldErr := startHeldGet(s, key, held)
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
// returns it and queues the key: only the repair client clears nowit. One
// Get of the same process held inside its anomaly reads all along and a
// stream of 32 more have it cleared all the same, with no bound
// (SetPutOffUnbounded: only the narrowing clears it while the call is
// held), and the loop visits the key a few times, not once per call. The
// first build put the clear off while any Get was resolving (never
// cleared while one is held) and queued the key again at every last
// call's end (2,186 visits in 3 s at 32 Gets).
func TestRepairClearsNoWitUnderOwnGets(t *testing.T) {
	const maxVisits = 50 // the fix: 1 to 7 (each visit clears or finds it cleared); the first build: hundreds
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
			var held <-chan struct{}
			var release func()
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if firstBuild {
					memcached.SetRepairPutsOffAll(s)
				} else {
					memcached.SetPutOffUnbounded(s)
				}
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						visits.Add(1)
					}
				})
				held, release = holdFirstCall(s, key)
			}))
			defer release()
			heldErr := startHeldGet(r, key, held)
			_, stop := getStream(r, key, 32)
			cleared := func() bool { return !nowit() }
			if firstBuild {
				require.Never(t, cleared, 1500*time.Millisecond, 5*time.Millisecond,
					"the first build cleared nowit while a call of its process was resolving the key")
				stop()
				t.Logf("the first build: not cleared in 1.5 s; %d loop visits of the key", visits.Load())
				return
			}
			require.Eventually(t, cleared, 3*time.Second, 5*time.Millisecond,
				"nowit cleared while the process's Gets resolve the key")
			stop()
			n := visits.Load()
			t.Logf("cleared; %d loop visits of the key", n)
			require.LessOrEqual(t, n, int64(maxVisits), "the loop's visits of the key")
			release()
			require.NoError(t, <-heldErr, "the held Get, released, returns the session")
		})
	}
}

// TestRepairPutOffBounded (rv-r9 M1's bound, rv-r9b m1): a call of the
// process held inside its anomaly reads of a nowit configuration with a
// blank third node: R9 there is a decision the call makes itself (R4.3),
// so the repair client puts its visits off, but only PutOffBound in a row
// and a Timeout: a visit past both runs R9. Visits in a burst within the
// Timeout (the calls' own enqueues) are all put off. SetPutOffUnbounded
// and the first build put it off for as long as the call runs.
func TestRepairPutOffBounded(t *testing.T) {
	for _, variant := range []string{"fix", "unbounded", "first-build"} {
		t.Run(variant, func(t *testing.T) {
			const key = "putoff-bound"
			servers, cfg, cands := noWitBlankThird(t, key)
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
			heldErr := startHeldGet(r, key, held)
			witnessed := func() bool { return kinds(t, cands, key)[1] == 2 }

			start := time.Now()
			for range memcached.PutOffBound + 1 {
				memcached.RepairKey(r, key)
			}
			if burst := time.Since(start); burst < cfg.Timeout {
				require.False(t, witnessed(), "%d visits within a Timeout (%s) are all put off", memcached.PutOffBound+1, burst)
			} else {
				t.Logf("the burst took %s, past the Timeout: not asserted", burst)
			}
			visits := memcached.PutOffBound + 1
			deadline := start.Add(3 * cfg.Timeout)
			for ; time.Now().Before(deadline) && !witnessed(); visits++ {
				memcached.RepairKey(r, key)
				time.Sleep(cfg.Timeout / 10) // paces the visits (the re-queues' stand-in); bounded by the deadline
			}
			if variant != "fix" {
				require.False(t, witnessed(), "%s: R9 run while the call is held", variant)
				return
			}
			require.True(t, witnessed(), "R9 run once a Timeout passed since the first visit put off")
			require.GreaterOrEqual(t, time.Since(start), cfg.Timeout)
			t.Logf("R9 run at visit %d, %s after the first", visits, time.Since(start))
			release()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
		})
	}
}

// TestPutOffRecordEndsWithEpisode (rv-r9b M1): the repair client's record
// of a key's put-off visits is deleted by the first visit that is not put
// off. Kept (SetPutOffRecordKept, r9fix's build), its count of
// PutOffBound outlived the episode, and when a new failover left the key
// a nowit configuration again, the first visit ran R9 at once while a
// call of the process was resolving the key (seed 11238's collision).
func TestPutOffRecordEndsWithEpisode(t *testing.T) {
	for _, kept := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "record-kept"}[kept], func(t *testing.T) {
			const key = "putoff-episodes"
			servers, cfg, cands := noWitBlankThird(t, key)
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if kept {
					memcached.SetPutOffRecordKept(s)
				}
			}))
			putOffEpisode(t, r, cands, key)
			memcached.RepairKey(r, key) // the key healthy: a visit not put off

			if !kept {
				require.Equal(t, 0, memcached.PutOffRecords(r), "episode 1 over: no record left")
			}
			noWitAgain(t, servers, cfg, cands, key) // episode 2
			k := visitWhileCallHeld(t, r, cands, key, func() { memcached.RepairKey(r, key) })
			if kept {
				require.Equal(t, [3]uint32{1, 1, 2}, k, "record-kept: episode 2's first visit ran R9 while the call was held")
				return
			}
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's first visit put off: R9 is the held call's")
		})
	}
}

// TestPutOffRecordStale (rv-r9b M1, the staleness rule): a record of
// put-off visits whose deleting visit is not reached counts as absent
// once its last put-off is more than 4 Timeouts old. The
// put-off's re-queue reaches the repair loop, which is busy (here the
// loop-visit hook holds it; in production a visit of another key over
// slow nodes takes up to repairKey's bound, 4 Timeouts and
// FailoverAfter): the record of episode 1 (PutOffBound visits put off
// while a call was held) stays after the call has run R9. Past 4
// Timeouts, a new failover leaves the key a nowit configuration with a
// blank third again, a call of the process resolves it, and the loop's
// visit of the key is reached at last: episode 2's first visit, put off
// (R9 is the call's). With the staleness rule alone off
// (SetPutOffNeverStale), the old count made that visit run R9 at once
// while the call was held. The test's sleep is the record's ageing
// itself, not a wait for a condition.
func TestPutOffRecordStale(t *testing.T) {
	for _, neverStale := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "never-stale"}[neverStale], func(t *testing.T) {
			const key = "putoff-stale"
			servers, cfg, cands := noWitBlankThird(t, key)
			type loopVisit struct {
				key  string
				gate chan struct{}
			}
			visits, done := make(chan loopVisit), make(chan struct{})
			rcfg := cfg
			rcfg.Timeout = 100 * time.Millisecond
			stale := 4 * rcfg.Timeout // the rule: a last put-off more than 4 Timeouts old
			r := newStore(t, servers, memcached.WithHooks(rcfg, func(s *memcached.Store) {
				if neverStale {
					memcached.SetPutOffNeverStale(s)
				}
				memcached.SetLoopVisit(s, func(k string) { // the loop held at each visit until the test lets it go
					v := loopVisit{k, make(chan struct{})}
					select {
					case visits <- v:
						select {
						case <-v.gate:
						case <-done:
						}
					case <-done:
					}
				})
			}))
			t.Cleanup(func() { close(done) }) // before r's Close (cleanups run last first)
			nextVisit := func(what string) loopVisit {
				t.Helper()
				select {
				case v := <-visits:
					return v
				case <-time.After(5 * time.Second):
					t.Fatalf("no loop visit: %s", what)
					return loopVisit{}
				}
			}

			putOffEpisode(t, r, cands, key)
			lastPutOff := time.Now()
			stalled := nextVisit("the first put-off's re-queue") // held in the loop
			require.Equal(t, key, stalled.key)
			require.Equal(t, 1, memcached.PutOffRecords(r), "episode 1's record left: its deleting visit not reached")

			noWitAgain(t, servers, cfg, cands, key) // episode 2
			k := visitWhileCallHeld(t, r, cands, key, func() {
				time.Sleep(time.Until(lastPutOff.Add(stale + 10*time.Millisecond))) // the record's ageing
				memcached.Enqueue(r, key)                                           // the loop's next visit, held: it shows the stalled one ended
				close(stalled.gate)
				nextVisit("the visit after the stalled one")
			})
			if neverStale {
				require.Equal(t, [3]uint32{1, 1, 2}, k, "never-stale: episode 1's count made episode 2's first visit run R9 while the call was held")
				return
			}
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's first visit put off: R9 is the held call's")
			require.Equal(t, 1, memcached.PutOffRecords(r), "episode 2's record")
		})
	}
}

// putOffEpisode is episode 1 of the tests of r's record of put-off
// visits (key a nowit configuration, its third node blank: R9 is a
// decision a call makes too): a call of r resolving key is held while
// PutOffBound visits are put off, then released: it runs R9.
func putOffEpisode(t *testing.T, r *memcached.Store, cands []string, key string) {
	t.Helper()
	held, release := holdFirstCall(r, key)
	defer release()
	heldErr := startHeldGet(r, key, held)
	for range memcached.PutOffBound {
		memcached.RepairKey(r, key)
	}
	require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "episode 1: the visits put off")
	require.Equal(t, 1, memcached.PutOffRecords(r))
	release()
	require.NoError(t, <-heldErr)
	require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "episode 1: the call ran R9")
}

// noWitAgain makes key (after putOffEpisode: data on cands[0] and
// cands[2], the witness on cands[1]) a nowit configuration with a blank
// third again: cands[2] loses the key, and a Store of cfg fails over.
func noWitAgain(t *testing.T, servers []*mcserver.Server, cfg memcached.Config, cands []string, key string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx))
	setup := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		memcached.SetRepairQueueOff(s)
		memcached.SetNoWitFastPath(s)
	}))
	_, err := setup.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, [3]uint32{1, 1, 0}, kinds(t, cands, key), "episode 2: nowit, the third blank")
}

// visitWhileCallHeld runs visit (a visit of key by r's repair client)
// while a call of r resolving key is held, and returns key's kinds on
// cands as visit left them; the call, released, must return the session.
func visitWhileCallHeld(t *testing.T, r *memcached.Store, cands []string, key string, visit func()) [3]uint32 {
	t.Helper()
	held, release := holdFirstCall(r, key)
	defer release()
	heldErr := startHeldGet(r, key, held)
	visit()
	k := kinds(t, cands, key)
	release()
	require.NoError(t, <-heldErr)
	return k
}

// TestPutOffRecordsDoNotLeak (rv-r9b M1): many sessions, one data node
// flushed; for each key whose Get resolves an anomaly, the Get is held
// while the repair client visits the key (put off: the failover is the
// call's). Once every call has returned, the put-offs' re-queues visit the
// keys and no record is left. Kept (SetPutOffRecordKept), one record per
// key ever put off stayed for the life of the process.
func TestPutOffRecordsDoNotLeak(t *testing.T) {
	for _, kept := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "record-kept"}[kept], func(t *testing.T) {
			servers := startNodes(t, 3)
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
			ctx := context.Background()
			s0 := newStore(t, servers, cfg)
			const n = 100
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("putoff-leak-%d", i)
				_, err := s0.Add(ctx, keys[i], []byte("v"), time.Minute)
				require.NoError(t, err)
			}
			require.NoError(t, servers[1].FlushAll(ctx))
			gate := make(chan struct{})
			var mu sync.Mutex
			holding := map[string]chan struct{}{}
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if kept {
					memcached.SetPutOffRecordKept(s)
				}
				memcached.SetCallResolving(s, func(k string) {
					mu.Lock()
					h := holding[k]
					delete(holding, k)
					mu.Unlock()
					if h != nil {
						close(h)
						<-gate
					}
				})
			}))
			var wg sync.WaitGroup
			heldKeys := 0
			for _, k := range keys {
				h := make(chan struct{})
				mu.Lock()
				holding[k] = h
				mu.Unlock()
				done := make(chan struct{})
				wg.Go(func() {
					defer close(done)
					_, err := r.Get(ctx, k)
					require.NoError(t, err)
				})
				select {
				case <-h:
					heldKeys++
					memcached.RepairKey(r, k)
				case <-done: // no anomaly: the flushed node held none of k's copies
					mu.Lock()
					delete(holding, k)
					mu.Unlock()
				}
			}
			held := memcached.PutOffRecords(r)
			t.Logf("%d keys held; %d records while held", heldKeys, held)
			require.Positive(t, held, "visits put off while the calls are held")
			close(gate)
			wg.Wait()
			gone := func() bool { return memcached.PutOffRecords(r) == 0 }
			if kept {
				require.Never(t, gone, 3*cfg.Timeout, 10*time.Millisecond, "record-kept: the records stay")
				t.Logf("record-kept: %d records left after all calls returned", memcached.PutOffRecords(r))
				return
			}
			require.Eventually(t, gone, 4*cfg.Timeout, 10*time.Millisecond,
				"no record left once the calls returned and the re-queues visited the keys")
		})
	}
}
