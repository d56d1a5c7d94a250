package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/middleware"
)

// expiryProbe is one browser of Config.ExpiryProbes: its session has a
// short own timeout, and it writes it until its stop moment, then leaves
// it idle.
type expiryProbe struct {
	b    *browser
	stop At
	sids []string // every session id it was answered with, in order
	last int64    // Unix ns: the answer to its last request (0: none)
	// okSent is when the last request answered with the current session
	// was sent; replaced lists the requests answered with a new one.
	okSent   int64
	replaced []replacement
	failed   []*request // its requests that failed (for findings)
}

// replacement is a probe's request answered with a new session: the old
// one was not found. prevSent is when the last request answered with the
// old one was sent (it set the old one's expiry at that time or later).
type replacement struct {
	prevSent, sent, recv int64
}

// answered notes what a request of the probe got back.
func (p *expiryProbe) answered(r *request) {
	p.last = max(p.last, r.Recv)
	if !r.ok() {
		p.failed = append(p.failed, r)
		return
	}
	if n := len(p.sids); n > 0 && p.sids[n-1] != r.SID {
		p.replaced = append(p.replaced, replacement{prevSent: p.okSent, sent: r.Sent, recv: r.Recv})
	}
	if len(p.sids) == 0 || p.sids[len(p.sids)-1] != r.SID {
		p.sids = append(p.sids, r.SID)
	}
	p.okSent = r.Sent
}

// openProbes creates the expiry probes' sessions, each with the own
// timeout Config.ExpiryTimeout (the init route's timeout parameter).
func (r *runner) openProbes(ctx context.Context) ([]*expiryProbe, error) {
	cfg := r.cfg
	var probes []*expiryProbe
	for i := range cfg.ExpiryProbes {
		b := newBrowser(cfg.Sessions+cfg.IdleSessions+i, cfg)
		b.timeout = cfg.ExpiryTimeout
		stop := At{Fraction: 0.5 * float64(i+1) / float64(cfg.ExpiryProbes)}
		if cfg.Requests < 0 {
			stop = At{After: cfg.Duration / 2 * time.Duration(i+1) / time.Duration(cfg.ExpiryProbes)}
		}
		p := &expiryProbe{b: b, stop: stop}
		rq := b.send(ctx, r.work.base, RouteInit, r.work.ids.Add(1), -1)
		p.answered(rq)
		if !rq.ok() {
			return nil, fmt.Errorf("harness: expiry probe %d: first page load failed: %s", i, rq.Reason)
		}
		probes = append(probes, p)
	}
	return probes, nil
}

// runProbes writes each probe's session through the round-robin, one
// increment at a time every expiryProbeEvery, until its stop moment or
// until ctx ends (the workload is over), closing stopped[i] when probe i
// stops. It returns when they stopped.
func (r *runner) runProbes(ctx context.Context, probes []*expiryProbe, stopped []chan struct{}) {
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(stopped[i])
			for ctx.Err() == nil && !r.reached(p.stop) {
				p.answered(p.b.send(ctx, r.work.base, RouteIncr, r.work.ids.Add(1), -1))
				t := time.NewTimer(expiryProbeEvery)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
		}()
	}
	wg.Wait()
}

// expiryProbeEvery paces a probe's writes.
const expiryProbeEvery = 50 * time.Millisecond

// expiryBound is how long after the last write that set it a session of
// own timeout d may still live in the run's store: memcached's (and the
// tiered cache's) expiration is whole seconds rounded up plus two for its
// clock, and its coarse clock lets an item live up to about two seconds
// more (store/memcached expiration.go: "at most about ttl + 5 s"), plus a
// second's margin; other stores keep the TTL to the millisecond, a second
// of margin.
func expiryBound(cfg Config, d time.Duration) time.Duration {
	d = (d + time.Second - 1) / time.Second * time.Second
	switch cfg.Backend {
	case BackendMemcached, BackendTiered:
		return d + 6*time.Second
	}
	return d + time.Second
}

// checkExpiry waits until every probe's session must have expired
// everywhere (expiryBound after the later of its last answer and the end
// of the last fault, when a command held up by a paused or cut-off node
// may still have landed), then reads each session id a probe was given
// through every live app server, with the probe's cookie alone: each
// must be answered with a new session, never with its own id and old
// values (Result.ExpiredRevived).
func (r *runner) checkExpiry(ctx context.Context, probes []*expiryProbe, res *Result) error {
	if len(probes) == 0 {
		return nil
	}
	res.ExpiryProbes = len(probes)
	res.ExpiryTimeoutMs = ms(int64(r.cfg.ExpiryTimeout))
	// A probe's session replaced while it was written: lost when the
	// request that found it gone had its answer less than the timeout
	// after the last request that wrote it was sent (the store keeps a
	// session at least its timeout); else it may have expired (a request
	// held up by a fault for longer than the timeout).
	start := r.start.UnixNano()
	for i, p := range probes {
		for _, x := range p.replaced {
			if x.recv < x.prevSent+int64(r.cfg.ExpiryTimeout) {
				res.SessionsLost++
				res.finding("session lost: expiry probe %d's session, written by a request sent at %.0f ms, was not found by one sent at %.0f ms and answered at %.0f ms, within its own timeout (%v)",
					i, ms(x.prevSent-start), ms(x.sent-start), ms(x.recv-start), r.cfg.ExpiryTimeout)
				continue
			}
			res.ExpiryReplaced++
			res.ExpiryReplacedGapMaxMs = max(res.ExpiryReplacedGapMaxMs, ms(x.recv-x.prevSent))
		}
	}
	for i, p := range probes {
		for _, x := range p.failed {
			res.finding("expiry probe %d's request sent at %.0f ms failed at %.0f ms: %s %s", i, ms(x.Sent-start), ms(x.Recv-start), x.Reason, x.Text)
		}
	}
	faultsEnd := r.start.UnixNano()
	for _, e := range r.events {
		if !e.Missed && e.Kind != FaultError {
			faultsEnd = max(faultsEnd, r.start.UnixNano()+int64((e.AtMs+e.DurationMs)*float64(time.Millisecond)))
		}
	}
	// A positive Config.ExpirySkew: the skewed node's copies outlive the
	// others by the skew, and the session with them (the store cannot
	// tell that node's clock is behind): every copy must have expired
	// the skew later.
	bound := expiryBound(r.cfg, r.cfg.ExpiryTimeout) + max(r.cfg.ExpirySkew.Round(time.Second), 0)
	var deadline time.Time
	for _, p := range probes {
		at := time.Unix(0, max(p.last, faultsEnd)).Add(bound)
		if at.After(deadline) {
			deadline = at
		}
	}
	waitFrom := time.Now()
	if err := pause(ctx, time.Until(deadline)); err != nil {
		return err
	}
	r.windows.Wait()
	res.ExpiryWaitMs = ms(int64(time.Since(waitFrom)))
	r.mu.Lock()
	w := r.skewWindows
	r.mu.Unlock()
	res.ExpirySkewWindowReads, res.ExpirySkewLone, res.ExpirySkewWindowFound, res.ExpirySkewWindowErrors = w.reads, w.lone, w.found, w.errors
	res.SessionsLost += w.lost
	for _, n := range w.notes {
		res.finding("%s", n)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for i, p := range probes {
		for _, sid := range p.sids {
			for _, s := range r.servers {
				if s.dead {
					continue
				}
				res.ExpiryReads++
				rep, err := readAs(ctx, client, s.addr, sid)
				var se statusError
				switch {
				case err == nil && !rep.New && rep.SID != sid:
					res.ExpiryUnchecked++
					res.finding("expiry unchecked: probe %d's session %s… read back through %s: answered with session %s…, not new", i, sidTag(sid), s.addr, sidTag(rep.SID))
				case errors.As(err, &se) && se.status/100 == 5:
					res.ExpiredUnavailable++
					res.finding("expired session unavailable: probe %d's session %s… (own timeout %v), idle since %.0f ms, read back through %s at %.0f ms: %v%s",
						i, sidTag(sid), r.cfg.ExpiryTimeout, ms(p.last-r.start.UnixNano()), s.addr, ms(time.Now().UnixNano()-r.start.UnixNano()), err, r.nodeTTLs(ctx, sid))
				case err != nil:
					res.ExpiryUnchecked++
					res.finding("expiry unchecked: probe %d's session %s… read back through %s: %v", i, sidTag(sid), s.addr, err)
				case !rep.New && rep.SID == sid:
					res.ExpiredRevived++
					res.finding("expired session revived: probe %d's session %s… (own timeout %v), idle since %.0f ms, read back through %s at %.0f ms with n=%d%s",
						i, sidTag(sid), r.cfg.ExpiryTimeout, ms(p.last-r.start.UnixNano()), s.addr, ms(time.Now().UnixNano()-r.start.UnixNano()), rep.Value, r.nodeTTLs(ctx, sid))
				}
			}
		}
	}
	return nil
}

// readAs sends the read route to the app server at addr with session
// cookie sid alone, and returns its answer.
func readAs(ctx context.Context, client *http.Client, addr, sid string) (reply, error) {
	var rep reply
	ri := routes[RouteRead]
	req, err := http.NewRequestWithContext(ctx, ri.method, "http://"+addr+ri.path, nil)
	if err != nil {
		return rep, err
	}
	req.AddCookie(&http.Cookie{Name: middleware.DefaultCookieName, Value: sid})
	resp, err := client.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return rep, err
	}
	if resp.StatusCode != http.StatusOK {
		return rep, statusError{resp.StatusCode, strings.TrimSpace(string(body))}
	}
	// A read-only request on a session not found answers a new one
	// (New; its id is only given once something is stored).
	if err := json.Unmarshal(body, &rep); err != nil || rep.SID == "" && !rep.New {
		return rep, fmt.Errorf("bad reply %q", body)
	}
	return rep, nil
}

// nodeTTLs describes, for a finding, the item of session sid on each
// memcached node of the run (memcached's `mg <key> t s`: its remaining
// TTL in seconds and its size), or nothing on another backend.
func (r *runner) nodeTTLs(ctx context.Context, sid string) string {
	if r.be == nil || r.be.spec.Backend != BackendMemcached {
		return ""
	}
	key := "sl:" + sid // provider.Config's default KeyPrefix, no App, no HashIDs
	var b strings.Builder
	b.WriteString("; items:")
	for i, addr := range r.be.spec.Nodes {
		fmt.Fprintf(&b, " node %d [%s]", i, metaCmd(ctx, addr, "mg "+key+" t s"))
	}
	return b.String()
}

// metaCmd sends one meta command (its line without the CRLF) to the
// memcached node at addr and returns its answer's line, or the error in
// parentheses.
func metaCmd(ctx context.Context, addr, cmd string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return strings.TrimSpace(line)
}

// statusError is an app server's answer other than 200 OK.
type statusError struct {
	status int
	body   string
}

func (e statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }
