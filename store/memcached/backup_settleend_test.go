package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
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
// the primary: made by hand (C's conditioned CAS of the primary; C's
// settle, run, went that way when an Add's backup half could land before
// its primary half: rv-settle S5, impossible since bocontract). A's write of the
// primary's copy as it read it (A's) onto the backup is stored too: the
// copies are swapped. A reads the pair again, puts C's record on the
// backup (the rules agree on the swapped pair), and both copies end with
// it. The code before (SetSettleLastUnread) ended after that write
// unread: the copies stayed diverged (primary C's, backup A's) and the
// Add said that they were brought to one value (so did C's settle, run).
func TestSettleLastRoundReadAgain(t *testing.T) {
	servers := startNodes(t, 2)
	for _, other := range []string{"by-hand"} {
		for _, broken := range []bool{false, true} {
			t.Run(other+map[bool]string{false: "/fix", true: "/code-before"}[broken], func(t *testing.T) {
				ctx := context.Background()
				const key = "settle:last"
				va, vc := record(1, "A"), record(3, "C")
				a, mp, mb := settleSetup(t, servers, memcached.Config{}, broken, memcached.SetSettleLastUnread, key, vc)
				var cerr error // C's settle's, when run (none since bocontract)
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
			waitUntil(t, 5*time.Second, "the unsettled end, reported", func() bool { return len(events.of(provider.EventWarning)) > 0 }) // emitted after the answer
			warned = events.of(provider.EventWarning)
			require.Len(t, warned, 1, "the unsettled end reported once")
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
// split Add whose settle is still running is answered one Timeout past
// its deadline (when exactly: TestSettleAnswerAt), and told that the
// settle goes on. The settle's first write is held (a stall: a GC pause,
// a slow node) until the Add has answered, or for hold at most; its
// writes are then refused until it gives up (four) and warns. The answer
// came more than half a Timeout past the deadline (not at the deadline:
// a settle stopped with the caller; nor 2 Timeouts after the settle's
// start, the deadline ignored) and while the settle was held, so
// before its end; the settle then ran to its own bound. Only a lower
// bound on time is asserted: a slow machine answers later, never
// earlier. The code before (SetSettleUnbounded) held the caller for the
// whole settle: the hold ran out with the caller still waiting, and the
// answer came after the fourth write.
func TestSettleBounded(t *testing.T) {
	servers := startNodes(t, 2)
	// The deadline is 2.5 Timeouts away: an answer 2 Timeouts after the
	// settle's start (the caller's deadline ignored) comes before the
	// lower bound, half a Timeout past the deadline, too.
	const timeout, deadline, hold = 200 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "settle:held"
			events := &eventLog{}
			a, mp, mb := settleSetup(t, servers, memcached.Config{Timeout: timeout, OnEvent: events.add}, broken, memcached.SetSettleUnbounded, key, record(3, "C"))
			answered := make(chan struct{})
			var n atomic.Int32
			var heldToAnswer atomic.Bool // the settle's first write waited for the Add's answer
			memcached.SetBeforePutBack(a, func(string) {
				if n.Add(1) == 1 {
					select {
					case <-answered:
						heldToAnswer.Store(true)
					case <-time.After(hold): // the hold's bound: the caller still waits for the settle
					}
				}
				sameBytes(t, mp, key)
				sameBytes(t, mb, "bak:"+key)
			})
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			dl, _ := ctx.Deadline()
			_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
			at := time.Now()
			writes, warned := n.Load(), len(events.of(provider.EventWarning))
			close(answered)
			t.Logf("answered %v past the deadline, %d writes in: %v", at.Sub(dl), writes, err)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add, its settle ended or not")
			if broken {
				require.False(t, heldToAnswer.Load(), "the code before: the hold ran out, the caller still waiting")
				require.Equal(t, int32(4), writes, "the code before: answered at the settle's end")
				require.NotContains(t, err.Error(), "it goes on")
				return
			}
			require.Contains(t, err.Error(), "it goes on", "answered while the settle runs, and says so")
			require.True(t, at.After(dl.Add(timeout/2)), "answered a Timeout past the caller's deadline, not at it nor 2 Timeouts after the start")
			require.LessOrEqual(t, writes, int32(1), "answered while the settle's first write was held")
			require.Zero(t, warned, "answered before the settle's end")
			waitUntil(t, 5*time.Second, "the settle's end, reported", func() bool { return len(events.of(provider.EventWarning)) > 0 })
			t.Logf("the settle ended %v past the deadline, %d writes", time.Since(dl), n.Load())
			require.True(t, heldToAnswer.Load(), "the settle's first write released by the answer, not by the hold's bound")
			require.Equal(t, int32(4), n.Load(), "the settle ran to its own bound: four refused writes")
			require.Contains(t, events.of(provider.EventWarning)[0].Err.Error(), "kept changing")
		})
	}
}

// rv-settle S2: when the caller of a split Add is answered if its settle
// still runs (settleAdd): one Timeout past the caller's deadline, however
// far that is from now (not 2 Timeouts from the settle's start, nor the
// deadline itself), even if it has passed (answered at once); without a
// deadline, or with SetSettleUnbounded or SetSettleCut, never: the caller
// waits for the settle's end.
func TestSettleAnswerAt(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, d := range []time.Time{time.Now().Add(time.Hour), time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)} {
		ctx, cancel := context.WithDeadline(context.Background(), d)
		at, ok := memcached.SettleAnswerAt(ctx, timeout, false)
		require.True(t, ok, "a deadline: answered while the settle runs")
		require.True(t, at.Equal(d.Add(timeout)), "one Timeout past the caller's deadline %v: got %v", d, at)
		_, ok = memcached.SettleAnswerAt(ctx, timeout, true)
		require.False(t, ok, "the hooks' code before: the caller waits for the settle's end")
		cancel()
	}
	_, ok := memcached.SettleAnswerAt(context.Background(), timeout, false)
	require.False(t, ok, "no deadline: the caller waits for the settle's end")
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
				checkSettledByClose(t, servers, timeout, mp, mb, key, vc, broken, "cut")
			})
		}
	}
}

// rv-settle2 R1 (BackupOn, real memcached): a split Add in flight when
// Close begins. A's Add (Seq 1) passed its first check; as its backup
// half is sent, Close sets the Store closed and then takes long to stop
// the health check (a node's recovery in progress: here until A's Add is
// answered). The primary takes A, the backup copy (C's, Seq 3) refuses
// it. Close waits for the Add, counted before its halves went out, and
// so for its settle: the copies end with C on both, and a write W built
// on what the next Get serves is acknowledged and survives the primary's
// loss of the key. The code before (SetAddUntracked) waited only for
// settles already started: A's settle, reached after Close set closed,
// did not start, leaving primary A and backup C (the S1 state): W, built
// on A with Seq 2, was acknowledged ("newer already there" on the
// backup), and the primary's loss restored C over it.
func TestCloseWaitsForSplitAdd(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			ctx := context.Background()
			const key = "settle:closing"
			vc := record(3, "C")
			var ap atomic.Pointer[memcached.Store]
			var fired atomic.Bool
			closing, answered, closed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
			cfg := memcached.Config{DialContext: wrapDial(func(_ string, c net.Conn) net.Conn {
				return &beforeWriteConn{Conn: c, before: func(b []byte) {
					if strings.HasPrefix(string(b), "ms bak:"+key) && fired.CompareAndSwap(false, true) {
						go func() { closed <- ap.Load().Close() }()
						<-closing // Close has set the Store closed
					}
				}}
			})}
			a, mp, mb := settleSetup(t, servers, cfg, broken, memcached.SetAddUntracked, key, vc)
			ap.Store(a)
			memcached.SetClosing(a, func() {
				close(closing)
				<-answered // the health check's stop takes until the Add is answered
			})
			_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
			close(answered)
			t.Logf("Add: %v", err)
			require.True(t, fired.Load(), "Close began while the Add's halves were sent")
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
			if broken {
				require.Contains(t, err.Error(), "closed before the settle started")
			} else {
				require.NotContains(t, err.Error(), "did not finish", "the settle ran")
			}
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
			checkSettledByClose(t, servers, 0, mp, mb, key, vc, broken, "code before")
		})
	}
}

// checkSettledByClose checks, once the Store that made a split Add
// (A's record, Seq 1, against vc on the backup copy) is closed, that its
// settle put vc on both copies: a write W built on what another Store's
// Get serves is acknowledged and survives the primary's loss of the key.
// When broken (the variant named before), the settle wrote nothing:
// primary A, and W lost to the backup copy newer by Seq.
func checkSettledByClose(t *testing.T, servers []*mcserver.Server, timeout time.Duration, mp, mb *memcache.Client, key string, vc []byte, broken bool, before string) {
	t.Helper()
	ctx := context.Background()
	pi, err := mp.Get(key)
	require.NoError(t, err)
	bi, err := mb.Get("bak:" + key)
	require.NoError(t, err)
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
		require.Equal(t, record(1, "A"), pi.Value, before+": the settle wrote nothing")
		require.Equal(t, vc, g.Value, before+": the acknowledged write lost to the backup copy newer by Seq")
		return
	}
	require.Equal(t, vc, pi.Value, "the settle put C on the primary before Close returned")
	require.Equal(t, vc, bi.Value)
	require.Equal(t, next, g.Value, "the acknowledged write survives the primary's loss")
}

// TestCloseWaitsForAdd: Close waits for a BackupOn Add counted before it
// began (enterAdd, before the Add sends anything), and no Add is counted
// once the Store is closed (such an Add answers provider.ErrClosed,
// nothing sent).
func TestCloseWaitsForAdd(t *testing.T) {
	servers := startNodes(t, 2)
	s := newStore(t, servers, memcached.Config{})
	ok, done := memcached.EnterAdd(s)
	require.True(t, ok, "open: counted")
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while an Add was in flight")
	case <-time.After(100 * time.Millisecond): // the bound of the assertion: Close still waits
	}
	ok, _ = memcached.EnterAdd(s)
	require.False(t, ok, "closing: not counted")
	done()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the Add ended")
	}
}

// rv-settle2 R3 (BackupOn, real memcached, run with -race): rounds of 16
// Adds, each built to split (every backup copy holds C's record of Seq 3),
// racing Close. Every Add answers nil, ErrOutcomeUnknown (split, its
// settle run) or ErrClosed (nothing sent), never that its settle did not
// start, and no command at all is sent once Close has returned: Close
// waited for every Add that sent one, and for its settle. Without
// addsMu (an Add counted while Close's Wait runs with the counter at
// zero), -race reports the WaitGroup's misuse.
func TestSplitAddsRaceClose(t *testing.T) {
	servers := startNodes(t, 2)
	raws := map[string]*memcache.Client{}
	var outcomes [3]int
	for round := range 150 {
		flush(t, servers)
		var closedAt atomic.Bool
		var after atomic.Int64
		cfg := memcached.Config{DialContext: wrapDial(func(_ string, c net.Conn) net.Conn {
			return &beforeWriteConn{Conn: c, before: func(b []byte) {
				if closedAt.Load() {
					t.Logf("after Close: %q", strings.SplitN(string(b), "\r\n", 2)[0])
					after.Add(1)
				}
			}}
		})}
		s := newStore(t, servers, cfg)
		keys := make([]string, 16)
		for i := range keys {
			keys[i] = fmt.Sprintf("settle:race:%d:%d", round, i)
			_, b := s.Placement(keys[i])
			if raws[b] == nil {
				raws[b] = raw(t, b)
			}
			require.NoError(t, raws[b].Set(&memcache.Item{Key: "bak:" + keys[i], Value: record(3, "C"), Expiration: 60}))
		}
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { _, errs[i] = s.Add(context.Background(), keys[i], record(1, "A"), time.Minute) })
		}
		time.Sleep(time.Duration(round%5) * 200 * time.Microsecond) // where Close falls among the Adds, not a wait for a condition
		require.NoError(t, s.Close())
		closedAt.Store(true)
		wg.Wait()
		for _, err := range errs {
			switch {
			case err == nil:
				outcomes[0]++
			case errors.Is(err, provider.ErrOutcomeUnknown):
				require.NotContains(t, err.Error(), "closed before the settle started")
				outcomes[1]++
			default:
				require.ErrorIs(t, err, provider.ErrClosed)
				outcomes[2]++
			}
		}
		require.Zero(t, after.Load(), "no command sent after Close returned")
	}
	t.Logf("Adds stored %d, split and settled %d, refused as closed %d", outcomes[0], outcomes[1], outcomes[2])
	require.NotZero(t, outcomes[1], "some Adds split before Close")
}

// rv-settle2 R2 (BackupOn, real memcached): an OnEvent that calls Close
// on a split Add's warning (its settle gave up: every write refused) and
// waits for it. The settle emits the warning once it has answered the
// caller and left what Close waits for: Close returns, and so does the
// Add. The code before (SetWarnBeforeAnswer) emitted it from within the
// settle Close waits for: Close waited for its own caller (here until
// the callback gave up after 1 s; unbounded, for ever, and the Add with
// it).
func TestCloseFromSettleWarning(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			const key = "settle:close-from-event"
			var ap atomic.Pointer[memcached.Store]
			returned := make(chan bool, 1)
			cfg := memcached.Config{OnEvent: func(e provider.Event) {
				if e.Kind != provider.EventWarning {
					return
				}
				closed := make(chan struct{})
				go func() {
					_ = ap.Load().Close()
					close(closed)
				}()
				select {
				case <-closed:
					returned <- true
				case <-time.After(time.Second):
					returned <- false
				}
			}}
			a, mp, mb := settleSetup(t, servers, cfg, broken, memcached.SetWarnBeforeAnswer, key, record(3, "C"))
			ap.Store(a)
			memcached.SetBeforePutBack(a, func(string) {
				sameBytes(t, mp, key)
				sameBytes(t, mb, "bak:"+key)
			})
			_, err := a.Add(context.Background(), key, record(1, "A"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			var ok bool
			select {
			case ok = <-returned:
			case <-time.After(5 * time.Second):
				t.Fatal("no warning")
			}
			if broken {
				require.False(t, ok, "code before: Close called from the warning waits for the settle emitting it")
				return
			}
			require.True(t, ok, "Close called from the warning returns")
		})
	}
}

// beforeWriteConn calls before(b) before each write.
type beforeWriteConn struct {
	net.Conn
	before func([]byte)
}

func (c *beforeWriteConn) Write(b []byte) (int, error) {
	c.before(b)
	return c.Conn.Write(b)
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
