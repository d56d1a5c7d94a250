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

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

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
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			var unreachable atomic.Bool
			var mu sync.Mutex
			armed := false
			dial := refusingDial(cands[0], &unreachable, func(c net.Conn) net.Conn {
				return &droppedConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, hook: func() { unreachable.Store(true) }}
			})
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
			withDial := cfg
			withDial.DialContext = dial
			s := newStore(t, servers, withDial)
			if tc.before {
				memcached.SetNoResume(s)
			}
			ctx := context.Background()
			mu.Lock()
			armed = true
			mu.Unlock()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary CAS got no reply")
			require.Equal(t, [3]uint32{0, 1, 2}, kinds(t, cands, key), "the witness and the secondary stored, the primary not")
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")

			other := newStore(t, servers, cfg)
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
			var got provider.Entry
			testwait.Until(t, 15*time.Second, "the creator's repair client to resume its creation", func() bool {
				got, err = other.Get(ctx, key)
				return err == nil || !errors.Is(err, provider.ErrUnconfirmed)
			})
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value))
			testwait.Until(t, 15*time.Second, "the witness stored, the creation off the list", func() bool {
				return kinds(t, cands, key) == [3]uint32{1, 1, 2} && memcached.UnknownAdds(s) == 0
			})
			requireWritable(t, other, key)
		})
	}
}

// TestUnknownCreationNotResumedOverOther: a creation of unknown outcome
// is resumed only while its own record is what the key holds: once
// another creation's record is there (the key not found, then created
// again), the creator's repair client leaves it, and drops the key.
func TestUnknownCreationNotResumedOverOther(t *testing.T) {
	const key = "resume-other"
	servers := startNodes(t, 3)
	cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
	var unreachable atomic.Bool
	var mu sync.Mutex
	armed := false
	dial := refusingDial(cands[1], &unreachable, func(c net.Conn) net.Conn {
		return &droppedConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, hook: func() { unreachable.Store(true) }}
	})
	cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
	withDial := cfg
	withDial.DialContext = dial
	s := newStore(t, servers, withDial)
	memcached.SetRepairQueueOff(s)
	ctx := context.Background()
	mu.Lock()
	armed = true
	mu.Unlock()
	// The secondary's CAS (the first data copy) is lost: only the witness
	// is stored.
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.Equal(t, [3]uint32{0, 0, 2}, kinds(t, cands, key))
	require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx))
	unreachable.Store(false)
	// Nothing of the creation is left: another process creates the
	// session anew; the creator's resumption must not touch it.
	other := newStore(t, servers, cfg)
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
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			var unreachable atomic.Bool
			var mu sync.Mutex
			armed := false
			var held *heldConn
			dial := refusingDial(cands[1], &unreachable, func(c net.Conn) net.Conn {
				return &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key},
					hook: func() { unreachable.Store(true) }, onHold: func(h *heldConn) { held = h }} // under mu
			})
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
			withDial := cfg
			withDial.DialContext = dial
			s := newStore(t, servers, withDial)
			if tc.broken {
				memcached.SetResumeDropUnfenced(s)
			}
			ctx := context.Background()
			// The connection carrying the Add's secondary CAS holds it.
			mu.Lock()
			armed = true
			mu.Unlock()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the secondary's CAS is held")
			require.Equal(t, [3]uint32{0, 0, 2}, kinds(t, cands, key), "only the witness stored")
			require.Equal(t, 1, memcached.UnknownAdds(s))
			unreachable.Store(false)
			// The creator's repair client finds no record of its
			// creation: it fences it out (or, broken, only drops it).
			testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
				return memcached.UnknownAdds(s) == 0
			})
			mu.Lock()
			h := held
			mu.Unlock()
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			t.Logf("the late CAS: %q", reply)
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			other := newStore(t, servers, cfg)
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
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			var unreachable atomic.Bool
			var mu sync.Mutex
			armed := false
			var held *heldConn
			dial := refusingDial(cands[0], &unreachable, func(c net.Conn) net.Conn {
				return &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key},
					hook: func() { unreachable.Store(true) }, onHold: func(h *heldConn) { held = h }} // under mu
			})
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}
			withDial := cfg
			withDial.DialContext = dial
			s := newStore(t, servers, withDial)
			if tc.broken {
				memcached.SetResumeAnyCopy(s)
			}
			ctx := context.Background()
			mu.Lock()
			armed = true
			mu.Unlock()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary's CAS is held")
			require.Equal(t, [3]uint32{0, 1, 2}, kinds(t, cands, key))
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			other := newStore(t, servers, cfg)
			_, err = other.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnconfirmed)
			require.NoError(t, other.Delete(ctx, key), "the lone copy deleted: acknowledged")
			mu.Lock()
			h := held
			mu.Unlock()
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
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			ctx := context.Background()
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}

			// The creator: its Add's primary CAS is held in the network;
			// from then on its messages are lost until cut is cleared.
			var cut, wUnreach atomic.Bool
			wUnreach.Store(tc.nowit)
			var mu sync.Mutex
			armed := false
			var heldP *heldConn
			creatorCfg := cfg
			creatorCfg.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				if cut.Load() || (wUnreach.Load() && a == cands[2]) {
					return nil, errors.New("connection refused (test)")
				}
				c, err := (&net.Dialer{}).DialContext(ctx, network, a)
				if err != nil {
					return nil, err
				}
				if a == cands[0] {
					c = &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key},
						onHold: func(h *heldConn) { heldP = h; cut.Store(true) }}
				}
				return &cutConn{Conn: c, cut: &cut}, nil
			}
			s := newStore(t, servers, creatorCfg)
			if tc.broken {
				memcached.SetResumeAnyBlank(s)
			}
			if tc.nowit {
				testwait.Until(t, 10*time.Second, "the creator to hold the witness node failed", func() bool {
					_, _ = s.Get(ctx, "warm")
					return memcached.NodeFailed(s, cands[2])
				})
			}
			mu.Lock()
			armed = true
			mu.Unlock()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary's CAS is held")

			// The Add's primary CAS lands late: the session is whole, and
			// served.
			mu.Lock()
			h := heldP
			mu.Unlock()
			require.NotNil(t, h)
			reply, err := h.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2])
			reader := newStore(t, servers, cfg)
			got, err := reader.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value), "the creation took effect")
			if !tc.nowit {
				require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			}

			// A Delete: its md on the primary lands, its md on the
			// secondary is held: an unknown outcome.
			delArmed := false
			var heldQ *heldConn
			delCfg := cfg
			delCfg.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, a)
				if err != nil || a != cands[1] {
					return c, err
				}
				return &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &delArmed, key: key}, prefix: "md " + key + " ",
					onHold: func(h *heldConn) { heldQ = h }}, nil
			}
			deleter := newStore(t, servers, delCfg)
			mu.Lock()
			delArmed = true
			mu.Unlock()
			require.ErrorIs(t, deleter.Delete(ctx, key), provider.ErrOutcomeUnknown)

			// A reader that does not hear the secondary: not found.
			var refuseQ atomic.Bool
			refuseQ.Store(true)
			blindCfg := cfg
			blindCfg.DialContext = refusingDial(cands[1], &refuseQ, nil)
			_, err = newStore(t, servers, blindCfg).Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound)

			// The creator's messages flow again; it visits the key.
			cut.Store(false)
			wUnreach.Store(false)
			testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
				return memcached.UnknownAdds(s) == 0
			})
			_, err = reader.Get(ctx, key)
			mu.Lock()
			hq := heldQ
			mu.Unlock()
			if hq != nil {
				_, _ = hq.release()
			}
			if tc.broken {
				require.NoError(t, err, "broken: served again after not found")
				return
			}
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "never served again")
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
// creation whole before. The third build (SetResumeUnmarked) did, and the
// session was served again.
func TestUnknownCreationResumeReplyLost(t *testing.T) {
	for _, tc := range []struct {
		name          string
		broken, nowit bool
	}{{"fixed", false, false}, {"nowit", false, true}, {"resume-unmarked", true, false}, {"nowit-resume-unmarked", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-lostreply"
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			ctx := context.Background()
			cfg := memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second}

			var cut, unreachQ, wUnreach atomic.Bool
			wUnreach.Store(tc.nowit)
			var mu sync.Mutex
			armedQ, armedP := false, false
			var heldQ, heldP *heldConn
			creatorCfg := cfg
			creatorCfg.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				if cut.Load() || (unreachQ.Load() && a == cands[1]) || (wUnreach.Load() && a == cands[2]) {
					return nil, errors.New("connection refused (test)")
				}
				c, err := (&net.Dialer{}).DialContext(ctx, network, a)
				if err != nil {
					return nil, err
				}
				switch a {
				case cands[1]:
					c = &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armedQ, key: key},
						hook: func() { unreachQ.Store(true) }, onHold: func(h *heldConn) { heldQ = h }}
				case cands[0]:
					// Once it holds the CAS, every connection of the
					// creator fails (cutConn): its reply is lost.
					c = &dataHeldConn{&heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armedP, key: key},
						onHold: func(h *heldConn) { heldP = h; cut.Store(true) }}}
				}
				return &cutConn{Conn: c, cut: &cut}, nil
			}
			s := newStore(t, servers, creatorCfg)
			if tc.broken {
				memcached.SetResumeUnmarked(s)
			}
			if tc.nowit {
				testwait.Until(t, 10*time.Second, "the creator to hold the witness node failed", func() bool {
					_, _ = s.Get(ctx, "warm")
					return memcached.NodeFailed(s, cands[2])
				})
			}
			// The Add's secondary CAS is held: unknown at the secondary.
			mu.Lock()
			armedQ = true
			mu.Unlock()
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			mu.Lock()
			hq := heldQ
			mu.Unlock()
			require.NotNil(t, hq)
			reply, err := hq.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2], "the Add's secondary CAS landed late")
			if !tc.nowit {
				require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx), "the witness's node flushed")
			}
			// The creator's visit: its primary CAS is held, its reply
			// lost; then the creator's messages are lost.
			mu.Lock()
			armedP = true
			mu.Unlock()
			unreachQ.Store(false)
			wUnreach.Store(false)
			testwait.Until(t, 15*time.Second, "the resumption's primary CAS to be held", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return heldP != nil
			})
			require.Equal(t, 1, memcached.UnknownAdds(s), "still listed: no reply")
			mu.Lock()
			hp := heldP
			mu.Unlock()
			reply, err = hp.release()
			require.NoError(t, err)
			require.Equal(t, "HD", reply[:2], "the resumption's primary CAS landed")
			reader := newStore(t, servers, cfg)
			got, err := reader.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, "v1", string(got.Value), "the session is whole, and served")

			// A Delete: its md on the primary lands, the one on the
			// secondary is held.
			delArmed := false
			var heldMD *heldConn
			delCfg := cfg
			delCfg.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, a)
				if err != nil || a != cands[1] {
					return c, err
				}
				return &heldConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &delArmed, key: key}, prefix: "md " + key + " ",
					onHold: func(h *heldConn) { heldMD = h }}, nil
			}
			deleter := newStore(t, servers, delCfg)
			mu.Lock()
			delArmed = true
			mu.Unlock()
			require.ErrorIs(t, deleter.Delete(ctx, key), provider.ErrOutcomeUnknown)
			var refuseQ atomic.Bool
			refuseQ.Store(true)
			blindCfg := cfg
			blindCfg.DialContext = refusingDial(cands[1], &refuseQ, nil)
			_, err = newStore(t, servers, blindCfg).Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound, "a reader not hearing the secondary")

			// The creator's messages flow again; it visits the key.
			cut.Store(false)
			testwait.Until(t, 15*time.Second, "the creator to stop resuming", func() bool {
				return memcached.UnknownAdds(s) == 0
			})
			_, err = reader.Get(ctx, key)
			mu.Lock()
			hm := heldMD
			mu.Unlock()
			if hm != nil {
				_, _ = hm.release()
			}
			if tc.broken {
				require.NoError(t, err, "broken: served again after not found")
				return
			}
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "never served again")
		})
	}
}
