// Package providertest is the conformance suite every provider.Store
// backend runs: the provider's invariants I1-I7 (docs/protocol.md) and its
// ASP.NET semantics, checked through the real provider against the real
// store.
//
// Each invariant is a Check function that returns a violation as an error,
// so the same check can be run against the real provider (it must pass)
// and against deliberately broken variants (it must fail): see the
// provider package's tests.
package providertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// API is the provider surface the checks drive. *provider.Provider
// implements it; so do the broken variants kept in the provider package's
// tests.
type API interface {
	Key(id string) (string, error)
	CreateNewStoreData(timeout time.Duration) *session.Data
	CreateUninitializedItem(ctx context.Context, id string, timeout time.Duration) error
	GetItem(ctx context.Context, id string) (*provider.Item, error)
	GetItemExclusive(ctx context.Context, id string) (*provider.Item, error)
	SetAndReleaseItemExclusive(ctx context.Context, id string, data *session.Data, lockID uint64, newItem bool) error
	ReleaseItemExclusive(ctx context.Context, id string, lockID uint64) error
	RemoveItem(ctx context.Context, id string, lockID uint64) error
	ResetItemTimeout(ctx context.Context, id string) error
	RenewLease(ctx context.Context, id string, lockID uint64) error
	AcquireItem(ctx context.Context, id string) (*provider.Item, error)
	ReadItem(ctx context.Context, id string) (*provider.Item, error)
}

// Env is what a check runs against: one store, and a way to start
// providers over it. Each provider plays one application server; several
// providers over one store contend as separate processes would.
type Env struct {
	Store provider.Store
	// New returns a provider over store (Store, or a wrapper of it that
	// a check puts in between) with cfg.
	New func(store provider.Store, cfg provider.Config) (API, error)
	// HashIDs turns provider.Config.HashIDs on in every provider a check
	// starts, and Lifetime sets provider.Config.Lifetime in those whose
	// check sets none: Run's second pass.
	HashIDs  bool
	Lifetime time.Duration
}

// RealEnv is an Env whose providers are the real *provider.Provider.
func RealEnv(store provider.Store) Env {
	return Env{Store: store, New: func(store provider.Store, cfg provider.Config) (API, error) { return provider.New(store, cfg) }}
}

// Options configures a conformance run.
type Options struct {
	// NewStore returns a store with no sessions in it (an empty server, or
	// a fresh key prefix). It is called once per subtest; the suite closes
	// the store when the subtest ends.
	NewStore func(t *testing.T) provider.Store
	// Scale multiplies the iteration counts of the concurrency checks.
	// Default 1. Backends behind a network may pass less than 1 in -short
	// runs; never 0.
	Scale float64
}

// Timeout bounds every check.
const Timeout = 60 * time.Second

// Run runs the whole conformance suite against stores made by
// opts.NewStore.
func Run(t *testing.T, opts Options) {
	t.Helper()
	if opts.Scale <= 0 {
		opts.Scale = 1
	}
	runChecks(t, opts, false)
	// The second pass: stores see only hashes of ids, and every session
	// has a lifetime (its records are of format version 2).
	t.Run("HashedIDs", func(t *testing.T) { runChecks(t, opts, true) })
}

// HashedPassLifetime is the lifetime of the sessions in Run's second
// pass: long enough that no check meets it, but stored in every record.
const HashedPassLifetime = 24 * time.Hour

func runChecks(t *testing.T, opts Options, hashed bool) {
	for _, c := range Checks(opts.Scale) {
		t.Run(c.Name, func(t *testing.T) {
			store := opts.NewStore(t)
			t.Cleanup(func() { _ = store.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			env := RealEnv(store)
			var keys *KeyLog
			if hashed {
				keys = &KeyLog{Store: store}
				env.Store = keys.Wrap()
				env.HashIDs, env.Lifetime = true, HashedPassLifetime
			}
			err := c.Check(ctx, env)
			if errors.Is(err, errSkipNoTTL) {
				t.Skip("the store does not implement provider.TTLReader; the remaining TTL cannot be read")
			}
			if err != nil {
				t.Fatal(err)
			}
			if keys != nil {
				if err := keys.CheckHashed(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Check is one named conformance check.
type Check struct {
	Name  string
	Check func(ctx context.Context, env Env) error
}

// Checks lists the suite's checks, the invariants first. scale multiplies
// iteration counts.
func Checks(scale float64) []Check {
	n := func(base int) int { return max(2, int(float64(base)*scale)) }
	return []Check{
		{"I1_MutualExclusion", func(ctx context.Context, env Env) error { return CheckMutualExclusion(ctx, env, 4, n(25)) }},
		{"I2_NoLostRelease", func(ctx context.Context, env Env) error { return CheckNoLostRelease(ctx, env, n(60)) }},
		{"I3_FencedWrites", CheckFencedWrites},
		{"I4_OwnTimeoutIsTTL", CheckOwnTimeoutIsTTL},
		{"I4_OwnTimeoutUnderRaces", CheckOwnTimeoutUnderRaces},
		{"I4_Lifetime", CheckLifetime},
		{"I5_LockAndDataAgree", func(ctx context.Context, env Env) error { return CheckLockAndDataAgree(ctx, env, n(60)) }},
		{"I6_InitializeItemOnce", func(ctx context.Context, env Env) error { return CheckInitializeItemOnce(ctx, env, n(8)) }},
		{"I7_LockIDsIncrease", CheckLockIDsIncrease},
		{"I7_StaleHolderAfterRecreation", CheckStaleHolderAfterRecreation},
		{"LeaseTakeover", CheckLeaseTakeover},
		{"LivingHolderKeepsLease", CheckLivingHolderKeepsLease},
		{"LockTimeoutWithoutLeases", CheckLockTimeoutWithoutLeases},
		{"LockFreeMerge", func(ctx context.Context, env Env) error { return CheckLockFreeMerge(ctx, env, n(32)) }},
		{"ReadOnlyWaitsForWriter", CheckReadOnlyWaitsForWriter},
		{"Semantics", CheckSemantics},
		{"BadInput", CheckBadInput},
		{"FencedMessages", CheckFencedMessages},
		{"Expiry", CheckExpiry},
		{"NoEarlyExpiry", CheckNoEarlyExpiry},
	}
}

// StoreFlash stores a new session id holding one flash message and
// returns what a pop of it deletes: DeleteValuesIf's argument for the
// message as a request read it.
func StoreFlash(ctx context.Context, p *provider.Provider, id string) (map[string][]byte, error) {
	data := p.CreateNewStoreData(0)
	if err := data.Values.Set("flash", "saved"); err != nil {
		return nil, err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, data, 0, true); err != nil {
		return nil, err
	}
	read, err := p.GetItem(ctx, id)
	if err != nil {
		return nil, err
	}
	msg, ok := read.Data.Values.Encoded("flash")
	if !ok {
		return nil, errors.New("providertest: the flash message stored is not read back")
	}
	return map[string][]byte{"flash": msg}, nil
}
