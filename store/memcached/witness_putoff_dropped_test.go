package memcached_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"

	"github.com/sessionlock/sessionlock/store/memcached"
)

// droppedRig is a Store whose put-off re-queues of key are dropped: its
// repair loop is held at a visit of another key and its repair queue
// filled behind it (fullQueue), or its queue is off. Each re-queue of key
// is held when its timer fires until release, and drops counts the
// re-queues of key the queue dropped, once each drop is handled.
type droppedRig struct {
	r        *memcached.Store
	drops    atomic.Int64
	blocked  chan struct{} // closed once the loop waits at its visit of blockKey
	fired    chan struct{} // closed once key's first re-queue fired (held: release)
	gate     chan struct{} // closed: the loop goes on (drainQueue)
	hold     chan struct{} // closed: the re-queues of key go on (release)
	keyVisit atomic.Int64  // the loop's visits of key
	gateOnce sync.Once
	holdOnce sync.Once
}

const blockKey = "requeue-dropped-blocker"

// newDroppedRig starts a Store of cfg over servers for key with broken
// applied to it (and queueOff: SetRepairQueueOff).
func newDroppedRig(t *testing.T, servers []*mcserver.Server, cfg memcached.Config, key string, queueOff bool, broken func(*memcached.Store)) *droppedRig {
	t.Helper()
	d := &droppedRig{blocked: make(chan struct{}), fired: make(chan struct{}), gate: make(chan struct{}), hold: make(chan struct{})}
	var blockOnce, firedOnce sync.Once
	d.r = newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		broken(s)
		if queueOff {
			memcached.SetRepairQueueOff(s)
		}
		memcached.SetLoopVisit(s, func(k string) {
			switch k {
			case key:
				d.keyVisit.Add(1)
			case blockKey:
				blockOnce.Do(func() { close(d.blocked) })
				<-d.gate
			}
		})
		memcached.SetRequeueFired(s, func(k string) {
			if k == key {
				firedOnce.Do(func() { close(d.fired) })
				<-d.hold
			}
		})
		memcached.SetRequeueDropped(s, func(k string) {
			if k == key {
				d.drops.Add(1)
			}
		})
	}))
	t.Cleanup(func() { d.drainQueue(); d.release() }) // before r's Close (cleanups run last first)
	return d
}

// fullQueue holds the repair loop at a visit of blockKey and fills the
// repair queue behind it: every enqueue is then dropped until drainQueue.
func (d *droppedRig) fullQueue(t *testing.T) {
	t.Helper()
	require.True(t, memcached.Enqueue(d.r, blockKey))
	select {
	case <-d.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not visit the blocking key")
	}
	for n := 0; memcached.Enqueue(d.r, "requeue-dropped-filler"); n++ {
		require.Less(t, n, 1<<16, "the repair queue never fills")
	}
}

// drainQueue lets the repair loop go on: it works the queue off.
func (d *droppedRig) drainQueue() { d.gateOnce.Do(func() { close(d.gate) }) }

// release lets key's re-queues, held when their timers fire, go on.
func (d *droppedRig) release() { d.holdOnce.Do(func() { close(d.hold) }) }

// waitDrops waits until n re-queues of key were dropped and handled.
func (d *droppedRig) waitDrops(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return d.drops.Load() >= n }, within, 5*time.Millisecond,
		"%d dropped re-queue(s) of the key handled", n)
}

// TestPutOffRequeueDroppedKeepsCount (rv-r9d (b)): a call of the process
// held inside its anomaly reads of a nowit configuration with a blank
// third node (R9 is a decision the call makes too), PutOffBound visits
// put off, and their re-queue a Timeout later dropped: the repair loop
// is busy and its queue full. The call still resolving the key, the
// episode goes on: the count survives the drop, and the next visit (here
// the test's, as a read's R4.3, a witness touch or the scan would bring)
// is past the bound and runs R9 (next-visit); or, the queue drained, the
// re-queue tried again a Timeout after the drop brings that visit itself
// (requeue-visit). Once the episode is over the record goes at the next
// drop: no leak. The code before (SetRequeueDropDeletes) deleted the
// record at the drop, so the next visit was the first of a new count and
// was put off again: while the queue stays full (the loop slow) the
// bound may never fire.
func TestPutOffRequeueDroppedKeepsCount(t *testing.T) {
	for _, c := range []struct{ variant, next string }{
		{"fix", "next-visit"}, {"fix", "requeue-visit"}, {"drop-deletes", "next-visit"},
	} {
		t.Run(c.variant+"/"+c.next, func(t *testing.T) {
			const key = "putoff-requeue-dropped"
			servers, cfg, cands := noWitBlankThird(t, key)
			broken := c.variant == "drop-deletes"
			d := newDroppedRig(t, servers, cfg, key, false, func(s *memcached.Store) {
				if broken {
					memcached.SetRequeueDropDeletes(s)
				}
			})
			r := d.r
			held, releaseCall := holdFirstCall(r, key)
			defer releaseCall()
			heldErr := startHeldGet(r, key, held)
			for range memcached.PutOffBound {
				memcached.RepairKey(r, key)
			}
			require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "the visits put off")
			require.Equal(t, memcached.PutOffBound, memcached.PutOffCount(r, key))

			d.fullQueue(t)
			d.release() // the re-queue, a Timeout after the first put-off, finds the queue full
			d.waitDrops(t, 1, 5*time.Second)
			require.Zero(t, d.keyVisit.Load(), "no loop visit of the key: the loop held")
			if broken {
				require.Equal(t, 0, memcached.PutOffRecords(r), "drop-deletes: the record deleted at the drop")
				memcached.RepairKey(r, key)
				require.Equal(t, [3]uint32{1, 0, 1}, kinds(t, cands, key), "drop-deletes: the next visit put off again")
				require.Equal(t, 1, memcached.PutOffCount(r, key), "drop-deletes: the count started over")
				return
			}
			require.Equal(t, memcached.PutOffBound, memcached.PutOffCount(r, key), "the count survives the drop (the call still held)")
			witnessed := func() bool { return kinds(t, cands, key)[1] == 2 }
			switch c.next {
			case "next-visit":
				memcached.RepairKey(r, key)
				require.True(t, witnessed(), "the next visit, past the bound, ran R9 in the same episode")
			case "requeue-visit":
				d.drainQueue()
				require.Eventually(t, witnessed, 10*time.Second, 10*time.Millisecond,
					"the re-queue tried again brought the visit that ran R9")
				require.Positive(t, d.keyVisit.Load(), "a loop visit of the key")
			}
			releaseCall()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
			require.Eventually(t, func() bool { return memcached.PutOffRecords(r) == 0 }, 10*time.Second, 10*time.Millisecond,
				"the episode over, no record left")
		})
	}
}

// TestPutOffRequeueDroppedNoCall (rv-r9c m3, rv-r9d (b)): a re-queue the
// queue drops (here the queue is off) deletes its record when its
// episode is over or about to be: no call of the process resolves the
// key (call-failed: the call failed, its deadline or here its context,
// which ends no episode, so the count is kept until the drop), or the
// episode ended while the re-queue was pending (episode-over: the call
// still held, the visit past the bound ran R9, the count cleared). No
// re-queue is left for the record then, and one kept with none would
// stay for as long as the key was not visited again (rv-r9b M1). While a
// call resolves the key in the episode (call-held) the record is kept and
// retried: its count survives drop after drop, and goes at the first
// drop after the call's answer.
func TestPutOffRequeueDroppedNoCall(t *testing.T) {
	for _, c := range []string{"call-failed", "episode-over", "call-held"} {
		t.Run(c, func(t *testing.T) {
			const key = "putoff-dropped"
			servers, cfg, cands := noWitBlankThird(t, key)
			d := newDroppedRig(t, servers, cfg, key, true, func(*memcached.Store) {})
			r := d.r
			if c == "call-failed" {
				putOffEpisode(t, r, cands, key, false) // the call fails: the count kept
				require.Equal(t, memcached.PutOffBound, memcached.PutOffCount(r, key))
				d.release()
				d.waitDrops(t, 1, 5*time.Second)
				require.Equal(t, 0, memcached.PutOffRecords(r), "the drop with no call resolving deleted the record")
				return
			}
			held, releaseCall := holdFirstCall(r, key)
			defer releaseCall()
			heldErr := startHeldGet(r, key, held)
			if c == "episode-over" {
				for range memcached.PutOffBound {
					memcached.RepairKey(r, key)
				}
				<-d.fired // a Timeout since the first put-off; the re-queue held
				memcached.RepairKey(r, key)
				require.Equal(t, [3]uint32{1, 2, 1}, kinds(t, cands, key), "the visit past the bound ran R9")
				require.Equal(t, 0, memcached.PutOffCount(r, key), "the episode over, the record left to its re-queue")
				d.release()
				d.waitDrops(t, 1, 5*time.Second)
				require.Equal(t, 0, memcached.PutOffRecords(r), "the drop deleted the record, the call still held")
				releaseCall()
				require.NoError(t, <-heldErr, "the held call, released, returns the session")
				return
			}
			memcached.RepairKey(r, key)
			require.Equal(t, 1, memcached.PutOffCount(r, key), "the visit put off")
			d.release()
			d.waitDrops(t, 2, 10*time.Second) // the re-queue and its retry both dropped
			require.Equal(t, 1, memcached.PutOffCount(r, key), "the count kept through the drops (the call held)")
			releaseCall()
			require.NoError(t, <-heldErr, "the held call, released, returns the session")
			require.Eventually(t, func() bool { return memcached.PutOffRecords(r) == 0 }, 10*time.Second, 10*time.Millisecond,
				"the call answered: the next drop deleted the record")
		})
	}
}
