package memcached_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// resumeRig is a test of R8's resumption: three nodes, a key's
// candidates (primary, secondary, witness node), and the Config of every
// Store of the test (a dial added where a test needs one).
type resumeRig struct {
	servers []*mcserver.Server
	cands   []string
	cfg     memcached.Config
	key     string
	mu      sync.Mutex // the armedConns' of the test's Stores
}

func newResumeRig(t *testing.T, key string) *resumeRig {
	servers := startNodes(t, 3)
	return &resumeRig{
		servers: servers, key: key,
		cands: memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key),
		cfg:   memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second},
	}
}

// store returns a new Store dialling with dial (nil: plainly).
func (r *resumeRig) store(t *testing.T, dial func(ctx context.Context, network, a string) (net.Conn, error)) *memcached.Store {
	cfg := r.cfg
	cfg.DialContext = dial
	return newStore(t, r.servers, cfg)
}

// creator returns a Store whose connections to candidate cand are
// refused while unreachable is set, each wrapped by wrap, given an
// armedConn armed by *armed and lost, which sets unreachable.
func (r *resumeRig) creator(t *testing.T, cand int, armed *bool, unreachable *atomic.Bool, wrap func(c armedConn, lost func()) net.Conn) *memcached.Store {
	return r.store(t, refusingDial(r.cands[cand], unreachable, func(c net.Conn) net.Conn {
		return wrap(armedConn{Conn: c, mu: &r.mu, armed: armed, key: r.key}, func() { unreachable.Store(true) })
	}))
}

// arm sets *armed under the rig's lock.
func (r *resumeRig) arm(armed *bool) {
	r.mu.Lock()
	*armed = true
	r.mu.Unlock()
}

// held returns *h under the rig's lock (set by an onHold).
func (r *resumeRig) held(h **heldConn) *heldConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *h
}

// partialDelete deletes the key through a new Store whose `md` on the
// secondary is held: ErrOutcomeUnknown, only the primary's copy deleted.
// release delivers the held `md`.
func (r *resumeRig) partialDelete(t *testing.T) (release func()) {
	armed := false
	var held *heldConn
	deleter := r.holdingStore(t, &armed, "md "+r.key+" ", &held)
	r.arm(&armed)
	require.ErrorIs(t, deleter.Delete(context.Background(), r.key), provider.ErrOutcomeUnknown)
	return func() {
		if h := r.held(&held); h != nil {
			_, _ = h.release()
		}
	}
}

// holdingStore returns a new Store whose connections to the secondary
// (c1) are heldConns armed by *armed, holding the first command of the
// key that starts with prefix ("": "ms <key> "); the one held
// goes to *held.
func (r *resumeRig) holdingStore(t *testing.T, armed *bool, prefix string, held **heldConn) *memcached.Store {
	return r.store(t, func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != r.cands[1] {
			return c, err
		}
		return &heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: armed, key: r.key}, prefix: prefix,
			onHold: func(h *heldConn) { *held = h }}, nil
	})
}

// blindGet reads the key through a new Store that does not hear the
// secondary.
func (r *resumeRig) blindGet(t *testing.T) error {
	var refuse atomic.Bool
	refuse.Store(true)
	_, err := r.store(t, refusingDial(r.cands[1], &refuse, nil)).Get(context.Background(), r.key)
	return err
}

// cutCreator returns a Store (the creating process) that cannot dial
// while cut is set, nor the witness node while wUnreach is, nor an
// address refused reports (nil: none), and whose connections fail once
// cut is set (cutConn); wrap (nil: none) wraps each connection to
// address a first.
func (r *resumeRig) cutCreator(t *testing.T, cut, wUnreach *atomic.Bool, refused func(a string) bool, wrap func(a string, c net.Conn) net.Conn) *memcached.Store {
	return r.store(t, func(ctx context.Context, network, a string) (net.Conn, error) {
		if cut.Load() || (wUnreach.Load() && a == r.cands[2]) || (refused != nil && refused(a)) {
			return nil, errors.New("connection refused (test)")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		if wrap != nil {
			c = wrap(a, c)
		}
		return &cutConn{Conn: c, cut: cut}, nil
	})
}

// suspectWitness waits until s holds the witness node failed (its dials
// there refused): its Adds are then R8's two-record form (nowit).
func (r *resumeRig) suspectWitness(t *testing.T, s *memcached.Store) {
	testwait.Until(t, 10*time.Second, "the creator to hold the witness node failed", func() bool {
		_, _ = s.Get(context.Background(), "warm")
		return memcached.NodeFailed(s, r.cands[2])
	})
}

// server returns the Store whose Get serves the session in the traces
// below: reader, or, nowit (a creation without a witness, its creator
// suspecting the witness's node c2), one that does not hear c2 either. A reader that hears c2 answer runs R9 before it
// returns a nowit configuration (review-n4b F2), which would close the
// window these traces need; one that does not returns it as it is (R8's
// D6).
func (r *resumeRig) server(t *testing.T, reader *memcached.Store, nowit bool) *memcached.Store {
	if !nowit {
		return reader
	}
	var refuse atomic.Bool
	refuse.Store(true)
	return r.store(t, refusingDial(r.cands[2], &refuse, nil))
}

// resumed waits until other, a process that did not create the key, is
// served the creator's value "v1" (the creator's repair client completed
// its creation), then until the witness is stored and the creation is off
// the creator's list, and requires the session writable.
func (r *resumeRig) resumed(t *testing.T, creator, other *memcached.Store) {
	t.Helper()
	var got provider.Entry
	var err error
	testwait.Until(t, 15*time.Second, "the creator's repair client to resume its creation", func() bool {
		got, err = other.Get(context.Background(), r.key)
		return err == nil || !errors.Is(err, provider.ErrUnconfirmed)
	})
	require.NoError(t, err)
	require.Equal(t, "v1", string(got.Value))
	testwait.Until(t, 15*time.Second, "the witness stored, the creation off the list", func() bool {
		return kinds(t, r.cands, r.key) == [3]uint32{1, 1, 2} && memcached.UnknownAdds(creator) == 0
	})
	requireWritable(t, other, r.key)
}

// deletedUnseen is the end of review-resume-2 N1's and review-resume-3
// N2's traces: the session (whole, served by reader) is deleted with an
// unknown outcome (its primary's copy only), a reader that does not hear
// the secondary is told "not found", and the creator's messages flow
// again (cut and wUnreach cleared). Once the creator has stopped
// resuming, a Get must not serve the session again; broken, it does.
func (r *resumeRig) deletedUnseen(t *testing.T, creator, reader *memcached.Store, cut, wUnreach *atomic.Bool, broken bool) {
	release := r.partialDelete(t)
	require.ErrorIs(t, r.blindGet(t), provider.ErrNotFound, "a reader not hearing the secondary")
	cut.Store(false)
	wUnreach.Store(false)
	testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
		return memcached.UnknownAdds(creator) == 0
	})
	_, err := reader.Get(context.Background(), r.key)
	release()
	if broken {
		require.NoError(t, err, "broken: served again after not found")
		return
	}
	require.ErrorIs(t, err, provider.ErrUnconfirmed, "never served again")
}

// heldCreator is r.creator whose connections to candidate cand, once
// arm was called, hold the first `ms <key>` (heldConn): it returns the
// Store, arm, the flag that makes cand unreachable (set once the command
// is held), and the held connection (nil before).
func (r *resumeRig) heldCreator(t *testing.T, cand int) (s *memcached.Store, arm func(), unreachable *atomic.Bool, held func() *heldConn) {
	unreachable = new(atomic.Bool)
	armed := false
	var h *heldConn
	s = r.creator(t, cand, &armed, unreachable, func(c armedConn, lost func()) net.Conn {
		return &heldConn{armedConn: c, hook: lost, onHold: func(hc *heldConn) { h = hc }} // under r.mu
	})
	return s, func() { r.arm(&armed) }, unreachable, func() *heldConn { return r.held(&h) }
}

// witnessOnlyAdd runs s's Add of the rig's key, its secondary CAS held
// (s, arm and unreachable from r.heldCreator(t, 1)): the Add's outcome is
// unknown, only its witness stored, the creation on s's list to resume;
// then the secondary's node is reachable again.
func (r *resumeRig) witnessOnlyAdd(t *testing.T, s *memcached.Store, arm func(), unreachable *atomic.Bool) {
	t.Helper()
	// The connection carrying the Add's secondary CAS holds it.
	arm()
	_, err := s.Add(context.Background(), r.key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the secondary's CAS is held")
	require.Equal(t, [3]uint32{0, 0, 2}, kinds(t, r.cands, r.key), "only the witness stored")
	require.Equal(t, 1, memcached.UnknownAdds(s))
	unreachable.Store(false)
}

// droppedConn, once armed and an `ms <key>` is written, sends nothing
// more (that command never reaches the node) and fails every read with a
// timeout after running hook: a CAS lost on its way, its outcome unknown
// to the writer.
type droppedConn struct {
	armedConn
	hook func()
	dead atomic.Bool
}

func (c *droppedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if *c.armed && strings.HasPrefix(string(b), "ms "+c.key+" ") {
		*c.armed = false
		c.dead.Store(true)
	}
	c.mu.Unlock()
	if c.dead.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *droppedConn) Read(b []byte) (int, error) {
	if c.dead.Load() {
		c.hook()
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(b)
}

// The simulation's opposite seed 502 (CI at e450379, about 1 replay in
// 10): an Add stored its witness and its secondary copy; its primary CAS
// got no reply (the node unreachable from the creating process), so the
// Add reported ErrOutcomeUnknown; then the witness's node was flushed (the
// one fault). Left so, the key holds a creation's lone copy with two empty
// peers, which every process answers provider.ErrUnconfirmed (R4.1 never
// buries a creation's copy) until it expires: a user holding the new
// session's cookie gets 503s for the session's whole timeout.
//
// R8's resumption: the creating process keeps its creations of unknown
// outcome and its repair client completes such a lone copy (its own
// record, nothing else) onto the blank candidate, as the Add's CAS would
// have; R9 then stores the witness. Another process never completes it.
func TestUnknownCreationResumed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool // the code before: SetNoResume
	}{{"fixed", false}, {"code-before", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume"
			r := newResumeRig(t, key)
			servers, cands := r.servers, r.cands
			var unreachable atomic.Bool
			armed := false
			s := r.creator(t, 0, &armed, &unreachable, func(c armedConn, lost func()) net.Conn {
				return &droppedConn{armedConn: c, hook: lost}
			})
			if tc.before {
				memcached.SetNoResume(s)
			}
			ctx := context.Background()
			r.arm(&armed)
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary CAS got no reply")
			require.Equal(t, [3]uint32{0, 1, 2}, kinds(t, cands, key), "the witness and the secondary stored, the primary not")
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")

			other := r.store(t, nil)
			_, err = other.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "a creation's lone copy")
			memcached.RepairKey(other, key)
			_, err = other.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "another process does not complete a creation it did not make")

			if tc.before {
				require.Zero(t, memcached.UnknownAdds(s))
				unreachable.Store(false)
				memcached.RepairKey(s, key)
				_, err = other.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrUnconfirmed, "the code before: stuck until the copy expires")
				return
			}
			require.Equal(t, 1, memcached.UnknownAdds(s))
			unreachable.Store(false)
			r.resumed(t, s, other)
		})
	}
}

// TestUnknownCreationNotResumedOverOther: a creation of unknown outcome
// is resumed only while its own record is what the key holds: once
// another creation's record is there (the key not found, then created
// again), the creator's repair client leaves it, and drops the key.
func TestUnknownCreationNotResumedOverOther(t *testing.T) {
	const key = "resume-other"
	r := newResumeRig(t, key)
	servers, cands := r.servers, r.cands
	var unreachable atomic.Bool
	armed := false
	s := r.creator(t, 1, &armed, &unreachable, func(c armedConn, lost func()) net.Conn {
		return &droppedConn{armedConn: c, hook: lost}
	})
	memcached.SetRepairQueueOff(s)
	ctx := context.Background()
	r.arm(&armed)
	// The secondary's CAS (the first data copy) is lost: only the witness
	// is stored.
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.Equal(t, [3]uint32{0, 0, 2}, kinds(t, cands, key))
	require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx))
	unreachable.Store(false)
	// Nothing of the creation is left: another process creates the
	// session anew; the creator's resumption must not touch it.
	other := r.store(t, nil)
	_, err = other.Add(ctx, key, []byte("v2"), time.Minute)
	require.NoError(t, err)
	memcached.RepairKey(s, key)
	require.Zero(t, memcached.UnknownAdds(s), "the key returned another session: dropped")
	requireSessionIs(t, servers, key, "v2", "the second creation stays")
}

// heldConn, once armed and an `ms <key>` is written, holds that command
// (and everything written after it) and fails reads with a timeout: a CAS
// delayed in the network, its outcome unknown to the writer. release
// delivers the held bytes to the node, reads the reply and closes the
// connection: the CAS lands late.
type heldConn struct {
	armedConn
	hook   func()
	onHold func(*heldConn) // called as the command is held (under armedConn's mu)
	prefix string          // of the command held; "" is "ms <key> "

	hmu     sync.Mutex
	holding bool
	held    []byte
	closed  bool
}

func (c *heldConn) Write(b []byte) (int, error) {
	prefix := c.prefix
	if prefix == "" {
		prefix = "ms " + c.key + " "
	}
	c.mu.Lock()
	if *c.armed && strings.HasPrefix(string(b), prefix) {
		*c.armed = false
		c.hmu.Lock()
		c.holding = true
		c.hmu.Unlock()
		c.onHold(c)
	}
	c.mu.Unlock()
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.holding {
		c.held = append(c.held, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *heldConn) Read(b []byte) (int, error) {
	c.hmu.Lock()
	holding := c.holding
	c.hmu.Unlock()
	if holding {
		if c.hook != nil {
			c.hook()
		}
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(b)
}

func (c *heldConn) Close() error {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	c.closed = true
	if c.holding {
		return nil // closed on release
	}
	return c.Conn.Close()
}

// release delivers the held command and returns the node's reply line.
func (c *heldConn) release() (string, error) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	defer c.Conn.Close()
	c.holding = false
	if err := c.Conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Conn.Write(c.held); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := c.Conn.Read(buf)
	return strings.TrimSpace(string(buf[:n])), err
}

// A creation of unknown outcome whose creator finds no record of it (its
// data CAS still on its way) must be fenced out before the creator stops
// resuming it: otherwise the CAS lands afterwards and, once the witness's
// node is flushed (one fault), the creation's lone copy is ErrUnconfirmed
// until it expires, with nobody left to resume it.
func TestUnknownCreationFencedOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken bool // SetResumeDropUnfenced
	}{{"fixed", false}, {"drop-unfenced", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-fence"
			r := newResumeRig(t, key)
			servers, cands := r.servers, r.cands
			s, arm, unreachable, held := r.heldCreator(t, 1)
			if tc.broken {
				memcached.SetResumeDropUnfenced(s)
			}
			ctx := context.Background()
			r.witnessOnlyAdd(t, s, arm, unreachable)
			// The creator's repair client finds no record of its
			// creation: it fences it out (or, broken, only drops it).
			testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
				return memcached.UnknownAdds(s) == 0
			})
			h := held()
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			t.Logf("the late CAS: %q", reply)
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			other := r.store(t, nil)
			_, err = other.Get(ctx, key)
			if tc.broken {
				require.Equal(t, "HD", reply[:2], "broken: the late CAS landed")
				require.ErrorIs(t, err, provider.ErrUnconfirmed, "broken: a lone copy nobody resumes")
				return
			}
			require.Equal(t, "EX", reply[:2], "the late CAS refused: its blank was re-stamped")
			require.ErrorIs(t, err, provider.ErrNotFound, "nothing of the creation left")
		})
	}
}

// Review-resume B1: an Add's primary CAS is delayed (its outcome
// unknown), the witness's node is flushed (the one fault), and another
// process deletes the lone secondary copy (tiered does so on
// ErrUnconfirmed): the Delete is acknowledged. The Add's primary CAS then
// lands. The creation must not come back: the creator resumes a lone copy
// only on its secondary (the Add writes it first), so a lone copy on the
// primary stays ErrUnconfirmed and the creator stops resuming it. The
// broken variant that resumed it made the deleted record readable.
func TestUnknownCreationDeleted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken bool // SetResumeAnyCopy
	}{{"fixed", false}, {"resume-any-copy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-del"
			r := newResumeRig(t, key)
			servers, cands := r.servers, r.cands
			s, arm, unreachable, held := r.heldCreator(t, 0)
			if tc.broken {
				memcached.SetResumeAnyCopy(s)
			}
			ctx := context.Background()
			arm()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary's CAS is held")
			require.Equal(t, [3]uint32{0, 1, 2}, kinds(t, cands, key))
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			other := r.store(t, nil)
			_, err = other.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnconfirmed)
			require.NoError(t, other.Delete(ctx, key), "the lone copy deleted: acknowledged")
			h := held()
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2], "the Add's primary CAS landed late")
			// The creator can reach the primary again (until now its
			// visits heard it silent and wrote nothing).
			unreachable.Store(false)
			testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
				return memcached.UnknownAdds(s) == 0
			})
			_, err = other.Get(ctx, key)
			if tc.broken {
				require.NoError(t, err, "broken: the deleted creation resumed")
				return
			}
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "the deleted creation is never served")
		})
	}
}

// Review-resume-2 N1: the creation became whole (its primary CAS landed
// late) and was served; a Delete of unknown outcome removed its primary
// copy only; the witness's node was flushed (the one fault; or, in
// nowit, no fault at all: a creation without a witness, its creator
// suspecting the witness node); a reader that did not hear the
// secondary was told "not found". The creator, whose messages were lost
// meanwhile, still lists the creation. It must not resume the lone
// secondary copy: the primary's blank is not the one its CAS targeted
// (that CAS landed). The second build (SetResumeAnyBlank) resumed it,
// and the session was served again with no Add after the "not found".
func TestUnknownCreationServedThenDeleted(t *testing.T) {
	for _, tc := range []struct {
		name          string
		broken, nowit bool
	}{{"fixed", false, false}, {"nowit", false, true}, {"resume-any-blank", true, false}, {"nowit-resume-any-blank", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-served"
			r := newResumeRig(t, key)
			ctx := context.Background()
			// The creator: its Add's primary CAS is held in the network;
			// from then on its messages are lost until cut is cleared.
			var cut, wUnreach atomic.Bool
			wUnreach.Store(tc.nowit)
			armed := false
			var heldP *heldConn
			s := r.cutCreator(t, &cut, &wUnreach, nil, func(a string, c net.Conn) net.Conn {
				if a != r.cands[0] {
					return c
				}
				return &heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armed, key: key},
					onHold: func(h *heldConn) { heldP = h; cut.Store(true) }}
			})
			if tc.broken {
				memcached.SetResumeAnyBlank(s)
			}
			if tc.nowit {
				r.suspectWitness(t, s)
			}
			r.arm(&armed)
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary's CAS is held")

			// The Add's primary CAS lands late: the session is whole, and
			// served.
			h := r.held(&heldP)
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2])
			reader := r.store(t, nil)
			got, err := r.server(t, reader, tc.nowit).Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value), "the creation took effect")
			if !tc.nowit {
				require.NoError(t, serverAt(t, r.servers, r.cands[2]).FlushAll(ctx), "the witness's node flushed")
			}
			r.deletedUnseen(t, s, reader, &cut, &wUnreach, tc.broken)
		})
	}
}

// dataHeldConn is heldConn that holds a data CAS (`ms <key> <n>` with n
// > 0) only, never a blank's re-stamp (`ms <key> 0 …`).
type dataHeldConn struct {
	*heldConn
}

func (c *dataHeldConn) Write(b []byte) (int, error) {
	if strings.HasPrefix(string(b), "ms "+c.key+" 0 ") {
		c.hmu.Lock()
		holding := c.holding
		c.hmu.Unlock()
		if !holding {
			return c.heldConn.Conn.Write(b)
		}
	}
	return c.heldConn.Write(b)
}

// Review-resume-3 N2: an Add unknown at its secondary (its primary CAS
// never sent). The creator's resumption re-stamps the secondary and CASes
// the primary; that CAS is stored but its reply lost, so the key stays
// listed. The session is whole and served; a Delete of unknown outcome
// removes the primary's copy; a reader that does not hear the secondary
// is told "not found". The creator's next visit must not resume the lone
// secondary copy onto the primary's new blank: its own CAS made the
// creation whole before. The third build (SetResumeUnmarked) did, and
// the session was served again.
func TestUnknownCreationResumeReplyLost(t *testing.T) {
	for _, tc := range []struct {
		name          string
		broken, nowit bool
	}{{"fixed", false, false}, {"nowit", false, true}, {"resume-unmarked", true, false}, {"nowit-resume-unmarked", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-lostreply"
			r := newResumeRig(t, key)
			ctx := context.Background()
			var cut, unreachQ, wUnreach atomic.Bool
			wUnreach.Store(tc.nowit)
			armedQ, armedP := false, false
			var heldQ, heldP *heldConn
			s := r.cutCreator(t, &cut, &wUnreach, func(a string) bool { return unreachQ.Load() && a == r.cands[1] }, func(a string, c net.Conn) net.Conn {
				switch a {
				case r.cands[1]:
					return &heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armedQ, key: key},
						hook: func() { unreachQ.Store(true) }, onHold: func(h *heldConn) { heldQ = h }}
				case r.cands[0]:
					// Once it holds the CAS, every connection of the
					// creator fails (cutConn): its reply is lost.
					return &dataHeldConn{&heldConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armedP, key: key},
						onHold: func(h *heldConn) { heldP = h; cut.Store(true) }}}
				}
				return c
			})
			if tc.broken {
				memcached.SetResumeUnmarked(s)
			}
			if tc.nowit {
				r.suspectWitness(t, s)
			}
			// The Add's secondary CAS is held (the secondary then
			// unreachable for the creator): unknown at the secondary.
			r.arm(&armedQ)
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			hq := r.held(&heldQ)
			require.NotNil(t, hq)
			reply, err := hq.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2], "the Add's secondary CAS landed late")
			if !tc.nowit {
				require.NoError(t, serverAt(t, r.servers, r.cands[2]).FlushAll(ctx), "the witness's node flushed")
			}
			// The creator's visit: its primary CAS is held, its reply
			// lost; then the creator's messages are lost.
			r.arm(&armedP)
			unreachQ.Store(false)
			wUnreach.Store(false)
			testwait.Until(t, 15*time.Second, "the resumption's primary CAS to be held", func() bool {
				return r.held(&heldP) != nil
			})
			require.Equal(t, 1, memcached.UnknownAdds(s), "still listed: no reply")
			reply, err = r.held(&heldP).release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2], "the resumption's primary CAS landed")
			reader := r.store(t, nil)
			got, err := r.server(t, reader, tc.nowit).Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value), "the session is whole, and served")
			r.deletedUnseen(t, s, reader, &cut, &wUnreach, tc.broken)
		})
	}
}
