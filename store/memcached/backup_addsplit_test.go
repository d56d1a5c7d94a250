package memcached_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// rv-d4 M2 (BackupOn, real memcached): two Stores Add one absent key at
// once, and their halves cross: A's primary add lands first, C's backup
// add lands first (each Store's other half waits until the other Store's
// half is there). Each Add then has one half taken and one refused. Both
// settle the copies; they read both copies before either writes (the
// hook holds each until the other has read). The value kept is A's when
// the two Seqs tie (the primary's copy stays) and C's when C's Seq is
// higher (the backup copy is the newer record).
//
// Both Adds answer ErrOutcomeUnknown (each value was on a copy, where
// others may have read it), never ErrExists, and the copies end equal.
// The broken variant (SetAddSplitExists, the code before) answers
// ErrExists on both sides, the stored value's Add included, and its two
// put-backs cross: the primary ends with C's value and the backup copy
// with A's.
func TestCrossedAddsSettle(t *testing.T) {
	servers := startNodes(t, 2)
	for _, c := range []struct {
		name   string
		cSeq   uint64
		stored string
		rounds int
	}{
		{name: "tie", cSeq: 1, stored: "A", rounds: 3},
		{name: "backup-newer", cSeq: 2, stored: "C", rounds: 3},
	} {
		for _, broken := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: "", true: "/broken"}[broken], func(t *testing.T) {
				flush(t, servers)
				probe := newStore(t, servers, memcached.Config{})
				var ga, gc writeOnce
				a := newStore(t, servers, memcached.Config{DialContext: ga.dial})
				cs := newStore(t, servers, memcached.Config{DialContext: gc.dial})
				var bar putBackBarrier
				for _, s := range []*memcached.Store{a, cs} {
					if broken {
						memcached.SetAddSplitExists(s)
					}
					memcached.SetBeforePutBack(s, func(string) { bar.wait(t) })
				}
				va, vc := record(1, "A"), record(c.cSeq, "C")
				for i := range c.rounds {
					key := fmt.Sprintf("crossed:%s:%v:%d", c.name, broken, i)
					primary, backup := probe.Placement(key)
					mp, mb := raw(t, primary), raw(t, backup)
					ga.arm(backup, "ms bak:"+key+" ", holdUntil(t, func() bool { return holds(mb, "bak:"+key, vc) }))
					gc.arm(primary, "ms "+key+" ", holdUntil(t, func() bool { return holds(mp, key, va) }))
					bar.reset()
					var ea, ec error
					var wg sync.WaitGroup
					wg.Add(2)
					go func() { defer wg.Done(); _, ea = a.Add(context.Background(), key, va, time.Minute) }()
					go func() { defer wg.Done(); _, ec = cs.Add(context.Background(), key, vc, time.Minute) }()
					wg.Wait()
					require.True(t, ga.hit() && gc.hit(), "the halves crossed")
					pi, err := mp.Get(key)
					require.NoError(t, err)
					bi, err := mb.Get("bak:" + key)
					require.NoError(t, err)
					t.Logf("A: %v\nC: %v", ea, ec)
					if broken {
						require.ErrorIs(t, ea, provider.ErrExists)
						require.ErrorIs(t, ec, provider.ErrExists)
						require.Equal(t, vc, pi.Value, "A's put-back: C's value on the primary")
						require.Equal(t, va, bi.Value, "C's put-back: A's value on the backup copy")
						continue
					}
					for _, err := range []error{ea, ec} {
						require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
						require.NotErrorIs(t, err, provider.ErrExists, "ErrExists says nothing was written")
					}
					want := map[string][]byte{"A": va, "C": vc}[c.stored]
					require.Equal(t, want, pi.Value, "the primary's copy")
					require.Equal(t, want, bi.Value, "the copies end equal")
					got, err := probe.Get(context.Background(), key)
					require.NoError(t, err)
					require.Equal(t, want, got.Value)
				}
			})
		}
	}
}

// holdUntil is a writeOnce action: it sends the write once until()
// holds (bounded).
func holdUntil(t *testing.T, until func() bool) func(c net.Conn, b []byte) (int, error) {
	return func(c net.Conn, b []byte) (int, error) {
		if !testwait.Poll(5*time.Second, until) {
			t.Errorf("the other Store's half never landed")
		}
		return c.Write(b)
	}
}

// holds reports whether mc holds value under key.
func holds(mc *memcache.Client, key string, value []byte) bool {
	it, err := mc.Get(key)
	return err == nil && bytes.Equal(it.Value, value)
}

// putBackBarrier holds each of the two settling Stores, once the copies
// are read, until both have read them.
type putBackBarrier struct{ n atomic.Int32 }

func (b *putBackBarrier) reset() { b.n.Store(0) }

func (b *putBackBarrier) wait(t *testing.T) {
	b.n.Add(1)
	if !testwait.Poll(5*time.Second, func() bool { return b.n.Load() >= 2 }) {
		t.Errorf("the other Store never read the copies to put one back")
	}
}

// rv-d4b MJ2 and rv-mj2 (BackupOn, real memcached): an Add's halves split
// over a key whose backup copy holds a record of a higher Seq (another
// process's, there first), so its settle would put that copy on the
// primary. Another Store reads the Add's value on the primary and writes
// over it, acknowledged: "late", before the settle's CAS of the primary
// (which is then refused), or "early", before the settle's first read
// (the Add's backup half held until then). The settle leaves the
// primary alone and makes the backup copy follow it: the acknowledged
// write stays the session's, on both copies. The code before
// (SetSettleOverPrimary) read the pair again, or decided on it at once,
// and put the backup copy over the acknowledged write.
func TestSettleKeepsPrimaryWrite(t *testing.T) {
	servers := startNodes(t, 2)
	for _, early := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			name := map[bool]string{false: "late", true: "early"}[early] + map[bool]string{false: "", true: "/code-before"}[broken]
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				const key = "settle:acked"
				var ga writeOnce
				a, mp, mb := settleSetup(t, servers, memcached.Config{DialContext: ga.dial}, broken, memcached.SetSettleOverPrimary, key, record(5, "C"))
				w := newStore(t, servers, memcached.Config{})
				_, backup := a.Placement(key)
				var werr error
				writeOver := func() {
					e, err := w.Get(ctx, key)
					require.NoError(t, err)
					require.Equal(t, record(1, "A"), e.Value, "the Add's value on the primary")
					_, werr = w.CompareAndSwap(ctx, key, record(2, "W"), e.CAS, time.Minute)
				}
				if early {
					ga.arm(backup, "ms bak:"+key+" ", func(c net.Conn, b []byte) (int, error) {
						require.True(t, testwait.Poll(5*time.Second, func() bool { return holds(mp, key, record(1, "A")) }), "the Add's primary half")
						writeOver()
						return c.Write(b)
					})
				} else {
					var once atomic.Bool
					memcached.SetBeforePutBack(a, func(string) {
						if once.CompareAndSwap(false, true) {
							writeOver()
						}
					})
				}
				_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
				require.NoError(t, werr, "the write over the Add's value, acknowledged")
				got, err := w.Get(ctx, key)
				require.NoError(t, err)
				if broken {
					require.Equal(t, record(5, "C"), got.Value, "the code before: the backup copy put over the acknowledged write")
					return
				}
				require.Equal(t, record(2, "W"), got.Value, "the acknowledged write stays")
				bi, err := mb.Get("bak:" + key)
				require.NoError(t, err)
				require.Equal(t, record(2, "W"), bi.Value, "the backup copy follows the primary's")
			})
		}
	}
}

// rv-mj2 (BackupOn, real memcached): while a settle makes the backup copy
// follow the primary (W, Seq 2, written over the Add's value), another
// writer X, which read the pair equal, sends its backup half ahead of its
// primary half (held until the Add returns). The settle finds on the
// backup a record it did not find at first, of a higher Seq than the
// primary's: it leaves it to its writer, and X's write, acknowledged,
// survives the primary losing the key. Put over (the broken variant
// SetSettleOverWritersHalf), the backup copy is older than X's
// acknowledged write, which the primary's loss then loses.
func TestSettleLeavesWritersBackupHalf(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			settleLeavesWritersBackupHalf(t, servers, broken)
		})
	}
}

// settleLeavesWritersBackupHalf is one run of TestSettleLeavesWritersBackupHalf.
func settleLeavesWritersBackupHalf(t *testing.T, servers []*mcserver.Server, broken bool) {
	ctx := context.Background()
	const key = "settle:follow"
	var ga, gx writeOnce
	a, mp, mb := settleSetup(t, servers, memcached.Config{DialContext: ga.dial}, broken, memcached.SetSettleOverWritersHalf, key, record(5, "C"))
	w := newStore(t, servers, memcached.Config{})
	x := newStore(t, servers, memcached.Config{DialContext: gx.dial})
	probe := newStore(t, servers, memcached.Config{})
	primary, backup := a.Placement(key)
	var n atomic.Int32
	var werr error
	xerr := make(chan error, 1)
	addDone := make(chan struct{})
	memcached.SetBeforePutBack(a, func(string) {
		switch n.Add(1) {
		case 1: // W writes over the Add's value (MJ2's write)
			e, err := w.Get(ctx, key)
			require.NoError(t, err)
			_, werr = w.CompareAndSwap(ctx, key, record(2, "W"), e.CAS, time.Minute)
		case 2: // the backup copy followed the primary: X writes before the next read
			ga.arm(backup, "mg bak:"+key+" ", func(c net.Conn, b []byte) (int, error) {
				e, err := x.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, record(2, "W"), e.Value)
				gx.arm(primary, "ms "+key+" ", func(c net.Conn, b []byte) (int, error) {
					<-addDone
					return c.Write(b)
				})
				go func() {
					_, err := x.CompareAndSwap(ctx, key, record(3, "X"), e.CAS, time.Minute)
					xerr <- err
				}()
				require.True(t, testwait.Poll(5*time.Second, func() bool { return holds(mb, "bak:"+key, record(3, "X")) }), "X's backup half landed first")
				return c.Write(b)
			})
		}
	})
	_, err := a.Add(ctx, key, record(1, "A"), time.Minute)
	close(addDone)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "a split Add")
	require.NoError(t, werr)
	require.NoError(t, <-xerr, "X acknowledged")
	require.NoError(t, mp.Delete(key)) // the primary loses the key
	got, err := probe.Get(ctx, key)
	require.NoError(t, err)
	if broken {
		require.Equal(t, record(2, "W"), got.Value, "the code before: the backup copy older than X's acknowledged write")
		return
	}
	require.Equal(t, record(3, "X"), got.Value, "X's acknowledged write survives the primary's loss")
}
