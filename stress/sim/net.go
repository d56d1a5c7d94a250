package sim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Network is a set of simulated memcached nodes and the connections app
// servers (clients) open to them through Dialer. Every connection is a
// net.Pipe: inside a testing/synctest bubble a goroutine blocked on it is
// durably blocked, so the bubble's clock jumps over waits and timeouts.
//
// Each connection has a reader that takes commands off the pipe as fast as
// the client sends them (the socket buffer) and an executor that runs them
// in order. Faults act on executors and dials:
//
//   - Pause: executors of the node wait; commands queue and run late, in
//     order, even those of connections the client has given up on (a
//     SIGSTOPped memcached). Dials succeed (the kernel accepts).
//   - Partition from some clients: their dials hang until they time out,
//     and their connections' commands wait like a pause, for them only
//     (TCP retransmits what was sent once the partition heals).
//   - Kill: connections close, dials are refused, memory is lost.
//   - Restart: a killed node comes back empty, its CAS counter from 0.
//   - Flush: flush_all (memory cleared, CAS counter kept).
//   - Delay: each command of the node waits a random time first, drawn
//     per connection, so commands reorder across connections but never
//     within one.
type Network struct {
	mu    sync.Mutex
	nodes map[string]*Node
	addrs []string
	rng   *rand.Rand // per-connection delays

	minLat, maxLat time.Duration // each command's latency
	// onCmd, when set, runs after each command a node executes, before
	// its reply is sent, with the command's key ("" when it has none) (set
	// before the first dial).
	onCmd func(key string)
	// unstore, when set, is asked before each command a node executes
	// (with its fields): true, and the command's item is put back as it
	// was once it ran, its reply unchanged (a node that acknowledges a
	// write it did not keep): a deliberately broken variant for the
	// checker's tests (Params.dropCreateWitness; set before the first
	// dial).
	unstore func(fields []string) bool

	conns sync.WaitGroup // every connection's reader and executor
}

// Node is one simulated memcached process.
type Node struct {
	Addr string
	clk  clockModel

	mu          sync.Mutex
	tab         *table
	dead        bool
	incarnation int
	resume      chan struct{} // nil while running; closed on resume
	cut         map[string]chan struct{}
	delayUntil  time.Time
	maxDelay    time.Duration
	conns       map[*serverConn]struct{}
}

// NewNetwork returns n nodes, addresses "192.0.2.I:11211", each with its own
// clock (clockModel) drawn from rng.
func NewNetwork(n int, rng *rand.Rand) *Network {
	nw := &Network{nodes: make(map[string]*Node), rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
	for i := range n {
		addr := fmt.Sprintf("192.0.2.%d:11211", i+1) // TEST-NET-1: never a real host
		nd := &Node{Addr: addr, clk: drawClock(rng.Uint64()), cut: make(map[string]chan struct{}), conns: make(map[*serverConn]struct{})}
		nd.tab = newTable(time.Now(), nd.clk)
		nw.nodes[addr] = nd
		nw.addrs = append(nw.addrs, addr)
	}
	return nw
}

// Addrs returns the nodes' addresses.
func (nw *Network) Addrs() []string { return append([]string(nil), nw.addrs...) }

// Node returns the node at addr.
func (nw *Network) Node(addr string) *Node { return nw.nodes[addr] }

// Dialer returns the dial function of app server client.
func (nw *Network) Dialer(client string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := nw.nodes[addr]
		if nd == nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("no such host %s", addr)}
		}
		nd.mu.Lock()
		if nd.dead {
			nd.mu.Unlock()
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		if healed, ok := nd.cut[client]; ok {
			nd.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
			case <-healed:
			}
			nd.mu.Lock()
			if nd.dead {
				nd.mu.Unlock()
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
			}
		}
		nw.mu.Lock()
		seed := nw.rng.Uint64()
		nw.mu.Unlock()
		cli, srv := net.Pipe()
		sc := &serverConn{node: nd, client: client, onCmd: nw.onCmd, unstore: nw.unstore, minLat: nw.minLat, maxLat: nw.maxLat, nc: srv, incarnation: nd.incarnation, queue: make(chan *request, 256), rng: rand.New(rand.NewPCG(seed, 1))}
		nd.conns[sc] = struct{}{}
		nd.mu.Unlock()
		nw.conns.Go(sc.read)
		nw.conns.Go(sc.execute)
		return cli, nil
	}
}

// Shutdown ends every fault, kills every node and waits until no
// goroutine of the network is left (a bubble must not end with one).
func (nw *Network) Shutdown() {
	for _, addr := range nw.addrs {
		nd := nw.nodes[addr]
		nd.Resume()
		nd.Heal()
		nd.Kill()
	}
	nw.conns.Wait()
}

// Flush runs flush_all on the node (if it is up).
func (nd *Node) Flush() {
	nd.mu.Lock()
	tab := nd.tab
	nd.mu.Unlock()
	tab.mu.Lock()
	tab.flush(0)
	tab.mu.Unlock()
}

// Kill stops the node: connections close, dials are refused, memory is
// lost.
func (nd *Node) Kill() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.dead {
		return
	}
	nd.dead = true
	nd.incarnation++
	for sc := range nd.conns {
		sc.nc.Close()
	}
	clear(nd.conns)
	if nd.resume != nil {
		close(nd.resume)
		nd.resume = nil
	}
}

// Start starts a killed node, empty, its CAS counter from zero.
func (nd *Node) Start() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if !nd.dead {
		return
	}
	nd.dead = false
	nd.tab = newTable(time.Now(), nd.clk)
}

// Restart kills and starts the node: it comes back empty.
func (nd *Node) Restart() {
	nd.Kill()
	nd.Start()
}

// Pause stops the node's executors (SIGSTOP) until Resume.
func (nd *Node) Pause() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.resume == nil && !nd.dead {
		nd.resume = make(chan struct{})
	}
}

// Resume lets a paused node run the commands queued meanwhile (SIGCONT).
func (nd *Node) Resume() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.resume != nil {
		close(nd.resume)
		nd.resume = nil
	}
}

// Partition cuts the node off from the given clients until Heal.
func (nd *Node) Partition(clients ...string) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	for _, c := range clients {
		if _, ok := nd.cut[c]; !ok {
			nd.cut[c] = make(chan struct{})
		}
	}
}

// Heal ends the partition of the node from the given clients, or every
// partition of the node when none is given.
func (nd *Node) Heal(clients ...string) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	for c, ch := range nd.cut {
		if len(clients) == 0 || slices.Contains(clients, c) {
			close(ch)
			delete(nd.cut, c)
		}
	}
}

// Delay makes every command of the node wait up to maxWait first, for d.
// Overlapping delays add up: the node is delayed until the last of them
// ends, by the largest maxWait of those still running.
func (nd *Node) Delay(d, maxWait time.Duration) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	now := time.Now()
	if now.After(nd.delayUntil) {
		nd.maxDelay = 0
	}
	if until := now.Add(d); until.After(nd.delayUntil) {
		nd.delayUntil = until
	}
	nd.maxDelay = max(nd.maxDelay, maxWait)
}

// Items returns the live keys on the node, for checks and debugging.
func (nd *Node) Items() map[string][]byte {
	nd.mu.Lock()
	tab := nd.tab
	dead := nd.dead
	nd.mu.Unlock()
	out := make(map[string][]byte)
	if dead {
		return out
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	now := tab.clock()
	for k := range tab.items {
		if it := tab.lookup(k, now); it != nil {
			out[k] = it.value
		}
	}
	return out
}

// serverConn is the node's side of one client connection.
type serverConn struct {
	node        *Node
	client      string
	nc          net.Conn
	incarnation int
	queue       chan *request
	rng         *rand.Rand
	onCmd       func(key string)
	unstore     func(fields []string) bool

	minLat, maxLat time.Duration
}

// read takes commands off the connection as the client sends them.
func (sc *serverConn) read() {
	defer close(sc.queue)
	br := bufio.NewReader(sc.nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		rq := &request{line: line, fields: strings.Fields(line)}
		if n := dataLen(rq.fields); n >= 0 {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			rq.data = buf[:n]
			rq.badEnd = string(buf[n:]) != "\r\n"
		}
		sc.queue <- rq
	}
}

// gate waits until the node may run a command for this connection. It
// returns the node's table, or nil when the connection's process is gone.
func (sc *serverConn) gate() *table {
	for {
		nd := sc.node
		nd.mu.Lock()
		if nd.dead || nd.incarnation != sc.incarnation {
			nd.mu.Unlock()
			return nil
		}
		wait := nd.resume
		if wait == nil {
			wait = nd.cut[sc.client]
		}
		var delay time.Duration
		if wait == nil {
			delay = sc.minLat
			if sc.maxLat > sc.minLat {
				delay += time.Duration(sc.rng.Int64N(int64(sc.maxLat - sc.minLat)))
			}
			if time.Now().Before(nd.delayUntil) && nd.maxDelay > 0 {
				delay += time.Duration(sc.rng.Int64N(int64(nd.maxDelay)))
			}
		}
		tab := nd.tab
		nd.mu.Unlock()
		if wait != nil {
			<-wait
			continue
		}
		if delay > 0 {
			time.Sleep(delay)
			// A fault may have struck meanwhile: check again, undelayed.
			nd.mu.Lock()
			ok := !nd.dead && nd.incarnation == sc.incarnation && nd.resume == nil && nd.cut[sc.client] == nil
			tab = nd.tab
			nd.mu.Unlock()
			if !ok {
				continue
			}
		}
		return tab
	}
}

// execute runs the queued commands in order and writes their replies.
func (sc *serverConn) execute() {
	defer func() {
		sc.nc.Close()
		sc.node.mu.Lock()
		delete(sc.node.conns, sc)
		sc.node.mu.Unlock()
	}()
	bw := bufio.NewWriter(sc.nc)
	writeOK := true
	for rq := range sc.queue {
		tab := sc.gate()
		if tab == nil {
			return
		}
		var restore func()
		if sc.unstore != nil && len(rq.fields) > 1 && sc.unstore(rq.fields) {
			restore = tab.keep(rq.fields[1])
		}
		out, quit := tab.exec(rq)
		if restore != nil {
			restore()
		}
		if quit {
			return
		}
		if sc.onCmd != nil {
			key := ""
			if len(rq.fields) > 1 {
				key = rq.fields[1]
			}
			sc.onCmd(key)
		}
		if writeOK {
			bw.WriteString(out)
			if len(sc.queue) == 0 {
				if bw.Flush() != nil {
					// The client is gone; what it sent still runs.
					writeOK = false
				}
			}
		}
	}
}

// Live reports whether the node holds a live copy of key now (under key
// or under a key that ends with it, as a backup copy's does), by its own
// clock; it changes nothing (memcached drops expired items lazily).
func (nd *Node) Live(key string) bool {
	nd.mu.Lock()
	tab, dead := nd.tab, nd.dead
	nd.mu.Unlock()
	if dead {
		return false
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	now := tab.clock()
	for k, it := range tab.items {
		if strings.HasSuffix(k, key) && !tab.gone(it, now) {
			return true
		}
	}
	return false
}

// keep returns a function that puts key's item back as it is now (or
// removes it, if there is none): Network.unstore.
func (t *table) keep(key string) func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.items[key]
	var saved item
	if ok {
		saved = *old
	}
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !ok {
			delete(t.items, key)
			return
		}
		it := saved
		t.items[key] = &it
	}
}

// Record flags of store/memcached's witness scheme (its client flags,
// kindData and kindWitness in witness.go): a session's data record, and
// its witness record. TestNoFaultIsClean checks them: a creation with no
// fault must leave a witness record (Creation.Witless false), and
// TestNoWitMarkSeen the nowit mark below.
const (
	dataFlags    = 1
	witnessFlags = 2
)

// The first two bytes of store/memcached's record envelope (its package
// internal/envelope, which this module cannot import): the version (2; 3
// for an envelope that carries a promise; 4 for one that carries a
// lifetime, promised or not; 5 for one that names the write it carries,
// docs/replication.md §17) and the mark, whose bit
// markNoWit is R8's nowit: a configuration established with no witness
// record on its third node (R8's two-record creation; R7's failover of a
// creation's record, as after an Add abandoned at its primary). Appended
// records keep their base's envelope first, with its mark.
const (
	envelopeVersion         = 2
	envelopeVersionPromised = 3
	envelopeVersionLifetime = 4
	envelopeVersionCarries  = 5
	markNoWit               = 1 << 1
)

// seenItem is what Network.frozen shows of a live item: its client flags,
// and whether it is a data record whose envelope carries the nowit mark.
type seenItem struct {
	flags uint32
	noWit bool
}

// noWitMarked reports whether value, a data record's bytes, starts with
// an envelope marked nowit.
func noWitMarked(value []byte) bool {
	return len(value) >= 2 && (value[0] == envelopeVersion || value[0] == envelopeVersionPromised || value[0] == envelopeVersionLifetime || value[0] == envelopeVersionCarries) && value[1]&markNoWit != 0
}

// frozen calls fn while no node of nw runs a command (every live node's
// table held), with each node's live items by key (seenItem: client
// flags and nowit mark; none for a dead node) and a function that
// flushes a node's memory within fn (Node.Flush would wait for its own
// table). A fault that erases
// memory (flush_all, kill, restart) applied within fn is seen by no
// command half way.
func (nw *Network) frozen(fn func(items map[*Node]map[string]seenItem, flush func(nd *Node))) {
	for {
		held := make(map[*Node]*table, len(nw.addrs))
		for _, a := range nw.addrs {
			nd := nw.nodes[a]
			nd.mu.Lock()
			if !nd.dead {
				held[nd] = nd.tab
			}
			nd.mu.Unlock()
		}
		for _, a := range nw.addrs {
			if tab := held[nw.nodes[a]]; tab != nil {
				tab.mu.Lock()
			}
		}
		same := true
		for nd, tab := range held {
			nd.mu.Lock()
			same = same && !nd.dead && nd.tab == tab
			nd.mu.Unlock()
		}
		if same {
			items := make(map[*Node]map[string]seenItem, len(held))
			for nd, tab := range held {
				now := tab.clock()
				m := make(map[string]seenItem)
				for k, it := range tab.items {
					if !tab.gone(it, now) {
						m[k] = seenItem{flags: it.flags, noWit: it.flags == dataFlags && noWitMarked(it.value)}
					}
				}
				items[nd] = m
			}
			fn(items, func(nd *Node) {
				if tab := held[nd]; tab != nil {
					tab.flush(0)
				}
			})
		}
		for _, tab := range held {
			tab.mu.Unlock()
		}
		if same {
			return
		}
	}
}
