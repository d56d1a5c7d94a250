package sim

import (
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file is one simulated memcached node's item table and the commands
// on it: the text commands (get, gets, gat, gats, set, add, replace,
// append, prepend, cas, touch, delete, incr, decr, flush_all, version,
// verbosity, quit) and the meta commands of memcached 1.6 (mg, ms, md, mn)
// with the flags b c f h k l O q s t v N T E I and ms modes E A P R S.
// It keeps memcached's semantics where they matter to a replicated store:
// one CAS counter per node (kept by flush_all, reset by a restart), TTLs
// in whole seconds of a per-node clock that ticks as memcached's does
// (clockModel), relative TTLs up to 30 days and absolute Unix times
// beyond.

// maxItemSize is memcached's default -I 1m.
const maxItemSize = 1 << 20

// maxRelative is the longest relative expiration (30 days); larger ones
// are Unix times.
const maxRelative = 30 * 24 * 60 * 60

type item struct {
	value      []byte
	flags      uint32
	exptime    int64 // node-relative second; 0 never expires
	cas        uint64
	time       int64 // last set, node-relative second
	lastAccess int64
	fetched    bool
	stale      bool // invalidated by md I / ms I
	winSent    bool // a W flag was handed out for this stale item
}

// table is one node's memory: lost on restart.
type table struct {
	mu         sync.Mutex
	items      map[string]*item
	cas        uint64
	started    time.Time // process start
	clk        clockModel
	oldestLive int64 // delayed flush_all: items set at or before it are gone once reached; 0 none
}

func newTable(now time.Time, clk clockModel) *table {
	return &table{items: make(map[string]*item), started: now, clk: clk}
}

// clockModel is how a node's clock ticks. memcached's current_time is
// whole seconds of the monotonic clock, set when the process starts and
// then by a timer handler that re-arms itself for one second each time it
// runs, so the ticks come every 1 s plus the handler's delay: their phase
// drifts against the second boundaries, and when it crosses one the value
// skips a second. Just before a skip current_time lags the monotonic
// clock by almost 2 s, so an item stored then with an expiration of n
// seconds lives only a little more than n - 2 seconds (the store adds 2
// s: store/memcached expiration.go). The model: ticks at k × (1 s +
// drift) after the start, tick k setting the clock to the whole seconds
// of offset + its instant.
type clockModel struct {
	offset time.Duration // the monotonic clock's fraction of a second at start (< 1 s)
	drift  time.Duration // added to every period: the handler's delay
}

// clock is memcached's current_time: whole seconds, as of the last tick.
func (t *table) clock() int64 { return t.clk.at(time.Since(t.started)) }

// at is the clock's value e after the process started.
func (m clockModel) at(e time.Duration) int64 {
	period := time.Second + m.drift
	return int64((m.offset + e/period*period) / time.Second)
}

// maxClockDrift bounds clockModel.drift. A real memcached's handler delay
// is microseconds (more on a loaded machine), so its skips are minutes
// apart; the model's larger drift, and a phase drawn so that the first
// skip comes within the first 8 ticks, make a run of a few seconds meet
// one on every node.
const maxClockDrift = 30 * time.Millisecond

// drawClock draws a node's clock from seed (one draw from the run's
// source, as the single phase it replaces took, so that the other draws
// of a seed are unchanged).
func drawClock(seed uint64) clockModel {
	rng := rand.New(rand.NewPCG(seed, 0x636c6f636b))
	drift := time.Millisecond + time.Duration(rng.Int64N(int64(maxClockDrift-time.Millisecond)+1))
	skip := 1 + rng.Int64N(8) // the tick whose phase crosses a second boundary
	// The phase of tick k is offset + k × drift: offset is drawn just
	// short of skip × drift below a boundary.
	offset := (time.Second - time.Duration(skip)*drift + time.Duration(rng.Int64N(int64(drift)))) % time.Second
	return clockModel{offset: offset, drift: drift}
}

// exptime converts a TTL as sent by a client to node-relative seconds.
func (t *table) exptime(ttl int64, now int64) int64 {
	switch {
	case ttl == 0:
		return 0
	case ttl < 0:
		return now - 1 // already expired
	case ttl <= maxRelative:
		return now + ttl
	}
	rel := ttl - t.started.Unix()
	if rel <= 0 {
		return 1
	}
	return rel
}

// lookup returns a live item, dropping an expired or flushed one.
func (t *table) lookup(key string, now int64) *item {
	it := t.items[key]
	if it == nil {
		return nil
	}
	if t.gone(it, now) {
		delete(t.items, key)
		return nil
	}
	return it
}

// gone reports whether it is expired or flushed at now (memcached drops
// such items lazily: lookup deletes them, other readers skip them).
func (t *table) gone(it *item, now int64) bool {
	return (it.exptime != 0 && it.exptime <= now) || (t.oldestLive != 0 && t.oldestLive <= now && it.time <= t.oldestLive)
}

func (t *table) nextCAS() uint64 {
	t.cas++
	return t.cas
}

func (t *table) flush(delay int64) {
	if delay <= 0 {
		clear(t.items)
		t.oldestLive = 0
		return
	}
	t.oldestLive = t.clock() + delay - 1
}

// reply accumulates a command's reply.
type reply struct{ b strings.Builder }

func (r *reply) line(parts ...string) {
	for i, p := range parts {
		if i > 0 {
			r.b.WriteByte(' ')
		}
		r.b.WriteString(p)
	}
	r.b.WriteString("\r\n")
}

func (r *reply) data(b []byte) {
	r.b.Write(b)
	r.b.WriteString("\r\n")
}

// request is one command as read off a connection: its line and, for
// storage commands, its data block (without the CRLF).
type request struct {
	line   string
	fields []string
	data   []byte
	badEnd bool // the data block was not followed by CRLF
}

// dataLen reports how many data bytes follow a command line, or -1.
func dataLen(fields []string) int {
	if len(fields) == 0 {
		return -1
	}
	idx := -1
	switch fields[0] {
	case "set", "add", "replace", "append", "prepend", "cas":
		idx = 4
	case "ms":
		idx = 2
	}
	if idx < 0 || len(fields) <= idx {
		return -1
	}
	n, err := strconv.Atoi(fields[idx])
	if err != nil || n < 0 || n > 2*maxItemSize {
		return -1
	}
	return n
}

// exec runs one request on the table and returns the reply, and whether
// the connection must close (quit).
func (t *table) exec(rq *request) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r reply
	f := rq.fields
	if len(f) == 0 {
		r.line("ERROR")
		return r.b.String(), false
	}
	now := t.clock()
	switch f[0] {
	case "get", "gets", "gat", "gats":
		t.textGet(&r, f, now)
	case "set", "add", "replace", "append", "prepend", "cas":
		t.textStore(&r, rq, now)
	case "touch":
		if len(f) < 3 {
			r.line("ERROR")
			break
		}
		ttl, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			r.line("CLIENT_ERROR invalid exptime argument")
			break
		}
		it := t.lookup(f[1], now)
		if it == nil {
			r.noreply(f, "NOT_FOUND")
			break
		}
		it.exptime = t.exptime(ttl, now)
		r.noreply(f, "TOUCHED")
	case "delete":
		if len(f) < 2 {
			r.line("ERROR")
			break
		}
		if t.lookup(f[1], now) == nil {
			r.noreply(f, "NOT_FOUND")
			break
		}
		delete(t.items, f[1])
		r.noreply(f, "DELETED")
	case "incr", "decr":
		t.textArith(&r, f, now)
	case "flush_all":
		var delay int64
		if len(f) > 1 && f[1] != "noreply" {
			d, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				r.line("CLIENT_ERROR bad command line format")
				break
			}
			delay = d
		}
		t.flush(delay)
		r.noreply(f, "OK")
	case "version":
		r.line("VERSION 1.6.21-sim")
	case "stats":
		// General statistics only: a simulated node never evicts (the
		// witness scheme watches evictions: docs/replication.md 11.2).
		if len(f) > 1 {
			r.line("ERROR")
			break
		}
		r.line("STAT pid 1")
		r.line("STAT curr_items", strconv.Itoa(len(t.items)))
		r.line("STAT evictions 0")
		r.line("END")
	case "verbosity":
		r.noreply(f, "OK")
	case "quit":
		return "", true
	case "mn":
		r.line("MN")
	case "mg":
		t.metaGet(&r, f, now)
	case "ms":
		t.metaSet(&r, rq, now)
	case "md":
		t.metaDelete(&r, f, now)
	default:
		r.line("ERROR")
	}
	return r.b.String(), false
}

// noreply writes line unless the text command ends with "noreply".
func (r *reply) noreply(f []string, line string) {
	if f[len(f)-1] == "noreply" {
		return
	}
	r.line(line)
}

func (t *table) textGet(r *reply, f []string, now int64) {
	keys := f[1:]
	withCAS := f[0] == "gets" || f[0] == "gats"
	touch := f[0] == "gat" || f[0] == "gats"
	var ttl int64
	if touch {
		if len(keys) < 2 {
			r.line("ERROR")
			return
		}
		var err error
		if ttl, err = strconv.ParseInt(keys[0], 10, 64); err != nil {
			r.line("CLIENT_ERROR invalid exptime argument")
			return
		}
		keys = keys[1:]
	}
	if len(keys) == 0 {
		r.line("ERROR")
		return
	}
	for _, k := range keys {
		it := t.lookup(k, now)
		if it == nil {
			continue
		}
		if touch {
			it.exptime = t.exptime(ttl, now)
		}
		it.fetched, it.lastAccess = true, now
		parts := []string{"VALUE", k, strconv.FormatUint(uint64(it.flags), 10), strconv.Itoa(len(it.value))}
		if withCAS {
			parts = append(parts, strconv.FormatUint(it.cas, 10))
		}
		r.line(parts...)
		r.data(it.value)
	}
	r.line("END")
}

func (t *table) textStore(r *reply, rq *request, now int64) {
	f := rq.fields
	n := 5
	if f[0] == "cas" {
		n = 6
	}
	if len(f) < n {
		r.line("ERROR")
		return
	}
	if rq.badEnd {
		r.line("CLIENT_ERROR bad data chunk")
		return
	}
	flags, err1 := strconv.ParseUint(f[2], 10, 32)
	ttl, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		r.line("CLIENT_ERROR bad command line format")
		return
	}
	if len(rq.data) > maxItemSize {
		r.noreply(f, "SERVER_ERROR object too large for cache")
		return
	}
	key := f[1]
	it := t.lookup(key, now)
	switch f[0] {
	case "add":
		if it != nil {
			r.noreply(f, "NOT_STORED")
			return
		}
	case "replace", "append", "prepend":
		if it == nil {
			r.noreply(f, "NOT_STORED")
			return
		}
	case "cas":
		cas, err := strconv.ParseUint(f[5], 10, 64)
		if err != nil {
			r.line("CLIENT_ERROR bad command line format")
			return
		}
		if it == nil {
			r.noreply(f, "NOT_FOUND")
			return
		}
		if it.cas != cas {
			r.noreply(f, "EXISTS")
			return
		}
	}
	value := rq.data
	switch f[0] {
	case "append":
		value = append(append([]byte(nil), it.value...), rq.data...)
		flags, ttl = uint64(it.flags), -2
	case "prepend":
		value = append(append([]byte(nil), rq.data...), it.value...)
		flags, ttl = uint64(it.flags), -2
	}
	exp := int64(0)
	if ttl == -2 {
		exp = it.exptime
	} else {
		exp = t.exptime(ttl, now)
	}
	t.items[key] = &item{value: append([]byte(nil), value...), flags: uint32(flags), exptime: exp, cas: t.nextCAS(), time: now, lastAccess: now}
	r.noreply(f, "STORED")
}

func (t *table) textArith(r *reply, f []string, now int64) {
	if len(f) < 3 {
		r.line("ERROR")
		return
	}
	delta, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		r.line("CLIENT_ERROR invalid numeric delta argument")
		return
	}
	it := t.lookup(f[1], now)
	if it == nil {
		r.noreply(f, "NOT_FOUND")
		return
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(it.value)), 10, 64)
	if err != nil {
		r.line("CLIENT_ERROR cannot increment or decrement non-numeric value")
		return
	}
	if f[0] == "incr" {
		v += delta
	} else if delta > v {
		v = 0
	} else {
		v -= delta
	}
	it.value = []byte(strconv.FormatUint(v, 10))
	it.cas = t.nextCAS()
	r.noreply(f, string(it.value))
}

// metaFlags are the flags of one meta command: single letters, some with a
// token.
type metaFlags struct {
	order []string // flags as given, for the reply
	has   map[byte]string
}

func parseMetaFlags(toks []string) (metaFlags, bool) {
	mf := metaFlags{has: make(map[byte]string)}
	for _, tok := range toks {
		if tok == "" {
			continue
		}
		c := tok[0]
		if !strings.ContainsRune("bcfhklOqstvNTEIMCFSu", rune(c)) {
			return mf, false
		}
		mf.has[c] = tok[1:]
		mf.order = append(mf.order, tok)
	}
	return mf, true
}

func (m metaFlags) on(c byte) bool { _, ok := m.has[c]; return ok }

func (m metaFlags) num(c byte) (int64, bool, bool) {
	s, ok := m.has[c]
	if !ok {
		return 0, false, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, true, err == nil
}

// metaKey decodes the key (base64 with b).
func metaKey(tok string, mf metaFlags) (string, bool) {
	if !mf.on('b') {
		return tok, len(tok) > 0 && len(tok) <= 250
	}
	k, err := base64.StdEncoding.DecodeString(tok)
	if err != nil || len(k) == 0 || len(k) > 250 {
		return "", false
	}
	return string(k), true
}

// echo writes the flags a meta reply returns whatever the outcome: k, O, b.
func echo(parts []string, mf metaFlags, rawKey string) []string {
	for _, tok := range mf.order {
		switch tok[0] {
		case 'k':
			parts = append(parts, "k"+rawKey)
		case 'O':
			parts = append(parts, tok)
		case 'b':
			parts = append(parts, "b")
		}
	}
	return parts
}

func (t *table) metaGet(r *reply, f []string, now int64) {
	if len(f) < 2 {
		r.line("CLIENT_ERROR bad command line format")
		return
	}
	mf, ok := parseMetaFlags(f[2:])
	if !ok {
		r.line("CLIENT_ERROR invalid flag")
		return
	}
	key, ok := metaKey(f[1], mf)
	if !ok {
		r.line("CLIENT_ERROR bad data chunk")
		return
	}
	it := t.lookup(key, now)
	won := false
	if it == nil {
		vivify, has, ok := mf.num('N')
		if !ok {
			r.line("CLIENT_ERROR bad token in command line format")
			return
		}
		if !has {
			if !mf.on('q') {
				r.line(echo([]string{"EN"}, mf, f[1])...)
			}
			return
		}
		it = &item{exptime: t.exptime(vivify, now), cas: t.nextCAS(), time: now, lastAccess: now, winSent: true}
		if e, has, _ := mf.num('E'); has {
			it.cas = uint64(e)
		}
		t.items[key] = it
		won = true
	}
	// memcached handles the flags in order: a `t` before `T` reports the
	// TTL before the touch, one after it the TTL the touch set.
	exp := it.exptime
	if ttl, has, ok := mf.num('T'); !ok {
		r.line("CLIENT_ERROR bad token in command line format")
		return
	} else if has {
		it.exptime = t.exptime(ttl, now)
	}
	var parts []string
	for _, tok := range mf.order {
		switch tok[0] {
		case 'T':
			exp = it.exptime
		case 'b':
			parts = append(parts, "b")
		case 'c':
			parts = append(parts, "c"+strconv.FormatUint(it.cas, 10))
		case 'f':
			parts = append(parts, "f"+strconv.FormatUint(uint64(it.flags), 10))
		case 'h':
			parts = append(parts, "h"+map[bool]string{false: "0", true: "1"}[it.fetched])
		case 'k':
			parts = append(parts, "k"+f[1])
		case 'l':
			parts = append(parts, "l"+strconv.FormatInt(now-it.lastAccess, 10))
		case 'O':
			parts = append(parts, tok)
		case 's':
			parts = append(parts, "s"+strconv.Itoa(len(it.value)))
		case 't':
			ttl := int64(-1)
			if exp != 0 {
				ttl = exp - now
			}
			parts = append(parts, "t"+strconv.FormatInt(ttl, 10))
		}
	}
	if it.stale {
		parts = append(parts, "X")
		if !it.winSent {
			it.winSent = true
			won = true
		} else if !won {
			parts = append(parts, "Z")
		}
	}
	if won {
		parts = append(parts, "W")
	}
	it.fetched, it.lastAccess = true, now
	if mf.on('v') {
		r.line(append([]string{"VA", strconv.Itoa(len(it.value))}, parts...)...)
		r.data(it.value)
		return
	}
	r.line(append([]string{"HD"}, parts...)...)
}

func (t *table) metaSet(r *reply, rq *request, now int64) {
	f := rq.fields
	if len(f) < 3 {
		r.line("CLIENT_ERROR bad command line format")
		return
	}
	mf, ok := parseMetaFlags(f[3:])
	if !ok {
		r.line("CLIENT_ERROR invalid flag")
		return
	}
	if rq.badEnd {
		r.line("CLIENT_ERROR bad data chunk")
		return
	}
	key, ok := metaKey(f[1], mf)
	if !ok {
		r.line("CLIENT_ERROR bad data chunk")
		return
	}
	if len(rq.data) > maxItemSize {
		r.line("SERVER_ERROR object too large for cache")
		return
	}
	ttl, _, ok1 := mf.num('T')
	flags, _, ok2 := mf.num('F')
	cmp, hasCmp, ok3 := mf.num('C')
	newCAS, hasNew, ok4 := mf.num('E')
	vivify, hasVivify, ok5 := mf.num('N')
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || flags < 0 || flags > 1<<32-1 {
		r.line("CLIENT_ERROR bad token in command line format")
		return
	}
	mode := "S"
	if m, has := mf.has['M']; has {
		mode = strings.ToUpper(m)
	}
	it := t.lookup(key, now)
	fail := func(code string) {
		if code == "" {
			return
		}
		r.line(echo([]string{code}, mf, f[1])...)
	}
	invalidate := false
	if hasCmp && it != nil && uint64(cmp) != it.cas {
		// I: a compare older than the item stores it as stale.
		if mf.on('I') && uint64(cmp) < it.cas {
			invalidate = true
		} else {
			fail("EX")
			return
		}
	}
	value := rq.data
	switch mode {
	case "S":
		if hasCmp && it == nil {
			fail("NF")
			return
		}
	case "E":
		if it != nil {
			fail("NS")
			return
		}
	case "R":
		if it == nil {
			fail("NS")
			return
		}
	case "A", "P":
		if it == nil {
			if !hasVivify {
				fail("NS")
				return
			}
			it = &item{exptime: t.exptime(vivify, now)}
		}
		if mode == "A" {
			value = append(append([]byte(nil), it.value...), rq.data...)
		} else {
			value = append(append([]byte(nil), rq.data...), it.value...)
		}
	default:
		r.line("CLIENT_ERROR invalid mode for ms STORE")
		return
	}
	nit := &item{value: append([]byte(nil), value...), flags: uint32(flags), exptime: t.exptime(ttl, now), time: now, lastAccess: now, stale: invalidate}
	if mode == "A" || mode == "P" {
		nit.flags, nit.exptime = it.flags, it.exptime
	}
	if hasNew {
		nit.cas = uint64(newCAS)
	} else {
		nit.cas = t.nextCAS()
	}
	t.items[key] = nit
	if mf.on('q') {
		return
	}
	parts := []string{"HD"}
	for _, tok := range mf.order {
		switch tok[0] {
		case 'c':
			parts = append(parts, "c"+strconv.FormatUint(nit.cas, 10))
		case 'k':
			parts = append(parts, "k"+f[1])
		case 'O':
			parts = append(parts, tok)
		case 'b':
			parts = append(parts, "b")
		}
	}
	r.line(parts...)
}

func (t *table) metaDelete(r *reply, f []string, now int64) {
	if len(f) < 2 {
		r.line("CLIENT_ERROR bad command line format")
		return
	}
	mf, ok := parseMetaFlags(f[2:])
	if !ok {
		r.line("CLIENT_ERROR invalid flag")
		return
	}
	key, ok := metaKey(f[1], mf)
	if !ok {
		r.line("CLIENT_ERROR bad data chunk")
		return
	}
	cmp, hasCmp, ok1 := mf.num('C')
	ttl, hasTTL, ok2 := mf.num('T')
	newCAS, hasNew, ok3 := mf.num('E')
	if !ok1 || !ok2 || !ok3 {
		r.line("CLIENT_ERROR bad token in command line format")
		return
	}
	it := t.lookup(key, now)
	if it == nil {
		r.line(echo([]string{"NF"}, mf, f[1])...)
		return
	}
	if hasCmp && uint64(cmp) != it.cas {
		r.line(echo([]string{"EX"}, mf, f[1])...)
		return
	}
	if mf.on('I') {
		it.stale, it.winSent = true, false
		if hasTTL {
			it.exptime = t.exptime(ttl, now)
		}
		if hasNew {
			it.cas = uint64(newCAS)
		} else {
			it.cas = t.nextCAS()
		}
	} else {
		delete(t.items, key)
	}
	if !mf.on('q') {
		r.line(echo([]string{"HD"}, mf, f[1])...)
	}
}
