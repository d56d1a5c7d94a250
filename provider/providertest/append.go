package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// AppendTTLFailures checks I4 on a store whose lock changes are appended
// as deltas (provider.Appender): before each lock change of a warm
// provider (the one that wrote last) and of a cold one (lock, lease
// renewal, release), the key's TTL is cut to 5 s with the Store's Touch;
// right after the change, which must be written as a delta, the TTL must
// be the session's own timeout again. It returns one line per step that
// left a shorter TTL, so that a backend's test can require none on its
// store and one per step (5) on a broken variant of it whose append keeps
// the old TTL. s must implement provider.TTLReader. Errors other than a
// short TTL (a step that fails, a change not written as a delta) are
// returned as err.
func AppendTTLFailures(ctx context.Context, s provider.Store) (failures []string, err error) {
	ttlr, ok := s.(provider.TTLReader)
	if !ok {
		return nil, errors.New("providertest: AppendTTLFailures needs a provider.TTLReader")
	}
	newProvider := func() (*provider.Provider, error) { return provider.New(s, provider.Config{}) }
	p, err := newProvider()
	if err != nil {
		return nil, err
	}
	id, err := createSession(ctx, p, 0, map[string]any{"blob": strings.Repeat("x", 2048), "n": 0})
	if err != nil {
		return nil, err
	}
	key, err := p.Key(id)
	if err != nil {
		return nil, err
	}
	// step shortens the TTL, runs change, and checks what it left.
	step := func(name string, change func() error) error {
		if err := s.Touch(ctx, key, 5*time.Second); err != nil {
			return fmt.Errorf("%s: shorten: %w", name, err)
		}
		if err := change(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		e, err := s.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("%s: read: %w", name, err)
		}
		r, err := record.Decode(e.Value)
		if err != nil {
			return fmt.Errorf("%s: decode: %w", name, err)
		}
		if r.Deltas == 0 {
			return fmt.Errorf("%s: not written as a delta", name)
		}
		ttl, err := ttlr.TTL(ctx, key)
		if err != nil {
			return fmt.Errorf("%s: TTL: %w", name, err)
		}
		if ttl < provider.DefaultTimeout-2*time.Second {
			failures = append(failures, fmt.Sprintf("%s: TTL %v, want the session's timeout %v", name, ttl, provider.DefaultTimeout))
		}
		return nil
	}
	var lockID uint64
	lock := func(p *provider.Provider) func() error {
		return func() error {
			it, err := p.GetItemExclusive(ctx, id)
			if err == nil {
				lockID = it.LockID
			}
			return err
		}
	}
	// Warm: p wrote last.
	if err := step("warm lock", lock(p)); err != nil {
		return failures, err
	}
	if err := step("warm release", func() error { return p.ReleaseItemExclusive(ctx, id, lockID) }); err != nil {
		return failures, err
	}
	// Cold: a fresh provider reads (a read without a touch), then locks.
	q, err := newProvider()
	if err != nil {
		return failures, err
	}
	if err := step("cold lock", lock(q)); err != nil {
		return failures, err
	}
	if err := step("lease renewal", func() error { return q.RenewLease(ctx, id, lockID) }); err != nil {
		return failures, err
	}
	if err := step("cold release", func() error { return q.ReleaseItemExclusive(ctx, id, lockID) }); err != nil {
		return failures, err
	}
	return failures, nil
}
