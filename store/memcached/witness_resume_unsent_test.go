package memcached_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// killingConn, once armed, runs kill before it writes the first
// `ms <key>` (and writes it after): a node fault struck between an Add's
// CASes. unsent: it then answers that the connection took none of it
// (EPIPE) instead: a write whose own node went away as it went out.
type killingConn struct {
	armedConn
	kill   func()
	unsent bool
}

func (c *killingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	hit := *c.armed && strings.HasPrefix(string(b), "ms "+c.key+" ")
	if hit {
		*c.armed = false
	}
	c.mu.Unlock()
	if hit {
		c.kill()
		if c.unsent {
			return 0, syscall.EPIPE
		}
	}
	return c.Conn.Write(b)
}

// SyscallConn keeps the connection's liveness check (connCheck): a
// pooled connection to a killed node is seen closed, as unwrapped.
func (c *killingConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// The simulation's pause+kill with the Store's own 500 ms client timeout
// (`TestSim -seeds 1500 -kinds pause+kill -client-timeout 500ms`: 9 to 11
// seeds stuck, e.g. 94, 142, 315): the creating process holds the paused
// node (the key's witness node) failed, so its Add is R8's two-record
// form (nowit); the primary's node is killed as the Add's data CASes go
// out (here just before the secondary's is written), the secondary's CAS
// is stored, and the primary CAS is not sent (its connection refused): the
// Add reports ErrOutcomeUnknown. The killed node comes back empty, the
// paused one resumes: the key holds the creation's lone copy beside two
// empty peers, which every process answers provider.ErrUnconfirmed (R4.1
// never buries a creation's copy). The creator's resumption (R8) had the
// Add as unknown at the primary, to be completed only onto the very
// blank its CAS targeted, which the kill erased: it dropped the key, and
// the copy stayed ErrUnconfirmed until it expired. A CAS not sent can
// never land: the Add is one whose primary CAS was never sent, resumed
// onto the primary's new blank as one unknown at the secondary.
//
// again: the resumption's own primary CAS is not sent either (the
// primary's node killed again as it goes out, then back empty again):
// the creation stays listed as it was, resumed onto the next blank (the
// cold review rv-pk500's m1); the code before that
// (SetResumeRestoreRefusedOnly) kept it tied to the blank the second
// restart erased, and the copy stayed ErrUnconfirmed.
func TestUnknownCreationPrimaryUnsent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool // the code before: SetResumeUnsentAtP
		again  bool // the resumption's primary CAS not sent either
		again0 bool // the code before rv-pk500 m1: SetResumeRestoreRefusedOnly
	}{{"fixed", false, false, false}, {"code-before", true, false, false},
		{"again", false, true, false}, {"again/code-before", false, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "resume-unsent"
			r := newResumeRig(t, key)
			servers, cands := r.servers, r.cands
			primary := serverAt(t, servers, cands[0])
			var wUnreach atomic.Bool
			wUnreach.Store(true)
			armed, armedP := false, false
			s := r.store(t, func(ctx context.Context, network, a string) (net.Conn, error) {
				if wUnreach.Load() && a == cands[2] {
					return nil, errors.New("connection refused (test)")
				}
				c, err := (&net.Dialer{}).DialContext(ctx, network, a)
				switch {
				case err != nil:
					return c, err
				case a == cands[0]:
					return &killingConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armedP, key: key}, kill: primary.Kill, unsent: true}, nil
				case a == cands[1]:
					return &killingConn{armedConn: armedConn{Conn: c, mu: &r.mu, armed: &armed, key: key}, kill: primary.Kill}, nil
				}
				return c, nil
			})
			if tc.before {
				memcached.SetResumeUnsentAtP(s)
			}
			if tc.again0 {
				memcached.SetResumeRestoreRefusedOnly(s)
			}
			r.suspectWitness(t, s)
			ctx := context.Background()
			r.arm(&armed)
			_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the primary CAS not sent")
			require.ErrorContains(t, err, "not sent")
			require.False(t, primary.Running())
			require.Equal(t, 1, memcached.UnknownAdds(s))

			require.NoError(t, primary.Restart(ctx), "the killed node back, empty")
			require.Equal(t, [3]uint32{0, 1, 0}, kinds(t, cands, key), "the creation's lone copy on the secondary")
			other := r.store(t, nil)
			_, err = other.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnconfirmed, "a creation's lone copy beside two empty peers")
			if tc.again {
				r.arm(&armedP)
			}
			wUnreach.Store(false) // the paused node resumed
			if tc.again {
				testwait.Until(t, 15*time.Second, "the resumption's primary CAS, and the primary's node killed again", func() bool {
					return !primary.Running()
				})
				require.NoError(t, primary.Restart(ctx), "the killed node back, empty again")
			}

			if tc.before || tc.again0 {
				testwait.Until(t, 15*time.Second, "the creator to drop its creation", func() bool {
					return memcached.UnknownAdds(s) == 0
				})
				_, err = other.Get(ctx, key)
				require.ErrorIs(t, err, provider.ErrUnconfirmed, "the code before (%s): stuck until the copy expires", tc.name)
				return
			}
			r.resumed(t, s, other)
		})
	}
}
