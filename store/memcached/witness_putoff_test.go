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
	return startHeldGetCtx(context.Background(), s, key, held)
}

// startHeldGetCtx is startHeldGet with the call's context.
func startHeldGetCtx(ctx context.Context, s *memcached.Store, key string, held <-chan struct{}) <-chan error {
	heldErr := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, key)
		heldErr <- err
	}()
	<-held
	return heldErr
}

// getStream runs k goroutines calling s.Get(key) until the returned stop
// is called (which waits for them; calling it again does nothing); ok
// counts the Gets that returned the session.
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
			defer stop() // a failed assertion must not leave the Gets running (rv-r9c m6)
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
			defer stop() // a failed assertion must not leave the Gets running (rv-r9c m6)
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
// off. Episode 1's call fails (its context cancelled: it decides nothing
// and ends no episode), another process runs R9, and the repair loop is
// held (so that no put-off check of a visit with no call resolving
// deletes the record first): the record is left to a visit of the
// healthy key. Kept (SetPutOffRecordKept, r9fix's build), its count of
// PutOffBound outlived the episode, and when a new failover left the key
// a nowit configuration again, the first visit ran R9 at once while a
// call of the process was resolving the key (seed 11238's collision).
func TestPutOffRecordEndsWithEpisode(t *testing.T) {
	for _, kept := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "record-kept"}[kept], func(t *testing.T) {
			const key = "putoff-episodes"
			servers, cfg, cands := noWitBlankThird(t, key)
			broken := func(*memcached.Store) {}
			if kept {
				broken = memcached.SetPutOffRecordKept
			}
			r := stalledStore(t, servers, cfg, key, broken)
			putOffEpisode(t, r, cands, key, false)
			_, err := newStore(t, servers, cfg).Get(context.Background(), key)
			require.NoError(t, err)
			require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "episode 1: another process ran R9")
			require.Equal(t, 1, memcached.PutOffRecords(r), "episode 1's record left")
			memcached.RepairKey(r, key) // the key healthy: a visit not put off

			if !kept {
				require.Equal(t, 0, memcached.PutOffCount(r, key), "episode 1 over: its count gone (the record, if any, only waits for its re-queue)")
			}
			k := episodeTwoFirstVisit(t, servers, cfg, r, cands, key)
			if kept {
				require.Equal(t, [3]uint32{1, 1, 2}, k, "record-kept: episode 2's first visit ran R9 while the call was held")
				return
			}
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's first visit put off: R9 is the held call's")
		})
	}
}

// TestPutOffRecordEndsWithCall (rv-r9b M1; rv-r9c m1): a call of the
// process resolving the key that answers ends the episode of the repair
// client's record of put-off visits, with no visit of the key needed: the
// put-off's re-queue reaches the repair loop, which is busy (here the
// loop-visit hook holds it; in production a visit of another key over
// slow nodes takes up to repairKey's bound, 4 Timeouts and
// FailoverAfter). Episode 1's call runs R9 and returns the session: its
// count is gone (the record, if any, only waits for its re-queue). A new failover leaves the key a nowit configuration
// with a blank third again, a call of the process resolves it: episode
// 2's first visit is put off (R9 is the call's). With a call's answer
// leaving the record (SetPutOffOutlivesEpisode), episode 1's count made
// that visit run R9 at once while the call was held. (The code before,
// tests13's TestPutOffRecordStale, aged the record out after 4 Timeouts
// instead: TestPutOffBoundSlowLoop.)
func TestPutOffRecordEndsWithCall(t *testing.T) {
	for _, outlives := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "outlives-episode"}[outlives], func(t *testing.T) {
			const key = "putoff-call-ends"
			servers, cfg, cands := noWitBlankThird(t, key)
			type loopVisit struct {
				key  string
				gate chan struct{}
			}
			visits, done := make(chan loopVisit), make(chan struct{})
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if outlives {
					memcached.SetPutOffOutlivesEpisode(s)
				}
				memcached.SetLoopVisit(s, func(k string) { // the loop held at each visit until the test ends
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

			putOffEpisode(t, r, cands, key, true)
			select {
			case v := <-visits: // a Timeout after the first put-off; held: it ends no episode
				require.Equal(t, key, v.key)
			case <-time.After(5 * time.Second):
				t.Fatal("no loop visit: the first put-off's re-queue")
			}
			if outlives {
				require.Equal(t, 1, memcached.PutOffRecords(r), "outlives-episode: episode 1's record left")
			} else {
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the call's answer ended episode 1")
			}

			k := episodeTwoFirstVisit(t, servers, cfg, r, cands, key)
			if outlives {
				require.Equal(t, [3]uint32{1, 1, 2}, k, "outlives-episode: episode 1's count made episode 2's first visit run R9 while the call was held")
				return
			}
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's first visit put off: R9 is the held call's")
		})
	}
}

// TestPutOffBoundSlowLoop (rv-r9c m1): one call of the process held
// inside its anomaly reads of a nowit configuration with a blank third
// node, the repair loop busy (its visit of the key held in the loop-visit
// hook), and the key's visits coming more than 4 Timeouts apart: one
// episode, so the count goes on, and the visit after PutOffBound put off
// runs R9. The code before (SetPutOffRecordAges, r9fix2) took each such
// visit's record for one left from an episode over: every visit was the
// first, and the bound never fired. The sleeps are the visits' spacing
// (the scenario itself), not waits for a condition.
func TestPutOffBoundSlowLoop(t *testing.T) {
	for _, ages := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[ages], func(t *testing.T) {
			const key = "putoff-slow-loop"
			servers, cfg, cands := noWitBlankThird(t, key)
			rcfg := cfg
			rcfg.Timeout = 100 * time.Millisecond
			gap := 4*rcfg.Timeout + 50*time.Millisecond // past the code before's age
			broken := func(*memcached.Store) {}
			if ages {
				broken = memcached.SetPutOffRecordAges
			}
			r := stalledStore(t, servers, rcfg, key, broken)
			held, release := holdFirstCall(r, key)
			defer release()
			heldErr := startHeldGet(r, key, held)
			for i := range memcached.PutOffBound {
				if i > 0 {
					time.Sleep(gap)
				}
				memcached.RepairKey(r, key)
				require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "visit %d put off", i+1)
				want := i + 1
				if ages {
					want = 1
				}
				require.Equal(t, want, memcached.PutOffCount(r, key), "visit %d's count", i+1)
			}
			time.Sleep(gap)
			memcached.RepairKey(r, key)
			k := kinds(t, cands, key)
			release()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
			if ages {
				require.Equal(t, [3]uint32{1, 0, 1}, k, "code-before: visit %d put off too", memcached.PutOffBound+1)
				return
			}
			require.Equal(t, [3]uint32{1, 2, 1}, k, "visit %d ran R9: the bound", memcached.PutOffBound+1)
		})
	}
}

// stalledStore is a Store of cfg over servers, broken applied to it,
// whose repair loop is held at its first visit of key (the loop busy: no
// visit of key is made) until the test's end, before its Close.
func stalledStore(t *testing.T, servers []*mcserver.Server, cfg memcached.Config, key string, broken func(*memcached.Store)) *memcached.Store {
	t.Helper()
	held := make(chan struct{})
	s := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		broken(s)
		memcached.SetLoopVisit(s, func(k string) {
			if k == key {
				<-held
			}
		})
	}))
	t.Cleanup(func() { close(held) }) // before s's Close (cleanups run last first)
	return s
}

// putOffEpisode is episode 1 of the tests of r's record of put-off
// visits (key a nowit configuration, its third node blank: R9 is a
// decision a call makes too): a call of r resolving key is held while
// PutOffBound visits are put off, then released. answer: the call runs
// R9 and returns the session; otherwise its context is cancelled first,
// and it fails having decided nothing.
func putOffEpisode(t *testing.T, r *memcached.Store, cands []string, key string, answer bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held, release := holdFirstCall(r, key)
	defer release()
	heldErr := startHeldGetCtx(ctx, r, key, held)
	for range memcached.PutOffBound {
		memcached.RepairKey(r, key)
	}
	require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "episode 1: the visits put off")
	require.GreaterOrEqual(t, memcached.PutOffCount(r, key), memcached.PutOffBound)
	if !answer {
		cancel()
	}
	release()
	err := <-heldErr
	if !answer {
		require.Error(t, err, "episode 1: the call, its context cancelled, fails")
		require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "episode 1: nothing decided")
		require.Equal(t, 1, memcached.PutOffRecords(r), "a call that fails ends no episode")
		return
	}
	require.NoError(t, err)
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

// episodeTwoFirstVisit starts episode 2 of key (noWitAgain) and returns
// key's kinds on cands as the first visit of r's repair client left them,
// made while a call of r resolving key is held (visitWhileCallHeld): {1,
// 1, 0} when the visit was put off (R9 is the call's), {1, 1, 2} when it
// ran R9 at once.
func episodeTwoFirstVisit(t *testing.T, servers []*mcserver.Server, cfg memcached.Config, r *memcached.Store, cands []string, key string) [3]uint32 {
	t.Helper()
	noWitAgain(t, servers, cfg, cands, key)
	return visitWhileCallHeld(t, r, cands, key, func() { memcached.RepairKey(r, key) })
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
// call's). Once every call has returned (each answer clears its key's
// count, the record left to its pending re-queue: rv-r9d (a), (d)), the
// put-offs' re-queues visit the keys and no record is left. Kept
// (SetPutOffRecordKept), one record per key ever put off stayed for the
// life of the process.
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
