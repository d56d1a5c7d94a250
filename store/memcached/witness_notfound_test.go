package memcached_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// Review-ballot m4 (the model's TestNotFoundFenced): R4.1's "not found"
// re-stamps the blanks it counted with their read tokens before it
// answers, so that R9's witness CAS, sent before and delivered late, cannot
// land on one and bring back a session reported expired.

// rawCAS stores value (client flags, expiration exp) on addr only if key's
// token is still cas (`ms … C<cas>`), and reports whether it was stored.
func rawCAS(t testing.TB, addr, key string, value []byte, exp int64, flags uint32, cas uint64) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	cmd := fmt.Sprintf("ms %s %d T%d F%d C%d\r\n", key, len(value), exp, flags, cas)
	_, err = c.Write(append(append([]byte(cmd), value...), "\r\n"...))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return strings.HasPrefix(line, "HD")
}

// TestNotFoundFencesBlanks is review-ballot m4 against real memcached. R9
// has read the blank on the witness node (its token) and sent the witness
// CAS, whose reply is lost; the session's primary copy then expires (here
// flushed), and a process that cannot reach the secondary reads the
// primary (its own new blank) and the witness node's blank: "not found".
// The late witness CAS (sent here by hand, the blank's token) then lands,
// and with the secondary's unexpired copy another process's Get brings
// the session back. Under the rule, the not-found read re-stamped the
// witness node's blank first: the CAS is refused and the session stays
// not found. The rule before (memcached.SetNotFoundUnfenced) is shown to
// let it come back.
func TestNotFoundFencesBlanks(t *testing.T) {
	const key = "nffence"
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
	}{{"rule", nil}, {"unfenced", memcached.SetNotFoundUnfenced}} {
		t.Run(c.name, func(t *testing.T) {
			servers, _, cands, _ := writtenSession(t, key)
			ctx := context.Background()
			wit := rawGet(t, cands[2], key)
			require.Equal(t, uint32(2), wit.flags, "the witness on the third candidate")
			// The witness lost; R9's read leaves a blank there and its
			// witness CAS carries the blank's token.
			require.NoError(t, serverAt(t, servers, cands[2]).FlushAll(ctx))
			rawBlank(t, cands[2], key)
			tok := rawGet(t, cands[2], key).cas
			// The primary copy expires; the secondary lives on.
			require.NoError(t, serverAt(t, servers, cands[0]).FlushAll(ctx))
			var refuse atomic.Bool
			refuse.Store(true)
			s := promiseStore(t, servers, refusingDial(cands[1], &refuse, nil), c.broken)
			_, err := s.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrNotFound, "the primary and the witness node blank, the secondary unreachable")
			landed := rawCAS(t, cands[2], key, wit.value, wit.ttl, wit.flags, tok)
			other := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})
			got, err := other.Get(ctx, key)
			if c.broken != nil {
				require.True(t, landed, "the rule before leaves the blank's token as R9 read it")
				require.NoError(t, err, "the rule before: the late witness and the secondary's copy revive the session")
				require.Equal(t, "v2", string(got.Value))
				return
			}
			require.False(t, landed, "the not-found read re-stamped the blank: the late witness CAS is refused")
			require.ErrorIs(t, err, provider.ErrNotFound, "a session reported not found never comes back")
		})
	}
}

// TestNotFoundCost: the fence costs nothing when every candidate answers
// (a new session's first Get, its anomaly read making the three blanks,
// and a second Get over them), and one parallel round trip to the blanks
// made earlier when a candidate does not answer (here the secondary's
// node refuses connections).
func TestNotFoundCost(t *testing.T) {
	servers := startNodes(t, 3)
	w := newWire()
	const key = "nfcost"
	cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
	var cut atomic.Bool // its connections refused and reset
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != cands[1] {
			return w.dial(ctx, network, addr)
		}
		if cut.Load() {
			return nil, errors.New("connection refused (test)")
		}
		c, err := w.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c, cut: &cut}, nil
	}})
	ctx := context.Background()
	require.Equal(t, cands, memcached.WitnessCandidates(s, key))
	tokens := func() (toks [3]uint64) {
		for i, a := range cands {
			toks[i] = rawGet(t, a, key).cas
		}
		return toks
	}
	before := w.snap(cands)
	_, err := s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
	w.requireTrips(t, cands, before, [3]uint64{2, 2, 1}, "a new session's Get: the common read, the anomaly read, no fence")
	toks := tokens()
	before = w.snap(cands)
	_, err = s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
	w.requireTrips(t, cands, before, [3]uint64{2, 2, 1}, "a Get over earlier blanks, every node answering: no fence")
	require.Equal(t, toks, tokens(), "no blank written")
	// The secondary's node unheard (connections refused), the primary
	// and the witness node answer with the blanks made earlier: both
	// re-stamped, one more round trip each.
	cut.Store(true)
	before = w.snap(cands)
	_, err = s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
	w.requireTrips(t, cands, before, [3]uint64{3, 0, 2}, "a Get with a node unheard over earlier blanks: the fence, one more round trip")
	cut.Store(false)
	now := tokens()
	require.NotEqual(t, toks[0], now[0], "the primary's blank re-stamped")
	require.NotEqual(t, toks[2], now[2], "the witness node's blank re-stamped")
}
