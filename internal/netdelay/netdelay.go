// Package netdelay is a TCP proxy that adds a fixed delay to every byte in
// each direction, as a network between a client and a server would: the
// stress harness's -latency and -partition and the memcached store's
// latency benchmark (MEMCACHED_BENCH_DELAY) put one in front of each node.
//
// Bytes keep their order and the throughput is not limited: each chunk
// read is stamped with the time it may be written, and written once that
// time has passed; there is no work per byte beyond the copy. On Linux the
// writer waits on a timerfd, which wakes it within the kernel's timer
// latency (tens of microseconds on a VM) of the stamp, so sub-millisecond
// delays hold; a plain time.Sleep of less than a millisecond takes about a
// millisecond there (the runtime's poller waits in whole milliseconds).
// The delay is a lower bound: clients should measure the round trip they
// get rather than assume it.
package netdelay

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection made to Addr to a target address, each
// direction delayed by a fixed time. Hold and Release cut it off and let
// it through again (a partition). Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	// held, while non-nil, holds every byte and new connection until
	// Release closes it.
	held chan struct{}
}

// Start listens on a free 127.0.0.1 port and forwards every connection to
// target with delay added each way (0: none, only Hold's cut).
func Start(target string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("netdelay: negative delay %v", delay)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netdelay: proxy for %s: %w", target, err)
	}
	p := &Proxy{ln: ln, target: target, delay: delay, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Hold stops the proxy's traffic: bytes in flight and new connections wait
// until Release, after which they are delivered as TCP would after a
// partition heals. Holding a held proxy does nothing.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Release lets the held traffic through. Releasing a proxy not held does
// nothing.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// waitReleased waits while the proxy is held.
func (p *Proxy) waitReleased() {
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held != nil {
		<-held
	}
}

// Close stops accepting, closes every proxied connection and waits for the
// proxy's goroutines. A held proxy is released first.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// track registers c so Close can close it; it reports false (and closes c)
// when the proxy is already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			return
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	p.waitReleased()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return // the client sees its connection closed, as with a dead node
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// chunk is a piece of the stream and the time it may be written.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk delayed by p.delay. When either side
// fails, both are closed so the opposite pipe ends too.
func (p *Proxy) pipe(dst, src net.Conn) {
	chunks := make(chan chunk, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := newTimer()
		defer t.close()
		for c := range chunks {
			t.waitUntil(c.due) // the simulated network delay itself
			p.waitReleased()
			if _, err := dst.Write(c.b); err != nil {
				_ = src.Close()
				for range chunks { // drain so the reader never blocks
				}
				return
			}
		}
		_ = dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunks <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay)}
		}
		if err != nil {
			break
		}
	}
	close(chunks)
	<-done
	_ = dst.Close()
}
