package memcached_test

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

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
