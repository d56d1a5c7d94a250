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
