package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// DefaultMemoSize is the default of Config.MemoSize.
const DefaultMemoSize = 100_000

// maxAttempts bounds the retry loops of revival.
const maxAttempts = 16

// maxRefusals is how many times in a row a durable write from one cache
// record (one CAS token) may be refused by a durable copy at one Seq of the
// same epoch, over at least goneBackAfter, before the cache is deemed to
// have gone back in time and the durable copy is revived over it.
const maxRefusals = 8

// goneBackAfter is how long durable writes from one cache record must
// keep being refused at one Seq before the cache is deemed to have gone
// back in time: longer than another writer of that record can sit between
// its durable write and the end of its cache write under a single node
// fault (the cache client's timeout, the failover after FailoverAfter, at
// most 2.5 s for memcached, and the failover's round trips). The
// provider's retries reach maxRefusals within milliseconds: counted alone,
// a writer stalled by a paused node made the cache look gone back, and the
// revival fenced a holder whose lease ran (the simulation's two holders
// across a revival under a single node fault;
// TestStalledWriterDoesNotReviveOverHolder).
const goneBackAfter = 5 * time.Second

// Config configures a Store. Cache and Durable are required.
type Config struct {
	// Cache holds the live records, locks included: a memcached
	// *memcached.Store in production.
	Cache provider.Store
	// Durable holds the durable copies: a *sqlstore.Store, or any
	// other Durable.
	Durable Durable
	// MemoSize bounds how many keys the store remembers (the last record
	// seen in the cache and the durable copy's expiry), about 200 bytes
	// each. Default 100 000. A key forgotten costs one cache read or one
	// refresh statement the next time it is changed or read.
	MemoSize int
	// RefreshBelow: the durable copy's expiry is refreshed (one
	// statement) when a cache-only request finds it has less than this
	// fraction of the session's timeout left. Default 0.5: at most one
	// refresh per half timeout per active session and process. A session
	// the cache loses can be revived for RefreshBelow of its timeout after
	// its last request, however long its timeout; higher values (up to 1)
	// cover more of it with more statements. See the package
	// documentation.
	RefreshBelow float64
	// Now is the clock that tracks when durable copies need a refresh; it
	// only measures durations. Default time.Now. Tests pass a fake clock.
	Now func() time.Time
	// OnEvent receives the store's events (nil = off): EventRepair when
	// a session the cache lost is revived from the durable tier. The
	// cache tier's own node events come through its own Config (for
	// memcached, memcached.Config.OnEvent). It must not block.
	OnEvent provider.EventFunc
}

// Stats are counters of a Store's work since New.
type Stats struct {
	// DurableWrites counts changes written through to the durable tier.
	DurableWrites uint64
	// Refreshes counts refreshes of a durable copy's expiry.
	Refreshes uint64
	// Revivals counts records served from the durable tier after a cache
	// miss.
	Revivals uint64
	// StaleWrites counts changes refused by the durable tier because the
	// cache had lost their record and a revival superseded it; the
	// request saw a conflict (and then ErrLockLost).
	StaleWrites uint64
	// RefreshErrors counts refreshes that failed (retried on the next
	// request; the change itself succeeded).
	RefreshErrors uint64
	// Undone counts durable writes undone because the cache's lineage
	// moved on without them (the lock was taken over meanwhile): the
	// request saw a conflict (and then ErrLockLost).
	Undone uint64
	// Adopted counts durable writes whose cache write failed but that a
	// revival had claimed and served: reported as committed.
	Adopted uint64
	// UnknownOutcomes counts durable writes whose cache write failed
	// and whose outcome could not be told (the cache or the durable tier
	// failed meanwhile, or the durable tier could not tell whether a
	// revival adopted them): reported as provider.ErrOutcomeUnknown.
	UnknownOutcomes uint64
	// UnconfirmedDeleted counts cache records deleted because the cache
	// could not confirm them (provider.ErrUnconfirmed: a lone copy of a
	// replicated cache), each then revived from the durable tier.
	UnconfirmedDeleted uint64
}

// Store is a provider.Store with a cache in front of a durable store. See
// the package documentation. It is safe for concurrent use.
type Store struct {
	cache   provider.Store
	durable Durable
	memo    *memo
	sent    sentBefore
	now     func() time.Time
	onEvent provider.EventFunc

	refreshBelow float64

	flightMu sync.Mutex
	flights  map[string]*flight

	durableWrites, refreshes, revivals, staleWrites, refreshErrors atomic.Uint64
	undone, adopted, unknownOutcomes, unconfirmedDeleted           atomic.Uint64

	hooks hooks // tests only

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
)

// hooks select deliberately broken variants, for tests that show their
// checks catch what the variant breaks.
type hooks struct {
	// noRecheck: a revival reads the cache again only after a claim that
	// conflicted, not after reading the durable copy (the code before).
	noRecheck bool
	// staleAtOnce: a change refused by a durable copy of a newer lineage
	// revives it over the cache at once (the code before).
	staleAtOnce bool
	// unknownAddFails: a revival's cache Add of unknown outcome fails the
	// revival (the code before rv-d4b MJ1), instead of reading back.
	unknownAddFails bool
	// sentAnyBytes: any change whose exact bytes the durable copy holds
	// is taken for this process's change sent again (the code before
	// sentBefore), another request's identical change included.
	sentAnyBytes bool
}

// New returns a Store over cfg.Cache and cfg.Durable. The Store owns them:
// Close closes both.
func New(cfg Config) (*Store, error) {
	if cfg.Cache == nil || cfg.Durable == nil {
		return nil, errors.New("tiered: Config.Cache and Config.Durable are required")
	}
	if cfg.MemoSize <= 0 {
		cfg.MemoSize = DefaultMemoSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshBelow == 0 {
		cfg.RefreshBelow = 0.5
	}
	if cfg.RefreshBelow < 0 || cfg.RefreshBelow > 1 {
		return nil, fmt.Errorf("tiered: RefreshBelow %v is outside (0, 1]", cfg.RefreshBelow)
	}
	return &Store{
		refreshBelow: cfg.RefreshBelow,
		cache:        cfg.Cache,
		durable:      cfg.Durable,
		memo:         newMemo(cfg.MemoSize),
		now:          cfg.Now,
		onEvent:      cfg.OnEvent,
		flights:      make(map[string]*flight),
	}, nil
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		DurableWrites:   s.durableWrites.Load(),
		Refreshes:       s.refreshes.Load(),
		Revivals:        s.revivals.Load(),
		StaleWrites:     s.staleWrites.Load(),
		RefreshErrors:   s.refreshErrors.Load(),
		Undone:          s.undone.Load(),
		Adopted:         s.adopted.Load(),
		UnknownOutcomes: s.unknownOutcomes.Load(),

		UnconfirmedDeleted: s.unconfirmedDeleted.Load(),
	}
}

// Close closes the cache and the durable store. Later calls fail with
// provider.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeErr = errors.Join(s.cache.Close(), s.durable.Close())
	})
	return s.closeErr
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("tiered: %w", provider.ErrClosed)
	}
	return ctx.Err()
}

// Get returns the live record from the cache. On a cache miss it serves the
// durable copy, revived (see the package documentation), and puts it back
// in the cache.
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	if err := s.check(ctx); err != nil {
		return provider.Entry{}, err
	}
	e, err := s.cache.Get(ctx, key)
	if err == nil {
		s.saw(key, e)
		return e, nil
	}
	if err = s.dropUnconfirmed(ctx, key, err); !errors.Is(err, provider.ErrNotFound) {
		return provider.Entry{}, err
	}
	return s.reviveOnce(ctx, key)
}

// dropUnconfirmed handles a cache answer err for key. When the cache holds
// a record it cannot confirm (provider.ErrUnconfirmed: one copy of a
// replicated cache, every other copy empty, which it would report
// unavailable until the record expires), the record is deleted from the
// cache: the durable tier holds the session's data, so this is a loss of
// that key's cache record, which the caller then treats as a miss (the
// revival's claim fences a holder of a lock in the deleted record, as
// after any cache loss). It returns an error wrapping provider.ErrNotFound
// once the record is gone, and err itself otherwise (another error, or a
// delete that failed, whose error it names without wrapping).
func (s *Store) dropUnconfirmed(ctx context.Context, key string, err error) error {
	if !errors.Is(err, provider.ErrUnconfirmed) {
		return err
	}
	if derr := s.cache.Delete(ctx, key); derr != nil && !errors.Is(derr, provider.ErrNotFound) {
		return fmt.Errorf("%w (deleting the unconfirmed record failed: %v)", err, derr)
	}
	s.unconfirmedDeleted.Add(1)
	return fmt.Errorf("tiered: the cache held an unconfirmed record, deleted (%v): %w", err, provider.ErrNotFound)
}

// saw remembers a record read from the cache.
func (s *Store) saw(key string, e provider.Entry) {
	if h, err := record.Parse(e.Value); err == nil {
		s.memo.seen(key, e.CAS, h)
	}
}

// Add inserts a new record: in the durable tier first (insert if absent,
// so a session the cache lost but the durable tier holds is not created
// twice), then in the cache.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	start := s.now()
	if _, err := s.durable.Add(ctx, key, value, ttl); err != nil {
		return 0, err
	}
	s.durableWrites.Add(1)
	h, herr := record.Parse(value)
	if herr == nil {
		s.memo.durable(key, h.DataSeq, start.Add(ttl))
	}
	cas, err := s.cache.Add(ctx, key, value, ttl)
	if errors.Is(err, provider.ErrExists) {
		cur, gerr := s.cache.Get(ctx, key)
		if gerr == nil && herr == nil {
			if ch, perr := record.Parse(cur.Value); perr == nil &&
				record.Epoch(ch.Seq) == record.Epoch(h.Seq)+1 && ch.DataSeq == h.DataSeq {
				// A Get revived the row just added before it reached
				// the cache (one epoch on, the same data): the record
				// is ours.
				s.memo.seen(key, cur.CAS, ch)
				return cur.CAS, nil
			}
		}
		// The cache holds a live record whose durable copy had expired
		// or was never written: the durable row just added must not
		// stand for it. Put the live record back durably.
		s.memo.forget(key)
		s.restoreDurable(ctx, key, ttl)
		return 0, err
	}
	if err != nil {
		// Durable but not cached: a later Get revives it.
		return 0, s.unknownOutcome("the durable insert is done, the cache insert failed", err)
	}
	if herr == nil && cas != 0 {
		s.memo.seen(key, cas, h)
	}
	return cas, nil
}

// restoreDurable writes the cache's live record to the durable tier, best
// effort.
func (s *Store) restoreDurable(ctx context.Context, key string, ttl time.Duration) {
	e, err := s.cache.Get(ctx, key)
	if err != nil {
		return
	}
	if _, err := record.Parse(e.Value); err != nil {
		return
	}
	if res, err := s.durable.PutRecord(ctx, key, e.Value, ttl); err == nil && res.Stored {
		s.durableWrites.Add(1)
	}
}

// CompareAndSwap replaces the record under key if the cache's CAS token is
// still cas. A lock-only change (same DataSeq, timeout, action flags and
// removal state as the record it replaces) is written to the cache only. A
// change of the session's data is written to the durable tier first,
// ordered by Seq, and then to the cache (see the package documentation).
// Values must be provider records.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	next, err := record.Parse(value)
	if err != nil {
		return 0, fmt.Errorf("tiered: CompareAndSwap of a value that is not a session record: %w", err)
	}
	prev, known := s.memo.header(key, cas)
	if known && next.Seq == prev.Seq+1 && !record.DataChanged(prev, next) {
		// Lock-only: the cache alone.
		return s.cacheOnly(ctx, key, value, next, cas, ttl)
	}
	// Read the record being replaced: to classify the change when it is
	// not remembered, and before a durable write, to fail early (without
	// a statement) when the token is stale.
	cur, err := s.cache.Get(ctx, key)
	if err != nil {
		return 0, s.cacheMiss(ctx, key, err)
	}
	if cur.CAS != cas {
		return 0, fmt.Errorf("tiered: %w", provider.ErrCASConflict)
	}
	prev, err = record.Parse(cur.Value)
	if err == nil && !record.DataChanged(prev, next) {
		return s.cacheOnly(ctx, key, value, next, cas, ttl)
	}
	return s.writeThrough(ctx, key, value, next, cas, ttl)
}

// cacheOnly writes a change that need not reach the durable tier (a change
// of the lock alone, or a slide of the unchanged record) to the cache, and
// refreshes the durable copy's expiry when due.
func (s *Store) cacheOnly(ctx context.Context, key string, value []byte, next record.Header, cas uint64, ttl time.Duration) (uint64, error) {
	newCAS, err := s.cache.CompareAndSwap(ctx, key, value, cas, ttl)
	if err != nil {
		return 0, s.cacheMiss(ctx, key, err)
	}
	s.memo.seen(key, newCAS, next)
	s.refresh(ctx, key, next, ttl, value)
	return newCAS, nil
}

// cacheMiss is the error of a compare-and-swap that found nothing to
// replace in the cache (err, from the cache, wraps provider.ErrNotFound;
// any other error is returned as it is). The cache may have lost a
// session that the durable tier holds: it is revived, as Get does, and the
// change, which certainly was not applied, is a conflict (the caller
// re-reads the revived record, whose lock is not the caller's). The
// session is not found only when the durable tier has no live copy
// either.
func (s *Store) cacheMiss(ctx context.Context, key string, err error) error {
	if !errors.Is(err, provider.ErrNotFound) {
		return err
	}
	_, rerr := s.reviveOnce(ctx, key)
	switch {
	case errors.Is(rerr, provider.ErrNotFound):
		return err
	case rerr != nil:
		return fmt.Errorf("tiered: the cache lost the record, and reviving it failed: %w", rerr)
	}
	return fmt.Errorf("tiered: the cache lost the record, revived from the durable tier: %w", provider.ErrCASConflict)
}

// writeThrough writes a data change to the durable tier, then to the
// cache. A change whose outcome it reports unknown is remembered
// (sentBefore): the provider may send it again.
func (s *Store) writeThrough(ctx context.Context, key string, value []byte, next record.Header, cas uint64, ttl time.Duration) (_ uint64, err error) {
	defer func() {
		if errors.Is(err, provider.ErrOutcomeUnknown) {
			s.sent.remember(key, value, s.now())
		}
	}()
	start := s.now()
	res, err := s.durable.PutRecord(ctx, key, value, ttl)
	if err != nil {
		return 0, fmt.Errorf("tiered: write-through: %w", err)
	}
	sentAgain := false
	if !res.Stored && res.KeptSeq == next.Seq {
		res, sentAgain = s.sentAgain(ctx, key, value, res)
	}
	if !res.Stored {
		// The durable copy is at or past this record's Seq: in this
		// lineage, another writer from the same record got there first;
		// in a newer lineage, the cache lost this record's lineage and a
		// revival superseded it. Nothing was written: the caller sees a
		// conflict and re-reads (and finds its lock lost, if it was).
		//
		// In this lineage, the other writer is between its durable write
		// and its cache CAS, which settles within a round trip. If the
		// cache instead keeps serving the record this change replaces,
		// it went back in time (it lost the newer records: a copy
		// restored from an outdated replica) and every change from it
		// would be refused: the durable copy is revived over it.
		//
		// In a newer lineage, the revival that claimed the durable copy
		// puts its record in the cache within round trips: revived
		// again now, the copy would be installed over that record and
		// fence its holders for nothing. Only when refusals from this
		// cache record persist as long as goneBack's (that revival
		// failed half-way, or the cache went back in time past it) is
		// the durable copy revived over it.
		switch {
		case record.Epoch(res.KeptSeq) > record.Epoch(next.Seq):
			s.staleWrites.Add(1)
			if s.hooks.staleAtOnce || s.goneBack(key, cas, res.KeptSeq) {
				s.replaceStale(ctx, key, res.KeptSeq)
			}
		case s.goneBack(key, cas, res.KeptSeq):
			s.staleWrites.Add(1)
			_, _ = s.revive(ctx, key, false) // best effort: the caller re-reads anyway
		}
		return 0, fmt.Errorf("tiered: durable copy is at Seq %d, this change is %d: %w", res.KeptSeq, next.Seq, provider.ErrCASConflict)
	}
	if !sentAgain {
		s.durableWrites.Add(1)
		s.memo.durable(key, next.DataSeq, start.Add(ttl))
	}
	newCAS, err := s.cache.CompareAndSwap(ctx, key, value, cas, ttl)
	if err == nil {
		s.memo.seen(key, newCAS, next)
		return newCAS, nil
	}
	if !errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrNotFound) {
		// Durable, perhaps not live: a revival may serve it later.
		return 0, s.unknownOutcome("the durable write is done, the cache write failed", err)
	}
	return s.afterLostCAS(ctx, key, value, next, res.CAS, ttl, err)
}

// goneBack records a durable write from the cache record with token cas
// refused by a durable copy at Seq kept of the same epoch, and reports
// whether the cache is deemed to have gone back in time: maxRefusals such
// refusals in a row, the first at least goneBackAfter ago.
func (s *Store) goneBack(key string, cas, kept uint64) bool {
	n, since := s.memo.refused(key, cas, kept, s.now())
	return n >= maxRefusals && since >= goneBackAfter
}

// sentAgain is PutRecord's result for a data change (value) that the
// durable copy refused at the change's own Seq (res): when the copy holds
// exactly value and this process reported that very change unknown
// (sentBefore), the change is sent again after a write of unknown
// outcome (its durable write done, its cache write of unknown outcome;
// the provider reads the cache back, finds the record the change was
// decided on under the same token, and sends the same bytes again), and
// its durable write is done: the result is then that of a write stored
// with the copy's token, and ok is true. Otherwise (another value at that
// Seq, the same value written by another request, or the copy cannot be
// read) res is returned as it is.
//
// Refused instead, every such send was a conflict on a cache record that
// did not change, and after maxRefusals of them the durable copy was
// revived over the cache, fencing the caller's own lock while its lease
// ran: another request could take the lock of the revived copy (two
// holders across a revival under a single node fault; TestUnknownCommitSentAgainLands).
func (s *Store) sentAgain(ctx context.Context, key string, value []byte, res PutResult) (PutResult, bool) {
	d, _, err := s.durable.GetWithTTL(ctx, key)
	if err != nil || !bytes.Equal(d.Value, value) {
		return res, false
	}
	if !s.hooks.sentAnyBytes && !s.sent.take(key, value, s.now()) {
		return res, false // another request's change of the same bytes
	}
	return PutResult{Stored: true, CAS: d.CAS}, true
}

// unknownOutcome is the error of a data change that is durable but whose
// outcome cannot be known: it wraps provider.ErrOutcomeUnknown and cause.
// A cause that says its own operation wrote nothing (a conflict, not
// found, exists, lock lost: notWritten) is kept as text only: wrapped, it
// would make the change look not applied to a caller that checks for a
// conflict first, as the provider does (it then re-reads and reports the
// change as failed: the simulation's failed-write-applied, tiered seed 152
// of revive-mid-commit, a revival whose refill kept conflicting).
func (s *Store) unknownOutcome(what string, cause error) error {
	s.unknownOutcomes.Add(1)
	switch {
	case cause == nil:
		return fmt.Errorf("tiered: %s: %w", what, provider.ErrOutcomeUnknown)
	case notWritten(cause):
		return fmt.Errorf("tiered: %s: %w: %v", what, provider.ErrOutcomeUnknown, cause)
	}
	return fmt.Errorf("tiered: %s: %w: %w", what, provider.ErrOutcomeUnknown, cause)
}

// notWritten reports whether err says that nothing was written: errors
// an unknown outcome must not wrap.
func notWritten(err error) bool {
	for _, target := range []error{provider.ErrCASConflict, provider.ErrNotFound, provider.ErrExists, provider.ErrLockLost} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// afterLostCAS handles a data change that is durable (token durableCAS)
// but whose cache CAS failed:
//   - the cache holds this very change (a retry of ours got there): it is
//     committed;
//   - the cache lost the record's lineage: a revival (now, or one done
//     since the durable write) claims the durable copy and serves it; the
//     change is committed if that revival claimed this change's durable
//     version (settle);
//   - the cache holds the very record the change replaces under a new token
//     (memcached restored it from its backup copy): the CAS is retried;
//   - the lineage moved on without the change (the lock was taken over or
//     renewed since it was read): the durable write must not stand. It is
//     undone by writing the cache's live record over it, conditioned on
//     this change's own durable token, and settled (settle).
//
// A path that cannot tell whether the change was adopted returns an error
// wrapping provider.ErrOutcomeUnknown, never a conflict: a conflict makes
// the provider report ErrLockLost, which says that nothing was written.
func (s *Store) afterLostCAS(ctx context.Context, key string, value []byte, next record.Header, durableCAS uint64, ttl time.Duration, casErr error) (uint64, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		cur, err := s.cache.Get(ctx, key)
		if errors.Is(err, provider.ErrNotFound) {
			if _, err := s.reviveOnce(ctx, key); err != nil {
				return 0, s.unknownOutcome("the cache lost a durable change, and reviving it failed", err)
			}
			continue
		}
		if err != nil {
			return 0, s.unknownOutcome("reading the cache after a durable write", err)
		}
		h, perr := record.Parse(cur.Value)
		switch {
		case bytes.Equal(cur.Value, value):
			s.memo.seen(key, cur.CAS, next)
			return cur.CAS, nil
		case perr == nil && record.Epoch(h.Seq) > record.Epoch(next.Seq):
			// Revived since this change became durable. The revival
			// served the durable copy it claimed, which is this change
			// only if no other write replaced it first: a lock-free merge
			// based on a lock-only change that beat this change to the
			// cache is ordered after it by Seq and overwrites it. Nothing
			// to undo: a claim moved the durable copy past this write.
			s.memo.seen(key, cur.CAS, h)
			if record.SameData(cur.Value, value) {
				return 0, nil
			}
			return s.settle(ctx, key, nil, durableCAS, ttl, casErr)
		case perr == nil && record.Epoch(h.Seq) < record.Epoch(next.Seq):
			// The cache holds an older lineage than the durable copy
			// (a restarted cache reissued a token): revive over it.
			s.replaceStale(ctx, key, next.Seq)
			continue
		case perr == nil && h.Seq+1 == next.Seq:
			newCAS, err := s.cache.CompareAndSwap(ctx, key, value, cur.CAS, ttl)
			if err == nil {
				s.memo.seen(key, newCAS, next)
				return newCAS, nil
			}
			if !errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrNotFound) {
				return 0, s.unknownOutcome("the durable write is done, the cache write failed", err)
			}
			continue
		}
		// Moved on without this change: undo the durable write.
		return s.settle(ctx, key, cur.Value, durableCAS, ttl, casErr)
	}
	return 0, s.unknownOutcome("the cache kept changing after a durable write", nil)
}

// settle decides the outcome of a data change whose durable write (token
// durableCAS) the cache's lineage did not take, after undoing it if undo is
// not nil (docs/replication.md §15):
//   - the undo, a compare-and-swap conditioned on durableCAS, succeeded:
//     no revival adopted the write (a revival claims the row before serving
//     it, which changes its token), and none can now: nothing was written,
//     casErr (the provider re-reads and reports ErrLockLost);
//   - otherwise the durable tier says whether a revival claimed that very
//     version: Claimed, the change was served (revived, so unlocked) and
//     every later record descends from it: committed; NotClaimed, it was
//     overwritten unserved (an undo that changes no row is not proof of
//     adoption): casErr; anything else, or an error: unknown.
func (s *Store) settle(ctx context.Context, key string, undo []byte, durableCAS uint64, ttl time.Duration, casErr error) (uint64, error) {
	if undo != nil {
		_, err := s.durable.CompareAndSwap(ctx, key, undo, durableCAS, ttl)
		if err == nil {
			s.undone.Add(1)
			return 0, casErr
		}
		if !errors.Is(err, provider.ErrCASConflict) && !errors.Is(err, provider.ErrNotFound) {
			return 0, s.unknownOutcome("undo of a durable write whose cache CAS failed", err)
		}
	}
	state, err := s.durable.ClaimOf(ctx, key, durableCAS)
	switch {
	case err != nil:
		return 0, s.unknownOutcome("was the durable write adopted", err)
	case state == Claimed:
		s.adopted.Add(1)
		return 0, nil
	case state == NotClaimed:
		return 0, casErr
	}
	return 0, s.unknownOutcome("the durable write was replaced, and the durable tier cannot tell whether a revival adopted it first", nil)
}

// refresh keeps the durable copy from expiring long before a session kept
// alive by cache-only changes and reads: when this process does not know
// that the copy lives for at least RefreshBelow of ttl more, it slides the copy's expiry
// (one statement), or rewrites the copy if it is gone. Best effort: a
// failure is retried on the next request. value is the live record, or nil
// to read it from the cache if needed.
//
// ttl is capped by the session's own timeout, h.Timeout: a caller's TTL
// may be a guess (GetAndTouch's is the provider's hint when it does not
// yet know the session's timeout), and a durable copy that outlived the
// session would revive it after it expired.
func (s *Store) refresh(ctx context.Context, key string, h record.Header, ttl time.Duration, value []byte) {
	ttl = ownTTL(h, ttl)
	now := s.now()
	if until, ok := s.memo.durableUntil(key, h.DataSeq); ok && until.Sub(now) >= time.Duration(float64(ttl)*s.refreshBelow) {
		return
	}
	err := s.durable.Touch(ctx, key, ttl)
	if errors.Is(err, provider.ErrNotFound) {
		if value == nil {
			e, gerr := s.cache.Get(ctx, key)
			if gerr != nil {
				s.refreshErrors.Add(1)
				return
			}
			value = e.Value
		}
		var hv record.Header
		if hv, err = record.Parse(value); err == nil {
			h, ttl = hv, ownTTL(hv, ttl)
			_, err = s.durable.PutRecord(ctx, key, value, ttl)
		}
	}
	if err != nil {
		s.refreshErrors.Add(1)
		return
	}
	s.refreshes.Add(1)
	s.memo.durable(key, h.DataSeq, now.Add(ttl))
}

// ownTTL is ttl, capped by the session's own timeout when h (a live
// record) has one.
func ownTTL(h record.Header, ttl time.Duration) time.Duration {
	if !h.Removed && h.Timeout > 0 && h.Timeout < ttl {
		return h.Timeout
	}
	return ttl
}

// Touch slides the cache's TTL and, when due, the durable copy's (see
// refresh). A record the cache lost is revived first.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.dropUnconfirmed(ctx, key, s.cache.Touch(ctx, key, ttl))
	if errors.Is(err, provider.ErrNotFound) {
		if _, err = s.reviveOnce(ctx, key); err != nil {
			return err
		}
		err = s.cache.Touch(ctx, key, ttl)
	}
	if err != nil {
		return err
	}
	h, ok := s.memo.last(key)
	if !ok {
		ce, err := s.cache.Get(ctx, key)
		if err != nil {
			return nil // touched; the refresh waits for the next request
		}
		if h, err = record.Parse(ce.Value); err != nil {
			return nil
		}
		s.memo.seen(key, ce.CAS, h)
		s.refresh(ctx, key, h, ttl, ce.Value)
		return nil
	}
	s.refresh(ctx, key, h, ttl, nil)
	return nil
}

// GetAndTouch implements provider.GetAndToucher: the cache reads and
// touches in one step (its own GetAndTouch, or a Get and a CompareAndSwap
// of the unchanged value), a record the cache lost is revived first, and
// the durable copy's expiry is refreshed when due, as Touch does.
func (s *Store) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if err := s.check(ctx); err != nil {
		return provider.Entry{}, err
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		e, err := s.cacheGetAndTouch(ctx, key, ttl)
		err = s.dropUnconfirmed(ctx, key, err)
		switch {
		case errors.Is(err, provider.ErrNotFound):
			if _, err := s.reviveOnce(ctx, key); err != nil {
				return provider.Entry{}, err
			}
			continue
		case errors.Is(err, provider.ErrCASConflict):
			continue
		case err != nil:
			return provider.Entry{}, err
		}
		if h, err := record.Parse(e.Value); err == nil {
			s.memo.seen(key, e.CAS, h)
			s.refresh(ctx, key, h, ttl, e.Value)
		}
		return e, nil
	}
	return provider.Entry{}, fmt.Errorf("tiered: get and touch kept conflicting: %w", provider.ErrCASConflict)
}

// cacheGetAndTouch reads key from the cache and sets its TTL in one step.
func (s *Store) cacheGetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if gt, ok := s.cache.(provider.GetAndToucher); ok {
		return gt.GetAndTouch(ctx, key, ttl)
	}
	e, err := s.cache.Get(ctx, key)
	if err != nil {
		return provider.Entry{}, err
	}
	cas, err := s.cache.CompareAndSwap(ctx, key, e.Value, e.CAS, ttl)
	if err != nil {
		return provider.Entry{}, err
	}
	return provider.Entry{Value: e.Value, CAS: cas}, nil
}

// Delete removes key from both tiers. It returns ErrNotFound when neither
// had it.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	derr := s.durable.Delete(ctx, key)
	cerr := s.cache.Delete(ctx, key)
	s.memo.forget(key)
	switch {
	case derr != nil && !errors.Is(derr, provider.ErrNotFound):
		return derr
	case cerr != nil && !errors.Is(cerr, provider.ErrNotFound):
		return cerr
	case derr != nil && cerr != nil:
		return cerr
	}
	return nil
}

// TTL returns the live record's remaining time to live: the cache's when
// it can report it, else the durable copy's.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if r, ok := s.cache.(provider.TTLReader); ok {
		d, err := r.TTL(ctx, key)
		if !errors.Is(err, provider.ErrNotFound) {
			return d, err
		}
	}
	return s.durable.TTL(ctx, key)
}
