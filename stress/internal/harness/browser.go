package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Routes of the app server. The first five are the workload's mix.
const (
	// RouteIncr increments the session's counter (exclusive).
	RouteIncr = "incr"
	// RouteAppend appends an item unique to the request to the session's
	// list (exclusive).
	RouteAppend = "append"
	// RouteRead reads the whole session (read-only).
	RouteRead = "read"
	// RouteFree writes a key unique to the request (lock-free).
	RouteFree = "free"
	// RouteSlow increments the counter with a handler that runs
	// Config.SlowTime (exclusive).
	RouteSlow = "slow"
	// RouteInit is a browser's first page load: it creates the session
	// (exclusive).
	RouteInit = "init"
	// RouteHold increments the counter with a handler that runs until
	// its client goes away: the request an app process crashes in
	// (exclusive).
	RouteHold = "hold"
)

// routeInfo is how a route is reached and what it does to the session.
type routeInfo struct {
	method    string
	path      string
	exclusive bool // takes the session's lock
	readOnly  bool // waits behind a writer but takes no lock
	increment bool // adds one to the counter
}

var routes = map[string]routeInfo{
	RouteIncr:   {method: http.MethodPost, path: "/incr", exclusive: true, increment: true},
	RouteAppend: {method: http.MethodPost, path: "/append", exclusive: true},
	RouteRead:   {method: http.MethodGet, path: "/read", readOnly: true},
	RouteFree:   {method: http.MethodPost, path: "/free"},
	RouteSlow:   {method: http.MethodPost, path: "/slow", exclusive: true, increment: true},
	RouteInit:   {method: http.MethodPost, path: "/init", exclusive: true},
	RouteHold:   {method: http.MethodPost, path: "/hold", exclusive: true, increment: true},
}

// Headers between the harness and its app servers.
const (
	headerRequestID = "X-Stress-Request"
	headerProc      = "X-Stress-Proc"
)

// reply is the JSON body every route answers with.
type reply struct {
	// SID is the session's id.
	SID string `json:"sid"`
	// New reports a session created by this request.
	New bool `json:"new,omitempty"`
	// Value is the counter after the request.
	Value int `json:"value"`
	// Len is the number of list items after the request.
	Len int `json:"len"`

	// from is the counter as the handler read it, when read (the app
	// server's timing keeps it).
	from int
	read bool
}

// request is what the harness knows about one request it sent.
type request struct {
	ID      uint64
	Browser int
	Burst   int // index of its burst, or -1 outside bursts
	Route   string
	Item    string // the list item or lock-free key it writes
	Sent    int64  // Unix ns, client side
	Recv    int64
	Status  int
	Reason  string // why it failed; empty when it succeeded
	// Text is the body of a non-2xx answer (its first line, at most
	// maxTextLen bytes): the error the app server answered with.
	Text  string `json:",omitempty"`
	SID   string // session id the server answered with
	New   bool
	Value int
	Proc  int // app server that answered, -1 when unknown
}

func (r *request) ok() bool { return r.Reason == "" }

// burst is one volley of parallel requests from one browser.
type burst struct {
	Browser    int
	Start, End int64 // Unix ns, client side: first send, last answer
	IDs        []uint64
}

// browser is one simulated browser: its own cookie jar and connection
// limit, like a real browser's per-host limit of 6.
type browser struct {
	idx    int
	client *http.Client
	tr     *http.Transport
	rng    *rand.Rand
	sid    string // the session its first page load created
	// timeout, when set, is the own timeout each of its requests gives
	// its session (an expiry probe's: Config.ExpiryProbes).
	timeout time.Duration
	// idle: it loads its first page and sends nothing more
	// (Config.IdleSessions).
	idle bool
}

func newBrowser(idx int, cfg Config) *browser {
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxConnsPerHost:     cfg.Conns,
		MaxIdleConnsPerHost: cfg.Conns,
		IdleConnTimeout:     time.Minute,
	}
	return &browser{
		idx:    idx,
		client: &http.Client{Jar: jar, Transport: tr, Timeout: cfg.Timeout},
		tr:     tr,
		rng:    rand.New(rand.NewPCG(cfg.Seed, uint64(idx))),
	}
}

// pick chooses a route by the mix's weights.
func (b *browser) pick(m Mix) string {
	n := b.rng.IntN(m.total())
	for _, rw := range []struct {
		route  string
		weight int
	}{{RouteIncr, m.Incr}, {RouteAppend, m.Append}, {RouteRead, m.Read}, {RouteFree, m.Free}, {RouteSlow, m.Slow}} {
		if n < rw.weight {
			return rw.route
		}
		n -= rw.weight
	}
	return RouteRead // not reached: n < m.total()
}

// send makes one request to base and returns its record.
func (b *browser) send(ctx context.Context, base, route string, id uint64, burstIdx int) *request {
	ri := routes[route]
	r := &request{ID: id, Browser: b.idx, Burst: burstIdx, Route: route, Proc: -1}
	switch route {
	case RouteAppend:
		r.Item = "a" + strconv.FormatUint(id, 10)
	case RouteFree:
		r.Item = "f" + strconv.FormatUint(id, 10)
	}
	u := base + ri.path
	q := url.Values{}
	if r.Item != "" {
		q.Set("item", r.Item)
	}
	if b.timeout > 0 {
		q.Set("timeout", b.timeout.String())
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, ri.method, u, nil)
	if err != nil {
		r.Reason = "bad_request"
		return r
	}
	req.Header.Set(headerRequestID, strconv.FormatUint(id, 10))
	r.Sent = time.Now().UnixNano()
	resp, err := b.client.Do(req)
	if err != nil {
		r.Recv = time.Now().UnixNano()
		r.Reason = transportReason(err)
		return r
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	r.Recv = time.Now().UnixNano()
	r.Status = resp.StatusCode
	if p, perr := strconv.Atoi(resp.Header.Get(headerProc)); perr == nil {
		r.Proc = p
	}
	switch {
	case err != nil:
		r.Reason = transportReason(err)
	case resp.Header.Get(headerProxyError) != "":
		r.Reason = "app_unreachable"
	case resp.StatusCode/100 != 2:
		r.Reason = "status_" + strconv.Itoa(resp.StatusCode)
		r.Text = answerText(body)
	default:
		var rep reply
		if err := json.Unmarshal(body, &rep); err != nil || rep.SID == "" {
			r.Reason = "bad_reply"
			return r
		}
		r.SID, r.New, r.Value = rep.SID, rep.New, rep.Value
	}
	return r
}

// maxTextLen bounds request.Text.
const maxTextLen = 200

// answerText returns the first line of an error answer's body, at most
// maxTextLen bytes of it.
func answerText(body []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > maxTextLen {
		line = strings.ToValidUTF8(line[:maxTextLen], "") + "…"
	}
	return line
}

// transportReason names a failure to get an answer at all.
func transportReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn_reset"
	}
	return "transport"
}

// workload drives the browsers and collects what they saw.
type workload struct {
	cfg      Config
	browsers []*browser
	base     string

	ids       atomic.Uint64
	remaining atomic.Int64 // request budget left; ignored when Requests < 0
	// more, when set, reports whether the workload goes on past its
	// budget (Config.RunPastFailover).
	more      func() bool
	started   atomic.Bool // the workload runs: every request counts against the budget
	sent      atomic.Int64
	okCount   atomic.Int64
	failCount atomic.Int64

	mu       sync.Mutex
	requests []*request
	bursts   []burst
}

func newWorkload(cfg Config, base string) *workload {
	w := &workload{cfg: cfg, base: base}
	for i := range cfg.Sessions + cfg.IdleSessions {
		b := newBrowser(i, cfg)
		b.idle = i >= cfg.Sessions
		w.browsers = append(w.browsers, b)
	}
	w.remaining.Store(int64(cfg.Requests))
	return w
}

// close releases the browsers' connections.
func (w *workload) close() {
	for _, b := range w.browsers {
		b.tr.CloseIdleConnections()
	}
}

// do sends one request outside any burst and records it.
func (w *workload) do(ctx context.Context, b *browser, base, route string) *request {
	if w.started.Load() {
		w.remaining.Add(-1) // e.g. a crashed holder's requests
	}
	r := b.send(ctx, base, route, w.ids.Add(1), -1)
	w.record(r)
	return r
}

func (w *workload) record(r *request) {
	w.sent.Add(1)
	if r.ok() {
		w.okCount.Add(1)
	} else {
		w.failCount.Add(1)
	}
	w.mu.Lock()
	w.requests = append(w.requests, r)
	w.mu.Unlock()
}

// open loads each browser's first page, which creates its session.
func (w *workload) open(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(w.browsers))
	sem := make(chan struct{}, 32)
	for i, b := range w.browsers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := w.do(ctx, b, w.base, RouteInit)
			if !r.ok() {
				errs[i] = fmt.Errorf("browser %d: first page load failed: %s", i, r.Reason)
				return
			}
			b.sid = r.SID
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// probe measures single requests with nothing else running: the median of
// three sequential requests per route of the mix, from browser 0.
func (w *workload) probe(ctx context.Context) map[string]float64 {
	out := make(map[string]float64)
	b := w.browsers[0]
	for _, route := range []string{RouteIncr, RouteAppend, RouteRead, RouteFree, RouteSlow} {
		if mixWeight(w.cfg.Mix, route) == 0 {
			continue
		}
		var ms []float64
		for range 3 {
			r := w.do(ctx, b, w.base, route)
			if r.ok() {
				ms = append(ms, float64(r.Recv-r.Sent)/1e6)
			}
		}
		if len(ms) > 0 {
			out[route] = percentile(ms, 50)
		}
	}
	return out
}

func mixWeight(m Mix, route string) int {
	switch route {
	case RouteIncr:
		return m.Incr
	case RouteAppend:
		return m.Append
	case RouteRead:
		return m.Read
	case RouteFree:
		return m.Free
	case RouteSlow:
		return m.Slow
	}
	return 0
}

// take reserves up to n requests of the budget.
func (w *workload) take(n int) int {
	if w.cfg.Requests < 0 {
		return n
	}
	for {
		left := w.remaining.Load()
		if left <= 0 {
			if w.more != nil && w.more() {
				w.remaining.Add(-int64(n))
				return n
			}
			return 0
		}
		k := min(int64(n), left)
		if w.remaining.CompareAndSwap(left, left-k) {
			return int(k)
		}
	}
}

// run fires bursts from every browser until the budget is spent, the
// deadline passes or ctx ends.
func (w *workload) run(ctx context.Context, deadline time.Time) {
	w.started.Store(true)
	var wg sync.WaitGroup
	for _, b := range w.browsers {
		if b.idle {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.browse(ctx, b, deadline)
		}()
	}
	wg.Wait()
}

func (w *workload) browse(ctx context.Context, b *browser, deadline time.Time) {
	for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
		n := w.take(w.cfg.Burst)
		if n == 0 {
			return
		}
		picks := make([]string, n)
		ids := make([]uint64, n)
		for i := range picks {
			picks[i] = b.pick(w.cfg.Mix)
			ids[i] = w.ids.Add(1)
		}
		w.mu.Lock()
		idx := len(w.bursts)
		w.bursts = append(w.bursts, burst{Browser: b.idx, IDs: ids})
		w.mu.Unlock()

		start := time.Now().UnixNano()
		var wg sync.WaitGroup
		for i := range picks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.record(b.send(ctx, w.base, picks[i], ids[i], idx))
			}()
		}
		wg.Wait()
		end := time.Now().UnixNano()
		w.mu.Lock()
		w.bursts[idx].Start, w.bursts[idx].End = start, end
		w.mu.Unlock()
	}
}
