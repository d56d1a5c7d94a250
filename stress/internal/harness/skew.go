package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// Config.ExpirySkew emulates, from outside, a memcached node whose clock
// runs behind (a positive skew: its copies outlive the others') or ahead
// (negative: they die first). memcached has no clock setting; the harness
// lists the node's items (`lru_crawler metadump all`, each key with its
// expiry on the node's clock) and moves each item's expiry by the skew
// with a meta touch (`mg <key> T<n>`, which changes neither the item's
// value nor its CAS), every expirySkewEvery until the workload ends: the
// store sets an item's expiry again on every access, which undoes the
// shift. Every item with an expiry is shifted, as a clock would: data
// copies, witnesses, blanks and backup copies alike; an item whose
// shifted expiry has passed expires at once (`T-1`). The store's
// incarnation key (`__sl_inc`) has no expiry and is left alone, as a
// clock would leave it (giving it one would be another fault: a restart
// as the store sees it).

// FaultExpirySkew is the kind of Config.ExpirySkew's event.
const FaultExpirySkew = "expiry_skew"

// expirySkewEvery is how often Config.ExpirySkew's shift is applied.
const expirySkewEvery = 250 * time.Millisecond

// minExpirySkew bounds Config.ExpirySkew below: memcached's expiry is
// whole seconds, and an expiry within a second of the one the skew set
// is taken for the skew's own (a re-stamp that keeps the expiry, give or
// take memcached's rounding), not shifted again.
const minExpirySkew = 2 * time.Second

// skewSecs is Config.ExpirySkew in whole seconds, rounded.
func skewSecs(d time.Duration) int64 { return int64(d.Round(time.Second) / time.Second) }

// skewer moves the expiry of every item on one memcached node by secs
// seconds.
type skewer struct {
	addr string
	secs int64
	mine map[string]int64 // key → the expiry it set (Unix s, the node's clock)
	conn net.Conn
	rd   *bufio.Reader

	rounds, busy, shifted, lapsed int64
}

// skewStats are a skewer's counts, for the Result.
type skewStats struct {
	rounds, busy, shifted, lapsed int64
}

// exchange sends the command cmd and passes each line of its answer,
// trimmed, to each, until the END line or until each returns false.
func (s *skewer) exchange(cmd string, each func(line string) bool) error {
	if _, err := s.conn.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		if line == "END" || !each(line) {
			return nil
		}
	}
}

// run applies the skew every expirySkewEvery until ctx ends, then
// returns its counts. first is called with the first round's error (nil:
// the fault is injected).
func (s *skewer) run(ctx context.Context, first func(error)) skewStats {
	defer func() {
		if s.conn != nil {
			_ = s.conn.Close()
		}
	}()
	tick := time.NewTicker(expirySkewEvery)
	defer tick.Stop()
	for {
		err := s.round(ctx)
		if first != nil {
			first(err)
			first = nil
		}
		if err != nil && s.conn != nil {
			// A later round dials again.
			_ = s.conn.Close()
			s.conn = nil
		}
		select {
		case <-ctx.Done():
			return skewStats{s.rounds, s.busy, s.shifted, s.lapsed}
		case <-tick.C:
		}
	}
}

// round lists the node's items and shifts the expiry of those the store
// set since the last round.
func (s *skewer) round(ctx context.Context) error {
	if s.conn == nil {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return err
		}
		s.conn, s.rd = c, bufio.NewReader(c)
	}
	_ = s.conn.SetDeadline(time.Now().Add(2 * time.Second))
	// The node's clock (stats' time) and the dump's expiries are both
	// Unix seconds as the node counts them. (memcached refuses a dump
	// pipelined behind another command.)
	var now int64
	err := s.exchange("stats", func(line string) bool {
		if v, ok := strings.CutPrefix(line, "STAT time "); ok {
			now, _ = strconv.ParseInt(v, 10, 64)
		}
		return true
	})
	if err != nil {
		return err
	}
	if now == 0 {
		return errors.New("memcached stats: no time")
	}
	type item struct {
		key string
		exp int64
	}
	var items []item
	first, busy := true, false
	err = s.exchange("lru_crawler metadump all", func(line string) bool {
		if first && strings.HasPrefix(line, "BUSY") {
			busy = true
			return false
		}
		first = false
		if !strings.HasPrefix(line, "key=") {
			err = fmt.Errorf("lru_crawler metadump: %q", line)
			return false
		}
		it := item{exp: -1}
		for _, f := range strings.Fields(line) {
			var ferr error
			switch k, v, _ := strings.Cut(f, "="); k {
			case "key":
				it.key, ferr = url.PathUnescape(v)
			case "exp":
				it.exp, ferr = strconv.ParseInt(v, 10, 64)
			}
			if ferr != nil {
				err = fmt.Errorf("lru_crawler metadump: %q: %w", line, ferr)
				return false
			}
		}
		if it.exp >= 0 && it.key != "" && !strings.ContainsAny(it.key, " \r\n\t") {
			items = append(items, it)
		}
		return true
	})
	if err != nil {
		return err
	}
	if busy {
		// The store's repair scan is dumping the node: next round.
		s.busy++
		return nil
	}
	s.rounds++
	seen := make(map[string]bool, len(items))
	var cmds bytes.Buffer
	var sent []string
	for _, it := range items {
		seen[it.key] = true
		if m, ok := s.mine[it.key]; ok && it.exp >= m-1 && it.exp <= m+1 {
			s.mine[it.key] = it.exp // the shift, or a re-stamp of it
			continue
		}
		ttl := it.exp + s.secs - now
		if ttl <= 0 {
			ttl = -1 // expired at once
			s.lapsed++
			delete(s.mine, it.key)
		} else {
			s.mine[it.key] = now + ttl
		}
		s.shifted++
		fmt.Fprintf(&cmds, "mg %s T%d\r\n", it.key, ttl)
		sent = append(sent, it.key)
	}
	for k := range s.mine {
		if !seen[k] {
			delete(s.mine, k)
		}
	}
	if len(sent) == 0 {
		return nil
	}
	if _, err := s.conn.Write(cmds.Bytes()); err != nil {
		return err
	}
	for range sent {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return err
		}
		// HD: shifted (with Z on a blank: its win token was given to
		// the reader that made it; this mg asks for none); EN: gone
		// meanwhile (nothing to shift).
		if l := strings.TrimSpace(line); l != "EN" && l != "HD" && !strings.HasPrefix(l, "HD ") {
			return fmt.Errorf("mg T: %q", l)
		}
	}
	return nil
}

// runExpirySkew runs Config.ExpirySkew on its node from the start of the
// workload until ctx ends (the workload is over), and records its event
// once its first round has run.
func (r *runner) runExpirySkew(ctx context.Context) {
	cfg := r.cfg
	i := cfg.ExpirySkewNode
	s := &skewer{addr: r.be.nodes[i].Addr(), secs: skewSecs(cfg.ExpirySkew), mine: map[string]int64{}}
	st := s.run(ctx, func(err error) {
		if err != nil {
			r.event(FaultError, r.nodeName(i), "expiry skew on memcached node %d: %v", i, err)
			return
		}
		r.event(FaultExpirySkew, r.nodeName(i), "every item's expiry on memcached node %d (%s) moved by %+ds (the node's clock %s), again every %v until the workload ends",
			i, s.addr, s.secs, map[bool]string{true: "behind: its copies outlive the others", false: "ahead: its copies die first"}[s.secs > 0], expirySkewEvery)
	})
	r.mu.Lock()
	r.skewStats = st
	r.mu.Unlock()
}

// expiryExp is memcached's expiration, in seconds, of a write of TTL d
// (store/memcached's expiration: whole seconds rounded up, plus two).
func expiryExp(d time.Duration) time.Duration {
	return (d+time.Second-1)/time.Second*time.Second + 2*time.Second
}

// skewWindow is when, after a probe's last answer, its session is read in
// Config.ExpirySkew's window: the middle of the span in which the copies
// on the skewed node have expired and the others not yet (negative skew),
// or the others have and the skewed node's not yet (positive). A copy
// given an expiration of n seconds dies between n − 2 and n seconds after
// it was stored (memcached's coarse clock: store/memcached expiration.go),
// the skewed node's between n + S − 2 and n + S: the span is there when
// |S| > 2 s, and its middle is n + S/2 − 1 s in both directions.
func skewWindow(cfg Config) time.Duration {
	return max(expiryExp(cfg.ExpiryTimeout)+cfg.ExpirySkew.Round(time.Second)/2-time.Second, 500*time.Millisecond)
}

// skewWindowRead reads probe p's session in Config.ExpirySkew's window
// (skewWindow after its last answer): first each node's record of it
// (`mg <key> t f`: a data copy has client flags 1, a witness 2), then the
// session through a store client of the harness's own (a plain Get:
// anomaly reads and the failovers they make carry the copies' remaining
// TTL, and touch nothing). A read within the session's own timeout after
// its last write was sent must find it (else it is lost); a later one may
// find it or not (the copy that outlived the others is the session until
// it expires, docs/replication.md's state table, "Expiring"), but a
// session found gone must stay gone: the read-back after the expiry
// (checkExpiry) then must not find it, whatever the skew.
func (r *runner) skewWindowRead(ctx context.Context, p *expiryProbe, st provider.Store) {
	if len(p.sids) == 0 {
		return
	}
	sid := p.sids[len(p.sids)-1]
	if pause(ctx, time.Until(time.Unix(0, p.last).Add(skewWindow(r.cfg)))) != nil {
		return
	}
	key := "sl:" + sid // provider.Config's default KeyPrefix, no App, no HashIDs
	var copies []string
	data := 0
	for i, n := range r.be.nodes {
		line := metaCmd(ctx, n.Addr(), "mg "+key+" t f")
		if strings.HasPrefix(line, "HD") && strings.Contains(line+" ", " f1 ") {
			data++
		}
		copies = append(copies, fmt.Sprintf("node %d [%s]", i, line))
	}
	_, err := st.Get(ctx, key)
	read := time.Now()
	start := r.start.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	w := &r.skewWindows
	w.reads++
	if data == 1 {
		w.lone++
	}
	outcome := "found"
	switch {
	case err == nil:
		w.found++
	case errors.Is(err, provider.ErrNotFound):
		outcome = "not found"
		if read.UnixNano() < p.okSent+int64(r.cfg.ExpiryTimeout) {
			w.lost++
			outcome = "not found within its own timeout after its last write was sent: lost"
		}
	default:
		w.errors++
		outcome = err.Error()
	}
	w.notes = append(w.notes, fmt.Sprintf("expiry skew window: probe session %s… (own timeout %v), last answered at %.0f ms, read at %.0f ms: %d data copies (%s); store read: %s",
		sidTag(sid), r.cfg.ExpiryTimeout, ms(p.last-start), ms(read.UnixNano()-start), data, strings.Join(copies, ", "), outcome))
}

// skewWindowCounts are the window reads of skewWindowRead.
type skewWindowCounts struct {
	reads, lone, found, lost, errors int
	notes                            []string
}

// skewWindowReads runs skewWindowRead for each probe once it stopped
// writing (stopped[i] closed), and returns when all have read.
func (r *runner) skewWindowReads(ctx context.Context, probes []*expiryProbe, stopped []chan struct{}) {
	st, err := openStore(ctx, r.be.spec)
	if err != nil {
		r.mu.Lock()
		r.skewWindows.errors++
		r.skewWindows.notes = append(r.skewWindows.notes, fmt.Sprintf("expiry skew window: no store client: %v", err))
		r.mu.Unlock()
		return
	}
	defer st.Close()
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-stopped[i]:
			case <-ctx.Done():
				return
			}
			r.skewWindowRead(ctx, p, st)
		}()
	}
	wg.Wait()
}
