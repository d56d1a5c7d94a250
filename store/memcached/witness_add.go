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
// A candidate this process holds failed still gets the read and, as the
// witness node, the witness CAS; only when it gives no reply within
// Timeout is the session created on the other two (nowit, secondary first)
// and put on the witness-less list (R8's failed-candidate case).
func (w *witness) add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	exp, timeout, err := w.checkTTL(ttl)
	if err != nil {
		return 0, err
	}
	rs, err := w.readAll(ctx, key, w.candidates(key), anomalyFlags, false)
	if err != nil {
		return 0, err
	}
	silentAt := -1
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
		default:
			return 0, fmt.Errorf("memcached: add: %w: a candidate holds a record", provider.ErrExists)
		}
	}
	if silentAt >= 0 {
		return w.addWithoutWitness(ctx, key, value, exp, timeout, &rs, silentAt)
	}
	env := w.newEnvelope(home, 1, timeout)
	wr := &rs[home.wit()]
	wcas, err := wr.n.wcas(ctx, key, env.Append(nil), w.tw, kindWitness, wr.cas, wr.inc)
	if err != nil {
		switch o := classify(err); {
		case o.refused():
			return 0, fmt.Errorf("memcached: add: %w: the witness node's blank changed", provider.ErrExists)
		case (o == woSilent || o == woNotSent) && wr.n.wh.isFailed():
			// The failed candidate gave no reply to the witness CAS.
			return w.addWithoutWitness(ctx, key, value, exp, timeout, &rs, int(home.wit()))
		case o == woNotSent:
			return 0, fmt.Errorf("memcached: add: %w: nothing sent: %w", provider.ErrUnavailable, err)
		}
		return 0, unknown("add: the witness", err)
	}
	done := []written{{wr.n, copyToken{cand: wr.cand, cas: wcas, inc: wr.inc}}}
	return w.create(ctx, key, env, value, exp, &rs, done)
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
		cas, err := c.n.wcas(ctx, key, raw, exp, kindData, c.cas, c.inc)
		if err != nil {
			if !classify(err).refused() {
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
