package memcached

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// state is what one candidate's reply showed.
type state int

const (
	stSilent  state = iota // no reply (or nothing sent: the node is failed)
	stAbsent               // a miss
	stBlank                // flags 0, no bytes: evidence of nothing
	stData                 // a data record
	stWitness              // a witness
	stError                // a server error reply: present or not, unknown
)

// copyRead is one candidate's reply to a read.
type copyRead struct {
	cand    uint8
	n       *node
	st      state
	env     envelope.Envelope
	raw     []byte // the item's bytes (envelope and payload)
	payload []byte // the provider's record bytes (data only)
	cas     uint64
	inc     uint64
	ttl     int64
	prom    uint32 // the epoch promised on the item (R11), 0 for none
	won     bool   // a blank this read made (mg … N on a miss: the W flag)
	asked   bool   // a command was sent
	err     error  // why silent, or the server error
}

func (c *copyRead) present() bool { return c.st == stData || c.st == stWitness }
func (c *copyRead) empty() bool   { return c.st == stAbsent || c.st == stBlank }

// holds reports whether c is a data record of identity id.
func (c *copyRead) holds(id envelope.Identity) bool {
	return c.st == stData && c.env.ID() == id
}

// promisedAbove reports whether c is a present record whose item a
// decision promised an epoch above e (R11.3): no record of epoch e is
// written onto it, and none is returned from it.
func (c *copyRead) promisedAbove(e uint32) bool { return c.present() && c.prom > e }

// token is c's data-copy token for a handle.
func (c *copyRead) token() copyToken { return copyToken{cand: c.cand, cas: c.cas, inc: c.inc} }

// read sends `mg <key><flags>` to candidate cand and classifies the reply.
// A reply it cannot trust fails the call (fatal): a record of another node
// list or mode, a corrupt envelope, a record without a TTL.
func (w *witness) read(ctx context.Context, n *node, cand uint8, key, flags string) (c copyRead, fatal error) {
	it, err := n.wget(ctx, key, flags)
	return w.classify(n, cand, it, err)
}

// classify is read's verdict on the reply it (or the error err) of
// candidate cand on node n.
func (w *witness) classify(n *node, cand uint8, it witItem, err error) (c copyRead, fatal error) {
	c = copyRead{cand: cand, n: n, asked: true}
	var se *serverError
	switch {
	case errors.As(err, &se):
		// Wrapped: a bare ERROR is ErrNoMetaProtocol (serverError.Unwrap).
		c.st, c.err = stError, fmt.Errorf("memcached: node %s: mg: %w: %w", n.addr, provider.ErrServer, err)
		return c, nil
	case err != nil:
		c.st, c.err = stSilent, fmt.Errorf("memcached: node %s: mg: %w: %w", n.addr, provider.ErrUnavailable, err)
		return c, nil
	case it.metaItem == nil:
		c.st = stAbsent
		return c, nil
	}
	c.cas, c.inc, c.ttl, c.raw = it.cas, it.inc, it.ttl, it.value
	switch {
	case it.flags == 0 && len(it.value) == 0:
		c.st, c.won = stBlank, it.won
		return c, nil
	case it.flags == kindData, it.flags == kindWitness:
	default:
		return c, w.mismatch(n, fmt.Errorf("client flags %d", it.flags))
	}
	env, payload, err := envelope.Decode(it.value)
	if err != nil {
		return c, fmt.Errorf("memcached: node %s: %w: %w", n.addr, provider.ErrCorrupt, err)
	}
	if env.Digest != w.digest {
		return c, w.mismatch(n, fmt.Errorf("node-list digest %#x, this process %#x", env.Digest, w.digest))
	}
	if c.ttl < 0 {
		return c, fmt.Errorf("memcached: node %s: %w: a record without a TTL (something wrote it without one)", n.addr, provider.ErrServer)
	}
	c.env, c.payload = env, payload
	if !w.s.hooks.noPromise {
		c.prom = envelope.PromiseOf(it.value)
	}
	c.st = stData
	if it.flags == kindWitness {
		c.st = stWitness
		if len(payload) != 0 {
			return c, fmt.Errorf("memcached: node %s: %w: a witness with %d bytes of payload", n.addr, provider.ErrCorrupt, len(payload))
		}
	}
	return c, nil
}

// mismatch reports a record this process cannot have written with its
// node list and mode (§11.2).
func (w *witness) mismatch(n *node, err error) error {
	w.emit(provider.EventFallback, n, "record of another node list or replication mode", err)
	return fmt.Errorf("memcached: node %s: %w: %w: %w", n.addr, provider.ErrServer, errNodeList, err)
}

// readFlags are the flags of a data-copy read: value, token, client
// flags, the TTL to set (0: none), and the TTL. memcached handles a meta
// command's flags in order, so `t` after `T` reports the remaining TTL
// the touch left (`t` before it reports the one before the touch): the
// TTL a decision keeps and an undo restores is the one the copy has now.
func (w *witness) readFlags(exp int32) string {
	switch {
	case exp == 0:
		return " v c f t"
	case w.s.hooks.ttlBeforeTouch:
		return " v c t f T" + strconv.FormatInt(int64(exp), 10)
	}
	return " v c f T" + strconv.FormatInt(int64(exp), 10) + " t"
}

// touchFlags are those of a witness touch (R2, R3): value (its envelope),
// client flags, T<TW>, and the TTL after it.
func (w *witness) touchFlags() string {
	return " v f T" + strconv.FormatInt(int64(w.tw), 10) + " t"
}

// common is R2, the common read of one Store call: `mg` with value to the
// configuration's two data copies and, for a call that sets the TTL
// (touch), a touch of the witness, in parallel. It returns the record (ok) when both copies hold
// the same established record naming exactly them, not nowit; otherwise
// ok is false and the caller goes to the anomaly read (a nowit record:
// R4.3 runs R9 before returning it, review-n4b F2). touched reports that this call
// sent the witness its touch (R10).
func (w *witness) common(ctx context.Context, key string, cs candidates, touch bool) (v *hit, touched, ok bool, err error) {
	cfg := w.configFor(key)
	p, q := cs[cfg.P], cs[cfg.Q]
	if p.wh.isFailed() || q.wh.isFailed() {
		return nil, false, false, nil
	}
	// Review 4's D1: data copies are touched only with the session's own
	// timeout from an envelope: the one cached for the key, else none in
	// this round trip (a cold key) and one more round trip below.
	var exp int32
	tenv, cached := w.timeoutFor(key)
	var top *wop
	if touch {
		touched = true
		top = w.touchOp(context.WithoutCancel(ctx), key, cs, cfg)
		if cached {
			exp = timeoutExp(tenv)
		}
	}
	var ip, iq witItem
	pop, qop := p.wgetOp(ctx, key, w.readFlags(exp), &ip), q.wgetOp(ctx, key, w.readFlags(exp), &iq)
	wdoAll(pop, qop, top)
	cp, ep := w.classify(p, cfg.P, ip, pop.err)
	cq, eq := w.classify(q, cfg.Q, iq, qop.err)
	if err := errors.Join(ep, eq); err != nil {
		return nil, touched, false, err
	}
	if exp != 0 {
		// Review 4's D5: a touch with T that hit a witness gets TW back.
		for _, c := range []*copyRead{&cp, &cq} {
			if c.st == stWitness {
				w.rewitness(ctx, c.n, key)
			}
		}
	}
	if cp.st != stData || cq.st != stData || cp.env.ID() != cq.env.ID() || cp.env.Pending ||
		cp.env.P != cfg.P || cp.env.Q != cfg.Q ||
		cp.promisedAbove(cp.env.E) || cq.promisedAbove(cq.env.E) {
		// R11.3: a copy promised above its record's epoch is an anomaly
		// (R4.3 re-ballots it).
		return nil, touched, false, nil
	}
	if cp.env.NoWit && !w.s.hooks.nowitR2Returns && !cs[cfg.wit()].wh.isFailed() {
		// Review-n4b F2: a nowit record is not returned before R9 has
		// stored its witness; the anomaly read's R4.3 runs R9 (or
		// returns it when the third node does not answer: D6). With the
		// third node failed the anomaly read would not ask it and would
		// return the record as this read does: no second round trip
		// while it is down.
		return nil, touched, false, nil
	}
	if cfg.E != cp.env.E {
		w.remember(key, configOf(cp.env))
	}
	f := &hit{key: key, cs: cs, b: cp.env, p: cp, q: cq}
	if ttlSplit(f) {
		// Review 4's D2 (review 13e m1): R9 re-stamps both with the larger.
		w.repair.enqueue(key)
	}
	if touch && (!cached || tenv != cp.env.Timeout) {
		w.touchCopies(ctx, f)
	}
	return f, touched, true, nil
}

// touchCopies sets both data copies of f to the timeout of f's envelope
// (one round trip, in parallel) and caches it for the key (D1). A failed
// touch is left to the next read.
//
// Review 5's m2 (review 4's D5 on this touch too): the touch reads the
// client flags, and one that hit a witness (a failover since f was read
// made that node the witness) gives it TW back at once, as the common
// read's touch does: a witness never keeps a data copy's T.
func (w *witness) touchCopies(ctx context.Context, f *hit) {
	if h := w.s.hooks.beforeTouchCopies; h != nil {
		h(f.key)
	}
	flags := " f T" + strconv.FormatInt(int64(timeoutExp(f.b.Timeout)), 10)
	var ip, iq witItem
	pop, qop := f.p.n.wgetOp(ctx, f.key, flags, &ip), f.q.n.wgetOp(ctx, f.key, flags, &iq)
	wdoAll(pop, qop)
	for _, t := range []struct {
		op *wop
		it witItem
	}{{pop, ip}, {qop, iq}} {
		if t.op.err == nil && t.it.metaItem != nil && t.it.flags == kindWitness && !w.s.hooks.touchNoFlags {
			w.rewitness(ctx, t.op.n, f.key)
		}
	}
	w.rememberTimeout(f.key, f.b.Timeout)
}

// rewitness gives the witness of key on n its TTL, TW, back after a touch
// meant for a data copy set it to a session timeout (D5). A failure is
// left to the next read's witness touch.
func (w *witness) rewitness(ctx context.Context, n *node, key string) {
	_, _ = n.wget(ctx, key, " T"+strconv.FormatInt(int64(w.tw), 10))
}

// dataTTLBack gives the data record env of key on n its own TTL, env's
// T, back after a touch meant for a witness set it to TW. A failure is
// left to the next read.
func (w *witness) dataTTLBack(ctx context.Context, n *node, key string, env envelope.Envelope) {
	_, _ = n.wget(ctx, key, " T"+strconv.FormatInt(int64(timeoutExp(env.Timeout)), 10))
}

// timeoutExp is memcached's expiration for a session timeout of t seconds
// (as expiration rounds a client TTL).
func timeoutExp(t uint32) int32 {
	exp, err := expiration(time.Duration(t)*time.Second, time.Now())
	if err != nil {
		return 1
	}
	return exp
}

// touchWitness is the witness half of R2 and R3: `mg <key> v t f T<TW>` to
// the configuration's third node. Its reply is not waited for by the call;
// anything but a witness of this configuration queues the key for repair
// (R9), and a data record is touched again with its envelope's T.
func (w *witness) touchWitness(ctx context.Context, key string, cs candidates, cfg config) {
	if op := w.touchOp(ctx, key, cs, cfg); op != nil {
		op.detach = false
		wdoAll(op)
		op.then()
	}
}

// touchOp is touchWitness as a detached op of wdoAll, sent with the data
// copies' commands: wdoAll reads its reply when it is there, else on a
// goroutine, and runs the rest of touchWitness (then) after it. nil when
// the witness's node is failed.
func (w *witness) touchOp(ctx context.Context, key string, cs candidates, cfg config) *wop {
	wn := cs[cfg.wit()]
	if wn.wh.isFailed() {
		return nil
	}
	var it witItem
	op := wn.wgetOp(ctx, key, w.touchFlags(), &it)
	op.detach = true
	if h := w.s.hooks.holdWitnessTouch; h != nil {
		op.hold = func() { h(key) }
	}
	op.then = func() {
		if h := w.s.hooks.witnessTouched; h != nil {
			defer h(key)
		}
		c, err := w.classify(wn, cfg.wit(), it, op.err)
		if err != nil || c.st == stSilent || c.st == stError {
			return
		}
		fix := func() {
			if c.st == stData {
				// Review 13e M1 (D5 reversed): a stale configuration's touch
				// hit a data copy and gave it TW: set it back to its own
				// timeout T.
				w.dataTTLBack(ctx, wn, key, c.env)
			}
			if c.st != stWitness || configOf(c.env) != cfg || c.prom != 0 {
				w.repair.enqueue(key) // a promised witness too (R9 drops a dead promise)
			}
		}
		if c.st == stData && op.detach {
			go fix() // a round trip the caller (then may run on its goroutine) does not wait for
			return
		}
		fix()
	}
	return op
}

// hit is a record an anomaly read or a common read returned: b, the
// candidates, and the reads of its two copies.
type hit struct {
	key  string
	cs   candidates
	b    envelope.Envelope
	p, q copyRead
	// witnessed: R9 found or stored the witness of b's configuration
	// (repair client only).
	witnessed bool
	// inFlight: b is the parent of a write in flight (decide): returned
	// with no usable handle.
	inFlight bool
}

// handle stores f's tokens in the handle table and returns its number
// (confirm: see entry).
func (w *witness) handle(f *hit, confirm bool) uint64 {
	if f.inFlight {
		return 0
	}
	return w.handles.put(handle{
		key:      f.key,
		env:      f.b,
		copies:   [2]copyToken{f.p.token(), f.q.token()},
		base:     f.q.raw,
		baseTTL:  f.q.ttl,
		baseAt:   time.Now(),
		trailers: pairTrailers(&f.p, &f.q),
		read:     true,
		confirm:  confirm,
	})
}

// minTTL is the smaller remaining TTL of f's two copies.
func (f *hit) minTTL() time.Duration {
	return time.Duration(min(f.p.ttl, f.q.ttl)) * time.Second
}
