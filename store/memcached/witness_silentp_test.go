package memcached_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestSilentPrimaryAfterFailoverTime (issue 13: once a node has been down
// or unreachable for the failover time, no request fails, exclusive ones
// included; §9; the auditor's question on R3a, the write failover from Q
// when P is silent, which is not built): with 3 nodes and the default
// Config (BackupWitness), through the provider, the sessions' primary P
// is paused (SIGSTOP), and a failover time (DefaultFailoverAfter +
// DefaultTimeout) after the pause each request kind is started from the
// provider's cached tokens (its lock, commit, release and renewal are
// CASes or appends sent straight to P and Q, with no read first) and
// from a second Store that never saw the session: every one succeeds and
// the values read back, before and after P answers again.
//
//   - idle/process-per-request: each request kind in a process (Store)
//     of its own that sent nothing to P since the pause, one request
//     each: its write is sent to the silent P on the connection it pooled
//     before the pause (asserted for one write at least: the `ms`
//     reached P's socket; the eviction check may take the pooled
//     connection at that instant and send a write the one-process
//     variant's way), the row
//     "P silent, Q stored" of R3's table, which has no write failover:
//     the Store answers provider.ErrOutcomeUnknown, about F after the
//     send (Timeout, then the incarnation check on a new connection),
//     and the request succeeds only by the provider's resolution of it
//     (update): one read, whose R4 (P failed by then) fails the session
//     over from Q by R7, finds the write, and it has landed. (A
//     provider that does not resolve, a -overlay mutant, fails these
//     four requests ErrOutcomeUnknown.)
//   - idle/one-process: the same requests at once in one such process:
//     all but one find no pooled connection, and the new connection's
//     hello goes unanswered (P not sent, Q stored: R3's undo,
//     ErrCASConflict), and the provider reads again: R2, R4 after F,
//     R7's failover, and the change decided again and written to the
//     new configuration.
//   - in-flight: one process, a commit on its way to P when P stops (a
//     connection wrapper pauses P before the commit's bytes reach it);
//     that commit may end unknown, only the later requests must succeed.
//     The process holds P failed before they start: each write sends
//     nothing (ErrCASConflict, "read again to fail over", asserted: no
//     `ms` reached P) and the provider's read fails the session over.
func TestSilentPrimaryAfterFailoverTime(t *testing.T) {
	for _, v := range []silentPVariant{
		{name: "idle/process-per-request", perRequest: true},
		{name: "idle/one-process"},
		{name: "in-flight", inFlight: true},
	} {
		t.Run(v.name, func(t *testing.T) { testSilentPrimary(t, v) })
	}
}

// silentPVariant is one way of TestSilentPrimaryAfterFailoverTime.
type silentPVariant struct {
	name       string
	perRequest bool // each of A's requests in a Store of its own
	inFlight   bool // a commit on its way to P at the pause
}

// silentPEvents records the two Stores' events, timed from the pause.
type silentPEvents struct {
	mu    sync.Mutex
	pause time.Time // zero before the pause
	lines []string
	down  map[string]bool // store name + " " + node: EventNodeDown seen
}

func (l *silentPEvents) on(store string) provider.EventFunc {
	return func(e provider.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		at := "before the pause"
		if !l.pause.IsZero() {
			at = time.Since(l.pause).Round(time.Millisecond).String()
		}
		line := fmt.Sprintf("%s %s %s %s", at, store, e.Kind, e.Node)
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		if e.Err != nil {
			line += ": " + e.Err.Error()
		}
		l.lines = append(l.lines, line)
		if e.Kind == provider.EventNodeDown {
			l.down[store+" "+e.Node] = true
		}
	}
}

func (l *silentPEvents) paused(at time.Time) {
	l.mu.Lock()
	l.pause = at
	l.mu.Unlock()
}

func (l *silentPEvents) sawDown(store, node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down[store+" "+node]
}

func (l *silentPEvents) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// silentPOp is one request's outcome.
type silentPOp struct {
	name  string
	start time.Time
	took  time.Duration
	err   error
}

// silentPStep is one request of a sequence.
type silentPStep struct {
	name string
	f    func(ctx context.Context) error
}

// silentPRun runs requests, each bounded by requestBound, and records
// their outcomes.
type silentPRun struct {
	mu  sync.Mutex
	ops []silentPOp
}

// requestBound bounds each request of the test: far more than a failover
// (F plus about 8 round trips, §9).
const requestBound = 10 * time.Second

func (r *silentPRun) do(name string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestBound)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	r.mu.Lock()
	r.ops = append(r.ops, silentPOp{name: name, start: start, took: time.Since(start), err: err})
	r.mu.Unlock()
	return err
}

// report lists the requests, their start timed from pause.
func (r *silentPRun) report(pause time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, o := range r.ops {
		fmt.Fprintf(&b, "%s: started %v after the pause, took %v, err %v\n", o.name, o.start.Sub(pause).Round(time.Millisecond), o.took.Round(time.Millisecond), o.err)
	}
	return b.String()
}

// silentPStore is a Store with the default Config over servers but for
// its events and dialer, closed when t ends, its eviction baseline read.
func silentPStore(t *testing.T, servers []*mcserver.Server, onEvent provider.EventFunc, dial func(context.Context, string, string) (net.Conn, error)) *memcached.Store {
	t.Helper()
	s, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers), OnEvent: onEvent, DialContext: dial})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.Equal(t, memcached.BackupWitness, s.Backup(), "the default with 3 nodes")
	testwait.Until(t, 10*time.Second, "the eviction baseline", func() bool { return memcached.EvictionChecks(s) > 0 })
	return s
}

// wantValue reads the session through a lock-free read (GetItem) and
// fails unless its "n" is want.
func wantValue(ctx context.Context, p *provider.Provider, id string, want int) error {
	item, err := p.GetItem(ctx, id)
	if err != nil {
		return err
	}
	n, ok, err := session.Get[int](item.Data.Values, "n")
	switch {
	case err != nil:
		return err
	case !ok || n != want:
		return fmt.Errorf("read n = %d (present: %v), want %d", n, ok, want)
	}
	return nil
}

// commitValue sets "n" to n in data and commits it under lockID.
func commitValue(ctx context.Context, p *provider.Provider, id string, data *session.Data, lockID uint64, n int) error {
	if err := data.Values.Set("n", n); err != nil {
		return err
	}
	return p.SetAndReleaseItemExclusive(ctx, id, data, lockID, false)
}

// silentPProc is one process: a Store and a provider over it.
type silentPProc struct {
	name string
	s    *memcached.Store
	p    *provider.Provider
}

func testSilentPrimary(t *testing.T, v silentPVariant) {
	servers := startNodes(t, 3)
	events := &silentPEvents{down: map[string]bool{}}
	ctx := context.Background()
	newProc := func(name string, dial func(context.Context, string, string) (net.Conn, error)) *silentPProc {
		s := silentPStore(t, servers, events.on(name), dial)
		p, err := provider.New(s, provider.Config{})
		require.NoError(t, err)
		return &silentPProc{name: name, s: s, p: p}
	}

	// B: another process, started before the pause, that never sees its
	// session before it. Its placement finds the sessions' primary P.
	b := newProc("B", nil)
	keyOf := func(id string) string {
		k, err := b.p.Key(id)
		require.NoError(t, err)
		return k
	}
	// Sessions whose home primary is one node P: A's request kinds, the
	// commit in flight at the pause, and B's.
	kinds := []string{"read", "lock", "commit", "release", "renew"}
	writes := kinds[1:]
	names := append(slices.Clone(kinds), "cold")
	if v.inFlight {
		names = append(names, "flight")
	}
	ids := map[string]string{}
	var pAddr string
	for len(ids) < len(names) {
		id, err := session.NewID()
		require.NoError(t, err)
		c := memcached.WitnessCandidates(b.s, keyOf(id))
		if pAddr == "" {
			pAddr = c[0]
		}
		if c[0] == pAddr {
			ids[names[len(ids)]] = id
		}
	}
	paused := serverAt(t, servers, pAddr)
	t.Cleanup(func() { _ = paused.Resume() })

	// A's connections to P: they note each key whose `ms` is written to
	// P after the pause, and (in-flight) pause P before the bytes of the
	// commit armed for it.
	var (
		wireMu   sync.Mutex
		armKey   string // "ms <key> ": pause P before writing it; "" off
		pauseAt  time.Time
		sentToP  = map[string]int{}
		pausedAt = make(chan error, 1)
	)
	pause := func() error {
		err := paused.Pause() // returns once every thread is stopped
		pauseAt = time.Now()
		events.paused(pauseAt)
		return err
	}
	before := func(b []byte) {
		wireMu.Lock()
		defer wireMu.Unlock()
		if armKey != "" && bytes.Contains(b, []byte(armKey)) {
			armKey = ""
			pausedAt <- pause()
		}
		if !pauseAt.IsZero() {
			for line := range strings.SplitSeq(string(b), "\r\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "ms" {
					sentToP[f[1]]++
				}
			}
		}
	}
	dial := wrapDial(func(addr string, c net.Conn) net.Conn {
		if addr != pAddr {
			return c
		}
		return &beforeWriteConn{Conn: c, before: before}
	})
	owner := map[string]*silentPProc{"cold": b}
	var a []*silentPProc // A's processes
	for _, name := range names {
		switch {
		case name == "cold":
		case v.perRequest:
			a = append(a, newProc("A-"+name, dial))
			owner[name] = a[len(a)-1]
		case len(a) == 0:
			a = append(a, newProc("A", dial))
			owner[name] = a[0]
		default:
			owner[name] = a[0]
		}
	}

	// Each of A's sessions is created, locked and committed once (n = 1)
	// by its process, which caches its tokens (the provider's written
	// cache, the Store's handles). The sessions whose request is a
	// commit, release or renewal (and the commit in flight) are then
	// locked again and held. B's session ("cold") is created by A.
	held := map[string]*provider.Item{}
	for _, name := range names {
		id, p := ids[name], a[0].p
		if o := owner[name]; o != b {
			p = o.p
		}
		d := p.CreateNewStoreData(0)
		require.NoError(t, d.Values.Set("n", 0))
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, d, 0, true))
		item, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, commitValue(ctx, p, id, item.Data, item.LockID, 1))
		switch name {
		case "commit", "release", "renew", "flight":
			item, err = p.GetItemExclusive(ctx, id)
			require.NoError(t, err)
			held[name] = item
		}
	}
	for _, o := range append(a, b) {
		require.False(t, memcached.NodeFailed(o.s, pAddr), o.name)
	}

	failoverTime := memcached.DefaultFailoverAfter + memcached.DefaultTimeout
	run := &silentPRun{}
	flightDone := make(chan error, 1)
	if v.inFlight {
		wireMu.Lock()
		armKey = "ms " + keyOf(ids["flight"]) + " "
		wireMu.Unlock()
		go func() {
			flightDone <- run.do("A in-flight commit", func(ctx context.Context) error {
				return commitValue(ctx, owner["flight"].p, ids["flight"], held["flight"].Data, held["flight"].LockID, 2)
			})
		}()
		select {
		case err := <-pausedAt:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the commit was never sent to P")
		}
		// A had traffic to P: it holds P failed F after the commit's send.
		testwait.Until(t, 10*time.Second, "A to hold P failed", func() bool { return events.sawDown(owner["flight"].name, pAddr) })
	} else {
		wireMu.Lock()
		err := pause()
		wireMu.Unlock()
		require.NoError(t, err)
	}
	wireMu.Lock()
	start := pauseAt
	wireMu.Unlock()
	// The fault's schedule: it lasts a failover time (and a margin)
	// before the requests start.
	time.Sleep(time.Until(start.Add(failoverTime + 100*time.Millisecond)))
	for _, o := range append(a, b) {
		want := v.inFlight && o != b // A sent the commit; B nothing since the pause
		require.Equal(t, want, memcached.NodeFailed(o.s, pAddr), "%s holds P failed", o.name)
	}

	// Round 1, all started at once: one request of each kind from A's
	// cached tokens, and B's whole sequence on a session it never saw.
	var wg sync.WaitGroup
	check := func(name string, err error) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	request := func(name string, f func(ctx context.Context, p *provider.Provider, id string) error) {
		wg.Go(func() {
			check("A "+name, run.do("A "+name, func(ctx context.Context) error { return f(ctx, owner[name].p, ids[name]) }))
		})
	}
	request("read", func(ctx context.Context, p *provider.Provider, id string) error {
		return wantValue(ctx, p, id, 1)
	})
	var locked *provider.Item // A's lock of "lock"
	request("lock", func(ctx context.Context, p *provider.Provider, id string) (err error) {
		locked, err = p.GetItemExclusive(ctx, id)
		return err
	})
	commit, release, renew := held["commit"], held["release"], held["renew"]
	request("commit", func(ctx context.Context, p *provider.Provider, id string) error {
		return commitValue(ctx, p, id, commit.Data, commit.LockID, 2)
	})
	request("release", func(ctx context.Context, p *provider.Provider, id string) error {
		return p.ReleaseItemExclusive(ctx, id, release.LockID)
	})
	request("renew", func(ctx context.Context, p *provider.Provider, id string) error {
		return p.RenewLease(ctx, id, renew.LockID)
	})
	var coldOK bool
	wg.Go(func() {
		id := ids["cold"]
		var item *provider.Item
		for _, s := range []silentPStep{
			{"B read", func(ctx context.Context) error { return wantValue(ctx, b.p, id, 1) }},
			{"B lock", func(ctx context.Context) (err error) {
				item, err = b.p.GetItemExclusive(ctx, id)
				return err
			}},
			{"B renew", func(ctx context.Context) error { return b.p.RenewLease(ctx, id, item.LockID) }},
			{"B commit", func(ctx context.Context) error { return commitValue(ctx, b.p, id, item.Data, item.LockID, 2) }},
			{"B lock again", func(ctx context.Context) (err error) {
				item, err = b.p.GetItemExclusive(ctx, id)
				return err
			}},
			{"B release", func(ctx context.Context) error { return b.p.ReleaseItemExclusive(ctx, id, item.LockID) }},
			{"B read back", func(ctx context.Context) error { return wantValue(ctx, b.p, id, 2) }},
		} {
			if err := run.do(s.name, s.f); err != nil {
				check(s.name, err)
				return
			}
		}
		coldOK = true
	})
	wg.Wait()
	held["lock"] = locked
	var flightErr error
	if v.inFlight {
		select {
		case flightErr = <-flightDone:
		case <-time.After(requestBound):
			t.Fatal("the in-flight commit never returned")
		}
	}
	wireMu.Lock()
	sent := maps.Clone(sentToP)
	wireMu.Unlock()
	t.Logf("requests:\n%s", run.report(start))
	t.Logf("events:\n%s", events)
	t.Logf("writes sent to P after the pause, by key: %v", sent)
	if t.Failed() {
		return
	}
	require.True(t, coldOK)
	reached := 0 // per request: writes sent to the silent P
	for _, name := range writes {
		n := sent[keyOf(ids[name])]
		switch {
		case v.perRequest && n > 0:
			reached++
		case v.perRequest:
			// The Store's eviction check (every 10 s) may have taken
			// the pooled connection to P at that instant: the write
			// then dialled, its hello unanswered, nothing sent (the
			// one-process variant's path).
			t.Logf("%s: the write found no pooled connection to P: not sent", name)
		case v.inFlight:
			require.Zero(t, n, "%s: P is failed in A: nothing sent to it", name)
		}
	}
	if v.perRequest {
		require.Positive(t, reached, "no write was sent to the silent P: the path under test was not reached")
	}

	// Round 2, one after another (A's processes now hold P failed): each
	// of A's sessions taken, renewed, committed (n = 3) and read back.
	want := map[string]int{"cold": 2}
	for _, name := range kinds {
		p, id, item := owner[name].p, ids[name], held[name]
		if name != "lock" && name != "renew" {
			require.NoError(t, run.do("A lock "+name, func(ctx context.Context) (err error) {
				item, err = p.GetItemExclusive(ctx, id)
				return err
			}))
		}
		require.NoError(t, run.do("A renew "+name, func(ctx context.Context) error { return p.RenewLease(ctx, id, item.LockID) }))
		require.NoError(t, run.do("A commit "+name, func(ctx context.Context) error { return commitValue(ctx, p, id, item.Data, item.LockID, 3) }))
		require.NoError(t, wantValue(ctx, p, id, 3), name)
		want[name] = 3
	}
	if v.inFlight && flightErr == nil {
		want["flight"] = 2
	}

	// P answers again, with its old records (and the bytes sent to it
	// while paused, which it now runs): once every Store hears it, the
	// last commits read back through the session's process and B.
	require.NoError(t, paused.Resume())
	testwait.Until(t, 10*time.Second, "every Store to hear P again", func() bool {
		for _, o := range append(a, b) {
			if memcached.NodeFailed(o.s, pAddr) {
				return false
			}
		}
		return true
	})
	for name, n := range want {
		for _, o := range []*silentPProc{owner[name], b} {
			for range 3 {
				require.NoError(t, wantValue(ctx, o.p, ids[name], n), "session %s through %s after P's return", name, o.name)
			}
		}
	}
	if v.inFlight {
		t.Logf("the in-flight commit: %v", flightErr)
	}
}
