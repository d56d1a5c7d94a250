package harness

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// latencyProxy is a TCP proxy that delays every byte by a fixed time in
// each direction, as a slow network between the app servers and a store
// node would. Bytes keep their order and the throughput is not limited:
// each chunk read is stamped and written once its delay has passed.
type latencyProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	// cut, while non-nil, holds every byte and new connection until it is
	// closed by heal: a partition, after which TCP delivers what was sent
	// (-partition).
	cut chan struct{}
}

// partition holds the proxy's traffic until heal.
func (p *latencyProxy) partition() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == nil {
		p.cut = make(chan struct{})
	}
	return nil
}

// heal lets the held traffic through.
func (p *latencyProxy) heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut != nil {
		close(p.cut)
		p.cut = nil
	}
	return nil
}

// waitHealed waits while the proxy is partitioned.
func (p *latencyProxy) waitHealed() {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut != nil {
		<-cut
	}
}

// startLatencyProxy listens on a free 127.0.0.1 port and forwards every
// connection to target with delay added each way.
func startLatencyProxy(target string, delay time.Duration) (*latencyProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("harness: latency proxy for %s: %w", target, err)
	}
	p := &latencyProxy{ln: ln, target: target, delay: delay, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients dial instead of the target.
func (p *latencyProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, closes every proxied connection and waits for
// the proxy's goroutines.
func (p *latencyProxy) Close() error {
	p.mu.Lock()
	p.closed = true
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
func (p *latencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *latencyProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *latencyProxy) accept() {
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

func (p *latencyProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	p.waitHealed()
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
func (p *latencyProxy) pipe(dst, src net.Conn) {
	chunks := make(chan chunk, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range chunks {
			if wait := time.Until(c.due); wait > 0 {
				time.Sleep(wait) // the simulated network delay itself
			}
			p.waitHealed()
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

// delayStore adds a fixed delay to every operation of an in-process store:
// the memory backend's stand-in for the latency proxy.
type delayStore struct {
	provider.Store
	delay time.Duration
}

func (s delayStore) pause(ctx context.Context) error { return pause(ctx, s.delay) }

func (s delayStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := s.pause(ctx); err != nil {
		return provider.Entry{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s delayStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.pause(ctx); err != nil {
		return 0, err
	}
	return s.Store.Add(ctx, key, value, ttl)
}

func (s delayStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.pause(ctx); err != nil {
		return 0, err
	}
	return s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

func (s delayStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.pause(ctx); err != nil {
		return err
	}
	return s.Store.Touch(ctx, key, ttl)
}

func (s delayStore) Delete(ctx context.Context, key string) error {
	if err := s.pause(ctx); err != nil {
		return err
	}
	return s.Store.Delete(ctx, key)
}

// Close does not close the shared store underneath.
func (s delayStore) Close() error { return nil }
