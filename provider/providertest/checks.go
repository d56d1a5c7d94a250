package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

var errSkipNoTTL = errors.New("providertest: store has no TTLReader")

// fastWait makes cross-provider waits poll quickly so checks run fast.
var fastWait = lock.Config{PollStart: 200 * time.Microsecond, PollCap: 5 * time.Millisecond, MaxWait: 30 * time.Second}

func newProvider(env Env, store provider.Store, cfg provider.Config) (API, error) {
	if cfg.Wait == (lock.Config{}) {
		cfg.Wait = fastWait
	}
	if env.HashIDs {
		cfg.HashIDs = true
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = env.Lifetime
	}
	return env.New(store, cfg)
}

// mustProviders returns n providers over store with cfg.
func mustProviders(env Env, store provider.Store, cfg provider.Config, n int) ([]API, error) {
	ps := make([]API, n)
	for i := range ps {
		p, err := newProvider(env, store, cfg)
		if err != nil {
			return nil, err
		}
		ps[i] = p
	}
	return ps, nil
}

// createSession stores a new session with the given values and timeout
// (zero: the provider's default) and returns its id.
func createSession(ctx context.Context, p API, timeout time.Duration, values map[string]any) (string, error) {
	id, err := session.NewID()
	if err != nil {
		return "", err
	}
	d := p.CreateNewStoreData(timeout)
	for k, v := range values {
		if err := d.Values.Set(k, v); err != nil {
			return "", err
		}
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, d, 0, true); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return id, nil
}

// readCounter reads the session's "counter" with a read-only request.
func readCounter(ctx context.Context, p API, id string) (int, error) {
	item, err := p.GetItem(ctx, id)
	if err != nil {
		return 0, err
	}
	return intValue(item, "counter")
}

func intValue(item *provider.Item, key string) (int, error) {
	v, _, err := session.Get[int](item.Data.Values, key)
	return v, err
}

// firstError collects the first error of concurrent workers.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// increment runs one exclusive request that adds one to counter.
func increment(ctx context.Context, p API, id string, inside *atomic.Int32) error {
	item, err := p.AcquireItem(ctx, id)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	if inside != nil {
		if n := inside.Add(1); n != 1 {
			return fmt.Errorf("I1 violated: %d requests hold the lock of one session at once", n)
		}
	}
	c, err := intValue(item, "counter")
	if err != nil {
		return err
	}
	if err := item.Data.Values.Set("counter", c+1); err != nil {
		return err
	}
	if inside != nil {
		inside.Add(-1)
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// CheckMutualExclusion (I1): procs providers, two goroutines each, run
// iters exclusive increments of one counter. No two ever hold the lock at
// once, and no increment is lost.
func CheckMutualExclusion(ctx context.Context, env Env, procs, iters int) error {
	ps, err := mustProviders(env, env.Store, provider.Config{}, procs)
	if err != nil {
		return err
	}
	id, err := createSession(ctx, ps[0], 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	var inside atomic.Int32
	var fe firstError
	var wg sync.WaitGroup
	for _, p := range ps {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range iters {
					if err := increment(ctx, p, id, &inside); err != nil {
						fe.set(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if err := fe.get(); err != nil {
		return err
	}
	got, err := readCounter(ctx, ps[0], id)
	if err != nil {
		return err
	}
	if want := procs * 2 * iters; got != want {
		return fmt.Errorf("I1 violated: counter is %d after %d acknowledged exclusive increments", got, want)
	}
	return nil
}

// CheckNoLostRelease (I2): while other requests read, reset and (through a
// store whose touch changes the CAS, like Couchbase's) touch the session,
// and its holder's lease is renewed concurrently, every release that
// reports success leaves the session unlocked. It runs until at least
// three releases met a CAS conflict, so a release that does not retry is
// caught; it fails as inconclusive if no conflict could be provoked.
func CheckNoLostRelease(ctx context.Context, env Env, minRounds int) error {
	holderStore := &CountingStore{Store: TouchChangesCAS{env.Store}}
	holder, err := newProvider(env, holderStore, provider.Config{})
	if err != nil {
		return err
	}
	others, err := mustProviders(env, TouchChangesCAS{env.Store}, provider.Config{}, 2)
	if err != nil {
		return err
	}
	id, err := createSession(ctx, holder, 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	const wantConflicts = 3
	conflicted := 0
	for round := 0; round < minRounds || conflicted < wantConflicts; round++ {
		if ctx.Err() != nil {
			return fmt.Errorf("I2 inconclusive: %d of %d releases met a CAS conflict before the deadline", conflicted, wantConflicts)
		}
		item, err := holder.GetItemExclusive(ctx, id)
		if err != nil {
			return fmt.Errorf("round %d: lock: %w", round, err)
		}
		stop := make(chan struct{})
		var ops atomic.Int64
		var wg sync.WaitGroup
		var fe firstError
		hammer := func(op func() error) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				fe.set(op())
				ops.Add(1)
			}
		}
		wg.Add(4)
		go hammer(func() error {
			_, err := others[0].GetItem(ctx, id)
			if err == nil || errors.Is(err, provider.ErrLocked) {
				return nil
			}
			return fmt.Errorf("GetItem during release: %w", err)
		})
		go hammer(func() error { return others[1].ResetItemTimeout(ctx, id) })
		go hammer(func() error { return others[0].ResetItemTimeout(ctx, id) })
		go hammer(func() error {
			err := others[1].RenewLease(ctx, id, item.LockID)
			if err == nil || errors.Is(err, provider.ErrLockLost) {
				return nil // lost once the holder has released
			}
			return fmt.Errorf("RenewLease during release: %w", err)
		})
		for ops.Load() < 8 && ctx.Err() == nil { // let the hammer get going
			waitBriefly(ctx)
		}
		before := holderStore.Conflicts.Load()
		if round%2 == 0 {
			err = holder.ReleaseItemExclusive(ctx, id, item.LockID)
		} else {
			c, _ := intValue(item, "counter")
			_ = item.Data.Values.Set("counter", c+1)
			err = holder.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
		}
		if holderStore.Conflicts.Load() > before {
			conflicted++
		}
		if err != nil {
			close(stop)
			wg.Wait()
			return fmt.Errorf("round %d: release: %w", round, err)
		}
		// The release reported success: the session must be free now.
		again, lerr := holder.GetItemExclusive(ctx, id)
		close(stop)
		wg.Wait()
		if err := fe.get(); err != nil {
			return err
		}
		var le *provider.LockedError
		if errors.As(lerr, &le) {
			return fmt.Errorf("I2 violated: round %d: release of lock %d reported success but the session is still locked by lock %d (lost release)", round, item.LockID, le.LockID)
		}
		if lerr != nil {
			return lerr
		}
		if err := holder.ReleaseItemExclusive(ctx, id, again.LockID); err != nil {
			return err
		}
	}
	return nil
}

// waitBriefly yields for a moment while a condition is polled.
func waitBriefly(ctx context.Context) {
	t := time.NewTimer(100 * time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(ctx context.Context, bound time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(bound)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("timed out after %v waiting for %s", bound, what)
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

const shortLease = 150 * time.Millisecond

// CheckFencedWrites (I3): a holder whose lock was taken over cannot write,
// release or remove: each returns an error matching ErrLockLost, and the
// stored session is the new holder's.
func CheckFencedWrites(ctx context.Context, env Env) error {
	ps, err := mustProviders(env, env.Store, provider.Config{Lease: shortLease}, 2)
	if err != nil {
		return err
	}
	a, b := ps[0], ps[1]
	id, err := createSession(ctx, a, 0, map[string]any{"owner": "nobody"})
	if err != nil {
		return err
	}
	stale, err := a.GetItemExclusive(ctx, id) // a stalls: never renews
	if err != nil {
		return err
	}
	cur, err := b.AcquireItem(ctx, id) // takes over after one lease
	if err != nil {
		return fmt.Errorf("takeover: %w", err)
	}
	if cur.LockID <= stale.LockID {
		return fmt.Errorf("takeover lock id %d is not above the stale lock id %d", cur.LockID, stale.LockID)
	}
	_ = stale.Data.Values.Set("owner", "stale")
	checkFenced := func(what string, err error) error {
		if !errors.Is(err, provider.ErrLockLost) {
			return fmt.Errorf("I3 violated: %s by a holder whose lock was taken over returned %v, want ErrLockLost", what, err)
		}
		return nil
	}
	if err := checkFenced("SetAndReleaseItemExclusive", a.SetAndReleaseItemExclusive(ctx, id, stale.Data, stale.LockID, false)); err != nil {
		return err
	}
	if err := checkFenced("ReleaseItemExclusive", a.ReleaseItemExclusive(ctx, id, stale.LockID)); err != nil {
		return err
	}
	if err := checkFenced("RemoveItem", a.RemoveItem(ctx, id, stale.LockID)); err != nil {
		return err
	}
	// The new holder still holds the lock, and its commit wins.
	if _, err := a.GetItemExclusive(ctx, id); !errors.Is(err, provider.ErrLocked) {
		return fmt.Errorf("I3 violated: after the stale holder's attempts the session should still be locked by the new holder, got %v", err)
	}
	_ = cur.Data.Values.Set("owner", "new")
	if err := b.SetAndReleaseItemExclusive(ctx, id, cur.Data, cur.LockID, false); err != nil {
		return fmt.Errorf("new holder's commit: %w", err)
	}
	if err := checkFenced("SetAndReleaseItemExclusive after the new holder released", a.SetAndReleaseItemExclusive(ctx, id, stale.Data, stale.LockID, false)); err != nil {
		return err
	}
	item, err := b.GetItem(ctx, id)
	if err != nil {
		return err
	}
	owner, _, err := session.Get[string](item.Data.Values, "owner")
	if err != nil {
		return err
	}
	if owner != "new" {
		return fmt.Errorf("I3 violated: stored owner is %q after a fenced write, want %q", owner, "new")
	}
	return nil
}

// CheckOwnTimeoutIsTTL (I4): a session whose handler set a 2-minute
// timeout under a 20-minute default has a TTL of 2 minutes after every
// operation that keeps it alive. Before each operation the TTL is set to an
// hour behind the provider's back, so each operation must set it itself.
func CheckOwnTimeoutIsTTL(ctx context.Context, env Env) error {
	ttlr, ok := env.Store.(provider.TTLReader)
	if !ok {
		return errSkipNoTTL
	}
	const own = 2 * time.Minute
	cfg := provider.Config{DefaultTimeout: 20 * time.Minute}
	p, err := newProvider(env, env.Store, cfg)
	if err != nil {
		return err
	}
	free, err := newProvider(env, env.Store, provider.Config{DefaultTimeout: 20 * time.Minute, LockFree: true})
	if err != nil {
		return err
	}
	id, err := session.NewID()
	if err != nil {
		return err
	}
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	d := p.CreateNewStoreData(0)
	if d.Timeout() != 20*time.Minute {
		return fmt.Errorf("new session timeout %v, want the 20m default", d.Timeout())
	}
	if err := d.SetTimeout(own); err != nil {
		return err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, d, 0, true); err != nil {
		return err
	}
	check := func(op string) error {
		ttl, err := ttlr.TTL(ctx, key)
		if err != nil {
			return fmt.Errorf("after %s: read TTL: %w", op, err)
		}
		if ttl < own-15*time.Second || ttl > own+5*time.Second {
			return fmt.Errorf("I4 violated: after %s the TTL is %v, want the session's own timeout %v", op, ttl.Round(time.Second), own)
		}
		return nil
	}
	if err := check("SetAndReleaseItemExclusive(new)"); err != nil {
		return err
	}
	if err := runTTLSteps(ctx, env.Store, key, time.Hour, ttlSteps(ctx, p, free, env.Store, id, key, time.Hour), check); err != nil {
		return err
	}
	item, err := p.GetItem(ctx, id)
	if err != nil {
		return err
	}
	if item.Data.Timeout() != own {
		return fmt.Errorf("I4 violated: stored timeout is %v, want %v", item.Data.Timeout(), own)
	}
	return nil
}

// CheckLockAndDataAgree (I5): readers never see the session unlocked with
// data older than the last acknowledged commit, and never see data while it
// is locked.
func CheckLockAndDataAgree(ctx context.Context, env Env, iters int) error {
	ps, err := mustProviders(env, env.Store, provider.Config{}, 3)
	if err != nil {
		return err
	}
	id, err := createSession(ctx, ps[0], 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	var acked atomic.Int64
	var fe firstError
	var writers, readers sync.WaitGroup
	done := make(chan struct{})
	for _, p := range ps[:2] {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for range iters {
				if err := increment(ctx, p, id, nil); err != nil {
					fe.set(err)
					return
				}
				acked.Add(1)
			}
		}()
	}
	reads := atomic.Int64{}
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				before := acked.Load()
				item, err := ps[2].GetItem(ctx, id)
				if errors.Is(err, provider.ErrLocked) {
					continue
				}
				if err != nil {
					fe.set(err)
					return
				}
				reads.Add(1)
				c, err := intValue(item, "counter")
				if err != nil {
					fe.set(err)
					return
				}
				if int64(c) < before {
					fe.set(fmt.Errorf("I5 violated: a reader saw the session unlocked with counter %d after %d commits were acknowledged", c, before))
					return
				}
			}
		}()
	}
	writers.Wait()
	close(done)
	readers.Wait()
	if err := fe.get(); err != nil {
		return err
	}
	c, err := readCounter(ctx, ps[2], id)
	if err != nil {
		return err
	}
	if int64(c) != acked.Load() {
		return fmt.Errorf("I5 violated: counter %d, acknowledged commits %d", c, acked.Load())
	}
	// One record: removing the session leaves no lock behind.
	held, err := ps[0].AcquireItem(ctx, id)
	if err != nil {
		return err
	}
	if err := ps[0].RemoveItem(ctx, id, held.LockID); err != nil {
		return err
	}
	if _, err := ps[1].GetItemExclusive(ctx, id); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("I5 violated: after RemoveItem GetItemExclusive returned %v, want ErrNotFound", err)
	}
	return nil
}

// CheckInitializeItemOnce (I6): the InitializeItem flag of an
// uninitialized session is handed to exactly one of many concurrent
// read-only and exclusive requests.
func CheckInitializeItemOnce(ctx context.Context, env Env, requests int) error {
	ps, err := mustProviders(env, env.Store, provider.Config{}, 2)
	if err != nil {
		return err
	}
	for s := range 3 {
		id, err := session.NewID()
		if err != nil {
			return err
		}
		if err := ps[0].CreateUninitializedItem(ctx, id, 0); err != nil {
			return err
		}
		if err := ps[1].CreateUninitializedItem(ctx, id, 0); !errors.Is(err, provider.ErrExists) {
			return fmt.Errorf("second CreateUninitializedItem returned %v, want ErrExists", err)
		}
		var flagged atomic.Int32
		var fe firstError
		var wg sync.WaitGroup
		for i := range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := ps[i%2]
				var item *provider.Item
				var err error
				if i%3 == 0 {
					item, err = p.ReadItem(ctx, id)
				} else {
					item, err = p.AcquireItem(ctx, id)
				}
				if err != nil {
					fe.set(err)
					return
				}
				if item.Actions&session.InitializeItem != 0 {
					flagged.Add(1)
				}
				if item.LockID != 0 {
					fe.set(p.ReleaseItemExclusive(ctx, id, item.LockID))
				}
			}()
		}
		wg.Wait()
		if err := fe.get(); err != nil {
			return err
		}
		if n := flagged.Load(); n != 1 {
			return fmt.Errorf("I6 violated: session %d: InitializeItem was handed to %d requests, want exactly 1", s, n)
		}
	}
	return nil
}

// CheckLockIDsIncrease (I7): every lock taken on a session has a higher id
// than the one before: across releases, takeovers, removal and
// re-creation, and under concurrency.
func CheckLockIDsIncrease(ctx context.Context, env Env) error {
	// Only the abandoned lock and its taker have a short lease (a waiter
	// takes a lock over after one lease of its own, so a taker with the
	// default lease would wait 10 s); every other lock is held by a
	// provider with the default lease, so a slow machine cannot expire it
	// between acquire and release.
	ps, err := mustProviders(env, env.Store, provider.Config{}, 2)
	if err != nil {
		return err
	}
	short, err := mustProviders(env, env.Store, provider.Config{Lease: shortLease}, 2)
	if err != nil {
		return err
	}
	a := ps[0]
	id, err := createSession(ctx, a, 0, nil)
	if err != nil {
		return err
	}
	var ids []uint64
	lockOnce := func(p API) (*provider.Item, error) {
		it, err := p.AcquireItem(ctx, id)
		if err != nil {
			return nil, err
		}
		ids = append(ids, it.LockID)
		return it, nil
	}
	for range 3 {
		it, err := lockOnce(a)
		if err != nil {
			return err
		}
		if err := a.ReleaseItemExclusive(ctx, id, it.LockID); err != nil {
			return err
		}
	}
	if _, err := lockOnce(short[0]); err != nil { // abandoned: short[1] takes over
		return err
	}
	it, err := lockOnce(short[1])
	if err != nil {
		return err
	}
	if err := short[1].RemoveItem(ctx, id, it.LockID); err != nil {
		return err
	}
	d := a.CreateNewStoreData(0)
	if err := a.SetAndReleaseItemExclusive(ctx, id, d, 0, true); err != nil {
		return fmt.Errorf("re-create after remove: %w", err)
	}
	it, err = lockOnce(a)
	if err != nil {
		return err
	}
	if err := a.ReleaseItemExclusive(ctx, id, it.LockID); err != nil {
		return err
	}
	// Concurrent acquisitions: ids appended while the lock is held are
	// in acquisition order.
	var mu sync.Mutex
	var fe firstError
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[g%2]
			for range 10 {
				it, err := p.AcquireItem(ctx, id)
				if err != nil {
					fe.set(err)
					return
				}
				mu.Lock()
				ids = append(ids, it.LockID)
				mu.Unlock()
				if err := p.ReleaseItemExclusive(ctx, id, it.LockID); err != nil {
					fe.set(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := fe.get(); err != nil {
		return err
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			return fmt.Errorf("I7 violated: lock id %d followed lock id %d (sequence %v)", ids[i], ids[i-1], ids)
		}
	}
	return nil
}

// CheckLeaseTakeover: a holder that stops renewing (a crashed process)
// loses its lock to a waiter after one lease, and its late release is
// fenced.
func CheckLeaseTakeover(ctx context.Context, env Env) error {
	return checkAbandonedLockTakenOver(ctx, env, provider.Config{Lease: shortLease}, false)
}

// checkAbandonedLockTakenOver: a lock taken and never renewed is broken by
// a waiter from another provider, and the abandoned holder is fenced (its
// release, or its commit when commit is set).
func checkAbandonedLockTakenOver(ctx context.Context, env Env, cfg provider.Config, commit bool) error {
	ps, err := mustProviders(env, env.Store, cfg, 2)
	if err != nil {
		return err
	}
	id, err := createSession(ctx, ps[0], 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	abandoned, err := ps[0].GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if err := increment(ctx, ps[1], id, nil); err != nil {
		return fmt.Errorf("waiter after an abandoned lock: %w", err)
	}
	what, late := "release", ps[0].ReleaseItemExclusive(ctx, id, abandoned.LockID)
	if commit {
		what, late = "commit", ps[0].SetAndReleaseItemExclusive(ctx, id, abandoned.Data, abandoned.LockID, false)
	}
	if !errors.Is(late, provider.ErrLockLost) {
		return fmt.Errorf("the abandoned holder's late %s returned %v, want ErrLockLost", what, late)
	}
	return nil
}

// leaser is implemented by *provider.Provider.
type leaser interface {
	KeepLease(ctx context.Context, id string, lockID uint64) *provider.Lease
}

// CheckLivingHolderKeepsLease: a holder that renews its lease keeps the
// lock for several lease periods while another request waits; its commit
// succeeds and the waiter then sees it.
func CheckLivingHolderKeepsLease(ctx context.Context, env Env) error {
	// A longer lease than shortLease: the renewals go through the store
	// (PostgreSQL for tiered), and on a loaded machine 150 ms, and then
	// 450 ms (a renewal every 150 ms), left too little room for a
	// renewal's round trip (CI at load average 15-20 saw a takeover on
	// tiered, the witness scheme and the text path). A second costs the
	// ten renewals below about 3.3 s.
	ps, err := mustProviders(env, env.Store, provider.Config{Lease: time.Second}, 2)
	if err != nil {
		return err
	}
	a, ok := ps[0].(leaser)
	if !ok {
		return errors.New("provider does not implement KeepLease")
	}
	id, err := createSession(ctx, ps[0], 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	item, err := ps[0].GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	lease := a.KeepLease(ctx, id, item.LockID)
	waiterDone := make(chan error, 1)
	go func() { waiterDone <- increment(ctx, ps[1], id, nil) }()
	// Hold until the lease has been renewed several times (each renewal
	// changes the lock's stamp), i.e. for more than three lease periods
	// of renewals, without the waiter getting in.
	stamps := map[uint64]bool{}
	err = waitFor(ctx, 20*time.Second, "lease renewals", func() (bool, error) {
		_, err := ps[1].GetItem(ctx, id)
		var le *provider.LockedError
		if !errors.As(err, &le) {
			return false, fmt.Errorf("while the living holder holds the lock, GetItem returned %v, want ErrLocked", err)
		}
		if le.LockID != item.LockID {
			return false, fmt.Errorf("lock %d of a living, renewing holder was taken over by lock %d", item.LockID, le.LockID)
		}
		stamps[le.Stamp] = true
		return len(stamps) >= 10, nil
	})
	if err != nil {
		lease.Stop()
		return err
	}
	select {
	case err := <-waiterDone:
		lease.Stop()
		return fmt.Errorf("the waiter finished (%v) while the living holder held the lock", err)
	default:
	}
	lease.Stop()
	select {
	case <-lease.Lost():
		return errors.New("the living holder's lease was reported lost")
	default:
	}
	if err := item.Data.Values.Set("counter", 100); err != nil {
		return err
	}
	if err := ps[0].SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
		return fmt.Errorf("living holder's commit after several leases: %w", err)
	}
	if err := <-waiterDone; err != nil {
		return err
	}
	got, err := ps[1].GetItem(ctx, id)
	if err != nil {
		return err
	}
	if c, _ := intValue(got, "counter"); c != 101 {
		return fmt.Errorf("counter %d, want 101 (the holder's 100, then the waiter's increment)", c)
	}
	return nil
}

// CheckLockTimeoutWithoutLeases: with leases off (ASP.NET behaviour) a
// lock is taken over once it has been held unchanged for LockTimeout, and
// the timed-out holder's commit is fenced.
func CheckLockTimeoutWithoutLeases(ctx context.Context, env Env) error {
	return checkAbandonedLockTakenOver(ctx, env, provider.Config{Lease: -1, LockTimeout: 200 * time.Millisecond}, true)
}

// CheckLockFreeMerge: in lock-free mode (exclusiveAccess=false) requests
// never wait, concurrent writes of different keys are all kept, and on one
// key the last writer wins.
func CheckLockFreeMerge(ctx context.Context, env Env, writers int) error {
	ps, err := mustProviders(env, env.Store, provider.Config{LockFree: true}, 2)
	if err != nil {
		return err
	}
	locking, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	id, err := createSession(ctx, ps[0], 0, map[string]any{"base": "kept"})
	if err != nil {
		return err
	}
	var fe firstError
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[i%2]
			item, err := p.GetItemExclusive(ctx, id)
			if err != nil {
				fe.set(err)
				return
			}
			if item.LockID != 0 {
				fe.set(fmt.Errorf("lock-free GetItemExclusive took lock %d", item.LockID))
				return
			}
			if err := item.Data.Values.Set(fmt.Sprintf("k%03d", i), i); err != nil {
				fe.set(err)
				return
			}
			if err := item.Data.Values.Set("same", i); err != nil {
				fe.set(err)
				return
			}
			fe.set(p.SetAndReleaseItemExclusive(ctx, id, item.Data, 0, false))
		}()
	}
	wg.Wait()
	if err := fe.get(); err != nil {
		return err
	}
	item, err := ps[0].GetItem(ctx, id)
	if err != nil {
		return err
	}
	var missing []string
	for i := range writers {
		if v, ok, err := session.Get[int](item.Data.Values, fmt.Sprintf("k%03d", i)); err != nil || !ok || v != i {
			missing = append(missing, fmt.Sprintf("k%03d", i))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lock-free writes lost: %s", strings.Join(missing, ","))
	}
	if base, _, _ := session.Get[string](item.Data.Values, "base"); base != "kept" {
		return fmt.Errorf("untouched key lost: base=%q", base)
	}
	same, ok, err := session.Get[int](item.Data.Values, "same")
	if err != nil || !ok || same < 0 || same >= writers {
		return fmt.Errorf("same-key value %d (%v, %v) is not one of the written values", same, ok, err)
	}
	// Never waits: a lock held in locking mode does not block it.
	held, err := locking.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if _, err := ps[1].GetItemExclusive(ctx, id); err != nil {
		return fmt.Errorf("lock-free GetItemExclusive waited or failed on a locked session: %w", err)
	}
	return locking.ReleaseItemExclusive(ctx, id, held.LockID)
}

// CheckReadOnlyWaitsForWriter: a read-only request that arrives while a
// writer holds the lock waits, and then sees the writer's commit.
func CheckReadOnlyWaitsForWriter(ctx context.Context, env Env) error {
	writer, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	readerStore := &CountingStore{Store: env.Store}
	reader, err := newProvider(env, readerStore, provider.Config{})
	if err != nil {
		return err
	}
	id, err := createSession(ctx, writer, 0, map[string]any{"counter": 0})
	if err != nil {
		return err
	}
	item, err := writer.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	type result struct {
		item *provider.Item
		err  error
	}
	got := make(chan result, 1)
	go func() {
		it, err := reader.ReadItem(ctx, id)
		got <- result{it, err}
	}()
	// Wait until the reader has found the session locked at least twice.
	if err := waitFor(ctx, 10*time.Second, "the reader to poll", func() (bool, error) {
		return readerStore.Gets.Load() >= 2, nil
	}); err != nil {
		return err
	}
	select {
	case r := <-got:
		return fmt.Errorf("a read-only request returned (%v) while a writer held the lock", r.err)
	default:
	}
	if err := item.Data.Values.Set("counter", 1); err != nil {
		return err
	}
	if err := writer.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
		return err
	}
	r := <-got
	if r.err != nil {
		return r.err
	}
	if c, _ := intValue(r.item, "counter"); c != 1 {
		return fmt.Errorf("the waiting reader saw counter %d, want the writer's commit 1", c)
	}
	if r.item.LockID != 0 {
		return fmt.Errorf("a read-only request got lock %d", r.item.LockID)
	}
	return nil
}

// CheckSemantics covers the ASP.NET calls one by one.
func CheckSemantics(ctx context.Context, env Env) error {
	p, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	unknown, _ := session.NewID()
	if _, err := p.GetItem(ctx, unknown); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("GetItem(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := p.GetItemExclusive(ctx, unknown); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("GetItemExclusive(unknown) = %v, want ErrNotFound", err)
	}
	if err := p.ResetItemTimeout(ctx, unknown); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("ResetItemTimeout(unknown) = %v, want ErrNotFound", err)
	}
	type profile struct {
		Name  string
		Tags  []string
		Score float64
		When  time.Time
	}
	want := profile{Name: "ada", Tags: []string{"a", "b"}, Score: 1.5, When: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	id, err := createSession(ctx, p, 0, map[string]any{"profile": want, "n": 7})
	if err != nil {
		return err
	}
	d := p.CreateNewStoreData(0)
	if err := p.SetAndReleaseItemExclusive(ctx, id, d, 0, true); !errors.Is(err, provider.ErrExists) {
		return fmt.Errorf("new item over a live session = %v, want ErrExists", err)
	}
	item, err := p.GetItem(ctx, id)
	if err != nil {
		return err
	}
	got, ok, err := session.Get[profile](item.Data.Values, "profile")
	if err != nil || !ok || got.Name != want.Name || len(got.Tags) != 2 || got.Score != want.Score || !got.When.Equal(want.When) {
		return fmt.Errorf("profile round trip: got %+v (%v, %v), want %+v", got, ok, err, want)
	}
	held, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	for name, get := range map[string]func(context.Context, string) (*provider.Item, error){"GetItem": p.GetItem, "GetItemExclusive": p.GetItemExclusive} {
		_, err := get(ctx, id)
		var le *provider.LockedError
		if !errors.As(err, &le) || le.LockID != held.LockID || le.LockAge < 0 {
			return fmt.Errorf("%s on a locked session = %v, want a LockedError for lock %d", name, err, held.LockID)
		}
	}
	if err := p.ReleaseItemExclusive(ctx, id, held.LockID); err != nil {
		return err
	}
	item, err = p.GetItem(ctx, id)
	if err != nil {
		return err
	}
	if n, _, _ := session.Get[int](item.Data.Values, "n"); n != 7 {
		return fmt.Errorf("after a release without changes n=%d, want 7", n)
	}
	held, err = p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if err := p.RemoveItem(ctx, id, held.LockID); err != nil {
		return err
	}
	if _, err := p.GetItem(ctx, id); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("GetItem after RemoveItem = %v, want ErrNotFound", err)
	}
	if err := p.ResetItemTimeout(ctx, id); !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("ResetItemTimeout after RemoveItem = %v, want ErrNotFound", err)
	}
	if err := p.CreateUninitializedItem(ctx, id, 0); err != nil {
		return fmt.Errorf("CreateUninitializedItem over a removed session: %w", err)
	}
	item, err = p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if item.Actions&session.InitializeItem == 0 || item.Data.Values.Len() != 0 {
		return fmt.Errorf("re-created uninitialized session: actions %v, %d values; want InitializeItem and none", item.Actions, item.Data.Values.Len())
	}
	return p.ReleaseItemExclusive(ctx, id, item.LockID)
}

// CheckBadInput: malformed ids never reach the store; corrupt records and
// oversized sessions give clear errors and lose nothing; a cancelled
// context writes nothing.
func CheckBadInput(ctx context.Context, env Env) error {
	counting := &CountingStore{Store: env.Store}
	p, err := newProvider(env, counting, provider.Config{MaxValuesSize: 64 << 10})
	if err != nil {
		return err
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 31), strings.Repeat("A", 32), "../../../../etc/passwd/aaaaaaaaa", strings.Repeat("a", 31) + " ", strings.Repeat("a", 31) + "\x00", strings.Repeat("a", 10000)} {
		if _, err := p.GetItem(ctx, bad); !errors.Is(err, session.ErrInvalidID) {
			return fmt.Errorf("GetItem(%.40q) = %v, want ErrInvalidID", bad, err)
		}
		if _, err := p.AcquireItem(ctx, bad); !errors.Is(err, session.ErrInvalidID) {
			return fmt.Errorf("AcquireItem(%.40q) = %v, want ErrInvalidID", bad, err)
		}
		if err := p.SetAndReleaseItemExclusive(ctx, bad, p.CreateNewStoreData(0), 0, true); !errors.Is(err, session.ErrInvalidID) {
			return fmt.Errorf("SetAndReleaseItemExclusive(%.40q) = %v, want ErrInvalidID", bad, err)
		}
	}
	if n := counting.Ops(); n != 0 {
		return fmt.Errorf("malformed ids caused %d store operations, want 0", n)
	}
	// A corrupt record: a clear error, and it is not overwritten.
	id, _ := session.NewID()
	key, _ := p.Key(id)
	garbage := []byte("SL\x01 this is not a session record")
	if _, err := env.Store.Add(ctx, key, garbage, time.Minute); err != nil {
		return err
	}
	if _, err := p.GetItem(ctx, id); !errors.Is(err, provider.ErrCorrupt) {
		return fmt.Errorf("GetItem(corrupt) = %v, want ErrCorrupt", err)
	}
	if _, err := p.GetItemExclusive(ctx, id); !errors.Is(err, provider.ErrCorrupt) {
		return fmt.Errorf("GetItemExclusive(corrupt) = %v, want ErrCorrupt", err)
	}
	if _, err := p.AcquireItem(ctx, id); !errors.Is(err, provider.ErrCorrupt) {
		return fmt.Errorf("AcquireItem(corrupt) = %v, want ErrCorrupt at once", err)
	}
	if err := p.ResetItemTimeout(ctx, id); !errors.Is(err, provider.ErrCorrupt) {
		return fmt.Errorf("ResetItemTimeout(corrupt) = %v, want ErrCorrupt", err)
	}
	if e, err := env.Store.Get(ctx, key); err != nil || string(e.Value) != string(garbage) {
		return fmt.Errorf("the corrupt record was changed: %q, %v", e.Value, err)
	}
	// Oversized: refused, the stored session unchanged.
	id, err = createSession(ctx, p, 0, map[string]any{"small": "yes"})
	if err != nil {
		return err
	}
	held, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if err := held.Data.Values.Set("big", strings.Repeat("x", 100<<10)); err != nil {
		return err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false); !errors.Is(err, provider.ErrTooLarge) {
		return fmt.Errorf("oversized commit = %v, want ErrTooLarge", err)
	}
	// The refusal will recur: the same write released the lock, so nobody
	// waits a lease for it.
	again, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return fmt.Errorf("after a refused oversized commit the session is not free: GetItemExclusive = %w", err)
	}
	if again.Data.Values.Has("big") || !again.Data.Values.Has("small") {
		return fmt.Errorf("oversized commit changed the stored session: keys %v", again.Data.Values.Keys())
	}
	if err := p.ReleaseItemExclusive(ctx, id, again.LockID); err != nil {
		return err
	}
	// A cancelled context: an error wrapping context.Canceled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.GetItemExclusive(cctx, id); !errors.Is(err, context.Canceled) {
		return fmt.Errorf("GetItemExclusive(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := p.GetItem(ctx, id); err != nil {
		return fmt.Errorf("after a cancelled request the session is not readable: %w", err)
	}
	return nil
}

// CheckExpiry: a session expires after its own timeout, locked or not: an
// expired session is not found, and no lock outlives its data.
func CheckExpiry(ctx context.Context, env Env) error {
	p, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	idle, err := createSession(ctx, p, time.Second, map[string]any{"a": 1})
	if err != nil {
		return err
	}
	locked, err := createSession(ctx, p, time.Second, map[string]any{"a": 1})
	if err != nil {
		return err
	}
	if _, err := p.GetItemExclusive(ctx, locked); err != nil {
		return err
	}
	for _, id := range []string{idle, locked} {
		if err := waitFor(ctx, 10*time.Second, "a 1-second session to expire", func() (bool, error) {
			// Peek at the store directly: a read through the provider
			// would slide the expiry.
			key, _ := p.Key(id)
			_, err := env.Store.Get(ctx, key)
			if errors.Is(err, provider.ErrNotFound) {
				return true, nil
			}
			return false, err
		}); err != nil {
			return err
		}
		if _, err := p.GetItemExclusive(ctx, id); !errors.Is(err, provider.ErrNotFound) {
			return fmt.Errorf("GetItemExclusive on an expired session = %v, want ErrNotFound", err)
		}
	}
	return nil
}

// CheckStaleHolderAfterRecreation (I7 across incarnations): a holder
// whose session expired (here: vanished from the store) and was created
// again under the same id holds a lock id of the old incarnation, which
// matches no lock of the new one: its commit, release and removal are
// fenced, and the new holder keeps its lock and its data.
func CheckStaleHolderAfterRecreation(ctx context.Context, env Env) error {
	ps, err := mustProviders(env, env.Store, provider.Config{}, 2)
	if err != nil {
		return err
	}
	h, x := ps[0], ps[1]
	id, err := createSession(ctx, h, 0, map[string]any{"owner": "first"})
	if err != nil {
		return err
	}
	stale, err := h.GetItemExclusive(ctx, id) // H stalls
	if err != nil {
		return err
	}
	key, err := h.Key(id)
	if err != nil {
		return err
	}
	if err := env.Store.Delete(ctx, key); err != nil { // the record expires
		return err
	}
	d := x.CreateNewStoreData(0)
	if err := d.Values.Set("owner", "second"); err != nil {
		return err
	}
	if err := x.SetAndReleaseItemExclusive(ctx, id, d, 0, true); err != nil {
		return fmt.Errorf("create the session again: %w", err)
	}
	cur, err := x.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if cur.LockID == stale.LockID {
		return fmt.Errorf("I7 violated: the new incarnation granted lock id %d, the id a stale holder of the old one holds", cur.LockID)
	}
	_ = stale.Data.Values.Set("owner", "stale")
	for _, w := range []struct {
		what string
		err  error
	}{
		{"SetAndReleaseItemExclusive", h.SetAndReleaseItemExclusive(ctx, id, stale.Data, stale.LockID, false)},
		{"ReleaseItemExclusive", h.ReleaseItemExclusive(ctx, id, stale.LockID)},
		{"RemoveItem", h.RemoveItem(ctx, id, stale.LockID)},
		{"RenewLease", h.RenewLease(ctx, id, stale.LockID)},
	} {
		if !errors.Is(w.err, provider.ErrLockLost) {
			return fmt.Errorf("I7 violated: %s by a holder of the expired incarnation returned %v, want ErrLockLost", w.what, w.err)
		}
	}
	if _, err := h.GetItem(ctx, id); !errors.Is(err, provider.ErrLocked) {
		return fmt.Errorf("I7 violated: the new holder should still hold the lock, GetItem = %v", err)
	}
	if err := x.ReleaseItemExclusive(ctx, id, cur.LockID); err != nil {
		return fmt.Errorf("the new holder's release: %w", err)
	}
	item, err := h.GetItem(ctx, id)
	if err != nil {
		return err
	}
	if owner, _, _ := session.Get[string](item.Data.Values, "owner"); owner != "second" {
		return fmt.Errorf("I7 violated: stored owner %q, want %q", owner, "second")
	}
	return nil
}

// CheckFencedMessages: a fenced write says what happened: a caller that
// holds no lock, or whose lock it already released, is told so, not that a
// lock was taken over or broken.
func CheckFencedMessages(ctx context.Context, env Env) error {
	p, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	id, err := createSession(ctx, p, 0, nil)
	if err != nil {
		return err
	}
	it, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	want := func(what string, err error, says string) error {
		if !errors.Is(err, provider.ErrLockLost) || !strings.Contains(err.Error(), says) {
			return fmt.Errorf("%s = %v, want ErrLockLost saying %q", what, err, says)
		}
		return nil
	}
	if err := want("a commit with lock id 0", p.SetAndReleaseItemExclusive(ctx, id, it.Data, 0, false), "holds no lock"); err != nil {
		return err
	}
	if err := p.ReleaseItemExclusive(ctx, id, it.LockID); err != nil {
		return err
	}
	if err := want("a second commit after the release", p.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false), "already released"); err != nil {
		return err
	}
	return want("a second release", p.ReleaseItemExclusive(ctx, id, it.LockID), "already released")
}

// CheckOwnTimeoutUnderRaces (I4 under concurrency): a read-only request
// (GetItem, ResetItemTimeout) has its second store operation held while
// another request commits a new timeout for the session; after both, the
// TTL is the session's stored timeout. Run with the store's GetAndTouch
// and without it, and with the reader's memo of the session's timeout cold
// and warm.
func CheckOwnTimeoutUnderRaces(ctx context.Context, env Env) error {
	ttlr, ok := env.Store.(provider.TTLReader)
	if !ok {
		return errSkipNoTTL
	}
	const before, after = 2 * time.Minute, 30 * time.Minute
	cfg := provider.Config{DefaultTimeout: 20 * time.Minute}
	w, err := newProvider(env, env.Store, cfg)
	if err != nil {
		return err
	}
	ops := []struct {
		name string
		run  func(API, string) error
	}{
		{"GetItem", func(p API, id string) error { _, err := p.GetItem(ctx, id); return err }},
		{"ResetItemTimeout", func(p API, id string) error { return p.ResetItemTimeout(ctx, id) }},
	}
	for _, op := range ops {
		for _, hideGAT := range []bool{false, true} {
			for _, warm := range []bool{false, true} {
				what := fmt.Sprintf("%s (GetAndTouch hidden: %v, memo warm: %v)", op.name, hideGAT, warm)
				id, err := createSession(ctx, w, before, map[string]any{"a": 1})
				if err != nil {
					return err
				}
				// Cold, the reader's second operation follows its read.
				// Warm, the warming read took two operations (its hint
				// was the default); the second read's second operation
				// follows its read, if it has one.
				holdAt := int64(2)
				if warm {
					holdAt = 4
				}
				gated, gate := newOpGate(env.Store, holdAt, hideGAT)
				r, err := newProvider(env, gated, cfg)
				if err != nil {
					return err
				}
				if warm {
					if err := op.run(r, id); err != nil {
						return fmt.Errorf("%s: warming read: %w", what, err)
					}
				}
				done := make(chan error, 1)
				go func() { done <- op.run(r, id) }()
				var readErr error
				finished := false
				select {
				case <-gate.Reached:
				case readErr = <-done:
					finished = true
				case <-ctx.Done():
					return ctx.Err()
				}
				// Between the reader's operations, a commit changes the
				// session's timeout.
				it, err := w.AcquireItem(ctx, id)
				if err != nil {
					close(gate.Release)
					return err
				}
				if err := it.Data.SetTimeout(after); err != nil {
					close(gate.Release)
					return err
				}
				if err := w.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false); err != nil {
					close(gate.Release)
					return fmt.Errorf("%s: commit: %w", what, err)
				}
				close(gate.Release)
				if !finished {
					readErr = <-done
				}
				if readErr != nil {
					return fmt.Errorf("%s: %w", what, readErr)
				}
				key, _ := w.Key(id)
				ttl, err := ttlr.TTL(ctx, key)
				if err != nil {
					return err
				}
				if ttl < after-15*time.Second || ttl > after+5*time.Second {
					return fmt.Errorf("I4 violated: after %s raced a commit of a %v timeout, the TTL is %v", what, after, ttl.Round(time.Second))
				}
			}
		}
	}
	return nil
}

// CheckNoEarlyExpiry (I4's lower bound): a session never expires before
// its own timeout, whatever the store's clock granularity (memcached's
// ticks once a second). Presence is judged only at instants before the
// deadline: a miss whose read ended before start + timeout (start taken
// before the session was written) is an early expiry. The deadline has
// passed once it has by either clock, the monotonic one or the wall
// clock: a store that keeps time by the wall clock (PostgreSQL's now())
// sees a virtual machine's wall clock jump ahead of the monotonic one
// (seen once in CI: a 1 s session gone 998 ms after it was written, as
// the monotonic clock counts), which is no early expiry of the store's.
func CheckNoEarlyExpiry(ctx context.Context, env Env) error {
	p, err := newProvider(env, env.Store, provider.Config{})
	if err != nil {
		return err
	}
	const timeout = time.Second
	for range 2 {
		start := time.Now()
		id, err := createSession(ctx, p, timeout, map[string]any{"a": 1})
		if err != nil {
			return err
		}
		key, _ := p.Key(id)
		for {
			_, err := env.Store.Get(ctx, key) // a peek: the provider would slide the expiry
			seen := time.Now()
			mono, wall := seen.Sub(start), seen.Round(0).Sub(start.Round(0)) // Round(0): the wall clock alone
			if mono >= timeout || wall >= timeout {
				break
			}
			if errors.Is(err, provider.ErrNotFound) {
				return fmt.Errorf("I4 violated: a %v session was gone %v after it was written (%v by the wall clock)", timeout, mono.Round(time.Millisecond), wall.Round(time.Millisecond))
			}
			if err != nil {
				return err
			}
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	return nil
}

// CheckLifetime (I4 with a lifetime): a session with a 1-hour lifetime and
// a 20-minute timeout, used on every step, has after every operation a
// TTL of what remains of its lifetime once that is less than its timeout;
// once its lifetime is over it is gone for every operation, its holder's
// commit is fenced, the first read replaces it by a tombstone (so no
// server, whatever its clock, and no durable tier keeps it), and a session
// created in its place continues its lock ids. The providers' clock (Config.Now) is moved forward; the
// store's TTLs are real.
func CheckLifetime(ctx context.Context, env Env) error {
	ttlr, ok := env.Store.(provider.TTLReader)
	if !ok {
		return errSkipNoTTL
	}
	const timeout, lifetime = 20 * time.Minute, time.Hour
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfg := provider.Config{DefaultTimeout: timeout, Lifetime: lifetime, Now: now}
	p, err := newProvider(env, env.Store, cfg)
	if err != nil {
		return err
	}
	cfg.LockFree = true
	free, err := newProvider(env, env.Store, cfg)
	if err != nil {
		return err
	}
	created := now()
	id, err := createSession(ctx, p, 0, map[string]any{"a": 1})
	if err != nil {
		return err
	}
	key, err := p.Key(id)
	if err != nil {
		return err
	}
	deadline := created.Add(lifetime)
	checkTTL := func(op string, want time.Duration) error {
		ttl, err := ttlr.TTL(ctx, key)
		if err != nil {
			return fmt.Errorf("after %s: read TTL: %w", op, err)
		}
		if ttl < want-15*time.Second || ttl > want+5*time.Second {
			return fmt.Errorf("I4 violated: after %s the TTL is %v, want %v (the session's timeout or what remains of its lifetime, whichever is less)", op, ttl.Round(time.Second), want.Round(time.Second))
		}
		return nil
	}
	if err := checkTTL("create", timeout); err != nil {
		return err
	}
	item, err := p.GetItem(ctx, id)
	if err != nil {
		return err
	}
	if d := item.Deadline.Sub(deadline); d < -time.Second || d > time.Second {
		return fmt.Errorf("Item.Deadline %v, want the creation time plus the lifetime, %v", item.Deadline, deadline)
	}
	// 50 minutes on: 10 minutes remain, less than the timeout.
	offset.Store(int64(50 * time.Minute))
	checkRemaining := func(op string) error { return checkTTL(op, deadline.Sub(now())) }
	if err := runTTLSteps(ctx, env.Store, key, 2*time.Hour, ttlSteps(ctx, p, free, env.Store, id, key, 2*time.Hour), checkRemaining); err != nil {
		return err
	}
	// A holder whose request runs past the end of the lifetime.
	held, err := p.AcquireItem(ctx, id)
	if err != nil {
		return err
	}
	offset.Store(int64(lifetime + time.Second))
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"GetItem", func() error { _, err := free.GetItem(ctx, id); return err }},
		{"ResetItemTimeout", func() error { return free.ResetItemTimeout(ctx, id) }},
		{"GetItemExclusive", func() error { _, err := p.GetItemExclusive(ctx, id); return err }},
	} {
		if err := op.run(); !errors.Is(err, provider.ErrNotFound) {
			return fmt.Errorf("lifetime violated: %s of a session past its lifetime = %v, want ErrNotFound", op.name, err)
		}
	}
	_ = held.Data.Values.Set("late", true)
	if err := p.SetAndReleaseItemExclusive(ctx, id, held.Data, held.LockID, false); !errors.Is(err, provider.ErrLockLost) {
		return fmt.Errorf("lifetime violated: a commit after the session's lifetime = %v, want ErrLockLost", err)
	}
	if err := p.RenewLease(ctx, id, held.LockID); !errors.Is(err, provider.ErrLockLost) {
		return fmt.Errorf("lifetime violated: a lease renewal after the session's lifetime = %v, want ErrLockLost", err)
	}
	// The read above (slid by a GetAndTouch where the store has one)
	// replaced the session by a tombstone: it lingers one tombstone TTL
	// (1 min), never a timeout.
	if ttl, err := ttlr.TTL(ctx, key); err == nil && ttl > provider.DefaultTombstoneTTL+5*time.Second {
		return fmt.Errorf("lifetime violated: a session past its lifetime was left with a TTL of %v", ttl.Round(time.Second))
	} else if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return err
	}
	if e, err := env.Store.Get(ctx, key); err == nil {
		if h, err := record.Parse(e.Value); err != nil || !h.Removed {
			return fmt.Errorf("lifetime violated: a session past its lifetime is still stored as a live record after a read (%v)", err)
		}
	}
	// A session created again under the id has a new lifetime and
	// continues the lock ids (I7) when the old record is still there.
	if err := p.CreateUninitializedItem(ctx, id, 0); err != nil {
		return fmt.Errorf("create a session in place of one past its lifetime: %w", err)
	}
	again, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if again.LockID == held.LockID {
		return fmt.Errorf("I7 violated: the session created in place of one past its lifetime granted lock id %d again", again.LockID)
	}
	if err := checkTTL("re-creation", timeout); err != nil {
		return err
	}
	return p.ReleaseItemExclusive(ctx, id, again.LockID)
}

// ttlStep is one provider operation the I4 checks run.
type ttlStep struct {
	name string
	run  func() error
}

// ttlSteps returns every operation that must leave a session's TTL at its
// own timeout (I4), in an order that works on one existing session: read,
// reset, lock, renew, release, commit, lock-free commit. Each commit is
// preceded by a store write of the TTL wrong behind the provider's back,
// which the commit must replace.
func ttlSteps(ctx context.Context, p, free API, store provider.Store, id, key string, wrong time.Duration) []ttlStep {
	var lockID uint64
	return []ttlStep{
		{"GetItem", func() error { _, err := p.GetItem(ctx, id); return err }},
		{"ResetItemTimeout", func() error { return p.ResetItemTimeout(ctx, id) }},
		{"GetItemExclusive", func() error {
			it, err := p.GetItemExclusive(ctx, id)
			if err == nil {
				lockID = it.LockID
			}
			return err
		}},
		{"RenewLease", func() error { return p.RenewLease(ctx, id, lockID) }},
		{"ReleaseItemExclusive", func() error { return p.ReleaseItemExclusive(ctx, id, lockID) }},
		{"SetAndReleaseItemExclusive", func() error {
			it, err := p.AcquireItem(ctx, id)
			if err != nil {
				return err
			}
			if err := it.Data.Values.Set("k", "v"); err != nil {
				return err
			}
			if err := store.Touch(ctx, key, wrong); err != nil {
				return err
			}
			return p.SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false)
		}},
		{"lock-free SetAndReleaseItemExclusive", func() error {
			it, err := free.GetItemExclusive(ctx, id)
			if err != nil {
				return err
			}
			if err := it.Data.Values.Set("k2", "v"); err != nil {
				return err
			}
			if err := store.Touch(ctx, key, wrong); err != nil {
				return err
			}
			return free.SetAndReleaseItemExclusive(ctx, id, it.Data, 0, false)
		}},
	}
}

// runTTLSteps sets key's TTL to wrong before each step, runs it, and then
// check(name), which reads the TTL the step left.
func runTTLSteps(ctx context.Context, store provider.Store, key string, wrong time.Duration, steps []ttlStep, check func(string) error) error {
	for _, s := range steps {
		if err := store.Touch(ctx, key, wrong); err != nil {
			return fmt.Errorf("before %s: %w", s.name, err)
		}
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := check(s.name); err != nil {
			return err
		}
	}
	return nil
}
