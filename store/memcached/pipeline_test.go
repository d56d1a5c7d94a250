package memcached

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
)

// newPipeClient returns a pipelined client of addr with conns connections.
func newPipeClient(addr string, timeout time.Duration, conns int, dial func(context.Context, string, string) (net.Conn, error)) *metaClient {
	c := &metaClient{addr: addr, timeout: timeout, maxIdle: 1, dial: dial}
	c.pipe = newPipeline(c, conns)
	return c
}

// TestPipelineConcurrentMixed runs many goroutines with mixed operations
// on one node, over two shared connections of a real memcached: every
// reply reaches its own caller (each goroutine checks the values, CAS
// tokens and misses of its own keys), under -race.
func TestPipelineConcurrentMixed(t *testing.T) {
	servers := mcserver.StartForTest(t, 1, mcserver.Config{MemoryMB: 32})
	c := newPipeClient(servers[0].Addr(), 5*time.Second, 2, nil)
	defer c.close()
	ctx := context.Background()
	const workers, rounds = 32, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			if err := mixedWorker(ctx, c, w, rounds); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func mixedWorker(ctx context.Context, c *metaClient, w, rounds int) error {
	key := fmt.Sprintf("pipe-%d", w)
	other := key + "-other"
	for i := range rounds {
		val := []byte(strings.Repeat(strconv.Itoa(w), 10+(w*37+i*11)%3000))
		cas, err := c.set(ctx, key, val, 60, 0, false, 0)
		if err != nil {
			return fmt.Errorf("set: %w", err)
		}
		it, err := c.getOne(ctx, key, 0)
		if err != nil {
			return fmt.Errorf("getOne: %w", err)
		}
		if string(it.value) != string(val) || it.cas != cas {
			return fmt.Errorf("getOne read %d bytes cas %d, want %d bytes cas %d", len(it.value), it.cas, len(val), cas)
		}
		newCAS, touched, err := c.appendTouch(ctx, key, []byte("+d"), cas, 120)
		if err != nil || touched != newCAS {
			return fmt.Errorf("appendTouch: cas %d touched %d: %w", newCAS, touched, err)
		}
		if _, _, err := c.appendTouch(ctx, key, []byte("+x"), cas, 120); !errors.Is(err, errExists) {
			return fmt.Errorf("appendTouch with an old CAS: %v, want errExists", err)
		}
		items, err := c.get(ctx, true, key, other)
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if items[1] != nil || items[0] == nil || string(items[0].value) != string(val)+"+d" || items[0].cas != newCAS || items[0].ttl <= 60 {
			return fmt.Errorf("get read %+v", items)
		}
		if err := c.touch(ctx, other, 60); !errors.Is(err, errMiss) {
			return fmt.Errorf("touch of a missing key: %v, want errMiss", err)
		}
		if err := c.del(ctx, key, cas); !errors.Is(err, errExists) {
			return fmt.Errorf("del with an old CAS: %v, want errExists", err)
		}
		if err := c.del(ctx, key, newCAS); err != nil {
			return fmt.Errorf("del: %w", err)
		}
		if _, err := c.getOne(ctx, key, 0); !errors.Is(err, errMiss) {
			return fmt.Errorf("getOne after del: %v, want errMiss", err)
		}
	}
	return nil
}

// fakeMC is a minimal memcached speaking the meta commands the client
// sends (mg, ms, md, version), over net.Pipe, for tests that need to hold
// or withhold replies. It answers in order, like memcached.
type fakeMC struct {
	mu    sync.Mutex
	items map[string][]byte
	cas   uint64
	// hold makes a command on the key wait for the channel to be closed
	// before it is answered (and every command after it on the
	// connection, as answers are in order).
	hold map[string]chan struct{}
	// mute: commands are read but never answered.
	mute bool
	// dials counts connections opened.
	dials int
	// expire: an ms on this key stores it, and it is gone at once after
	// (an item that expired right after the command).
	expire string
}

// newFakeClient returns a fakeMC and a pipelined client of it with conns
// connections, closed when t ends.
func newFakeClient(t *testing.T, timeout time.Duration, conns int) (*fakeMC, *metaClient, context.Context) {
	f := newFakeMC()
	c := newPipeClient("fake:1", timeout, conns, f.dial)
	t.Cleanup(c.close)
	return f, c, context.Background()
}

func newFakeMC() *fakeMC {
	return &fakeMC{items: map[string][]byte{}, hold: map[string]chan struct{}{}}
}

func (f *fakeMC) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dials++
	f.mu.Unlock()
	client, server := net.Pipe()
	go f.serve(server)
	return client, nil
}

// serve reads commands as they come (so a client's writes never wait for
// answers, as with a real server's socket buffers) and answers them in
// order from a second goroutine.
func (f *fakeMC) serve(nc net.Conn) {
	type cmd struct {
		fl   []string
		data []byte
	}
	cmds := make(chan cmd, 1024)
	go func() {
		defer nc.Close()
		for c := range cmds {
			f.mu.Lock()
			mute := f.mute
			hold := f.hold[c.fl[min(1, len(c.fl)-1)]]
			f.mu.Unlock()
			if mute {
				continue
			}
			if hold != nil {
				<-hold
			}
			if _, err := nc.Write([]byte(f.answer(c.fl, c.data))); err != nil {
				return
			}
		}
	}()
	defer close(cmds)
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		fl := strings.Fields(line)
		if len(fl) == 0 {
			return
		}
		var data []byte
		if fl[0] == "ms" {
			n, _ := strconv.Atoi(fl[2])
			data = make([]byte, n+2)
			if _, err := io.ReadFull(br, data); err != nil {
				return
			}
			data = data[:n]
		}
		cmds <- cmd{fl, data}
	}
}

func (f *fakeMC) answer(fl []string, data []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch fl[0] {
	case "version":
		return "VERSION fake\r\n"
	case "mg":
		v, ok := f.items[fl[1]]
		if !ok {
			return "EN\r\n"
		}
		return fmt.Sprintf("VA %d c%d\r\n%s\r\n", len(v), f.cas, v)
	case "ms":
		f.cas++
		f.items[fl[1]] = data
		if fl[1] == f.expire {
			delete(f.items, fl[1])
		}
		return fmt.Sprintf("HD c%d\r\n", f.cas)
	case "md":
		delete(f.items, fl[1])
		return "HD\r\n"
	}
	return "ERROR\r\n"
}

func (f *fakeMC) holdKey(key string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.hold[key] = ch
	return ch
}

// TestPipelineAbandonedWaiter: waiters whose context ends while their
// replies are awaited (the head of the stream, which found the connection
// idle and reads its own reply, and one in the middle, queued for the
// reader goroutine) return the context's error at once; the requests around them on the same
// connection still get their own replies once they come (the reader
// consumes and discards the abandoned ones), and the connection is kept.
func TestPipelineAbandonedWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, time.Minute, 1)
		const n = 8
		for i := range n {
			_, err := c.set(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("value %d", i)), 0, 0, false, 0)
			require.NoError(t, err)
		}
		release := f.holdKey("k0")
		type result struct {
			i   int
			val string
			err error
		}
		results := make(chan result, n)
		cancels := map[int]context.CancelFunc{}
		for i := range n {
			rctx := ctx
			if i == 0 || i == 3 {
				rctx, cancels[i] = context.WithCancel(ctx)
			}
			go func() {
				it, err := c.getOne(rctx, fmt.Sprintf("k%d", i), 0)
				r := result{i: i, err: err}
				if it != nil {
					r.val = string(it.value)
				}
				results <- r
			}()
			synctest.Wait() // queued in this order on the one connection
		}
		require.Empty(t, results, "nothing answered while k0's reply is held")
		for _, i := range []int{3, 0} {
			cancels[i]()
			r := <-results
			require.Equal(t, i, r.i)
			var ce *ctxError
			require.ErrorAs(t, r.err, &ce)
			require.ErrorIs(t, r.err, context.Canceled)
		}
		require.Empty(t, results)

		close(release)
		for range n - 2 {
			r := <-results
			require.NoError(t, r.err)
			require.Equal(t, fmt.Sprintf("value %d", r.i), r.val, "request %d got another's reply", r.i)
		}
		it, err := c.getOne(ctx, "k0", 0)
		require.NoError(t, err)
		require.Equal(t, "value 0", string(it.value))
		require.Equal(t, 1, f.dials, "the connection was kept")
	})
}

// TestPipelineAbandonedBeforeWrite: a request whose context ended before
// the writer took it is never written.
func TestPipelineAbandonedBeforeWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, c, ctx := newFakeClient(t, time.Minute, 1)
		cn, err := c.pipe.conn(ctx, &c.pipe.slots[0])
		require.NoError(t, err)
		// Queue a request by hand without waking the writer, then give up
		// on it, as a waiter whose context ended does.
		r := &metaReq{cmd: []byte("ms gone 1 T0 c\r\nx\r\n"), parse: readSet, done: make(chan struct{}), deadline: time.Now().Add(time.Minute)}
		cn.mu.Lock()
		cn.queue = append(cn.queue, r)
		cn.inflight++
		cn.mu.Unlock()
		require.True(t, r.state.CompareAndSwap(reqQueued, reqAbandoned))
		signal(cn.wwake)
		synctest.Wait() // the writer took the queue
		cn.mu.Lock()
		require.Empty(t, cn.queue)
		cn.mu.Unlock()
		_, err = c.set(ctx, "kept", []byte("y"), 0, 0, false, 0)
		require.NoError(t, err)
		_, err = c.getOne(ctx, "gone", 0)
		require.ErrorIs(t, err, errMiss, "the abandoned set was written")
		cn.mu.Lock()
		require.Zero(t, cn.inflight)
		cn.mu.Unlock()
	})
}

// TestPipelineBrokenConnection: when a reply is overdue past Timeout the
// connection is closed and every request pending on it fails with the
// timeout (a network error, not the context's), writes included; the next
// request dials a new connection.
func TestPipelineBrokenConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, 300*time.Millisecond, 1)
		require.NoError(t, c.version(ctx))
		f.mu.Lock()
		f.mute = true
		f.mu.Unlock()
		errs := make(chan error, 10)
		start := time.Now()
		for i := range 10 {
			go func() {
				var err error
				if i%2 == 0 {
					_, err = c.set(ctx, fmt.Sprintf("k%d", i), []byte("v"), 0, 0, false, 0)
				} else {
					_, err = c.getOne(ctx, fmt.Sprintf("k%d", i), 0)
				}
				errs <- err
			}()
		}
		for range 10 {
			err := <-errs
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout(), "%v", err)
			var ce *ctxError
			require.False(t, errors.As(err, &ce))
			require.False(t, isReply(err))
		}
		require.Equal(t, 300*time.Millisecond, time.Since(start), "failed when the first reply was overdue")
		f.mu.Lock()
		f.mute = false
		f.mu.Unlock()
		_, err := c.set(ctx, "after", []byte("v"), 0, 0, false, 0)
		require.NoError(t, err)
		require.Equal(t, 2, f.dials)
	})
}

// TestPipelineContextDeadline: a context deadline earlier than Timeout
// ends the wait with the context's error and leaves the connection up.
func TestPipelineContextDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, time.Second, 1)
		release := f.holdKey("slow")
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.getOne(dctx, "slow", 0)
		var ce *ctxError
		require.ErrorAs(t, err, &ce)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		close(release)
		require.NoError(t, c.version(ctx))
		require.Equal(t, 1, f.dials)
	})
}

// TestPipelineCloseWhilePending: closing the client fails the requests in
// flight at once (net.ErrClosed) and its goroutines exit (synctest.Test
// fails on goroutines left blocked); later requests fail the same way.
func TestPipelineCloseWhilePending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, time.Minute, 2)
		release := f.holdKey("held")
		defer close(release)
		errs := make(chan error, 6)
		for i := range 6 {
			go func() {
				_, err := c.set(ctx, "held", []byte(strconv.Itoa(i)), 0, 0, false, 0)
				errs <- err
			}()
		}
		synctest.Wait()
		require.Empty(t, errs)
		start := time.Now()
		c.close()
		for range 6 {
			require.ErrorIs(t, <-errs, net.ErrClosed)
		}
		require.Zero(t, time.Since(start))
		_, err := c.getOne(ctx, "held", 0)
		require.ErrorIs(t, err, net.ErrClosed)
	})
}

// TestPipelineCloseIdle: closeIdle (a node marked down) closes only the
// connections with nothing in flight.
func TestPipelineCloseIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, time.Minute, 2)
		finish := heldGet(t, f, c, ctx)
		require.NoError(t, c.version(ctx)) // the other connection: the first is busy
		c.closeIdle()
		var busy, idle *pipeConn
		for i := range c.pipe.slots {
			cn := c.pipe.slots[i].conn
			require.NotNil(t, cn)
			if cn.broken.Load() {
				idle = cn
			} else {
				busy = cn
			}
		}
		require.NotNil(t, idle, "the idle connection was kept")
		require.NotNil(t, busy, "the busy connection was closed")
		finish()
	})
}

// heldGet starts a get of a key f holds unanswered, waits until it is
// blocked on its reply, and returns the function that releases the reply
// and checks the get's outcome (a miss).
func heldGet(t *testing.T, f *fakeMC, c *metaClient, ctx context.Context) (finish func()) {
	release := f.holdKey("held")
	done := make(chan error, 1)
	go func() {
		_, err := c.getOne(ctx, "held", 0)
		done <- err
	}()
	synctest.Wait()
	return func() {
		close(release)
		require.ErrorIs(t, <-done, errMiss)
	}
}

// TestPipelineLoneRequestsOneConn: requests made one at a time all use one
// connection (pipeline.pick: the first, when no other request is in
// flight), as a pool would, rather than each of the node's connections in
// turn; concurrent ones still use the others.
func TestPipelineLoneRequestsOneConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, ctx := newFakeClient(t, time.Minute, 2)
		for range 10 {
			require.NoError(t, c.version(ctx))
		}
		f.mu.Lock()
		dials := f.dials
		f.mu.Unlock()
		require.Equal(t, 1, dials, "lone requests spread over the connections")
		finish := heldGet(t, f, c, ctx)
		require.NoError(t, c.version(ctx))
		f.mu.Lock()
		dials = f.dials
		f.mu.Unlock()
		require.Equal(t, 2, dials, "a request beside a busy connection did not dial the other")
		finish()
	})
}
