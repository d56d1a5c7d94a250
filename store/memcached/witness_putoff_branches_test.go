package memcached_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestRepairPutOffBranches (rv-r9c m2): each branch of decide whose
// decision a call makes too is put off while a call of the process is
// resolving the key: a visit made then writes nothing on any candidate
// (and leaves a record of one put-off). The code before
// (SetRepairRacesCalls) made the decision at once. R9 on a nowit
// configuration is TestRepairPutOffBounded's.
func TestRepairPutOffBranches(t *testing.T) {
	const key = "putoff-branch"
	for _, br := range []struct {
		name  string
		setup func(t *testing.T) ([]*mcserver.Server, []string)
	}{
		{"R7-failover", func(t *testing.T) ([]*mcserver.Server, []string) {
			// The secondary's node flushed, the witness on c2: R7 fails
			// over onto c2.
			servers, _, cands := addedSession(t, key)
			require.NoError(t, serverAt(t, servers, cands[1]).FlushAll(context.Background()))
			return servers, cands
		}},
		{"R4.4-completion", func(t *testing.T) ([]*mcserver.Server, []string) {
			// §4's Half-established: the failover's fence left pending on
			// P (c0), its copy on Q (c2), with time left.
			servers, s, cands := addedSession(t, key)
			failOverToWitness(t, servers, s, cands, key)
			fenceBackPending(t, cands, key, false)
			return servers, cands
		}},
		{"R11.3-reballot", func(t *testing.T) ([]*mcserver.Server, []string) {
			// A dead decision's promise of epoch 4 on the secondary.
			servers, _, cands, _ := writtenSession(t, key)
			promiseAt(t, cands[1], key, 4)
			return servers, cands
		}},
		{"R4.1-lone-copy", func(t *testing.T) ([]*mcserver.Server, []string) {
			// One copy of a written session (not a creation's), the two
			// other candidates empty: its burial.
			servers, _, cands, _ := writtenSession(t, key)
			for _, a := range cands[1:] {
				require.NoError(t, serverAt(t, servers, a).FlushAll(context.Background()))
			}
			return servers, cands
		}},
		{"R4.1-R14-old-witness", func(t *testing.T) ([]*mcserver.Server, []string) {
			// An expired session: two blanks and its witness, old (R14's
			// burial, in R4.1's not-found branch).
			servers, s := witnessSetup(t, witnessConfig)
			cands := oldSession(t, s, key, time.Minute)
			expireCopies(t, cands, key, 2*time.Minute)
			return servers, cands
		}},
	} {
		for _, racing := range []bool{false, true} {
			t.Run(br.name+map[bool]string{false: "/fix", true: "/code-before"}[racing], func(t *testing.T) {
				servers, cands := br.setup(t)
				cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond}
				var held <-chan struct{}
				var release func()
				r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
					memcached.SetRepairQueueOff(s) // no loop visit: the test's is the only one
					if racing {
						memcached.SetRepairRacesCalls(s)
					}
					held, release = holdFirstCall(s, key)
				}))
				defer release()
				before := untimed(rawItems(t, cands, key))
				heldErr := startHeldGet(r, key, held)
				memcached.RepairKey(r, key)
				after := untimed(rawItems(t, cands, key))
				records := memcached.PutOffRecords(r)
				release()
				err := <-heldErr
				if racing {
					require.False(t, unwritten(before, after), "code-before: the visit decided while the call was held: %v", after)
					return
				}
				require.True(t, unwritten(before, after), "the visit wrote nothing while the call was held: %v, then %v", before, after)
				require.Equal(t, 1, records, "the visit put off")
				if !errors.Is(err, provider.ErrNotFound) {
					require.NoError(t, err, "the held call, released, answers")
				}
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the call's answer (%v) ended the episode (rv-r9d (c))", err)
			})
		}
	}
}

// untimed is its with the TTLs left out (the clock moves on).
func untimed(its [3]rawItem) [3]rawItem {
	for i := range its {
		its[i].ttl = 0
	}
	return its
}

// unwritten reports whether after holds what before did on each
// candidate, but for an item absent before that is a blank after (an
// anomaly read's own: its mg vivifies a blank on a miss).
func unwritten(before, after [3]rawItem) bool {
	for i := range before {
		switch {
		case !before[i].found && after[i].found:
			if len(after[i].value) != 0 || after[i].flags != 0 {
				return false
			}
		case !reflect.DeepEqual(before[i], after[i]):
			return false
		}
	}
	return true
}

// TestPutOffRequeue (rv-r9c m3): a visit put off queues the key again a
// Timeout later, one such re-queue per key at a time. A call of the
// process is held inside its anomaly reads of a nowit configuration with
// a blank third node; the loop's visits of the key are counted until the
// bound's visit runs R9. One visit put off: the loop visits the key a
// Timeout later, and again a Timeout after that, PutOffBound visits in
// all, the last running R9 (rv-r9 M2's spin, a re-queue at once, visited
// it thousands of times within the Timeout). A burst of PutOffBound+2
// visits within a Timeout: one re-queue, whose visit runs R9; one
// re-queue per visit put off brought as many loop visits.
func TestPutOffRequeue(t *testing.T) {
	for _, burst := range []int{1, memcached.PutOffBound + 2} {
		t.Run(map[bool]string{false: "one-visit", true: "burst"}[burst > 1], func(t *testing.T) {
			const key = "putoff-requeue"
			servers, cfg, cands := noWitBlankThird(t, key)
			var mu sync.Mutex
			var visits []time.Time
			loopVisits := func() []time.Time {
				mu.Lock()
				defer mu.Unlock()
				return append([]time.Time(nil), visits...)
			}
			var held <-chan struct{}
			var release func()
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						mu.Lock()
						visits = append(visits, time.Now())
						mu.Unlock()
					}
				})
				held, release = holdFirstCall(s, key)
			}))
			defer release()
			heldErr := startHeldGet(r, key, held)
			start := time.Now()
			for range burst {
				memcached.RepairKey(r, key)
			}
			if d := time.Since(start); d >= cfg.Timeout/2 {
				t.Skipf("the burst took %s, half a Timeout or more: the re-queue's timing not asserted", d)
			}
			require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "the visits put off")
			require.Eventually(t, func() bool { return kinds(t, cands, key)[1] == 2 }, 3*memcached.PutOffBound*cfg.Timeout, 10*time.Millisecond,
				"the bound's visit ran R9")
			want := memcached.PutOffBound
			if burst > 1 {
				want = 1
				// Every re-queue of the burst's visits would have come by now
				// plus the burst's length: wait that long for more.
				require.Never(t, func() bool { return len(loopVisits()) > want }, cfg.Timeout/2, 10*time.Millisecond,
					"one re-queue of the key at a time")
			}
			v := loopVisits()
			t.Logf("loop visits of the key after the first put-off: %v", offsets(start, v))
			require.Len(t, v, want, "the loop's visits of the key until R9")
			prev := start
			for i, at := range v {
				require.GreaterOrEqual(t, at.Sub(prev), cfg.Timeout/2, "loop visit %d: a Timeout after the put-off before it", i+1)
				prev = at
			}
			release()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
		})
	}
}

// offsets returns each of ts as its duration since start.
func offsets(start time.Time, ts []time.Time) []time.Duration {
	d := make([]time.Duration, len(ts))
	for i, at := range ts {
		d[i] = at.Sub(start).Round(time.Millisecond)
	}
	return d
}

// TestPutOffOneRequeueAcrossEpisodes (rv-r9d (a)): a key has at most one
// re-queue pending at a time, across episodes too. Episode 1's put-offs
// set a re-queue a Timeout later; the episode ends (its call answers; or
// its call fails and a visit with no call resolving the key decides,
// putOffForCall's end of an episode) and, before that re-queue comes
// (held when it fires: SetRequeueFired; rv-r9e n3, the test skipped
// when the episodes took half a Timeout), episode 2's first visit is put
// off.
// The record left for the pending re-queue takes the new count: one
// re-queue in all, one loop visit of the key. Deleting the record at the
// episode's end (SetRequeuesStack, r9fix3's first build) made the next
// put-off set a second re-queue beside the pending one: two loop visits,
// one per episode ended within a Timeout.
func TestPutOffOneRequeueAcrossEpisodes(t *testing.T) {
	for _, c := range []struct {
		ends  string
		stack bool
	}{{"call-answers", false}, {"call-answers", true}, {"visit-decides", false}, {"visit-decides", true}} {
		stack := c.stack
		t.Run(c.ends+map[bool]string{false: "/fix", true: "/requeues-stack"}[stack], func(t *testing.T) {
			const key = "putoff-one-requeue"
			servers, cfg, cands := noWitBlankThird(t, key)
			var mu sync.Mutex
			visits := 0
			loopVisits := func() int {
				mu.Lock()
				defer mu.Unlock()
				return visits
			}
			// Episode 1's re-queue is held when it fires until episode
			// 2's first visit was put off: it cannot come between them.
			hold := make(chan struct{})
			var once sync.Once
			releaseRequeues := func() { once.Do(func() { close(hold) }) }
			t.Cleanup(releaseRequeues) // before r's Close (cleanups run last first)
			r := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
				if stack {
					memcached.SetRequeuesStack(s)
				}
				memcached.SetRequeueFired(s, func(k string) {
					if k == key {
						<-hold
					}
				})
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						mu.Lock()
						visits++
						mu.Unlock()
					}
				})
			}))
			if c.ends == "call-answers" {
				putOffEpisode(t, r, cands, key, true)
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the call's answer ended episode 1")
			} else {
				putOffEpisode(t, r, cands, key, false) // the call fails: the episode goes on
				memcached.RepairKey(r, key)            // no call resolving the key: this visit decides
				require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "episode 1: the visit ran R9")
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the visit that decided ended episode 1")
			}
			k := episodeTwoFirstVisit(t, servers, cfg, r, cands, key)
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's first visit put off")
			releaseRequeues()
			if stack {
				require.Eventually(t, func() bool { return loopVisits() == 2 }, 4*cfg.Timeout, 10*time.Millisecond,
					"requeues-stack: a re-queue per episode")
				return
			}
			require.Eventually(t, func() bool { return loopVisits() == 1 }, 4*cfg.Timeout, 10*time.Millisecond, "episode 1's re-queue")
			// Only one timer was ever set: no second visit can come (a
			// visit with no call resolving decides and sets none).
			require.Never(t, func() bool { return loopVisits() > 1 }, cfg.Timeout, 10*time.Millisecond, "one re-queue of the key in all")
			require.Eventually(t, func() bool { return memcached.PutOffRecords(r) == 0 }, 2*cfg.Timeout, 10*time.Millisecond,
				"the re-queue's visit deleted the record")
		})
	}
}

// TestRepairPutOffR8Drop (rv-r9c m2): R8's drop in R4.1 is the repair
// client's alone, so it is not put off while a call of its process is
// resolving the key. The creator's Add of unknown outcome stored only its
// witness (TestUnknownCreationFencedOut's state: the secondary's CAS
// held on its connection); one of the creator's Gets is held inside its
// resolving, and one visit (RepairKey, the loop's own visits of the key
// blocked) fences the creation out and forgets it at once. Putting the
// drop off too (SetPutOffR8Drop) left the creation listed, the visit
// writing nothing, for as long as the call was held.
func TestRepairPutOffR8Drop(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "drop-put-off"}[broken], func(t *testing.T) {
			const key = "putoff-r8drop"
			r := newResumeRig(t, key)
			cands := r.cands
			unblock := make(chan struct{})
			var held <-chan struct{}
			var release func()
			r.cfg = memcached.WithHooks(r.cfg, func(s *memcached.Store) {
				memcached.SetRepairQueueOff(s)
				memcached.SetLoopVisit(s, func(k string) {
					if k == key {
						<-unblock // the test's visit is the only one
					}
				})
				if broken {
					memcached.SetPutOffR8Drop(s)
				}
				held, release = holdFirstCall(s, key)
			})
			s, arm, unreachable, heldCAS := r.heldCreator(t, 1)
			t.Cleanup(func() { close(unblock) }) // before the Store's Close (cleanups run last first)
			defer release()
			r.witnessOnlyAdd(t, s, arm, unreachable)
			require.False(t, memcached.NodeFailed(s, cands[1]), "setup: the creator hears the secondary's node")

			heldErr := startHeldGet(s, key, held)
			before := untimed(rawItems(t, cands, key))
			memcached.RepairKey(s, key)
			after := untimed(rawItems(t, cands, key))
			unknown, records := memcached.UnknownAdds(s), memcached.PutOffRecords(s)
			release()
			err := <-heldErr
			if broken {
				require.True(t, unwritten(before, after), "drop-put-off: the visit wrote nothing: %v, then %v", before, after)
				require.Equal(t, 1, records, "drop-put-off: the visit put off")
				require.Equal(t, 1, unknown, "drop-put-off: the creation still listed while the call was held")
				return
			}
			require.False(t, unwritten(before, after), "the visit fenced the creation's blanks: %v", after)
			require.Equal(t, 0, records, "the visit not put off")
			require.Equal(t, 0, unknown, "the visit forgot the creation while the call was held")
			require.ErrorIs(t, err, provider.ErrNotFound, "the held call, released")
			h := heldCAS()
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			require.Equal(t, "EX", reply[:2], "the late CAS refused: its blank was re-stamped")
		})
	}
}

// TestPutOffFirstPerEpisode (rv-r9e m1): each episode's bound counts from
// its own first put-off. Episode 1 ends by its call's answer while its
// re-queue is pending (the loop held), so its record is kept with the
// count cleared; a Timeout later episode 2 puts off a burst of
// PutOffBound+1 visits within a Timeout while a call is held: all put
// off. Kept from episode 1 (SetPutOffFirstKept), the first time was
// already a Timeout old and the burst's last visit ran R9 at once,
// racing the held call.
func TestPutOffFirstPerEpisode(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "first-kept"}[broken], func(t *testing.T) {
			const key = "putoff-first"
			servers, cfg, cands := noWitBlankThird(t, key)
			r := stalledStore(t, servers, cfg, key, func(s *memcached.Store) {
				if broken {
					memcached.SetPutOffFirstKept(s)
				}
			})
			start := time.Now()
			putOffEpisode(t, r, cands, key, true)
			require.Equal(t, 0, memcached.PutOffCount(r, key))
			require.Equal(t, 1, memcached.PutOffRecords(r), "kept for its re-queue (the loop held)")
			noWitAgain(t, servers, cfg, cands, key)
			// Episode 1's first put-off a Timeout old: the time that passes
			// is the condition (no event to wait on).
			if d := cfg.Timeout - time.Since(start); d > 0 {
				time.Sleep(d + 20*time.Millisecond)
			}
			require.Equal(t, 1, memcached.PutOffRecords(r), "still kept")
			b := time.Now()
			k := visitWhileCallHeld(t, r, cands, key, func() {
				for range memcached.PutOffBound + 1 {
					memcached.RepairKey(r, key)
				}
			})
			if d := time.Since(b); !broken && d >= cfg.Timeout {
				t.Skipf("the burst took %s, a Timeout or more: the bound may fire", d)
			}
			if broken {
				require.Equal(t, [3]uint32{1, 1, 2}, k, "first-kept: the burst's last visit ran R9 at once")
				return
			}
			require.Equal(t, [3]uint32{1, 1, 0}, k, "episode 2's burst of %d visits within a Timeout all put off", memcached.PutOffBound+1)
		})
	}
}

// TestPutOffEpisodeEndsAtFirstAnswer (rv-r9d (g)): of two calls of the
// process resolving a key at once, the first that answers ends the
// episode (the key was answered), although the other still resolves it:
// the count starts again at 0. Ending it only when the last call ends
// (the mutant rv-r9d (g) named; SetPutOffEndsAtLastCall) kept the count,
// so the bound fired sooner for the call still resolving.
func TestPutOffEpisodeEndsAtFirstAnswer(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "ends-at-last-call"}[broken], func(t *testing.T) {
			const key = "putoff-first-answer"
			servers, cfg, cands := noWitBlankThird(t, key)
			entered := make(chan struct{}, 2)
			var mu sync.Mutex
			calls := 0
			gates := []chan struct{}{make(chan struct{}), make(chan struct{})}
			var once [2]sync.Once
			open := func(i int) { once[i].Do(func() { close(gates[i]) }) }
			r := stalledStore(t, servers, cfg, key, func(s *memcached.Store) {
				if broken {
					memcached.SetPutOffEndsAtLastCall(s)
				}
				memcached.SetCallResolving(s, func(k string) {
					if k != key {
						return
					}
					mu.Lock()
					i := calls
					calls++
					mu.Unlock()
					if i < 2 {
						entered <- struct{}{}
						<-gates[i]
					}
				})
			})
			t.Cleanup(func() { open(0); open(1) })
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					_, err := r.Get(context.Background(), key)
					errs <- err
				}()
			}
			<-entered
			<-entered
			memcached.RepairKey(r, key)
			require.Equal(t, 1, memcached.PutOffCount(r, key), "the visit put off for the two calls")
			open(0)
			require.NoError(t, <-errs, "the first call answers")
			if broken {
				require.Equal(t, 1, memcached.PutOffCount(r, key), "ends-at-last-call: the count kept")
			} else {
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the first answer ended the episode, the second call still resolving")
			}
			open(1)
			require.NoError(t, <-errs)
			require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key))
			require.Equal(t, 0, memcached.PutOffCount(r, key), "the last answer ends it in both")
		})
	}
}
