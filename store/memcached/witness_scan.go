package memcached

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// The repair scan (§9, "Repair window"): every Config.RepairEvery the
// repair client lists every node's keys (`lru_crawler metadump all`) and
// visits (repairKey: an anomaly read, R4 with R9) each session that is
// not listed whole on its three candidates, so that a session nobody
// touches is repaired or failed over too.

// DefaultRepairEvery is Config.RepairEvery's default.
const DefaultRepairEvery = 30 * time.Second

const (
	// scanRate bounds the keys read from each node's dump per second.
	scanRate = 50_000
	// scanVisitRate bounds the scan's visits per second.
	scanVisitRate = 2_000
	// maxScanKeys bounds the distinct keys one pass of a scan holds
	// (about 85 bytes each with a 40-byte key); more keys than that on
	// the nodes split the scan into passes, each over a share of the
	// keys (by hash) and each reading every node's dump again.
	maxScanKeys = 1 << 17
	// scanBusyTries is how often a dump is tried on a node whose crawler
	// is busy (another process's scan, or memcached's own crawl) before
	// the node counts as unknown for the scan.
	scanBusyTries = 5
	// itemHeader is memcached's item header with CAS on a 64-bit build,
	// the size of an item less its key, value and client flags; each
	// scan measures it on the incarnation key when the dump lists it.
	itemHeader = 56
)

// scanner is the repair client's scan (one per Store).
type scanner struct {
	w     *witness
	every time.Duration // Config.RepairEvery; negative: off
	// rate and visitRate are scanRate and scanVisitRate (tests change
	// them; 0: unbounded). Set before the Store is used.
	rate, visitRate int
	// warned: the node was reported for its disabled crawler (once).
	warned []atomic.Bool
	// minParts is the passes the next scan makes at least: doubled when
	// a pass met more keys than maxScanKeys.
	minParts atomic.Int64

	runs, listed, visits atomic.Int64 // for tests and measurement
}

func newScanner(w *witness) *scanner {
	sc := &scanner{
		w: w, every: w.s.cfg.RepairEvery, rate: scanRate, visitRate: scanVisitRate,
		warned: make([]atomic.Bool, len(w.s.nodes)),
	}
	sc.minParts.Store(1)
	return sc
}

// loop scans until ctx ends, each wait drawn in [every/2, every] so that
// the processes sharing the nodes do not scan in step.
func (sc *scanner) loop(ctx context.Context) {
	if sc.every < 0 {
		return
	}
	for {
		d := sc.every/2 + rand.N(sc.every/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sc.run(ctx)
	}
}

// listing is what a node's dump said in one pass.
type listing int

const (
	dumpListed  listing = iota // the dump was read whole
	dumpNothing                // failed, unreachable, or the dump broke off: it lists no key
	dumpUnknown                // its crawler is disabled or stayed busy: no judgement on it
)

// scanEntry is what the dumps listed of one key: bit i of on is set when
// candidate i listed it, size[i] the item's size there.
type scanEntry struct {
	size [3]uint32
	on   uint8
}

// pass is one pass of a scan: the keys whose hash falls in part of
// parts.
type pass struct {
	sc          *scanner
	parts, part uint64
	seed        maphash.Seed

	mu      sync.Mutex
	keys    map[string]int32 // key → its entry
	entries []scanEntry
	full    bool
	hdr     []int // per node: measured item header, or -1
	st      []listing
}

// run is one scan: its passes, then the visits of each.
func (sc *scanner) run(ctx context.Context) {
	defer sc.runs.Add(1)
	parts := sc.parts(ctx)
	seed := maphash.MakeSeed()
	for part := range parts {
		if ctx.Err() != nil {
			return
		}
		p := &pass{sc: sc, parts: parts, part: part, seed: seed, keys: make(map[string]int32),
			hdr: make([]int, len(sc.w.s.nodes)), st: make([]listing, len(sc.w.s.nodes))}
		for i := range p.hdr {
			p.hdr[i] = -1
		}
		var wg sync.WaitGroup
		for i, n := range sc.w.s.nodes {
			wg.Go(func() { p.st[i] = sc.dumpNode(ctx, p, n) })
		}
		wg.Wait()
		if p.full {
			sc.minParts.Store(int64(2 * parts))
		}
		visit := p.judge()
		p.keys, p.entries = nil, nil
		sc.visitAll(ctx, visit)
	}
}

// parts returns how many passes a scan makes: enough for the nodes'
// items (about three per session) at maxScanKeys distinct keys a pass.
func (sc *scanner) parts(ctx context.Context) uint64 {
	var items uint64
	for _, n := range sc.w.s.nodes {
		if n.wh.isFailed() {
			continue
		}
		v, err := n.stat(ctx, sc.w.s.cfg.Timeout, "stats", "curr_items")
		if err != nil {
			continue
		}
		c, _ := strconv.ParseUint(v, 10, 64)
		items += c
	}
	return max(uint64(sc.minParts.Load()), (items/3+maxScanKeys-1)/maxScanKeys, 1)
}

// dumpNode reads n's dump into p, retrying a busy crawler, and returns
// what the node listed.
func (sc *scanner) dumpNode(ctx context.Context, p *pass, n *node) listing {
	for try := 1; ; try++ {
		if n.wh.isFailed() {
			return dumpNothing
		}
		l, busy := sc.dump(ctx, p, n)
		if !busy {
			return l
		}
		if try == scanBusyTries {
			return dumpUnknown
		}
		t := time.NewTimer(100*time.Millisecond + rand.N(400*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return dumpUnknown
		case <-t.C:
		}
	}
}

var (
	dumpCmd      = []byte("lru_crawler metadump all\r\n")
	dumpEnd      = []byte("END")
	dumpBusy     = []byte("BUSY")
	dumpDisabled = []byte("CLIENT_ERROR lru crawler disabled")
)

// dump runs `lru_crawler metadump all` on a connection of its own (not
// the node's pool, and feeding no failure detection: a dump takes
// seconds) and adds each line to p. busy: the crawler was busy.
func (sc *scanner) dump(ctx context.Context, p *pass, n *node) (l listing, busy bool) {
	nc, err := n.meta.dialNode(ctx)
	if err != nil {
		return dumpNothing, false
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	idle := max(4*sc.w.s.cfg.Timeout, 2*time.Second) // the longest wait for the next lines
	_ = nc.SetDeadline(time.Now().Add(idle))
	if _, err := nc.Write(dumpCmd); err != nil {
		return dumpNothing, false
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	start := time.Now()
	for lines := 0; ; lines++ {
		if lines%512 == 0 && lines > 0 {
			if err := pace(ctx, start, lines, sc.rate); err != nil {
				return dumpNothing, false
			}
			_ = nc.SetDeadline(time.Now().Add(idle))
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return dumpNothing, false
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.Equal(line, dumpEnd):
			return dumpListed, false
		case lines == 0 && bytes.HasPrefix(line, dumpBusy):
			return dumpUnknown, true
		case lines == 0 && bytes.Equal(line, dumpDisabled):
			if sc.warned[n.idx].CompareAndSwap(false, true) {
				sc.w.emit(provider.EventWarning, n, "lru_crawler disabled: the repair scan (docs/replication.md §9) cannot list the node's keys, so sessions nobody touches are not repaired on it (run memcached without -o no_lru_crawler, or send `lru_crawler enable`)", nil)
			}
			return dumpUnknown, false
		case lines == 0 && !bytes.HasPrefix(line, []byte("key=")):
			// An error reply (another server, an old memcached): no
			// judgement on the node.
			return dumpUnknown, false
		}
		p.add(n, line)
	}
}

// pace waits until n events (lines read, keys visited) fit rate a second
// since start (rate 0: no wait), or ctx ends.
func pace(ctx context.Context, start time.Time, n, rate int) error {
	if rate <= 0 {
		return ctx.Err()
	}
	d := time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate)))
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dumpLine is one parsed line of a dump.
type dumpLine struct {
	key       []byte // decoded
	exp, size int64
}

var errDumpLine = errors.New("memcached: malformed lru_crawler metadump line")

// parseDumpLine parses `key=<url-encoded> exp=<n> la=… cas=… fetch=…
// cls=… size=<n>` (memcached 1.6). The key is decoded in place: it is
// line's bytes.
func parseDumpLine(line []byte) (dumpLine, error) {
	var d dumpLine
	var haveExp, haveSize bool
	for len(line) > 0 {
		var f []byte
		f, line, _ = bytes.Cut(line, []byte(" "))
		name, val, ok := bytes.Cut(f, []byte("="))
		if !ok {
			continue
		}
		switch string(name) {
		case "key":
			var ok bool
			if d.key, ok = unescape(val); !ok {
				return d, errDumpLine
			}
		case "exp":
			d.exp, haveExp = atoi(val)
		case "size":
			d.size, haveSize = atoi(val)
		}
	}
	if len(d.key) == 0 || !haveExp || !haveSize {
		return d, errDumpLine
	}
	return d, nil
}

// unescape decodes memcached's URL encoding of a key (%XX) in place.
func unescape(b []byte) ([]byte, bool) {
	j := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '%' {
			if i+2 >= len(b) {
				return nil, false
			}
			hi, lo := unhex(b[i+1]), unhex(b[i+2])
			if hi < 0 || lo < 0 {
				return nil, false
			}
			c = byte(hi<<4 | lo)
			i += 2
		}
		b[j] = c
		j++
	}
	return b[:j], true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// atoi parses a decimal integer (a leading '-' allowed) of at most 18
// digits, allocating nothing.
func atoi(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = 10*v + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// candidateIndex returns which of key's candidates n is (as candidates
// ranks them), or -1, allocating nothing.
func (w *witness) candidateIndex(key []byte, n *node) int {
	mine := rendezvous.Score(w.s.seeds[n.idx], key)
	r := 0
	for j, seed := range w.s.seeds {
		if sc := rendezvous.Score(seed, key); sc > mine || sc == mine && j < n.idx {
			r++
		}
	}
	if r >= len(candidates{}) {
		return -1
	}
	return r
}

// add notes one dump line of node n. Only keys the store may own are
// kept: with an expiry (every item of the scheme has one), a valid key,
// in this pass's share, and n one of the key's candidates. The
// incarnation key gives the node's item header. A key's string is made
// once, when it is first kept.
func (p *pass) add(n *node, line []byte) {
	d, err := parseDumpLine(line)
	if err != nil {
		return
	}
	if string(d.key) == incarnationKey {
		p.mu.Lock()
		p.hdr[n.idx] = int(d.size) - (len(d.key) + 1) - (8 + 2) // 8 bytes, no client flags
		p.mu.Unlock()
		return
	}
	if d.exp < 0 || d.size <= 0 || d.size > 1<<32-1 {
		return
	}
	if p.parts > 1 && maphash.Bytes(p.seed, d.key)%p.parts != p.part {
		return
	}
	i := p.sc.w.candidateIndex(d.key, n)
	if i < 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	x, ok := p.keys[string(d.key)]
	if !ok {
		key := string(d.key)
		if len(p.keys) >= maxScanKeys {
			p.full = true
			return
		}
		if checkKey(key) != nil {
			return
		}
		x = int32(len(p.entries))
		p.keys[key] = x
		p.entries = append(p.entries, scanEntry{})
	}
	p.sc.listed.Add(1)
	e := &p.entries[x]
	e.on |= 1 << i
	e.size[i] = uint32(d.size)
}

// itemKind is what an item's size says it is.
type itemKind int

const (
	sizedOther   itemKind = iota // a data record (or anything else)
	sizedBlank                   // no value and no client flags: a blank
	sizedWitness                 // an envelope alone with client flags: a witness
)

// kindOf classifies an item of a key of nkey bytes by its size on a node
// whose item header is hdr (-1: not measured).
func kindOf(hdr, nkey int, size uint32) itemKind {
	if hdr < 0 {
		hdr = itemHeader
	}
	switch int(size) - hdr - (nkey + 1) {
	case 2:
		return sizedBlank
	case envelope.Size1 + 2 + 4, envelope.Size + 2 + 4, envelope.SizePromised + 2 + 4:
		return sizedWitness
	}
	return sizedOther
}

// judge returns the keys of p to visit: those not listed whole on their
// candidates. A key is whole when its two data copies' candidates (by the
// configuration this process knows for it, else home) list an item that
// is not a blank and the third lists a witness-sized one; a node of
// unknown listing is taken to list what it should, and a witness on a
// node this process holds failed is taken as present (a session failed
// over away from a dead node is not visited again every scan until the
// node is back). Not visited: keys
// whose listed items are all blanks (nothing to repair), and keys listed
// on one candidate only with an item that is not witness-sized (a key of
// another application, or a double fault's lone copy, left to the next
// touch: a visit would read, and leave blanks on, the other candidates).
func (p *pass) judge() []string {
	var visit []string
	for key, x := range p.keys {
		e := &p.entries[x]
		cs := p.sc.w.candidates(key)
		c := p.sc.w.configFor(key)
		var actual, blanks int
		lone := sizedOther
		whole := true
		for i, n := range cs {
			on := e.on&(1<<i) != 0 && p.st[n.idx] == dumpListed
			var k itemKind
			if on {
				actual++
				k = kindOf(p.hdr[n.idx], len(key), e.size[i])
				lone = k
				if k == sizedBlank {
					blanks++
				}
			}
			switch {
			case p.st[n.idx] == dumpUnknown:
			case !on && uint8(i) == c.wit() && p.st[n.idx] == dumpNothing && n.wh.isFailed():
				// The witness's node is failed: R9 cannot write it
				// there, and its data copies are in place.
			case !on:
				whole = false
			case uint8(i) == c.wit():
				whole = whole && k == sizedWitness
			default:
				whole = whole && k != sizedBlank
			}
		}
		switch {
		case whole, actual == blanks, actual == 1 && lone != sizedWitness:
			continue
		}
		visit = append(visit, key)
	}
	return visit
}

// visitAll visits keys (repairKey), scanVisitors at a time, at most
// visitRate a second, until ctx ends.
func (sc *scanner) visitAll(ctx context.Context, keys []string) {
	start := time.Now()
	next := make(chan string)
	var wg sync.WaitGroup
	for range scanVisitors {
		wg.Go(func() {
			for key := range next {
				sc.visits.Add(1)
				sc.w.repairKey(ctx, key)
			}
		})
	}
	defer wg.Wait()
	defer close(next)
	for i, key := range keys {
		if err := pace(ctx, start, i, sc.visitRate); err != nil {
			return
		}
		select {
		case next <- key:
		case <-ctx.Done():
			return
		}
	}
}

// scanVisitors is how many visits a scan runs at once: a visit is a few
// round trips, most of them waits (a failed node's silence, a back-off),
// so that one at a time took about 70 s to fail 100,000 sessions over
// after a node's death (TestScanFailoverCost).
const scanVisitors = 8
