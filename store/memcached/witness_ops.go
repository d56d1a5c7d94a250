package memcached

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// The Store calls of the witness scheme (§2.4), after Store's common
// checks.

// get is R2 (touch false: no TTL set anywhere, nothing sent to the
// witness), and on any anomaly R4. With touch, a session R4 returned then
// gets its envelope's timeout on both data copies and TW on the witness
// (one more round trip; a failed touch is the read's success: the next
// read touches again).
func (w *witness) get(ctx context.Context, key string, touch bool) (*hit, error) {
	cs := w.candidates(key)
	f, touched, ok, err := w.common(ctx, key, cs, touch)
	if err != nil || ok {
		return f, err
	}
	f, err = w.resolve(ctx, key, cs, resolveOpts{touched: touched, touch: touch})
	if err != nil || !touch {
		return f, err
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.touchWitness(ctx, key, cs, configOf(f.b)) })
	w.touchCopies(ctx, f)
	wg.Wait()
	return f, nil
}

// entry is f as a Store call returns it. confirm: the call is a plain
// Get (the read before a write): a handle of this Store's own write that
// it finds again becomes a read's (witness_append.go, pipelineFresh).
func (w *witness) entry(f *hit, confirm bool) provider.Entry {
	return provider.Entry{Value: f.p.payload, CAS: w.handle(f, confirm)}
}

// getAndTouch is GetAndTouch: R2 with T<T> on the data copies and T<TW> on
// the witness.
func (w *witness) getAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if _, _, err := w.checkTTL(ttl); err != nil {
		return provider.Entry{}, err
	}
	f, err := w.get(ctx, key, true)
	if err != nil {
		return provider.Entry{}, err
	}
	return w.entry(f, false), nil
}

// touch is Touch: GetAndTouch's read, the value dropped (a touch never
// lands on a copy this process has not verified).
func (w *witness) touch(ctx context.Context, key string, ttl time.Duration) error {
	if _, _, err := w.checkTTL(ttl); err != nil {
		return err
	}
	_, err := w.get(ctx, key, true)
	return err
}

// ttl is TTLReader's TTL: R2 without T, the smaller remaining TTL of the
// two data copies.
func (w *witness) ttl(ctx context.Context, key string) (time.Duration, error) {
	f, err := w.get(ctx, key, false)
	if err != nil {
		return 0, err
	}
	return f.minTTL(), nil
}

// del is Delete (administration and tests): read all three, then `md
// <key> C<token>` on each present record, data copies first (in
// parallel), then the witness. ErrNotFound when nothing was present;
// ErrOutcomeUnknown when a delete failed or a candidate was silent after
// others were deleted. A delete refused on every data record as of
// another incarnation of its node (nothing deleted) reads again, at most
// delTries reads in all, then ErrUnavailable.
func (w *witness) del(ctx context.Context, key string) error {
	for try := 1; ; try++ {
		again, err := w.delOnce(ctx, key)
		switch {
		case !again:
			return err
		case try == delTries:
			return fmt.Errorf("memcached: delete: %w: nothing deleted: %w", provider.ErrUnavailable, err)
		}
	}
}

// delTries bounds del's reads: a delete refused on every data record
// because its token was of another incarnation of the node (read on a
// connection dialled before the node's flush or restart, sent on one
// after: nothing deleted, errOtherInc) reads again.
const delTries = 3

// delOnce is one read and delete of del; again reports that nothing was
// deleted because every data record's delete was refused as of another
// incarnation (the next read gets tokens of the new one).
func (w *witness) delOnce(ctx context.Context, key string) (again bool, err error) {
	rs, err := w.readAll(ctx, key, w.candidates(key), " v c t f", false)
	if err != nil {
		return false, err
	}
	var silentErr error
	present := 0
	for i := range rs {
		switch {
		case rs[i].st == stSilent, rs[i].st == stError:
			silentErr = errors.Join(silentErr, rs[i].err)
		case rs[i].present():
			present++
		}
	}
	if present == 0 {
		if silentErr != nil {
			return false, fmt.Errorf("memcached: delete: %w: %w", provider.ErrUnavailable, silentErr)
		}
		return false, fmt.Errorf("memcached: delete: %w", provider.ErrNotFound)
	}
	delAll := func(st state) (refused bool, err error) {
		errs := make([]error, len(rs))
		var wg sync.WaitGroup
		sent := 0
		for i := range rs {
			if c := &rs[i]; c.st == st {
				sent++
				wg.Go(func() {
					if err := c.n.wdel(ctx, key, c.cas, c.inc); err != nil && !errors.Is(err, errMiss) {
						errs[i] = err
					}
				})
			}
		}
		wg.Wait()
		otherInc := 0
		for _, err := range errs {
			if errors.Is(err, errOtherInc) {
				otherInc++
			}
		}
		return sent > 0 && otherInc == sent, errors.Join(errs...)
	}
	if h := w.s.hooks.afterDeleteRead; h != nil {
		h(key)
	}
	if refused, err := delAll(stData); err != nil {
		if refused && !w.s.hooks.delNoRetry {
			return true, err
		}
		return false, unknown("delete", err)
	}
	if _, err := delAll(stWitness); err != nil {
		return false, unknown("delete", err)
	}
	w.repair.forget(key)
	if silentErr != nil {
		return false, unknown("delete: a candidate did not answer", silentErr)
	}
	return false, nil
}
