package netdelay

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// echoServer accepts connections on a free port and echoes each.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T, target string, delay time.Duration) *Proxy {
	t.Helper()
	p, err := Start(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if got != line {
		t.Fatalf("echo: got %d bytes, want %d (%.20q)", len(got), len(line), got)
	}
}

// TestProxyDelays: bytes go through in order, and a round trip crosses the
// proxy twice, each way delayed.
func TestProxyDelays(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := start(t, echoServer(t), delay)
	c, r := dial(t, p)
	for _, line := range []string{"first\n", strings.Repeat("x", 100000) + "\n", "third\n"} {
		begin := time.Now()
		roundTrip(t, c, r, line)
		if rtt := time.Since(begin); rtt < 2*delay {
			t.Fatalf("round trip %v, want at least twice the delay %v", rtt, delay)
		}
	}
}

// TestProxyHold: while held, neither bytes on an open connection nor a new
// connection get through; Release delivers both.
func TestProxyHold(t *testing.T) {
	p := start(t, echoServer(t), 0)
	c, r := dial(t, p)
	roundTrip(t, c, r, "before\n")
	p.Hold()
	p.Hold() // twice: still one hold
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	c2, r2 := dial(t, p) // accepted, but not forwarded while held
	if _, err := io.WriteString(c2, "new\n"); err != nil {
		t.Fatal(err)
	}
	for _, rc := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c, r}, {c2, r2}} {
		_ = rc.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if got, err := rc.r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read while held: %q, %v; want a deadline error", got, err)
		}
		_ = rc.c.SetReadDeadline(time.Time{})
	}
	p.Release()
	p.Release() // twice: nothing more
	for _, rc := range []struct {
		r    *bufio.Reader
		want string
	}{{r, "held\n"}, {r2, "new\n"}} {
		if got, err := rc.r.ReadString('\n'); err != nil || got != rc.want {
			t.Fatalf("after Release: %q, %v; want %q", got, err, rc.want)
		}
	}
	roundTrip(t, c, r, "after\n")
}

// TestProxyClose: Close ends the clients' connections and a held proxy's
// waiting goroutines, and returns.
func TestProxyClose(t *testing.T) {
	p, err := Start(echoServer(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p)
	roundTrip(t, c, r, "x\n")
	p.Hold()
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The connection ends (EOF, or a reset when the proxy closed with
	// bytes unread): it does not stay open until the deadline.
	if _, err := io.ReadAll(r); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after Close the client's connection stays open: %v", err)
	}
	if _, err := Start("127.0.0.1:1", -time.Second); err == nil {
		t.Fatal("a negative delay is refused")
	}
}

// TestTimerfd: on Linux the writer waits on a timerfd (time.Sleep of less
// than a millisecond takes about a millisecond there), and the wait lasts
// at least until the due time.
func TestTimerfd(t *testing.T) {
	tm := newTimer()
	defer tm.close()
	if runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") {
		if tm.f == nil {
			t.Fatal("no timerfd on linux: sub-millisecond delays would round up")
		}
	}
	for _, d := range []time.Duration{-time.Millisecond, 0, 100 * time.Microsecond, 2 * time.Millisecond} {
		due := time.Now().Add(d)
		tm.waitUntil(due)
		if late := time.Since(due); late < 0 {
			t.Fatalf("waitUntil(now%+v) returned %v early", d, -late)
		}
	}
}
