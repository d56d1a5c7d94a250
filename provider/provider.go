package provider

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/session"
)

// Defaults of Config.
const (
	DefaultKeyPrefix    = "sl:"
	DefaultTimeout      = 20 * time.Minute
	DefaultLease        = 10 * time.Second
	DefaultLockTimeout  = 110 * time.Second
	DefaultTombstoneTTL = time.Minute
	// MaxKeyPrefixLen bounds KeyPrefix+App so that every key, with a
	// backend's own prefix such as memcached's "bak:", stays far below
	// memcached's 250-byte key limit.
	MaxKeyPrefixLen = 160
)

// Config configures a Provider. The zero value is ready to use: locking on,
// 10 s leases, 20 min default timeout, JSON values.
type Config struct {
	// KeyPrefix starts every store key. Default "sl:".
	KeyPrefix string
	// App is the application name; sessions of different apps sharing a
	// store never see each other. Keys are KeyPrefix + App + ":" + id, or
	// KeyPrefix + id when App is empty.
	App string
	// DefaultTimeout is the timeout of new sessions (ASP.NET's
	// sessionState timeout). Default 20 min. Each session then carries its
	// own timeout, which a handler may change.
	DefaultTimeout time.Duration
	// Lease is how long a held lock stays valid without renewal. The
	// holder renews it in the background (KeepLease); a holder that stops
	// renewing (a crashed process) loses the lock to a waiter after one
	// lease. Default 10 s. A negative Lease turns leases off and gives
	// ASP.NET's behaviour: no renewal, takeover when the lock has been held
	// unchanged for LockTimeout.
	Lease time.Duration
	// LockTimeout is ASP.NET's executionTimeout: how long a lock may be
	// held when leases are off. Default 110 s. Ignored when leases are on.
	LockTimeout time.Duration
	// LockFree is ASP.NET's exclusiveAccess=false: GetItemExclusive takes
	// no lock and never waits, and SetAndReleaseItemExclusive merges only
	// the keys the request changed into the stored session with a CAS
	// retry loop. Concurrent requests that change different keys both keep
	// their change; on the same key the last writer wins.
	LockFree bool
	// Codec encodes session values. Default session.DefaultCodec().
	Codec session.Codec
	// MaxValuesSize bounds the encoded values of one session. Default
	// session.MaxEncodedSize. Larger sessions fail with ErrTooLarge and
	// nothing is written.
	MaxValuesSize int
	// TombstoneTTL is how long a removed session's tombstone lives. While
	// it lives, a session re-created under the same id continues its lock
	// ids. Default 1 min.
	TombstoneTTL time.Duration
	// MaxCASRetries bounds every compare-and-swap retry loop. Default 1000.
	MaxCASRetries int
	// Wait configures how requests wait for a locked session. Leave its
	// StaleAfter zero: a waiter takes a lock over after one Lease (after
	// LockTimeout when leases are off), so the provider derives it, and New
	// refuses any other value (the one Config returns is accepted).
	Wait lock.Config
	// Lifetime is the absolute lifetime of a session: however often it is
	// used, a session ends this long after it was created (its creation
	// time is stored in its record). After every operation its TTL is the
	// smaller of its own timeout and what remains of its lifetime (I4).
	// Zero, the default: no absolute lifetime, only the idle timeout.
	// Otherwise it must lie in [session.MinTimeout, session.MaxTimeout].
	// The remaining lifetime is read on each server's wall clock, so it
	// is as exact as the servers' clocks agree (docs/semantics.md); lock
	// decisions never depend on it.
	Lifetime time.Duration
	// HashIDs stores each session under a hash of its id instead of the id
	// (scs's HashTokenInStore): KeyPrefix + App + ":" + the SHA-256 of the
	// id in lower-case base32 (52 characters, valid on every backend), so
	// that whoever reads the store (or its keys in a log) cannot use them
	// as session ids. Turning it on or off forgets the stored sessions.
	HashIDs bool
	// Now returns the wall clock: informational lock ages, and sessions'
	// creation times and remaining lifetimes (Lifetime). Default time.Now.
	// No lock decision depends on its time; an acquisition's time
	// (record.Header.LockedAt) is, with its lock id, what recognises it
	// after a write of unknown outcome: a clock that returns equal times
	// leaves that to the lock id alone (equal with probability 2^-20 for
	// two acquisitions decided on one record).
	Now func() time.Time
}

// Provider is the session-state provider: ASP.NET's
// SessionStateStoreProviderBase over a CAS Store. It is safe for concurrent
// use. The lock protocol it implements is in protocol.go and
// docs/protocol.md.
type Provider struct {
	store  Store
	cfg    Config
	waiter *lock.Waiter
	holds  *holdSet
	// timeouts remembers sessions' own timeouts for the read path's
	// one-step read and touch (slide.go).
	timeouts *timeoutMemo
	// written is the last record this process wrote per session, with
	// its token (written.go).
	written *writtenCache
	// settles: the store's reads settle writes of unknown outcome
	// (OutcomeReader), so update resolves them.
	settles bool
	// broken is zero but in the deliberately broken variants of
	// export_test.go, which show that tests fail against old behaviour.
	broken brokenBits
}

// brokenBits select old behaviours for the broken variants of tests.
type brokenBits uint8

const (
	// brokenUnresolved returns a write of unknown outcome at once.
	brokenUnresolved brokenBits = 1 << iota
	// brokenLockIDs takes locks with id + 1: racing acquisitions of one
	// record get the same id.
	brokenLockIDs
	// brokenNoWindow takes an acquisition its resolving read does not
	// show for not landed however late the read (resolveLock's window).
	brokenNoWindow
	// brokenNoFreshLease hands out the lock of a slow acquisition as it
	// is (freshLease).
	brokenNoFreshLease
	// brokenKeepLock leaves the lock of an acquisition whose lease could
	// not be made fresh in the store (GetItemExclusive's abandon).
	brokenKeepLock
	// brokenNoCarry forgets the InitializeItem flag of an acquisition
	// whose lock was lost before it returned (GetItemExclusive's carry).
	brokenNoCarry
	// brokenWriteNonce writes a claim of InitializeItem, a creation over
	// a record, and a conditional deletion of values without a lock id
	// of their own (stampOwn): two of them decided on one record write
	// the same bytes.
	brokenWriteNonce
)

// holdSet records the locks taken in this process, so that their release
// wakes this process's waiters at once.
type holdSet struct {
	mu sync.Mutex
	m  map[holdKey]struct{}
}

type holdKey struct {
	key    string
	lockID uint64
}

// New returns a Provider over store.
func New(store Store, cfg Config) (*Provider, error) {
	if store == nil {
		return nil, errors.New("provider: nil store")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if len(cfg.KeyPrefix)+len(cfg.App) > MaxKeyPrefixLen {
		return nil, fmt.Errorf("provider: KeyPrefix and App are %d bytes, at most %d", len(cfg.KeyPrefix)+len(cfg.App), MaxKeyPrefixLen)
	}
	for _, s := range []string{cfg.KeyPrefix, cfg.App} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] >= 0x7f {
				return nil, fmt.Errorf("provider: KeyPrefix and App must be printable ASCII without spaces, got %q", s)
			}
		}
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.DefaultTimeout < session.MinTimeout || cfg.DefaultTimeout > session.MaxTimeout {
		return nil, fmt.Errorf("provider: DefaultTimeout %v: %w", cfg.DefaultTimeout, session.ErrInvalidTimeout)
	}
	if cfg.Lifetime != 0 && (cfg.Lifetime < session.MinTimeout || cfg.Lifetime > session.MaxTimeout) {
		return nil, fmt.Errorf("provider: Lifetime %v: %w", cfg.Lifetime, session.ErrInvalidTimeout)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Codec == nil {
		cfg.Codec = session.DefaultCodec()
	}
	if cfg.MaxValuesSize <= 0 {
		cfg.MaxValuesSize = session.MaxEncodedSize
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = DefaultTombstoneTTL
	}
	if cfg.MaxCASRetries <= 0 {
		cfg.MaxCASRetries = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch stale := cfg.staleAfter(); cfg.Wait.StaleAfter {
	case 0, stale:
		cfg.Wait.StaleAfter = stale
	default:
		return nil, fmt.Errorf("provider: Wait.StaleAfter %v: leave it zero, it is one Lease (LockTimeout when leases are off): %v", cfg.Wait.StaleAfter, stale)
	}
	settles := false
	if r, ok := store.(OutcomeReader); ok {
		settles = r.ReadsSettleOutcomes()
	}
	return &Provider{
		store:    store,
		cfg:      cfg,
		waiter:   lock.NewWaiter(cfg.Wait),
		holds:    &holdSet{m: make(map[holdKey]struct{})},
		timeouts: &timeoutMemo{m: make(map[string]time.Duration)},
		written:  newWrittenCache(),
		settles:  settles,
	}, nil
}

// LockFree returns a provider in lock-free mode (Config.LockFree) that
// shares p's store and waiters: a per-route "no lock" mode next to
// exclusive routes. Because every commit merges only the keys its request
// changed, lock-free writes that land while an exclusive request holds the
// lock survive that request's commit.
func (p *Provider) LockFree() *Provider {
	q := *p
	q.cfg.LockFree = true
	return &q
}

// leased reports whether locks are leases that holders renew.
func (c *Config) leased() bool { return c.Lease > 0 }

// staleAfter is how long a lock may stay unchanged before a waiter takes it
// over: one lease, or the lock timeout when leases are off.
func (c *Config) staleAfter() time.Duration {
	if c.leased() {
		return c.Lease
	}
	return c.LockTimeout
}

// Config returns the provider's configuration with defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// Store returns the store the provider runs on.
func (p *Provider) Store() Store { return p.store }

// Key returns the store key of session id. The id is validated first: an
// id that fails session.CheckID never becomes part of a key. With
// Config.HashIDs the key holds the id's hash, never the id.
func (p *Provider) Key(id string) (string, error) {
	if err := session.CheckID(id); err != nil {
		return "", err
	}
	if p.cfg.HashIDs {
		id = hashID(id)
	}
	if p.cfg.App == "" {
		return p.cfg.KeyPrefix + id, nil
	}
	return p.cfg.KeyPrefix + p.cfg.App + ":" + id, nil
}

// HashedIDLen is the length of an id's hash in a key (Config.HashIDs).
const HashedIDLen = 52

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// hashID is the SHA-256 of id in lower-case base32, HashedIDLen bytes:
// characters every backend accepts in a key.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return lowerBase32.EncodeToString(sum[:])
}

// idTag names a session in errors: the start of its id, enough to
// correlate log lines, never the whole id (a usable credential).
func idTag(id string) string {
	if len(id) > 6 {
		return id[:6] + "…"
	}
	return id
}

// CreateNewStoreData returns empty session data with the given timeout, or
// the provider's default timeout when timeout is zero.
func (p *Provider) CreateNewStoreData(timeout time.Duration) *session.Data {
	if timeout == 0 {
		timeout = p.cfg.DefaultTimeout
	}
	return session.NewData(session.NewValues(p.cfg.Codec), timeout)
}

// hold records a lock taken in this process so that a release here wakes
// local waiters at once.
func (p *Provider) hold(key string, lockID uint64) {
	p.holds.mu.Lock()
	p.holds.m[holdKey{key, lockID}] = struct{}{}
	p.holds.mu.Unlock()
	p.waiter.Hold(key)
}

// unhold undoes hold for a lock this process took, once.
func (p *Provider) unhold(key string, lockID uint64) {
	p.holds.mu.Lock()
	_, ok := p.holds.m[holdKey{key, lockID}]
	delete(p.holds.m, holdKey{key, lockID})
	p.holds.mu.Unlock()
	if ok {
		p.waiter.Release(key)
	}
}
