package memcached_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// rv-mj2 mn-c (BackupOn, real memcached): a split Add's settle whose
// write in its fourth round is stored while another party moves the
// other copy the opposite way. A's Add (Seq 1) takes the primary; the
// backup copy holds C's (Seq 3), whose Add crossed A's there first. A's
// settle follows the primary from its first round on (its CAS of the
// primary is refused: another write landed there, the same bytes), and
// its next two writes are refused as well (writes land on the backup
// copy, the same bytes). In its fourth round, after A read the pair,
// C's settle, applying the Seq rule to the same pair, puts its record on
// the primary (its conditioned CAS, made here by hand); A's write of the
// primary's copy as it read it (A's) onto the backup is stored too: the
// copies are swapped. A reads the pair again, puts C's record on the
// backup (the rules agree on the swapped pair), and both copies end with
// it. The code before (SetSettleLastUnread) ended after that write
// unread: the copies stayed diverged (primary C's, backup A's) and the
// Add said that they were brought to one value.
func TestSettleLastRoundReadAgain(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			ctx := context.Background()
			const key = "settle:last"
			va, vc := record(1, "A"), record(3, "C")
			a, mp, mb := settleSetup(t, servers, memcached.Config{}, broken, memcached.SetSettleLastUnread, key, vc)
			var n atomic.Int32
			memcached.SetBeforePutBack(a, func(string) {
				switch n.Add(1) {
				case 1: // A's CAS of the primary is refused: A follows the primary
					sameBytes(t, mp, key)
				case 2, 3: // A's writes of the backup copy are refused
					sameBytes(t, mb, "bak:"+key)
				case 4: // C's settle, on the same pair, by the Seq rule
					it, err := mp.Get(key)
					require.NoError(t, err)
					require.Equal(t, va, it.Value)
					it.Value = vc
					require.NoError(t, mp.CompareAndSwap(it), "C's CAS of the primary")
				}
			})
			_, err := a.Add(ctx, key, va, time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
			require.GreaterOrEqual(t, n.Load(), int32(4), "the settle reached its fourth round")
			pi, perr := mp.Get(key)
			require.NoError(t, perr)
			bi, berr := mb.Get("bak:" + key)
			require.NoError(t, berr)
			t.Logf("rounds with a write: %d; %v", n.Load(), err)
			require.Equal(t, vc, pi.Value, "C's settle put its record on the primary")
			if broken {
				require.Equal(t, va, bi.Value, "the code before: the copies swapped, diverged")
				require.Contains(t, err.Error(), "were brought to one value", "the code before: said nothing of it")
				return
			}
			require.Equal(t, vc, bi.Value, "the copies end equal")
			require.Contains(t, err.Error(), "were brought to one value")
		})
	}
}

// rv-mj2 mn-c: a settle whose writes keep being refused gives up after
// maxRepairRounds refusals on a read of the pair, and the Add's answer
// says that the copies may differ (still ErrOutcomeUnknown). The code
// before (SetSettleLastUnread) gave up as silently as it settled.
func TestSettleGivesUpAloud(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "settle:refused"
			a, mp, mb := settleSetup(t, servers, memcached.Config{}, broken, memcached.SetSettleLastUnread, key, record(3, "C"))
			var n atomic.Int32
			memcached.SetBeforePutBack(a, func(string) {
				n.Add(1)
				sameBytes(t, mp, key)
				sameBytes(t, mb, "bak:"+key)
			})
			_, err := a.Add(context.Background(), key, record(1, "A"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
			require.Equal(t, int32(4), n.Load(), "four writes, each refused")
			t.Log(err)
			if broken {
				require.Contains(t, err.Error(), "were brought to one value", "the code before: copies left diverged, silently")
				return
			}
			require.Contains(t, err.Error(), "did not finish")
			require.Contains(t, err.Error(), "kept changing")
		})
	}
}

// settleSetup returns a Store over servers with cfg (and, when broken,
// the broken variant setBroken), and clients of key's primary and backup
// nodes, the backup copy holding bak: an Add of key by the Store splits.
func settleSetup(t *testing.T, servers []*mcserver.Server, cfg memcached.Config, broken bool, setBroken func(*memcached.Store), key string, bak []byte) (*memcached.Store, *memcache.Client, *memcache.Client) {
	t.Helper()
	flush(t, servers)
	s := newStore(t, servers, cfg)
	if broken {
		setBroken(s)
	}
	primary, backup := s.Placement(key)
	mp, mb := raw(t, primary), raw(t, backup)
	require.NoError(t, mb.Set(&memcache.Item{Key: "bak:" + key, Value: bak, Expiration: 60}))
	return s, mp, mb
}

// sameBytes rewrites key on mc with the bytes it holds: a write that
// changes its CAS only (as a reader's sliding CAS does).
func sameBytes(t *testing.T, mc *memcache.Client, key string) {
	t.Helper()
	it, err := mc.Get(key)
	require.NoError(t, err)
	require.NoError(t, mc.Set(&memcache.Item{Key: key, Value: it.Value, Expiration: 60}))
}

// rv-d4b mn5 (BackupOn, real memcached): a split Add's settle over slow
// nodes (each of its commands takes 150 ms, under the 200 ms Timeout,
// so neither node is marked down) whose writes keep being refused.
// It ends 2 Timeouts after it starts, or one Timeout past the caller's
// deadline, and the Add answers ErrOutcomeUnknown saying it did not
// finish. The code before (SetSettleUnbounded) ran its four rounds,
// 10 commands of 150 ms: 1.5 s past a deadline 100 ms away.
func TestSettleBounded(t *testing.T) {
	servers := startNodes(t, 2)
	const timeout, delay = 200 * time.Millisecond, 150 * time.Millisecond
	for _, deadline := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			name := map[bool]string{false: "no-deadline", true: "deadline"}[deadline] + map[bool]string{false: "", true: "/code-before"}[broken]
			t.Run(name, func(t *testing.T) {
				const key = "settle:slow"
				var slow atomic.Bool
				a, mp, mb := settleSetup(t, servers, memcached.Config{Timeout: timeout, DialContext: wrapDial(func(_ string, c net.Conn) net.Conn {
					return &slowConn{Conn: c, slow: &slow, match: key, delay: delay}
				})}, broken, memcached.SetSettleUnbounded, key, record(3, "C"))
				primary, backup := a.Placement(key)
				memcached.SetBeforePutBack(a, func(string) {
					slow.Store(true) // from the settle's first write on
					sameBytes(t, mp, key)
					sameBytes(t, mb, "bak:"+key)
				})
				ctx := context.Background()
				start := time.Now()
				bound := start.Add(2 * timeout) // the settle starts after start
				if deadline {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					dl, _ := ctx.Deadline()
					bound = dl.Add(timeout)
				}
				_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
				took := time.Since(start)
				over := time.Since(bound)
				t.Logf("took %v, %v past the bound: %v", took, over, err)
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add, cut short or not")
				require.True(t, isUp(a, primary) && isUp(a, backup), "slow, not down")
				if broken {
					require.GreaterOrEqual(t, took, 10*delay, "the code before: four rounds of slow commands")
					return
				}
				require.Contains(t, err.Error(), "did not finish", "cut short, and says so")
				require.Less(t, over, delay+100*time.Millisecond, "the settle ends by its bound (the command in flight then included)")
			})
		}
	}
}

// slowConn, once slow is set, delays every write that names match by
// delay: a node slow to take commands.
type slowConn struct {
	net.Conn
	slow  *atomic.Bool
	match string
	delay time.Duration
}

func (c *slowConn) Write(b []byte) (int, error) {
	if c.slow.Load() && strings.Contains(string(b), c.match) {
		time.Sleep(c.delay) // the node's slowness itself, not a wait for a condition
	}
	return c.Conn.Write(b)
}
