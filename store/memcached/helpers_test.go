package memcached_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// startNodes starts n memcached servers for t (skipping when memcached is
// not installed).
func startNodes(t testing.TB, n int) []*mcserver.Server {
	t.Helper()
	return mcserver.StartForTest(t, n, mcserver.Config{MemoryMB: 32})
}

// newStore returns a Store over servers (or over cfg.Nodes when set: the
// addresses of proxies in front of them), closed when t ends. With
// MEMCACHED_POOLED=1 in the environment every such Store uses pooled
// connections (memcached.ConnsPooled): the package's tests then run over
// the pooled client rather than the default pipelined one.
func newStore(t testing.TB, servers []*mcserver.Server, cfg memcached.Config) *memcached.Store {
	t.Helper()
	if cfg.Nodes == nil {
		cfg.Nodes = mcserver.Addrs(servers)
	}
	if os.Getenv("MEMCACHED_POOLED") != "" {
		cfg.Conns = memcached.ConnsPooled
	}
	if cfg.HealthCheckInterval == 0 {
		cfg.HealthCheckInterval = 50 * time.Millisecond
	}
	if cfg.RepairEvery == 0 {
		// No repair scan unless the test asks for one: a scan's visits
		// would repair the anomalies other tests set up and watch, and its
		// dumps would count on their wires (witness_scan_test.go).
		cfg.RepairEvery = -1
	}
	s, err := memcached.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	if s.Backup() == memcached.BackupWitness {
		// The witness scheme's background loop first reads every node's
		// eviction baseline (stats, stats settings): let it finish, so
		// that its round trips are not counted against a test's calls
		// (TestWitnessRoundTrips saw [3 1 1] for a GetAndTouch in CI).
		testwait.Until(t, 10*time.Second, "the eviction baseline", func() bool { return memcached.EvictionChecks(s) > 0 })
	}
	return s
}

// flush empties every server.
func flush(t testing.TB, servers []*mcserver.Server) {
	t.Helper()
	for _, srv := range servers {
		require.NoError(t, srv.FlushAll(context.Background()))
	}
}

// raw returns a gomemcache client talking to one server only.
func raw(t testing.TB, addr string) *memcache.Client {
	t.Helper()
	c := memcache.New(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// serverAt returns the server listening on addr.
func serverAt(t testing.TB, servers []*mcserver.Server, addr string) *mcserver.Server {
	t.Helper()
	for _, s := range servers {
		if s.Addr() == addr {
			return s
		}
	}
	t.Fatalf("no server at %s", addr)
	return nil
}

// record builds a valid provider record (format version 1, see
// provider/record.go) with the given Seq and values bytes.
func record(seq uint64, values string) []byte {
	const headerLen = 49
	b := make([]byte, headerLen+len(values)+4)
	b[0], b[1], b[2] = 'S', 'L', 1
	binary.BigEndian.PutUint64(b[5:13], seq)
	binary.BigEndian.PutUint64(b[13:21], seq)
	binary.BigEndian.PutUint64(b[21:29], seq)
	binary.BigEndian.PutUint64(b[37:45], uint64(time.Minute))
	binary.BigEndian.PutUint32(b[45:49], uint32(len(values)))
	copy(b[headerLen:], values)
	sum := crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], sum)
	return b
}

// wire counts, per node address, the bytes a Store's connections send
// and receive and its round trips (a write that follows a read, or the
// first write on a connection: pipelined commands flushed together are
// one). Set Config.DialContext to its dial.
type wire struct {
	mu    sync.Mutex
	nodes map[string]*wireCount
}

// wireCount is what one node's connections moved.
// dials counts the connections opened (a witness-mode connection's first
// round trip reads the node's incarnation).
type wireCount struct{ sent, recv, trips, writes, dials uint64 }

func newWire() *wire { return &wire{nodes: make(map[string]*wireCount)} }

func (w *wire) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes[addr] == nil {
		w.nodes[addr] = &wireCount{}
	}
	w.nodes[addr].dials++
	return &countedConn{Conn: c, w: w, n: w.nodes[addr]}, nil
}

// at returns what addr's connections moved so far.
func (w *wire) at(addr string) wireCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.nodes[addr]; c != nil {
		return *c
	}
	return wireCount{}
}

// moved runs fn and returns the bytes it moved on the connections to
// each of addrs.
func (w *wire) moved(addrs []string, fn func()) map[string]float64 {
	before := map[string]wireCount{}
	for _, addr := range addrs {
		before[addr] = w.at(addr)
	}
	fn()
	moved := map[string]float64{}
	for _, addr := range addrs {
		moved[addr] = float64(w.at(addr).minus(before[addr]).bytes())
	}
	return moved
}

// snap returns what the connections to each of the three candidates
// cands moved so far.
func (w *wire) snap(cands []string) (c [3]wireCount) {
	for i, a := range cands {
		c[i] = w.at(a)
	}
	return c
}

// requireTrips waits (bounded) until the round trips to each of cands
// since before are want. A new connection's first round trip reads the
// node's incarnation (R1): it is the connection's, not the operation's,
// and is not counted. The witness touch a call does not wait for can
// still hold its connection when the next call starts, which then opens
// another (CI at 18bf737, and 1 run in 12 here, saw [1 1 2] for a
// CompareAndSwap).
func (w *wire) requireTrips(t *testing.T, cands []string, before [3]wireCount, want [3]uint64, what string) {
	t.Helper()
	var got [3]uint64
	testwait.Until(t, 5*time.Second, what, func() bool {
		now := w.snap(cands)
		for i := range now {
			d := now[i].minus(before[i])
			got[i] = d.trips - d.dials
		}
		if got != want {
			t.Logf("%s: round trips so far %v, want %v", what, got, want)
			return false
		}
		return true
	})
}

func (c wireCount) minus(o wireCount) wireCount {
	return wireCount{sent: c.sent - o.sent, recv: c.recv - o.recv, trips: c.trips - o.trips, writes: c.writes - o.writes, dials: c.dials - o.dials}
}

func (c wireCount) bytes() uint64 { return c.sent + c.recv }

type countedConn struct {
	net.Conn
	w *wire
	n *wireCount
	// writing: the last call was a Write (no reply byte has come since).
	// Guarded by w.mu: pipelined (the default) one goroutine writes and
	// another reads, so a Write is noted (and its bytes counted) when it
	// starts (a reply can only come after it) and a read when bytes came.
	writing bool
}

// SyscallConn exposes the socket under the count, so that the Store's
// check of an idle pooled connection (connCheck) runs on counted
// connections as on real ones.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}

func (c *countedConn) Write(b []byte) (int, error) {
	// Counted before the write: its reply may reach a waiting caller (on
	// the pipeline's reader goroutine) before this call returns.
	c.w.mu.Lock()
	if !c.writing {
		c.n.trips++
	}
	c.writing = true
	c.n.writes++
	c.n.sent += uint64(len(b))
	c.w.mu.Unlock()
	n, err := c.Conn.Write(b)
	if n < len(b) {
		c.w.mu.Lock()
		c.n.sent -= uint64(len(b) - n)
		c.w.mu.Unlock()
	}
	return n, err
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.w.mu.Lock()
	c.n.recv += uint64(n)
	if n > 0 {
		c.writing = false
	}
	c.w.mu.Unlock()
	return n, err
}

// contendedStores empties servers and returns procs Stores over them (app
// servers) with cfg, with key added at Seq 1.
func contendedStores(t *testing.T, servers []*mcserver.Server, procs int, key string, cfg memcached.Config) []*memcached.Store {
	t.Helper()
	flush(t, servers)
	stores := make([]*memcached.Store, procs)
	for i := range stores {
		stores[i] = newStore(t, servers, cfg)
	}
	_, err := stores[0].Add(context.Background(), key, record(1, "start"), time.Minute)
	require.NoError(t, err)
	return stores
}

// wrapDial is a Config.DialContext that dials plainly and wraps each
// connection with wrap, told the address dialled.
func wrapDial(wrap func(addr string, c net.Conn) net.Conn) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return wrap(addr, c), nil
	}
}

// refusingDial is a Config.DialContext that refuses addr while refuse is
// set and dials every other address plainly; wrap (nil: none) wraps each
// connection made to addr (a connection whose reply is lost, or one cut
// when refuse is set).
func refusingDial(addr string, refuse *atomic.Bool, wrap func(net.Conn) net.Conn) func(ctx context.Context, network, a string) (net.Conn, error) {
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == addr && refuse.Load() {
			return nil, errors.New("connection refused (test)")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || a != addr || wrap == nil {
			return c, err
		}
		return wrap(c), nil
	}
}
