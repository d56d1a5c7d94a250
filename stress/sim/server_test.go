package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// session is a raw client connection to one simulated node.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, nw *Network, client string) *rawConn {
	nc, err := nw.Dialer(client)(context.Background(), "tcp", nw.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// do sends cmd and reads n reply lines (data lines count).
func (c *rawConn) do(cmd string, n int) string {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, cmd); err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for range n {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("%q: %v after %q", cmd, err, out)
		}
		out = append(out, strings.TrimRight(line, "\r\n"))
	}
	return strings.Join(out, "|")
}

func TestServerProtocol(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := NewNetwork(1, rand.New(rand.NewPCG(1, 2)))
		defer nw.Shutdown()
		c := dialRaw(t, nw, "a")
		defer c.nc.Close()
		steps := []struct {
			cmd  string
			n    int
			want string
		}{
			{"set k 5 0 3\r\nabc\r\n", 1, "STORED"},
			{"gets k\r\n", 3, "VALUE k 5 3 1|abc|END"},
			{"cas k 0 0 1 9\r\nx\r\n", 1, "EXISTS"},
			{"cas k 0 0 1 1\r\nx\r\n", 1, "STORED"},
			{"add k 0 0 1\r\ny\r\n", 1, "NOT_STORED"},
			{"append k 0 0 1\r\nz\r\n", 1, "STORED"},
			{"get k nope\r\n", 3, "VALUE k 0 2|xz|END"},
			{"touch k 10\r\n", 1, "TOUCHED"},
			{"mg k c t f v k O7\r\n", 2, "VA 2 c3 t10 f0 kk O7|xz"},
			// Flags in order, as memcached 1.6 handles them: t before T
			// reports the TTL before the touch, t after it the new one.
			{"mg k t T20\r\n", 1, "HD t10"},
			{"mg k T10 t\r\n", 1, "HD t10"},
			{"mg nope v\r\n", 1, "EN"},
			{"mg nope v q\r\nmn\r\n", 1, "MN"},
			{"ms k 2 T5 F3 c C3\r\nhi\r\n", 1, "HD c4"},
			{"ms k 2 C3\r\nno\r\n", 1, "EX"},
			{"ms new 1 ME c\r\nn\r\n", 1, "HD c5"},
			{"ms new 1 ME\r\nn\r\n", 1, "NS"},
			{"ms gone 1 C3\r\nn\r\n", 1, "NF"},
			{"ms k 1 MA\r\n!\r\n", 1, "HD"},
			{"mg k s v f h l\r\n", 2, "VA 3 s3 f3 h0 l0|hi!"},
			{"md k C1\r\n", 1, "EX"},
			{"md k I T30\r\n", 1, "HD"},
			{"mg k c v\r\n", 2, "VA 3 c7 X W|hi!"},
			{"mg k c v\r\n", 2, "VA 3 c7 X Z|hi!"},
			{"md k q\r\nmn\r\n", 1, "MN"},
			{"mg ag== b k v\r\n", 1, "EN b kag=="},
			{"ms ag== 1 b c\r\nb\r\n", 1, "HD b c8"},
			{"get j\r\n", 3, "VALUE j 0 1|b|END"},
			{"mg j N30 c\r\n", 1, "HD c8"},
			{"mg vivify N30 c\r\n", 1, "HD c9 W"},
			{"flush_all\r\n", 1, "OK"},
			{"mg j v\r\n", 1, "EN"},
			{"ms j 1 c\r\nq\r\n", 1, "HD c10"}, // flush_all keeps the CAS counter
			{"incr j 1\r\n", 1, "CLIENT_ERROR cannot increment or decrement non-numeric value"},
			{"set n 0 1 1\r\n7\r\n", 1, "STORED"},
			{"incr n 5\r\n", 1, "12"},
			{"delete n\r\n", 1, "DELETED"},
			{"delete n\r\n", 1, "NOT_FOUND"},
			{"version\r\n", 1, "VERSION 1.6.21-sim"},
			{"stats\r\n", 4, "STAT pid 1|STAT curr_items 1|STAT evictions 0|END"},
			{"bogus\r\n", 1, "ERROR"},
			{"mg k zz\r\n", 1, "CLIENT_ERROR invalid flag"},
		}
		for _, s := range steps {
			if got := c.do(s.cmd, s.n); got != s.want {
				t.Fatalf("%q: got %q, want %q", s.cmd, got, s.want)
			}
		}
		// Expiry on the node's clock, in whole seconds.
		c.do("set e 0 2 1\r\ne\r\n", 1)
		time.Sleep(3 * time.Second)
		if got := c.do("get e\r\n", 1); got != "END" {
			t.Fatalf("expired item: %q", got)
		}
		// A restart empties the node and resets its CAS counter.
		nd := nw.Node(nw.Addrs()[0])
		nd.Restart()
		c2 := dialRaw(t, nw, "a")
		defer c2.nc.Close()
		if got := c2.do("ms r 1 c\r\nr\r\n", 1); got != "HD c1" {
			t.Fatalf("after restart: %q", got)
		}
	})
}

// TestServerFaults checks pause (commands queue and run late), kill
// (dials refused) and partition (dials hang for the cut-off client only).
func TestServerFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := NewNetwork(1, rand.New(rand.NewPCG(1, 2)))
		defer nw.Shutdown()
		nd := nw.Node(nw.Addrs()[0])
		c := dialRaw(t, nw, "a")
		nd.Pause()
		io.WriteString(c.nc, "set p 0 0 1\r\np\r\n")
		c.nc.Close() // the client gives up
		time.Sleep(time.Second)
		nd.Resume()
		synctest.Wait()
		c2 := dialRaw(t, nw, "b")
		if got := c2.do("get p\r\n", 3); got != "VALUE p 0 1|p|END" {
			t.Fatalf("a paused node runs queued commands on resume: %q", got)
		}
		c2.nc.Close()
		nd.Partition("a")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if _, err := nw.Dialer("a")(ctx, "tcp", nd.Addr); err == nil {
			t.Fatal("dial through a partition succeeded")
		}
		cancel()
		if nc, err := nw.Dialer("b")(context.Background(), "tcp", nd.Addr); err != nil {
			t.Fatalf("dial from the other side: %v", err)
		} else {
			nc.Close()
		}
		nd.Heal()
		nd.Kill()
		if _, err := nw.Dialer("b")(context.Background(), "tcp", nd.Addr); err == nil {
			t.Fatal("dial to a killed node succeeded")
		}
		nd.Start()
	})
}

// TestClockModelSkips checks the clock model against what memcached's
// clock does: never backwards, one or two seconds a tick, every node
// skipping a second within its first 9 ticks; and that an item stored
// with an expiration of n seconds at any instant lives more than n - 2
// seconds (store/memcached adds 2 to every TTL for this) and at most n
// ticks (the sim's checker: expiryBound).
func TestClockModelSkips(t *testing.T) {
	for seed := range uint64(200) {
		m := drawClock(seed)
		skipped := false
		prev := m.at(0)
		period := time.Second + m.drift
		for k := range 12 {
			at := time.Duration(k) * period
			v := m.at(at)
			if d := v - prev; d < 0 || d > 2 || (k > 0 && d == 0) {
				t.Fatalf("seed %d (%+v): tick %d went from %d to %d", seed, m, k, prev, v)
			} else if d == 2 && k <= 9 {
				skipped = true
			}
			if k > 0 && m.at(at-1) != prev {
				t.Fatalf("seed %d: the clock moved between ticks", seed)
			}
			prev = v
		}
		if !skipped {
			t.Fatalf("seed %d (%+v): no skip in the first 9 ticks", seed, m)
		}
		for stored := time.Duration(0); stored < 9*time.Second; stored += 7 * time.Millisecond {
			for n := int64(3); n <= 6; n++ {
				exp := m.at(stored) + n
				gone := stored / period * period // the clock changes only at ticks
				for m.at(gone) < exp {
					gone += period
				}
				if life := gone - stored; life <= time.Duration(n-2)*time.Second || life > time.Duration(n)*period {
					t.Fatalf("seed %d (%+v): stored at %v with %d s: gone after %v", seed, m, stored, n, life)
				}
			}
		}
	}
}

// TestStoreOutlivesTTLAcrossClockSkips writes keys through the memcached
// Store to a node whose clock skips a second at its third tick, one write
// every 37 ms over 4 s (so some land in the second before the skip, when
// the clock lags by almost 2 s), and reads each back just before its TTL
// has passed: every key must be there. The same run with one second less
// of slack (the store before the fix: expiration.go's clockSlack was 1)
// must find a key gone early; a test that cannot fail would pass it.
func TestStoreOutlivesTTLAcrossClockSkips(t *testing.T) {
	for _, c := range []struct {
		name     string
		skew     time.Duration // added to the TTL the Store is given
		wantLoss bool
	}{{"store", 0, false}, {"one-second-slack", -time.Second, true}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nw := NewNetwork(1, rand.New(rand.NewPCG(1, 2)))
				nd := nw.nodes[nw.addrs[0]]
				const drift = 10 * time.Millisecond
				nd.clk = clockModel{offset: time.Second - 3*drift + time.Millisecond, drift: drift} // tick 3 skips
				nd.tab.clk = nd.clk
				nw.minLat, nw.maxLat = 50*time.Microsecond, 100*time.Microsecond
				st, err := memcached.New(memcached.Config{Nodes: nw.Addrs(), DialContext: nw.Dialer("app"), Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				value := record.Record{Header: record.Header{Seq: 1, DataSeq: 1, Timeout: time.Minute}}.Encode()
				const ttl = 2 * time.Second
				var mu sync.Mutex
				var early []string
				var wg sync.WaitGroup
				for i := range 108 {
					wg.Go(func() {
						time.Sleep(time.Duration(i) * 37 * time.Millisecond)
						ctx := context.Background()
						key := fmt.Sprintf("sl:k%d", i)
						start := time.Now()
						if _, err := st.Add(ctx, key, value, ttl+c.skew); err != nil {
							t.Errorf("add %s: %v", key, err)
							return
						}
						time.Sleep(time.Until(start.Add(ttl - 5*time.Millisecond)))
						if _, err := st.Get(ctx, key); errors.Is(err, provider.ErrNotFound) {
							mu.Lock()
							early = append(early, fmt.Sprintf("written at %v", time.Duration(i)*37*time.Millisecond))
							mu.Unlock()
						} else if err != nil {
							t.Errorf("get %s: %v", key, err)
						}
					})
				}
				wg.Wait()
				switch {
				case c.wantLoss && len(early) == 0:
					t.Fatal("one second of slack lost no key: the clock model does not skip")
				case !c.wantLoss && len(early) > 0:
					t.Fatalf("%d keys gone before their %v TTL: %v", len(early), ttl, early)
				}
				t.Logf("%d of 108 keys gone early", len(early))
			})
		})
	}
}
