package provider_test

// Writes whose outcome is unknown (provider.ErrOutcomeUnknown), resolved
// by one read (update's resolvers, protocol.go). Each case runs against
// the provider and against provider.Unresolved, the provider before it
// resolved them, and must fail there where the resolution changes the
// answer.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// fault is what unknownStore does with a write its plan picks; every
// one of them reports ErrOutcomeUnknown.
type fault int

const (
	pass    fault = iota
	landed        // written, then reported unknown
	dropped       // not written (lost on the way)
	late          // held back: it lands just before the next write (a queued copy)
	adopted       // held back, then written over whatever is stored just before the next write (a replicated store completing it)
)

// unknownStore is a memory store whose compare-and-swap writes a plan
// picks report ErrOutcomeUnknown, having landed or not. then, if set,
// runs once after the first such write, before its error returns (what
// other servers do meanwhile); failGets makes that many Gets after it
// fail.
type unknownStore struct {
	*memstore.Store
	mu       sync.Mutex
	plan     func(r *record.Record) fault
	then     func()
	failGets int
	answer   error                    // what a write the plan picks answers; nil: errUnknown
	refuse   int                      // writes after the first fault refused before they are sent
	held     []func() (uint64, error) // writes held back
	faults   int
}

var errUnknown = fmt.Errorf("test: connection reset after the write was sent: %w", provider.ErrOutcomeUnknown)

func newUnknownStore(t *testing.T) *unknownStore {
	t.Helper()
	mem := memstore.New(memstore.Config{SweepInterval: -1})
	t.Cleanup(func() { mem.Close() })
	return &unknownStore{Store: mem}
}

func (s *unknownStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	s.mu.Lock()
	fail := s.faults > 0 && s.failGets > 0
	if fail {
		s.failGets--
	}
	s.mu.Unlock()
	if fail {
		return provider.Entry{}, fmt.Errorf("test: read timed out: %w", provider.ErrUnavailable)
	}
	return s.Store.Get(ctx, key)
}

// GetAndTouch is the read path's read; it fails like Get.
func (s *unknownStore) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if _, err := s.Get(ctx, key); err != nil {
		return provider.Entry{}, err
	}
	return s.Store.GetAndTouch(ctx, key, ttl)
}

func (s *unknownStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return s.write(ctx, key, value, func() (uint64, error) { return s.Store.CompareAndSwap(ctx, key, value, cas, ttl) })
}

func (s *unknownStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return s.write(ctx, key, value, func() (uint64, error) { return s.Store.Add(ctx, key, value, ttl) })
}

// write makes the write do of value, or loses its answer as the plan
// says.
func (s *unknownStore) write(ctx context.Context, key string, value []byte, do func() (uint64, error)) (uint64, error) {
	if tk, ok := ctx.Value(barrierKey{}).(*barrierTicket); ok && tk.used.CompareAndSwap(false, true) {
		tk.b.arrive() // the call's first write waits for the other's
	}
	s.mu.Lock()
	held := s.held
	s.held = nil
	f := pass
	if s.plan != nil {
		if r, err := record.Decode(value); err == nil {
			f = s.plan(&r)
		}
	}
	then := s.then
	if f != pass {
		s.faults++
		s.then = nil
	} else {
		then = nil
	}
	s.mu.Unlock()
	for _, w := range held { // a copy still on its way lands first
		_, _ = w()
	}
	s.mu.Lock()
	refuse := f == pass && s.faults > 0 && s.refuse > 0
	if refuse {
		s.refuse--
	}
	s.mu.Unlock()
	if refuse {
		return 0, fmt.Errorf("test: dial refused, nothing sent: %w", provider.ErrUnavailable)
	}
	switch f {
	case pass:
		return do()
	case landed:
		_, _ = do() // landed or refused: the answer is lost
	case late:
		s.mu.Lock()
		s.held = append(s.held, do)
		s.mu.Unlock()
	case adopted:
		s.mu.Lock()
		s.held = append(s.held, func() (uint64, error) { return s.overwrite(ctx, key, value) })
		s.mu.Unlock()
	}
	if then != nil {
		then()
	}
	if s.answer != nil {
		return 0, s.answer
	}
	return 0, errUnknown
}

// overwrite stores value under key whatever is stored there.
func (s *unknownStore) overwrite(ctx context.Context, key string, value []byte) (uint64, error) {
	e, err := s.Store.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	return s.Store.CompareAndSwap(ctx, key, value, e.CAS, time.Minute)
}

// newToken gives the record under key a new token, its value unchanged
// (as a read path's TTL correction or a store's repair may).
func (s *unknownStore) newToken(t *testing.T, key string) {
	t.Helper()
	e, err := s.Store.Get(context.Background(), key)
	require.NoError(t, err)
	_, err = s.overwrite(context.Background(), key, e.Value)
	require.NoError(t, err)
}

// once returns a plan that gives the first write pick accepts fault f.
func once(f fault, pick func(r *record.Record) bool) func(*record.Record) fault {
	done := false
	return func(r *record.Record) fault {
		if done || !pick(r) {
			return pass
		}
		done = true
		return f
	}
}

func isLock(r *record.Record) bool   { return r.Locked }
func isUnlock(r *record.Record) bool { return !r.Locked }
func anyWrite(*record.Record) bool   { return true }

// stored returns the record under key in s.
func stored(t *testing.T, s provider.Store, key string) record.Record {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	r, err := record.Decode(e.Value)
	require.NoError(t, err)
	return r
}

// newSession stores a session with n = 1 through p and returns its id and key.
func newSession(t *testing.T, p *provider.Provider) (id, key string) {
	t.Helper()
	id, err := session.NewID()
	require.NoError(t, err)
	d := p.CreateNewStoreData(0)
	require.NoError(t, d.Values.Set("n", 1))
	require.NoError(t, p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
	key, err = p.Key(id)
	require.NoError(t, err)
	return id, key
}

// resolveCase is one write of unknown outcome: setup arms the store for
// session id (the fault, what others do meanwhile) and run makes the
// write and checks its answer and the stored session, returning what
// went wrong.
type resolveCase struct {
	name string
	// same marks a case where the provider before resolution answers
	// the same (a safety check, not a regression test).
	same bool
	run  resolveRun
}

// resolveRun runs a case on p (other is another server, on the store
// without faults) and returns what went wrong.
type resolveRun func(t *testing.T, s *unknownStore, p, other *provider.Provider) error

// runResolveCases runs each case on the provider (it must pass) and on
// provider.Unresolved (it must fail, unless the case is marked same).
func runResolveCases(t *testing.T, cases []resolveCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newUnknownStore(t)
			p, err := provider.New(s, provider.Config{})
			require.NoError(t, err)
			other, err := provider.New(s.Store, provider.Config{})
			require.NoError(t, err)
			require.NoError(t, c.run(t, s, p, other))
			if c.same {
				return
			}
			s = newUnknownStore(t)
			p, err = provider.New(s, provider.Config{})
			require.NoError(t, err)
			other, err = provider.New(s.Store, provider.Config{})
			require.NoError(t, err)
			require.Error(t, c.run(t, s, provider.Unresolved(p), other), "the provider that does not resolve must fail this case")
		})
	}
}

// perFault returns a case for each way a write's answer can be lost
// (landed, dropped, late), made by run.
func perFault(run func(f fault) resolveRun) []resolveCase {
	var cases []resolveCase
	for _, f := range []struct {
		name string
		f    fault
	}{{"landed", landed}, {"dropped", dropped}, {"late", late}} {
		cases = append(cases, resolveCase{name: f.name, run: run(f.f)})
	}
	return cases
}

// acquire locks a fresh session through p with the store armed by arm
// and checks that p holds the lock the store shows.
func acquire(t *testing.T, s *unknownStore, p, other *provider.Provider, arm func(id, key string)) (*provider.Item, error) {
	id, key := newSession(t, other)
	arm(id, key)
	item, err := p.GetItemExclusive(context.Background(), id)
	if err != nil {
		return nil, err
	}
	r := stored(t, s.Store, key)
	if !r.Locked || r.LockID != item.LockID {
		return item, fmt.Errorf("acquired lock %d, but the store shows locked=%t with lock %d", item.LockID, r.Locked, r.LockID)
	}
	_, err = other.GetItemExclusive(context.Background(), id)
	var le *provider.LockedError
	if !errors.As(err, &le) || le.LockID != item.LockID {
		return item, fmt.Errorf("another request got %v, want the LockedError of lock %d", err, item.LockID)
	}
	if err := p.ReleaseItemExclusive(context.Background(), id, item.LockID); err != nil {
		return item, fmt.Errorf("release of the acquired lock: %w", err)
	}
	return item, nil
}

// TestUnknownAcquisition: a lock acquisition whose write is reported
// unknown is resolved by one read: landed (the lock is the caller's),
// lost (it locks again), held back and landing later (the queued copy and
// the retry are the same write: one lock), or another request locked
// meanwhile (a LockedError, not an unknown outcome).
func TestUnknownAcquisition(t *testing.T) {
	arm := func(s *unknownStore, f fault) func(id, key string) {
		return func(string, string) { s.plan = once(f, isLock) }
	}
	cases := perFault(func(f fault) resolveRun {
		return func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			_, err := acquire(t, s, p, other, arm(s, f))
			return err
		}
	})
	cases = append(cases,
		resolveCase{name: "landed-then-lock-free-write", run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			_, err := acquire(t, s, p, other, func(id, key string) {
				s.plan = once(landed, isLock)
				s.then = func() { lockFreeSet(t, other.LockFree(), id, "free", 1) }
			})
			return err
		}},
		resolveCase{name: "adopted-after-a-new-token", run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			// Not seen by the resolving read (the record has a new token),
			// so decided again; the first write is completed before the
			// second lands: the lock is the first one's.
			_, err := acquire(t, s, p, other, func(id, key string) {
				s.plan = once(adopted, isLock)
				s.then = func() { s.newToken(t, key) }
			})
			return err
		}},
		resolveCase{name: "dropped-then-locked-by-another", run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			id, _ := newSession(t, other)
			var theirs uint64
			s.plan = once(dropped, isLock)
			s.then = func() {
				it, err := other.GetItemExclusive(context.Background(), id)
				require.NoError(t, err)
				theirs = it.LockID
			}
			_, err := p.GetItemExclusive(context.Background(), id)
			var le *provider.LockedError
			if !errors.As(err, &le) || le.LockID != theirs {
				return fmt.Errorf("got %v, want the LockedError of the other request's lock %d", err, theirs)
			}
			return nil
		}},
		resolveCase{name: "read-fails", same: true, run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			id, _ := newSession(t, other)
			s.plan, s.failGets = once(landed, isLock), 1
			_, err := p.GetItemExclusive(context.Background(), id)
			if !errors.Is(err, provider.ErrOutcomeUnknown) {
				return fmt.Errorf("with the resolving read failed: %v, want the unknown outcome", err)
			}
			return nil
		}},
	)
	runResolveCases(t, cases)
}

// lockFreeSet stores key = v in session id through a lock-free provider.
func lockFreeSet(t *testing.T, free *provider.Provider, id, key string, v int) {
	t.Helper()
	ctx := context.Background()
	it, err := free.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, it.Data.Values.Set(key, v))
	require.NoError(t, free.SetAndReleaseItemExclusive(ctx, id, it.Data, 0, false))
}

// holderWrite is a write of a lock holder and what it leaves when done.
type holderWrite struct {
	name  string
	pick  func(r *record.Record) bool
	write func(p *provider.Provider, id string, it *provider.Item) error
	// check checks the stored record r after the write of lock held at
	// stamp before.
	check func(r record.Record, held uint64, before record.Record) error
}

var holderWrites = []holderWrite{
	{"commit", isUnlock, func(p *provider.Provider, id string, it *provider.Item) error {
		if err := it.Data.Values.Set("n", 2); err != nil {
			return err
		}
		return p.SetAndReleaseItemExclusive(context.Background(), id, it.Data, it.LockID, false)
	}, func(r record.Record, held uint64, before record.Record) error {
		if r.Locked || r.Seq != before.Seq+1 || r.DataSeq != before.DataSeq+1 {
			return fmt.Errorf("after the commit: locked=%t Seq %d DataSeq %d, want unlocked, one write (Seq %d, DataSeq %d)", r.Locked, r.Seq, r.DataSeq, before.Seq+1, before.DataSeq+1)
		}
		return nil
	}},
	{"release", isUnlock, func(p *provider.Provider, id string, it *provider.Item) error {
		return p.ReleaseItemExclusive(context.Background(), id, it.LockID)
	}, func(r record.Record, held uint64, before record.Record) error {
		if r.Locked || r.Seq != before.Seq+1 {
			return fmt.Errorf("after the release: locked=%t Seq %d, want unlocked, one write (Seq %d)", r.Locked, r.Seq, before.Seq+1)
		}
		return nil
	}},
	{"remove", func(r *record.Record) bool { return r.Removed }, func(p *provider.Provider, id string, it *provider.Item) error {
		return p.RemoveItem(context.Background(), id, it.LockID)
	}, func(r record.Record, held uint64, before record.Record) error {
		if !r.Removed || r.Seq != before.Seq+1 {
			return fmt.Errorf("after the removal: removed=%t Seq %d, want a tombstone, one write (Seq %d)", r.Removed, r.Seq, before.Seq+1)
		}
		return nil
	}},
	{"renew", func(r *record.Record) bool { return r.Locked }, func(p *provider.Provider, id string, it *provider.Item) error {
		return p.RenewLease(context.Background(), id, it.LockID)
	}, func(r record.Record, held uint64, before record.Record) error {
		if !r.Locked || r.LockID != held || r.Seq != before.Seq+1 {
			return fmt.Errorf("after the renewal: locked=%t by %d, Seq %d, want locked by %d, one write (Seq %d)", r.Locked, r.LockID, r.Seq, held, before.Seq+1)
		}
		return nil
	}},
}

// TestUnknownHolderWrites: a holder's commit, release, removal and
// renewal whose write is reported unknown are resolved by one read:
// landed (success), lost (sent again: success, one write), held back and
// landing later (one write); and never turned into ErrLockLost when the
// lock was taken over meanwhile, or into success when a later write hides
// whether it landed.
func TestUnknownHolderWrites(t *testing.T) {
	for _, w := range holderWrites {
		t.Run(w.name, func(t *testing.T) {
			cases := perFault(func(f fault) resolveRun {
				return func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
					id, key := newSession(t, other)
					it, err := p.GetItemExclusive(context.Background(), id)
					require.NoError(t, err)
					before := stored(t, s.Store, key)
					s.plan = once(f, w.pick)
					if err := w.write(p, id, it); err != nil {
						return err
					}
					return w.check(stored(t, s.Store, key), it.LockID, before)
				}
			})
			cases = append(cases, resolveCase{name: "adopted-after-a-new-token", run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
				// Still locked by the holder but with a new token: decided
				// again; the first write is completed before the second
				// lands. Its record is the result, never ErrLockLost.
				id, key := newSession(t, other)
				it, err := p.GetItemExclusive(context.Background(), id)
				require.NoError(t, err)
				before := stored(t, s.Store, key)
				s.plan = once(adopted, w.pick)
				s.then = func() { s.newToken(t, key) }
				if err := w.write(p, id, it); err != nil {
					return err
				}
				return w.check(stored(t, s.Store, key), it.LockID, before)
			}})
			cases = append(cases, resolveCase{name: "late-then-resend-refused", same: true, run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
				// The first send is on its way; the re-send (same token)
				// is refused before it is sent: the answer stays unknown,
				// never "not written" (the first lands).
				id, _ := newSession(t, other)
				it, err := p.GetItemExclusive(context.Background(), id)
				require.NoError(t, err)
				s.plan, s.refuse = once(late, w.pick), 1
				err = w.write(p, id, it)
				if !errors.Is(err, provider.ErrOutcomeUnknown) {
					return fmt.Errorf("a re-send refused unsent while the first send may land: %v, want the unknown outcome", err)
				}
				return nil
			}})
			if w.name != "renew" {
				cases = append(cases,
					resolveCase{name: "dropped-then-taken-over", same: true, run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
						id, _ := newSession(t, other)
						it, err := p.GetItemExclusive(context.Background(), id)
						require.NoError(t, err)
						s.plan = once(dropped, w.pick)
						s.then = func() { takeOver(t, other, id) }
						err = w.write(p, id, it)
						if !errors.Is(err, provider.ErrOutcomeUnknown) || errors.Is(err, provider.ErrLockLost) {
							return fmt.Errorf("the lock was taken over after a write of unknown outcome: %v, want the unknown outcome, never ErrLockLost", err)
						}
						return nil
					}},
					resolveCase{name: "landed-then-lock-free-write", same: true, run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
						id, _ := newSession(t, other)
						it, err := p.GetItemExclusive(context.Background(), id)
						require.NoError(t, err)
						s.plan = once(landed, w.pick)
						s.then = func() {
							if w.name != "remove" {
								lockFreeSet(t, other.LockFree(), id, "free", 1)
							}
						}
						err = w.write(p, id, it)
						if w.name == "remove" {
							return err // nothing writes after a removal: resolved
						}
						if !errors.Is(err, provider.ErrOutcomeUnknown) {
							return fmt.Errorf("a later write hides the outcome: %v, want the unknown outcome", err)
						}
						return nil
					}},
				)
			}
			runResolveCases(t, cases)
		})
	}
}

// takeOver breaks the lock of session id and takes it through other, as
// a waiter does after a lease.
func takeOver(t *testing.T, other *provider.Provider, id string) {
	t.Helper()
	ctx := context.Background()
	_, err := other.GetItemExclusive(ctx, id)
	var le *provider.LockedError
	require.ErrorAs(t, err, &le)
	require.NoError(t, other.BreakLock(ctx, id, le.Stamp))
	_, err = other.GetItemExclusive(ctx, id)
	require.NoError(t, err)
}

// TestUnknownLockFreeCommit: a lock-free commit whose write is reported
// unknown is resolved only when the read shows exactly its record, or no
// change at all; a later lock-free write leaves it unknown.
func TestUnknownLockFreeCommit(t *testing.T) {
	commit := func(s *unknownStore, p, other *provider.Provider, f fault, then func(id string)) (before, after record.Record, err error) {
		free := p.LockFree()
		id, key := newSession(t, other)
		it, err := free.GetItemExclusive(context.Background(), id)
		require.NoError(t, err)
		require.NoError(t, it.Data.Values.Set("mine", 7))
		before = stored(t, s.Store, key)
		s.plan = once(f, anyWrite)
		if then != nil {
			s.then = func() { then(id) }
		}
		err = free.SetAndReleaseItemExclusive(context.Background(), id, it.Data, 0, false)
		return before, stored(t, s.Store, key), err
	}
	cases := perFault(func(f fault) resolveRun {
		return func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			before, after, err := commit(s, p, other, f, nil)
			if err != nil {
				return err
			}
			if after.Seq != before.Seq+1 {
				return fmt.Errorf("Seq %d after the commit, want one write (%d)", after.Seq, before.Seq+1)
			}
			return nil
		}
	})
	cases = append(cases, resolveCase{name: "landed-then-lock-free-write", same: true, run: func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
		_, _, err := commit(s, p, other, landed, func(id string) { lockFreeSet(t, other.LockFree(), id, "theirs", 1) })
		if !errors.Is(err, provider.ErrOutcomeUnknown) {
			return fmt.Errorf("a later lock-free write hides the outcome: %v, want the unknown outcome", err)
		}
		return nil
	}})
	runResolveCases(t, cases)
}

// TestUnknownAcquisitionsRace: two servers decide to lock one session on
// the same record at once (a barrier holds both writes until both are
// sent), with the same clock, and every write's answer is lost (it lands
// or is refused, and reports ErrOutcomeUnknown). They must never both
// believe they hold the lock; with lock ids + 1 (SequentialLockIDs) the
// loser reads the winner's lock as its own.
func TestUnknownAcquisitionsRace(t *testing.T) {
	const rounds = 200
	run := func(broken func(*provider.Provider) *provider.Provider) (both int) {
		s := newUnknownStore(t)
		now := time.Unix(1_800_000_000, 0) // one clock: the lock times cannot tell the servers apart
		cfg := provider.Config{Now: func() time.Time { return now }}
		var ps [2]*provider.Provider
		for i := range ps {
			p, err := provider.New(s, cfg)
			require.NoError(t, err)
			ps[i] = broken(p)
		}
		s.plan = func(r *record.Record) fault {
			if r.Locked {
				return landed
			}
			return pass
		}
		for round := 0; round < rounds; round++ {
			id, key := newSession(t, ps[0])
			g := newBarrier(2)
			var got [2]*provider.Item
			var errs [2]error
			var wg sync.WaitGroup
			for i, p := range ps {
				wg.Go(func() {
					got[i], errs[i] = p.GetItemExclusive(barrierCtx(g), id)
				})
			}
			wg.Wait()
			holders := 0
			for i := range ps {
				if errs[i] == nil {
					holders++
				} else if !errors.Is(errs[i], provider.ErrLocked) && !errors.Is(errs[i], provider.ErrOutcomeUnknown) {
					t.Fatalf("round %d: server %d: %v", round, i, errs[i])
				}
			}
			if holders > 1 {
				both++
				continue
			}
			r := stored(t, s.Store, key)
			for i := range ps {
				if errs[i] == nil && (!r.Locked || r.LockID != got[i].LockID) {
					t.Fatalf("round %d: server %d holds lock %d, the store shows locked=%t by %d", round, i, got[i].LockID, r.Locked, r.LockID)
				}
			}
		}
		return both
	}
	require.Zero(t, run(func(p *provider.Provider) *provider.Provider { return p }), "rounds in which both servers believed they held the lock")
	require.NotZero(t, run(provider.SequentialLockIDs), "with lock ids + 1 the loser must take the winner's lock for its own")
}

// barrier lets n writers through once all n arrived; later ones pass.
type barrier struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, ch: make(chan struct{})} }

func (b *barrier) arrive() {
	b.mu.Lock()
	b.n--
	switch {
	case b.n == 0:
		close(b.ch)
	case b.n < 0:
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	<-b.ch
}

type barrierKey struct{}

// barrierTicket holds the first write of one call at its barrier.
type barrierTicket struct {
	b    *barrier
	used atomic.Bool
}

// barrierCtx is the context of one call whose first write waits at b.
func barrierCtx(b *barrier) context.Context {
	return context.WithValue(context.Background(), barrierKey{}, &barrierTicket{b: b})
}

// TestUnknownAcquisitionPastLease: an acquisition whose resolving read
// comes 7/8 of a lease or more after its write was sent, and shows
// neither its lock nor the record it was decided on, stays unknown: the
// lock may have landed and been broken by a waiter since. (Taken for not
// landed, it would lock again.) Earlier it locks again; and however late
// the read, a record unchanged since (the same token) means the write
// has not landed, and it is sent again.
func TestUnknownAcquisitionPastLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 10 * time.Second
		s := newUnknownStore(t)
		p, err := provider.New(s, provider.Config{Lease: lease})
		require.NoError(t, err)
		other, err := provider.New(s.Store, provider.Config{Lease: lease})
		require.NoError(t, err)
		for _, c := range []struct {
			wait    time.Duration // from the write to the resolving read
			changed bool          // a lock-free write changes the record meanwhile
			resolve bool
		}{
			{provider.Unbroken(lease), true, false},
			{provider.Unbroken(lease) - time.Millisecond, true, true},
			{2 * lease, false, true},
		} {
			id, _ := newSession(t, other)
			s.plan = once(dropped, isLock)
			s.then = func() {
				time.Sleep(c.wait) // the answer took that long to be lost
				if c.changed {
					lockFreeSet(t, other.LockFree(), id, "free", 1)
				}
			}
			_, err = p.GetItemExclusive(context.Background(), id)
			if c.resolve {
				require.NoError(t, err, "%+v", c)
			} else {
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "%+v", c)
			}
		}
		// Without the window, the late read's "not mine" locks again.
		id, _ := newSession(t, other)
		s.plan = once(dropped, isLock)
		s.then = func() {
			time.Sleep(provider.Unbroken(lease))
			lockFreeSet(t, other.LockFree(), id, "free", 1)
		}
		_, err = provider.NoWindow(p).GetItemExclusive(context.Background(), id)
		require.NoError(t, err, "the broken variant without the window takes a late read's answer for not landed")
	})
}

// TestUnknownNewSession: a new session whose Add is reported unknown is
// resolved: landed (the stored record is exactly the one written: its
// lock ids count from a random base of its own), dropped or held back
// (the key still absent: the same Add again).
func TestUnknownNewSession(t *testing.T) {
	runResolveCases(t, perFault(func(f fault) resolveRun {
		return func(t *testing.T, s *unknownStore, p, other *provider.Provider) error {
			id, err := session.NewID()
			require.NoError(t, err)
			d := p.CreateNewStoreData(0)
			require.NoError(t, d.Values.Set("n", 1))
			s.plan = once(f, anyWrite)
			if err := p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true); err != nil {
				return err
			}
			it, err := other.GetItem(context.Background(), id)
			if err != nil {
				return fmt.Errorf("the new session: %w", err)
			}
			if n, _, err := session.Get[int](it.Data.Values, "n"); err != nil || n != 1 {
				return fmt.Errorf("the new session's n = %d, %v; want 1", n, err)
			}
			return nil
		}
	}))
}

// unsettled is an unknownStore whose reads do not settle its writes of
// unknown outcome (provider.OutcomeReader false: a Redis store with
// WaitReplicas, a Couchbase store reading replicas).
type unsettled struct{ *unknownStore }

func (unsettled) ReadsSettleOutcomes() bool { return false }

// TestUnknownNotResolvedWithoutSettlingReads: on a store whose reads
// cannot settle an unknown outcome (an unreplicated write readable on the
// master, a lagging replica), a write of unknown outcome is returned as
// unknown at once, whatever a read would show (review B2, B3).
func TestUnknownNotResolvedWithoutSettlingReads(t *testing.T) {
	for _, w := range holderWrites {
		t.Run(w.name, func(t *testing.T) {
			s := newUnknownStore(t)
			p, err := provider.New(unsettled{s}, provider.Config{})
			require.NoError(t, err)
			other, err := provider.New(s.Store, provider.Config{})
			require.NoError(t, err)
			id, _ := newSession(t, other)
			it, err := p.GetItemExclusive(context.Background(), id)
			require.NoError(t, err)
			s.plan = once(landed, w.pick)
			require.ErrorIs(t, w.write(p, id, it), provider.ErrOutcomeUnknown, "applied, but the store cannot vouch that it stands")
		})
	}
	s := newUnknownStore(t)
	p, err := provider.New(unsettled{s}, provider.Config{})
	require.NoError(t, err)
	id, _ := newSession(t, p)
	s.plan = once(landed, isLock)
	_, err = p.GetItemExclusive(context.Background(), id)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
}

// TestReviveOutrunsRandomSteps: 10,000 lock-only requests (each lock id
// step up to 2^20) after the last data change, then a revival of the
// copy as of that change (record.Revive, as the tiered store serves it
// after a cache loss): the revived lock id is above every id granted, so
// lock ids still increase across the revival (I7). With the lock id
// advanced by record.ReviveGap (2^32), as before LockReviveGap, it was
// overtaken after about 8,000 (review M1).
func TestReviveOutrunsRandomSteps(t *testing.T) {
	ctx := context.Background()
	s := newUnknownStore(t)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id, key := newSession(t, p)
	durable, err := s.Store.Get(ctx, key) // the copy as of the last commit
	require.NoError(t, err)
	var last uint64
	for range 10_000 {
		it, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		last = it.LockID
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, it.LockID))
	}
	revived, err := record.Revive(durable.Value)
	require.NoError(t, err)
	h, err := record.Parse(revived)
	require.NoError(t, err)
	require.Greater(t, h.LockID, last, "the revived lock id is above every id the lost cache granted")
}

// TestUnknownThatAlsoWrapsConflict: a write answered with an error that
// wraps ErrOutcomeUnknown and ErrCASConflict (one copy refused it, the
// other's reply was lost) is unknown, never a conflict: taken for a
// conflict, the commit that landed was decided again and fenced
// (ErrLockLost). Resolved, it landed; unresolved, it stays unknown.
func TestUnknownThatAlsoWrapsConflict(t *testing.T) {
	both := errors.Join(fmt.Errorf("test: copy 1: %w", provider.ErrCASConflict), fmt.Errorf("test: copy 2: %w", provider.ErrOutcomeUnknown))
	for _, settles := range []bool{true, false} {
		t.Run(fmt.Sprint("settles=", settles), func(t *testing.T) {
			s := newUnknownStore(t)
			var st provider.Store = s
			if !settles {
				st = unsettled{s}
			}
			p, err := provider.New(st, provider.Config{})
			require.NoError(t, err)
			id, _ := newSession(t, p)
			it, err := p.GetItemExclusive(context.Background(), id)
			require.NoError(t, err)
			require.NoError(t, it.Data.Values.Set("n", 2))
			s.plan, s.answer = once(landed, isUnlock), both
			err = p.SetAndReleaseItemExclusive(context.Background(), id, it.Data, it.LockID, false)
			if settles {
				require.NoError(t, err, "landed, as the read shows")
				return
			}
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.NotErrorIs(t, err, provider.ErrLockLost)
		})
	}
}
