package memcached

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// add is R8, creation: R4's read (`mg … N30`, all three candidates) must
// find a blank on all three; then, one after the other, each only if the
// one before was stored, CAS the witness node's blank to the witness (TW),
// the secondary's to the data record, the primary's to the same. A refusal
// at the secondary or the primary undoes the stored ones (back to blanks).
//
// Add over a lone witness (R8): a read that finds one witness (of any
// configuration or identity) and blanks on the other two, every candidate
// answering, first re-stamps both blanks, then, only once both are stored,
// CASes the witness to a blank (takeOver), then goes on as from three
// blanks with the three fresh tokens. A creation abandoned after its witness CAS (its creator
// paused, killed, or its next step timed out) no longer wedges the key
// for TW.
//
// A candidate this process holds failed still gets the read and, as the
// witness node, the witness CAS; only when it gives no reply within
// Timeout is the session created on the other two (nowit, secondary first)
// and put on the witness-less list (R8's failed-candidate case).
func (w *witness) add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	for try := 1; ; try++ {
		cas, err := w.addOnce(ctx, key, value, ttl)
		if !errors.Is(err, errOtherInc) || !errors.Is(err, provider.ErrExists) || errors.Is(err, provider.ErrOutcomeUnknown) ||
			w.s.hooks.addOtherIncExists {
			return cas, err
		}
		// A CAS refused unsent as of another incarnation of its node
		// (R1: its blank was read on a connection of the label before a
		// restart, or a flush whose probe could not be made), everything
		// stored undone: no evidence of another record (cold review
		// rv-label M2: answered ErrExists, and a Get then found nothing).
		// Read again, on connections of the node's current label.
		if try == maxAddTries {
			// Not %w: the last try's error wraps ErrExists, which this is
			// not (rv-label2 M1).
			return 0, fmt.Errorf("memcached: add: %w: a candidate's incarnation kept changing; nothing written: %v", provider.ErrUnavailable, err)
		}
	}
}

// maxAddTries bounds add's reads again after a CAS refused as of another
// incarnation (each follows a new label of a node: a restart or flush).
const maxAddTries = 3

// addOnce is one try of add: R8 from its read.
func (w *witness) addOnce(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	exp, timeout, err := w.checkTTL(ttl)
	if err != nil {
		return 0, err
	}
	rs, err := w.addRead(ctx, key)
	if err != nil {
		return 0, err
	}
	silentAt, lone := -1, -1
	for i := range rs {
		switch rs[i].st {
		case stBlank:
		case stSilent:
			if silentAt >= 0 || !rs[i].n.wh.isFailed() {
				return 0, fmt.Errorf("memcached: add: %w: %w", provider.ErrUnavailable, rs[i].err)
			}
			silentAt = i
		case stError:
			return 0, fmt.Errorf("memcached: add: %w", rs[i].err)
		case stAbsent:
			return 0, fmt.Errorf("memcached: add: %w: a candidate made no blank", provider.ErrServer)
		case stWitness:
			if lone < 0 {
				lone = i
				continue
			}
			return 0, fmt.Errorf("memcached: add: %w: a candidate holds a record", provider.ErrExists)
		default:
			return 0, fmt.Errorf("memcached: add: %w: a candidate holds a record", provider.ErrExists)
		}
	}
	switch {
	case lone >= 0 && silentAt >= 0:
		// A lone witness is taken over only when every candidate answered.
		return 0, fmt.Errorf("memcached: add: %w: a candidate holds a witness", provider.ErrExists)
	case silentAt >= 0:
		return w.addWithoutWitness(ctx, key, value, exp, timeout, &rs, silentAt)
	case lone >= 0:
		if err := w.takeOver(ctx, key, &rs, lone); err != nil {
			return 0, err
		}
	}
	env := w.newEnvelope(home, 1, timeout)
	wr := &rs[home.wit()]
	wcas, err := w.casStep(ctx, key, wr, env.ID(), env.Append(nil), w.tw, kindWitness)
	if err != nil {
		switch o := classify(err); {
		case o.refused():
			return 0, fmt.Errorf("memcached: add: %w: the witness node's blank changed: %w", provider.ErrExists, err)
		case (o == woSilent || o == woNotSent) && wr.n.wh.isFailed():
			// The failed candidate gave no reply to the witness CAS.
			return w.addWithoutWitness(ctx, key, value, exp, timeout, &rs, int(home.wit()))
		case o == woNotSent:
			return 0, fmt.Errorf("memcached: add: %w: nothing sent: %w", provider.ErrUnavailable, err)
		}
		return 0, unknown("add: the witness", err)
	}
	if h := w.s.hooks.afterAddWitness; h != nil {
		h(key)
	}
	done := []written{{wr.n, copyToken{cand: wr.cand, cas: wcas, inc: wr.inc}}}
	return w.create(ctx, key, env, value, exp, &rs, done)
}

// addRead is R8's read of all three candidates (a failed one too). When
// exactly one gave no reply and the others are blanks, whether the Add
// can go on rests on that node being failed (R8's failed-candidate case);
// as R4.5's anomaly read does (§9), it waits until FailoverAfter has
// passed since that node's first unanswered command (waitFailed), so that
// a process that had no traffic to a dead node creates sessions a
// failover time after the death as one that had. If the node answered
// meanwhile, the candidates are read once more.
func (w *witness) addRead(ctx context.Context, key string) ([3]copyRead, error) {
	cs := w.candidates(key)
	rs, err := w.readAll(ctx, key, cs, anomalyFlags, false)
	if err != nil || w.s.hooks.addNoWaitFailed {
		return rs, err
	}
	silentAt := -1
	for i := range rs {
		switch rs[i].st {
		case stBlank:
		case stSilent:
			if silentAt >= 0 {
				return rs, nil // two silent: no Add either way
			}
			silentAt = i
		default:
			return rs, nil // the Add's outcome does not rest on the silence
		}
	}
	if silentAt < 0 || rs[silentAt].n.wh.isFailed() || silent(ctx, &rs[silentAt]) {
		return rs, nil
	}
	if err := ctx.Err(); err != nil {
		return rs, fmt.Errorf("memcached: add: %w: %w", provider.ErrUnavailable, err)
	}
	// The node answered while this Add waited: read again.
	return w.readAll(ctx, key, cs, anomalyFlags, false)
}

// takeOver is the first step of R8's Add over a lone witness (rs: one
// witness, at lone, and two blanks): both blanks are re-stamped (T30),
// in parallel, with the tokens the read returned, and rs gets their new
// tokens. The creator of that witness, if it is still going (paused, or
// its commands late), CASes its data copies with the old blank tokens:
// after the re-stamps it can never store them, so it never reports
// success with its witness replaced (it undoes, or reports unknown). Only
// once both re-stamps are stored is the witness CASed to a blank (T30,
// its read token), and rs[lone] becomes that blank: R8 then runs from
// three blanks, and none of its data CASes targets a present record
// (review-lonewit B1: over a witness on the primary, a reader's R4.4
// completion could store the Add's record there first, and the Add would
// then undo its witness under two copies of its record). Blanking the
// witness in parallel with the re-stamps is wrong too: a re-stamp refused
// (another Add's record there) with that Add's witness already blanked
// leaves its session with no witness.
//
// A re-stamp or the witness's blanking refused means something was
// written there since the read (that creator's data copy or undo, or
// another takeover's re-stamp): ErrExists, and the next read sees it; one
// with no reply: ErrUnavailable. Either way only blanks were written:
// nothing of this Add.
func (w *witness) takeOver(ctx context.Context, key string, rs *[3]copyRead, lone int) error {
	if w.s.hooks.takeoverNoPoison {
		if h := w.s.hooks.takeoverPoisoned; h != nil {
			h(key)
		}
		return nil
	}
	errs := w.restampBlanks(ctx, key, rs)
	if err := errors.Join(errs[:]...); err != nil {
		return takeoverErr(err, errs[:]...)
	}
	if h := w.s.hooks.takeoverPoisoned; h != nil {
		h(key)
	}
	if c := &rs[lone]; !w.s.hooks.takeoverInPlace {
		cas, err := w.casBlank(ctx, key, c)
		if err != nil {
			return takeoverErr(err, err)
		}
		c.st, c.env, c.raw, c.payload, c.cas, c.ttl = stBlank, envelope.Envelope{}, nil, nil, cas, 0
	}
	w.emit(provider.EventRepair, rs[lone].n, "an Add takes over a lone witness (both data candidates blank: a creation abandoned after its witness, or a session lost)", nil)
	return nil
}

// takeoverErr is takeOver's error: ErrExists when one of errs is a
// refusal, else ErrUnavailable (only blanks were written either way).
func takeoverErr(err error, errs ...error) error {
	for _, e := range errs {
		if e != nil && classify(e).refused() {
			return fmt.Errorf("memcached: add: %w: a candidate changed while taking over a lone witness: %w", provider.ErrExists, err)
		}
	}
	return fmt.Errorf("memcached: add: %w: taking over a lone witness, nothing of the Add written: %w", provider.ErrUnavailable, err)
}

// casStep is one of R8's CASes: c's item (a blank; the lone witness
// only in the broken variant takeoverInPlace) to raw (client flags kind, expiry exp), with the
// token c's read returned. A CAS with no reply may have been stored (a
// client timeout under load, no fault): the candidate is read again, at
// most twice. Holding this Add's record (identity id, of kind) it was
// stored, and the read's token is the new one; holding the same item
// under the same token, it was not (yet), and the CAS is sent again with
// that token (of the two, at most one can be stored); anything else, or no
// reply again, leaves the first error (an unknown outcome). A node this
// process holds failed is not read again (R8's failed-candidate case
// decides on the first silence).
func (w *witness) casStep(ctx context.Context, key string, c *copyRead, id envelope.Identity, raw []byte, exp int32, kind uint32) (uint64, error) {
	cas, first := c.n.wcas(ctx, key, raw, exp, kind, c.cas, c.inc)
	if first == nil || classify(first) != woSilent || c.n.wh.isFailed() || w.s.hooks.addNoResolve {
		return cas, first
	}
	for range 2 {
		r, err := w.read(ctx, c.n, c.cand, key, " v c t f")
		switch {
		case err != nil || r.inc != c.inc:
			return 0, first
		case r.present() && r.env.ID() == id && (r.st == stWitness) == (kind == kindWitness):
			return r.cas, nil
		case r.st != c.st || r.cas != c.cas:
			return 0, first
		}
		if cas, err = c.n.wcas(ctx, key, raw, exp, kind, c.cas, c.inc); err == nil {
			return cas, nil
		}
		// Refused or no reply: the first may have been stored meanwhile.
	}
	return 0, first
}

// addWithoutWitness is R8 with candidate silent given no reply: the other
// two hold the data (the better ranked one primary), epoch 0, nowit, and
// the key goes on the witness-less list.
func (w *witness) addWithoutWitness(ctx context.Context, key string, value []byte, exp int32, timeout uint32, rs *[3]copyRead, silent int) (uint64, error) {
	var c config
	switch silent {
	case 0:
		c = config{P: 1, Q: 2}
	case 1:
		c = config{P: 0, Q: 2}
	default:
		c = config{P: 0, Q: 1}
	}
	env := w.newEnvelope(c, 1, timeout)
	env.NoWit = true
	id, err := w.create(ctx, key, env, value, exp, rs, nil)
	if err == nil {
		if !w.repair.addWitless(key, c) {
			w.repair.enqueue(key)
		}
		w.emit(provider.EventFallback, rs[silent].n, "session created without its witness; repaired when the node answers", nil)
	}
	return id, err
}

// create CASes the secondary's blank, then the primary's, to the data
// record of env, each only if the one before was stored. On a refusal the
// stored ones (and those in done) are put back to blanks in parallel: all
// undone is ErrExists, anything else ErrOutcomeUnknown.
func (w *witness) create(ctx context.Context, key string, env envelope.Envelope, value []byte, exp int32, rs *[3]copyRead, done []written) (uint64, error) {
	raw := env.Wrap(value)
	var toks [2]written
	for i, cand := range []uint8{env.Q, env.P} {
		c := &rs[cand]
		cas, err := w.casStep(ctx, key, c, env.ID(), raw, exp, kindData)
		if err != nil {
			if o := classify(err); !o.refused() {
				// R8's resumption: the repair client completes the
				// creation if it is left as a lone copy (at the primary:
				// only onto the blank this CAS targeted).
				//
				// A primary CAS not sent (no connection could take it:
				// not a byte of it left this process) can never land: the
				// Add is one whose primary CAS was never sent, as one
				// unknown at the secondary, resumed onto any blank of the
				// primary. Recorded as unknown at the primary, it waited
				// for a blank the refused connection's cause had erased
				// (the node killed, back empty: the simulation's
				// pause+kill with the 500 ms client timeout), and the
				// creation's lone copy stayed ErrUnconfirmed until it
				// expired.
				rec := unknownRecord{id: env.ID()}
				if cand == env.P && (o != woNotSent || w.s.hooks.resumeUnsentAtP) {
					rec.atP, rec.p = true, copyToken{cand: cand, cas: c.cas, inc: c.inc}
				}
				w.repair.addUnknown(key, rec, time.Now().Add(time.Duration(env.Timeout)*time.Second))
				return 0, unknown("add: a data copy", err)
			}
			if uerr := w.undoCreate(ctx, key, env, done); uerr != nil {
				return 0, unknown("add: undoing a creation", err, uerr)
			}
			return 0, fmt.Errorf("memcached: add: %w: a blank changed: %w", provider.ErrExists, err)
		}
		toks[i] = written{c.n, copyToken{cand: cand, cas: cas, inc: c.inc}}
		done = append(done, toks[i])
	}
	return w.written(key, env, toks[1], toks[0], raw, int64(exp), 0), nil
}

// undoCreate puts the records of done (env's: its witness, on the node
// that is neither of its copies, and data) back to blanks (T30), in
// parallel.
func (w *witness) undoCreate(ctx context.Context, key string, env envelope.Envelope, done []written) error {
	errs := make([]error, len(done))
	var wg sync.WaitGroup
	for i, d := range done {
		witness := d.tok.cand != env.P && d.tok.cand != env.Q
		wg.Go(func() { _, errs[i] = w.wcasAgain(ctx, key, d, witness, env.ID(), nil, blankTTL, 0) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
