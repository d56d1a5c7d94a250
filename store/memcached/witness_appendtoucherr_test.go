package memcached_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/memcached"
)

// witTouchErrDialer's connections to addr make the touch of an append of
// key (`mg <key> c f T…`, with its append or alone) get an error reply,
// once: they add an unknown flag, which memcached answers with
// CLIENT_ERROR, setting nothing. retouched, when set, runs once before
// the next such touch is sent (the touch sent again).
type witTouchErrDialer struct {
	mu        sync.Mutex
	key, addr string
	fired     bool
	retouched func()
}

func (d *witTouchErrDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return wrapDial(func(addr string, c net.Conn) net.Conn { return &witTouchErrConn{Conn: c, d: d, addr: addr} })(ctx, network, addr)
}

type witTouchErrConn struct {
	net.Conn
	d    *witTouchErrDialer
	addr string
}

func (c *witTouchErrConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	touch := []byte("mg " + c.d.key + " c f T")
	match := c.d.key != "" && c.addr == c.d.addr && bytes.Contains(b, touch)
	hit := match && !c.d.fired
	var before func()
	switch {
	case hit:
		c.d.fired = true
	case match:
		before, c.d.retouched = c.d.retouched, nil
	}
	c.d.mu.Unlock()
	if before != nil {
		before()
	}
	if !hit {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(bytes.Replace(b, touch, []byte("mg "+c.d.key+" c f @ T"), 1)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestWitnessAppendTouchError (the cold review of the append-gone fixes,
// W3: review-oc31 F4 in the witness scheme): a lock's append stored on P
// whose touch got an error reply set no TTL (memcached's append keeps the
// item's old expiry). The touch is sent again: P's copy gets the write's
// T. The code before (SetWitnessAppendTouchErrorOK) acknowledged the
// append with P keeping its old, shorter life.
func TestWitnessAppendTouchError(t *testing.T) {
	const T = 90 * time.Minute // longer than the session's life now
	for _, twoTrips := range []bool{false, true} {
		for _, before := range []bool{false, true} {
			name := map[bool]string{false: "pipelined", true: "two trips"}[twoTrips] + map[bool]string{false: "", true: "/code-before"}[before]
			t.Run(name, func(t *testing.T) {
				d := &witTouchErrDialer{}
				var broken func(*memcached.Store)
				if before {
					broken = memcached.SetWitnessAppendTouchErrorOK
				}
				s, key, cands := newTouchErrStore(t, d, twoTrips, broken)
				ctx := context.Background()
				en, _, delta := readLocking(t, s, key)
				d.mu.Lock()
				d.key, d.addr = key, cands[0]
				d.mu.Unlock()
				_, _, err := s.CompareAndAppend(ctx, key, delta, en.CAS, T)
				require.NoError(t, err)
				d.mu.Lock()
				fired := d.fired
				d.mu.Unlock()
				require.True(t, fired, "P's touch got its error reply")
				ttl := rawGet(t, cands[0], key).ttl
				want := int64(T/time.Second) - 120
				if before {
					require.Less(t, ttl, want, "the code before: P keeps its old life")
					return
				}
				require.Greater(t, ttl, want, "P's copy has the write's T (the touch sent again)")
			})
		}
	}
}

// newTouchErrStore starts three nodes, creates a session through a
// Store of its own and returns a BackupWitness Store whose connections are
// d's (its appends' touches sent in a round trip of their own when
// twoTrips; broken, when not nil, set on it), the session's key and its
// candidates.
func newTouchErrStore(t *testing.T, d *witTouchErrDialer, twoTrips bool, broken func(*memcached.Store)) (*memcached.Store, string, []string) {
	t.Helper()
	servers := startNodes(t, 3)
	cfg := memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 700 * time.Millisecond}
	s2 := newStore(t, servers, cfg)
	cfg.DialContext = d.dial
	s := newStore(t, servers, memcached.WithHooks(cfg, func(s *memcached.Store) {
		if twoTrips {
			memcached.SetAppendTwoTrips(s)
		}
		if broken != nil {
			broken(s)
		}
	}))
	id := newBenchSession(t, defaultProvider(t, s2))
	key, err := defaultProvider(t, s).Key(id)
	require.NoError(t, err)
	return s, key, memcached.WitnessCandidates(s, key)
}
