package memcached_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// The cold review of review-oc31 F2's fix, W1 (its trace, on real
// memcached): a lock's append, sent in two trips, is stored on P; its
// append to Q is held in the network; a reader on another Store sees the
// write in flight and, at its second sight, completes it onto Q (R4.4:
// P re-stamped, Q CASed to the new record with its own t); P's copy is
// then gone before its touch (deleted: a flush or an eviction, or its
// expiry); Q's held append lands, refused. The first fix took P for a
// copy missing and answered the table's refusal (ErrCASConflict) while
// the session held the write on Q, and a lock so refused left the
// session locked by the caller's own lock id. Now the other copy is read
// (goneCarried): it holds the write, so the outcome is unknown, which the
// provider settles by the lock id. SetAppendGoneAsMissing is the first fix.

// heldAppend holds the first append (`ms <key> … MA`) written to addr
// once armed, until released.
type heldAppend struct {
	mu        sync.Mutex
	key, addr string
	armed     bool
	held      chan struct{}
	release   chan struct{}
	// beforeTouch, once set, runs (once) before a touch of the key
	// (`mg <key> c f T…`: R3's touch of a completed Q, Q's append being
	// refused) is written to addr.
	beforeTouch func()
}

type heldAppendConn struct {
	net.Conn
	h    *heldAppend
	addr string
}

func (c *heldAppendConn) Write(b []byte) (int, error) {
	c.h.mu.Lock()
	hit := c.h.armed && c.addr == c.h.addr
	if hit {
		i := bytes.Index(b, []byte("ms "+c.h.key+" "))
		hit = i >= 0 && bytes.Contains(b[i:], []byte(" MA "))
	}
	if hit {
		c.h.armed = false
	}
	var touch func()
	if c.addr == c.h.addr && c.h.beforeTouch != nil && bytes.Contains(b, []byte("mg "+c.h.key+" c f T")) {
		touch, c.h.beforeTouch = c.h.beforeTouch, nil
	}
	c.h.mu.Unlock()
	if touch != nil {
		touch()
	}
	if hit {
		close(c.h.held)
		<-c.h.release
	}
	return c.Conn.Write(b)
}

// carriedEnv is W1's rig: the writing Store s (two-trip appends, its
// appends to the secondary held once armed, the primary's copy deleted
// between its append and its touch) and a reader s2.
type carriedEnv struct {
	s, s2    *memcached.Store
	d        *goneDialer
	p        *provider.Provider
	id, key  string
	cands    []string
	h        *heldAppend
	preP     rawItem
	released bool
}

func newCarriedEnv(t *testing.T, firstFix bool) *carriedEnv {
	e := newHeldAppendEnv(t, func(s *memcached.Store) {
		if firstFix {
			memcached.SetAppendGoneAsMissing(s)
		}
	})
	e.goneP(t)
	return e
}

// newHeldAppendEnv is carriedEnv's rig with hook set on the writing
// Store, and nothing armed on P.
func newHeldAppendEnv(t *testing.T, hook func(*memcached.Store)) *carriedEnv {
	servers := startNodes(t, 3)
	d := newGoneDialer(t)
	h := &heldAppend{held: make(chan struct{}), release: make(chan struct{})}
	cfg := memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 700 * time.Millisecond}
	e := &carriedEnv{s2: newStore(t, servers, cfg), h: h}
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &heldAppendConn{Conn: c, h: h, addr: addr}, nil
	}
	e.s = newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		memcached.SetAppendTwoTrips(s)
		hook(s)
	}))
	e.d = d
	e.id = newBenchSession(t, defaultProvider(t, e.s2))
	e.p = defaultProvider(t, e.s)
	var err error
	e.key, err = e.p.Key(e.id)
	require.NoError(t, err)
	e.cands = memcached.WitnessCandidates(e.s, e.key)
	_, err = e.s.Get(context.Background(), e.key) // warm connections
	require.NoError(t, err)
	e.preP = rawGet(t, e.cands[0], e.key)
	h.mu.Lock()
	h.key, h.addr, h.armed = e.key, e.cands[1], true
	h.mu.Unlock()
	t.Cleanup(func() {
		if !e.released {
			close(h.release)
		}
	})
	return e
}

// goneP arms the deletion of P's copy between its append and its touch.
func (e *carriedEnv) goneP(t *testing.T) {
	e.d.on(e.key, e.cands[0], func() {
		if err := raw(t, e.cands[0]).Delete(e.key); err != nil {
			t.Errorf("deleting P's copy: %v", err)
		}
	})
}

// completeOntoQ waits for the writer's append to be held on its way to Q
// and to have landed on P, has the reader complete the write onto Q
// (locked reports that Q holds the new record), then lets the held append
// go.
func (e *carriedEnv) completeOntoQ(t *testing.T, locked func(rec.Record) bool) {
	select {
	case <-e.h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the append to Q was never sent")
	}
	require.True(t, testwait.Poll(5*time.Second, func() bool {
		return len(rawGet(t, e.cands[0], e.key).value) > len(e.preP.value)
	}), "P's append never landed")
	done := false
	for range 3 {
		_, _ = e.s2.Get(context.Background(), e.key)
		if r, ok := decodeCopy(t, e.cands[1], e.key); ok && locked(r) {
			done = true
			break
		}
	}
	require.True(t, done, "the reader never completed the write onto Q")
	e.released = true
	close(e.h.release)
}

// session is the session as a later read on the reader finds it.
func (e *carriedEnv) session(t *testing.T) (rec.Record, error) {
	g, err := e.s2.Get(context.Background(), e.key)
	if err != nil {
		return rec.Record{}, err
	}
	r, err := rec.Decode(g.Value)
	require.NoError(t, err)
	return r, nil
}

func decodeCopy(t *testing.T, addr, key string) (rec.Record, bool) {
	it := rawGet(t, addr, key)
	if !it.found || it.flags != 1 {
		return rec.Record{}, false
	}
	_, payload, err := envelope.Decode(it.value)
	require.NoError(t, err)
	r, err := rec.Decode(payload)
	require.NoError(t, err)
	return r, true
}

// TestWitnessAppendGoneCarried: W1's trace, at the Store (the lock's
// CompareAndAppend) and through the provider (GetItemExclusive). The
// first fix (SetAppendGoneAsMissing) must fail each check.
func TestWitnessAppendGoneCarried(t *testing.T) {
	checks := []struct {
		name  string
		check func(t *testing.T, firstFix bool) error
	}{{"append", carriedAppend}, {"lock", carriedLock}}
	for _, c := range checks {
		for _, firstFix := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: "", true: "/first-fix"}[firstFix], func(t *testing.T) {
				err := c.check(t, firstFix)
				switch {
				case firstFix && err == nil:
					t.Fatal("the first fix (SetAppendGoneAsMissing) passed the check")
				case firstFix:
					t.Logf("the first fix fails: %v", err)
				case err != nil:
					t.Fatal(err)
				}
			})
		}
	}
}

// carriedAppend: the lock's append, at the Store. Refused while the
// session holds it is the defect; unknown (or success) is truthful.
func carriedAppend(t *testing.T, firstFix bool) error {
	e := newCarriedEnv(t, firstFix)
	ctx := context.Background()
	en, next, delta := readLocking(t, e.s, e.key)
	res := make(chan error, 1)
	go func() {
		_, _, err := e.s.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
		res <- err
	}()
	e.completeOntoQ(t, func(r rec.Record) bool { return r.Seq == next.Seq })
	err := <-res
	r, gerr := e.session(t)
	applied := gerr == nil && r.Locked && r.LockID == next.LockID
	t.Logf("CompareAndAppend: %v; the session: %v, locked %v by %d", err, gerr, r.Locked, r.LockID)
	switch {
	case err == nil && !applied:
		return fmt.Errorf("acknowledged, but the session does not hold it (%v)", gerr)
	case err != nil && !errors.Is(err, provider.ErrOutcomeUnknown) && applied:
		return fmt.Errorf("CompareAndAppend = %v (not applied), yet the session holds the append (lock %d)", err, r.LockID)
	}
	return nil
}

// carriedLock: GetItemExclusive over the same trace. A lock refused while
// the session is locked by the caller's own lock id is the defect (the
// session stays locked until its lease is broken).
func carriedLock(t *testing.T, firstFix bool) error {
	e := newCarriedEnv(t, firstFix)
	type result struct {
		item *provider.Item
		err  error
	}
	rc := make(chan result, 1)
	go func() {
		it, err := e.p.GetItemExclusive(context.Background(), e.id)
		rc <- result{it, err}
	}()
	e.completeOntoQ(t, func(r rec.Record) bool { return r.Locked })
	res := <-rc
	r, gerr := e.session(t)
	t.Logf("GetItemExclusive: %v; the session: %v, locked %v by %d", res.err, gerr, r.Locked, r.LockID)
	switch {
	case res.err == nil && (gerr != nil || !r.Locked || r.LockID != res.item.LockID):
		return fmt.Errorf("the lock %d granted, but the session does not hold it (%v, locked %v by %d)", res.item.LockID, gerr, r.Locked, r.LockID)
	case res.err != nil && gerr == nil && r.Locked:
		return fmt.Errorf("the lock refused (%v), yet the session is locked by %d, which no caller holds", res.err, r.LockID)
	}
	return nil
}

// lapseQAtTouch arms Q's copy lapsing just before R3's completion touches
// it: deleted, or (blank) lapsed and a blank left by a reader's
// get-or-blank (the cold review of the merged rules, A1); first, if not
// nil, runs before. The flag reports that the touch came.
func (e *carriedEnv) lapseQAtTouch(t *testing.T, blank bool, first func()) *atomic.Bool {
	var touched atomic.Bool
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	e.h.beforeTouch = func() {
		touched.Store(true)
		if first != nil {
			first()
		}
		if blank {
			rawSet(t, e.cands[1], e.key, nil, 30, 0)
			return
		}
		if err := raw(t, e.cands[1]).Delete(e.key); err != nil {
			t.Errorf("Q's copy lapsing: %v", err)
		}
	}
	return &touched
}

// appendCompleted sends a lock's append from the writer, has the reader
// complete it onto Q (completeOntoQ), and returns the record the append
// writes and the append's error. The write's T (90 min) is longer than
// the life the session's copies have now, which the reader's copy onto Q
// carries (copyExp).
func (e *carriedEnv) appendCompleted(t *testing.T) (rec.Record, error) {
	en, next, delta := readLocking(t, e.s, e.key)
	res := make(chan error, 1)
	go func() {
		_, _, err := e.s.CompareAndAppend(context.Background(), e.key, delta, en.CAS, 90*time.Minute)
		res <- err
	}()
	e.completeOntoQ(t, func(r rec.Record) bool { return r.Seq == next.Seq })
	return next, <-res
}

// TestWitnessAppendCompleteTouched (the model's AppendCompleteUntouched,
// helper appm): a lock's append stored and touched on P, its append to Q
// held; a reader completes the write from P's appended item onto Q (which
// takes P's old life, copyExp); Q's held append lands, refused; R3's
// completion reads Q and finds the write. Q's copy lapses before the
// completion's touch (deleted just before it: Q's old life ending). The
// completion touches Q with T before acknowledging, finds it gone, and
// fails the write over: two live copies. The code before
// (SetAppendCompleteUntouched) acknowledged with P's copy alone.
func TestWitnessAppendCompleteTouched(t *testing.T) {
	for _, c := range []struct {
		name          string
		before, blank bool
	}{{"fix", false, false}, {"code-before", true, false}, {"blank", false, true}} {
		before := c.before
		t.Run(c.name, func(t *testing.T) {
			e := newHeldAppendEnv(t, func(s *memcached.Store) {
				if before {
					memcached.SetAppendCompleteUntouched(s)
				}
			})
			touched := e.lapseQAtTouch(t, c.blank, nil)
			next, err := e.appendCompleted(t)
			require.NoError(t, err, "acknowledged")
			var holders []int
			for i, a := range e.cands {
				if r, ok := decodeCopy(t, a, e.key); ok && r.Locked && r.LockID == next.LockID {
					holders = append(holders, i)
				}
			}
			if before {
				// No touch: Q keeps P's old life, and lapses before P
				// with no fault (the test's deletion never runs).
				require.False(t, touched.Load(), "the code before sends no touch")
				require.Equal(t, []int{0, 1}, holders)
				p, q := rawGet(t, e.cands[0], e.key), rawGet(t, e.cands[1], e.key)
				require.Less(t, q.ttl, p.ttl-600, "the code before: Q acknowledged with P's old life (%d s), P's %d s", q.ttl, p.ttl)
				return
			}
			require.True(t, touched.Load(), "the completion touched Q")
			require.Len(t, holders, 2, "the write failed over: two live copies (%v)", holders)
		})
	}
}

// TestWitnessAppendFailoverPromisedP (the cold review of the merged rules,
// A2): TestWitnessAppendCompleteTouched's trace, and a decision's promise
// of epoch 3 (a fence that never came) lands on P's copy of the write
// before the completion's touch finds Q gone (deleted, or a blank). The
// re-read of P before the write failover then finds P promised above the
// write's epoch (0): R11.3, no fence is put over the promise:
// ErrOutcomeUnknown, P keeping the write and the promise, and no failover
// (the witness node still a witness). The code before
// (SetAppendFailoverIgnoresPromise) fenced P with the promised item's
// token (epoch 1, below the promise, which it erased) and acknowledged.
func TestWitnessAppendFailoverPromisedP(t *testing.T) {
	const promised = 3
	for _, c := range []struct {
		name          string
		before, blank bool
	}{{"fix", false, false}, {"fix-blank", false, true}, {"code-before", true, false}} {
		before := c.before
		t.Run(c.name, func(t *testing.T) {
			e := newHeldAppendEnv(t, func(s *memcached.Store) {
				if before {
					memcached.SetAppendFailoverIgnoresPromise(s)
				}
			})
			touched := e.lapseQAtTouch(t, c.blank, func() { promiseAt(t, e.cands[0], e.key, promised) })
			next, err := e.appendCompleted(t)
			require.True(t, touched.Load(), "the completion touched Q")
			penv, _, prom := envAt(t, e.cands[0], e.key)
			p, ok := decodeCopy(t, e.cands[0], e.key)
			require.True(t, ok, "P holds a data record")
			w := rawGet(t, e.cands[2], e.key)
			t.Logf("CompareAndAppend: %v; P: epoch %d, promise %d, locked %v by %d; the witness node: flags %d", err, penv.E, prom, p.Locked, p.LockID, w.flags)
			if before {
				require.NoError(t, err, "the code before: acknowledged by the failover")
				require.Zero(t, prom, "the code before: P's promise of %d overwritten", promised)
				require.Less(t, penv.E, uint32(promised), "the code before: a fence below the promise on P")
				require.Equal(t, uint32(1), w.flags, "the code before: the write copied to the witness node")
				return
			}
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.Equal(t, uint32(promised), prom, "P's promise stays")
			require.Zero(t, penv.E, "no fence on P")
			require.False(t, penv.Pending)
			require.True(t, p.Locked, "P keeps the write")
			require.Equal(t, next.LockID, p.LockID, "P keeps the write")
			require.Equal(t, uint32(2), w.flags, "no failover: the witness node still a witness")
			wenv, _, wprom := envAt(t, e.cands[2], e.key)
			require.Zero(t, wenv.E, "the witness of epoch 0")
			require.Zero(t, wprom, "no failover's promise on the witness node")
		})
	}
}
