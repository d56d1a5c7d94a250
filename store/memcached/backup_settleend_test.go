package memcached_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
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
// the primary: made by hand (C's conditioned CAS of the primary), or run
// (another Store's settle in its first round: it reads (A, C), puts C on
// the primary, reads (C, C) and ends: rv-settle S5). A's write of the
// primary's copy as it read it (A's) onto the backup is stored too: the
// copies are swapped. A reads the pair again, puts C's record on the
// backup (the rules agree on the swapped pair), and both copies end with
// it. The code before (SetSettleLastUnread) ended after that write
// unread: the copies stayed diverged (primary C's, backup A's) and the
// Add said that they were brought to one value (so did C's settle, run).
func TestSettleLastRoundReadAgain(t *testing.T) {
	servers := startNodes(t, 2)
	for _, other := range []string{"by-hand", "run"} {
		for _, broken := range []bool{false, true} {
			t.Run(other+map[bool]string{false: "/fix", true: "/code-before"}[broken], func(t *testing.T) {
				ctx := context.Background()
				const key = "settle:last"
				va, vc := record(1, "A"), record(3, "C")
				a, mp, mb := settleSetup(t, servers, memcached.Config{}, broken, memcached.SetSettleLastUnread, key, vc)
				c := newStore(t, servers, memcached.Config{})
				var cerr error
				var n atomic.Int32
				memcached.SetBeforePutBack(a, func(string) {
					switch n.Add(1) {
					case 1: // A's CAS of the primary is refused: A follows the primary
						sameBytes(t, mp, key)
					case 2, 3: // A's writes of the backup copy are refused
						sameBytes(t, mb, "bak:"+key)
					case 4: // C's settle, on the same pair, by the Seq rule
						if other == "run" {
							cerr = memcached.SettleSplitAdd(ctx, c, key, vc, false)
							return
						}
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
				require.NoError(t, cerr, "C's settle, run, said settled")
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
}

// rv-mj2 mn-c, rv-settle S3: a settle whose writes keep being refused
// gives up after maxRepairRounds refusals on a read of the pair, and the
// Add's answer says that the copies may differ (still ErrOutcomeUnknown);
// the Store reports it with an EventWarning on the key's primary node
// that does not name the key. The code before (SetSettleLastUnread) gave
// up as silently as it settled.
func TestSettleGivesUpAloud(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "sl:app:settle-refused-0123456789abcdef"
			events := &eventLog{}
			a, mp, mb := settleSetup(t, servers, memcached.Config{OnEvent: events.add}, broken, memcached.SetSettleLastUnread, key, record(3, "C"))
			primary, _ := a.Placement(key)
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
			warned := events.of(provider.EventWarning)
			if broken {
				require.Contains(t, err.Error(), "were brought to one value", "the code before: copies left diverged, silently")
				require.Empty(t, warned, "the code before: no event")
				return
			}
			require.Contains(t, err.Error(), "did not finish")
			require.Contains(t, err.Error(), "kept changing")
			require.Len(t, warned, 1, "the unsettled end reported once") // the settle emits before the Add answers
			e := warned[0]
			t.Logf("event: %s %s: %s: %v", e.Kind, e.Node, e.Detail, e.Err)
			require.Equal(t, primary, e.Node)
			require.Contains(t, e.Detail, "not brought to one value")
			require.Contains(t, e.Err.Error(), "kept changing")
			require.Contains(t, e.Err.Error(), "<key>")
			for _, part := range []string{e.Detail, e.Err.Error()} {
				require.NotContains(t, part, "settle-refused", "events never carry the key")
			}
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
	if broken && setBroken != nil {
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

// rv-d4b mn5, rv-settle S2 (BackupOn, real memcached): the caller of a
// split Add whose settle runs over slow nodes (each of its commands from
// its first write on takes 150 ms, under the 200 ms Timeout, so neither
// node is marked down) and whose writes keep being refused is answered
// one Timeout past its deadline (100 ms away): 300 ms, not at its
// deadline (a settle stopped with the caller) nor at 2 Timeouts or the
// settle's end (the caller's deadline ignored). The settle goes on to
// its own bound (four refused writes) and warns. The code before
// (SetSettleUnbounded) held the caller for the whole settle: 12 commands
// of 150 ms, 1.7 s past its deadline.
func TestSettleBounded(t *testing.T) {
	servers := startNodes(t, 2)
	const timeout, delay, deadline = 200 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "settle:slow"
			var slow atomic.Bool
			events := &eventLog{}
			a, mp, mb := settleSetup(t, servers, memcached.Config{Timeout: timeout, OnEvent: events.add, DialContext: wrapDial(func(_ string, c net.Conn) net.Conn {
				return &slowConn{Conn: c, slow: &slow, match: key, delay: delay}
			})}, broken, memcached.SetSettleUnbounded, key, record(3, "C"))
			primary, backup := a.Placement(key)
			var n atomic.Int32
			memcached.SetBeforePutBack(a, func(string) {
				n.Add(1)
				slow.Store(true) // from the settle's first write on
				sameBytes(t, mp, key)
				sameBytes(t, mb, "bak:"+key)
			})
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
			took := time.Since(start)
			t.Logf("answered after %v: %v", took, err)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add, its settle ended or not")
			if broken {
				require.GreaterOrEqual(t, took, 10*delay, "the code before: the caller held for four rounds of slow commands")
				return
			}
			require.Contains(t, err.Error(), "it goes on", "answered while the settle runs, and says so")
			require.Greater(t, took, deadline+timeout/2, "not answered at the caller's deadline: a Timeout past it")
			require.Less(t, took, 2*timeout-50*time.Millisecond, "answered by the caller's deadline plus a Timeout, not 2 Timeouts or the settle's end")
			waitUntil(t, 5*time.Second, "the settle's end, reported", func() bool { return len(events.of(provider.EventWarning)) > 0 })
			t.Logf("the settle ended after %v, %d writes", time.Since(start), n.Load())
			require.Equal(t, int32(4), n.Load(), "the settle ran to its own bound: four refused writes")
			require.Contains(t, events.of(provider.EventWarning)[0].Err.Error(), "kept changing")
			require.True(t, isUp(a, primary) && isUp(a, backup), "slow, not down")
		})
	}
}

// rv-settle S2: a settle whose writes are all stored, while another party
// moves the other copy each time (here the primary, rewritten with other
// bytes of the same Seq before each of the settle's writes of the
// backup), gives up after 2 × maxRepairRounds rounds: eight writes, none
// refused. The hook stops moving the primary after twelve writes, so a
// settle without the round bound ends settled (and, the copies equal,
// says so) instead of running on.
func TestSettleRoundBound(t *testing.T) {
	servers := startNodes(t, 2)
	const key = "settle:rounds"
	a, mp, _ := settleSetup(t, servers, memcached.Config{}, false, nil, key, record(1, "C"))
	var n atomic.Int32
	memcached.SetBeforePutBack(a, func(string) {
		if k := n.Add(1); k <= 12 {
			require.NoError(t, mp.Set(&memcache.Item{Key: key, Value: record(1, fmt.Sprintf("P%d", k)), Expiration: 60}))
		}
	})
	_, err := a.Add(context.Background(), key, record(1, "A"), time.Minute)
	t.Log(err)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
	require.Equal(t, int32(8), n.Load(), "eight rounds, each with a write")
	require.Contains(t, err.Error(), "kept changing (0 writes refused in 8 rounds)")
}

// rv-settle S1 (BackupOn, real memcached): the settle runs past the
// caller's deadline to its own bounds, on a goroutine Close waits for. A's
// Add (Seq 1) splits against C's record (Seq 3) on the backup copy, and
// its settle is delayed: by slow reads (both nodes answer its reads in
// 150 ms, under the 200 ms Timeout; the caller's deadline is 100 ms away:
// the caller is answered while the settle goes on, and Close, called
// then, waits for it), or by a process stall of 2 Timeouts between its
// read and its write (a GC pause; no caller deadline). Either way the
// settle puts C on the primary: a write W built on what the next Get
// serves (C) is acknowledged, and survives the primary's loss of the key.
// With the settle cut at its deadline (SetSettleCut, d76aa64: 2 Timeouts,
// or one past the caller's deadline), it ended before its first write,
// leaving primary A (Seq 1) and backup C (Seq 3): W, built on A with
// Seq 2, was acknowledged ("newer already there" on the backup), and the
// primary's loss restored C over it.
func TestSettleRunsPastDeadline(t *testing.T) {
	servers := startNodes(t, 2)
	const timeout = 200 * time.Millisecond
	for _, how := range []string{"slow-reads", "stall"} {
		for _, broken := range []bool{false, true} {
			t.Run(how+map[bool]string{false: "/fix", true: "/cut"}[broken], func(t *testing.T) {
				ctx := context.Background()
				const key = "settle:cut"
				vc := record(3, "C")
				cfg := memcached.Config{Timeout: timeout}
				if how == "slow-reads" {
					cfg.DialContext = wrapDial(func(_ string, c net.Conn) net.Conn {
						return &slowConn{Conn: c, cmd: "mg ", match: key, delay: 150 * time.Millisecond}
					})
				}
				a, mp, mb := settleSetup(t, servers, cfg, broken, memcached.SetSettleCut, key, vc)
				actx := ctx
				if how == "stall" {
					var once atomic.Bool
					memcached.SetBeforePutBack(a, func(string) {
						if once.CompareAndSwap(false, true) {
							time.Sleep(2*timeout + 20*time.Millisecond) // the stall itself, not a wait for a condition
						}
					})
				} else {
					var cancel context.CancelFunc
					actx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
				}
				_, err := a.Add(actx, key, record(1, "A"), time.Minute)
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				t.Logf("Add: %v", err)
				if how == "slow-reads" && !broken {
					require.Contains(t, err.Error(), "it goes on", "answered while the settle runs")
				}
				require.NoError(t, a.Close(), "Close waits for the settle")
				pi, perr := mp.Get(key)
				require.NoError(t, perr)
				bi, berr := mb.Get("bak:" + key)
				require.NoError(t, berr)
				t.Logf("after Close: primary %q, backup %q", pi.Value[49:50], bi.Value[49:50])
				w := newStore(t, servers, memcached.Config{Timeout: timeout})
				e, err := w.Get(ctx, key)
				require.NoError(t, err)
				h, err := rec.Parse(e.Value)
				require.NoError(t, err)
				next := record(h.Seq+1, "W") // built on what W read
				_, err = w.CompareAndSwap(ctx, key, next, e.CAS, time.Minute)
				require.NoError(t, err, "W's write acknowledged")
				require.NoError(t, mp.Delete(key), "the primary loses the key (an eviction, a restart)")
				g, err := w.Get(ctx, key)
				require.NoError(t, err)
				if broken {
					require.Equal(t, record(1, "A"), pi.Value, "cut: the settle wrote nothing")
					require.Equal(t, vc, g.Value, "cut: the acknowledged write lost to the backup copy newer by Seq")
					return
				}
				require.Equal(t, vc, pi.Value, "the settle put C on the primary before Close returned")
				require.Equal(t, vc, bi.Value)
				require.Equal(t, next, g.Value, "the acknowledged write survives the primary's loss")
			})
		}
	}
}

// TestSettleNotStartedAfterClose: a settle whose Add was in flight when
// the Store was closed does not start (Close may already be past waiting
// for the settles running).
func TestSettleNotStartedAfterClose(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ran := make(chan struct{})
	require.True(t, memcached.GoSettle(s, func() { close(ran) }), "open: started")
	<-ran
	require.NoError(t, s.Close())
	require.False(t, memcached.GoSettle(s, func() { t.Error("a settle ran after Close") }), "closed: not started")
}

// slowConn delays by delay every write that names match (and starts
// with cmd, if set), once slow is set (always, if slow is nil): a node
// slow to take commands (with cmd "mg ", slow to answer reads; the Add's
// halves and the settle's writes are meta sets).
type slowConn struct {
	net.Conn
	slow  *atomic.Bool
	cmd   string
	match string
	delay time.Duration
}

func (c *slowConn) Write(b []byte) (int, error) {
	if (c.slow == nil || c.slow.Load()) && strings.HasPrefix(string(b), c.cmd) && strings.Contains(string(b), c.match) {
		time.Sleep(c.delay) // the node's slowness itself, not a wait for a condition
	}
	return c.Conn.Write(b)
}

// of returns the events of kind recorded so far.
func (l *eventLog) of(kind provider.EventKind) []provider.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var es []provider.Event
	for _, e := range l.events {
		if e.Kind == kind {
			es = append(es, e)
		}
	}
	return es
}
