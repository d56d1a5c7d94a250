package provider_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// brokenEnv runs the checks against a deliberately broken variant.
func brokenEnv(wrap func(*provider.Provider) providertest.API) providertest.Env {
	store := memstore.New(memstore.Config{})
	return providertest.Env{Store: store, New: func(s provider.Store, cfg provider.Config) (providertest.API, error) {
		p, err := provider.New(s, cfg)
		if err != nil {
			return nil, err
		}
		return wrap(p), nil
	}}
}

// TestBrokenVariantsFail shows that the invariant checks can fail: each
// deliberately broken variant (export_test.go) reintroduces one bug of the
// earlier providers and the check for that bug class reports it.
func TestBrokenVariantsFail(t *testing.T) {
	cases := []struct {
		name  string
		wrap  func(*provider.Provider) providertest.API
		check func(context.Context, providertest.Env) error
		want  string
	}{
		{"I2 release without CAS retry", func(p *provider.Provider) providertest.API { return provider.NoRetryRelease{Provider: p} },
			func(ctx context.Context, env providertest.Env) error {
				return providertest.CheckNoLostRelease(ctx, env, 20)
			}, "I2 violated"},
		{"I3 unfenced writes", func(p *provider.Provider) providertest.API { return provider.Unfenced{Provider: p} },
			providertest.CheckFencedWrites, "I3 violated"},
		{"I4 release with the default timeout", func(p *provider.Provider) providertest.API { return provider.DefaultTimeoutRelease{Provider: p} },
			providertest.CheckOwnTimeoutIsTTL, "I4 violated"},
		{"I4 read then touch", func(p *provider.Provider) providertest.API { return provider.TouchAfterRead{Provider: p} },
			providertest.CheckOwnTimeoutUnderRaces, "I4 violated"},
		{"I4 lifetime ignored by a renewal", func(p *provider.Provider) providertest.API { return provider.NoLifetime{Provider: p} },
			providertest.CheckLifetime, "I4 violated"},
	}
	// A store whose records expire early (at half their TTL), under the
	// real provider.
	t.Run("I4 early expiry", func(t *testing.T) {
		store := halfTTL{memstore.New(memstore.Config{})}
		defer store.Close()
		ctx, cancel := context.WithTimeout(context.Background(), providertest.Timeout)
		defer cancel()
		err := providertest.CheckNoEarlyExpiry(ctx, providertest.RealEnv(store))
		require.Error(t, err, "the check must catch the broken store")
		require.Contains(t, err.Error(), "I4 violated")
		t.Logf("caught: %v", err)
		real := providertest.RealEnv(memstore.New(memstore.Config{}))
		defer real.Store.Close()
		require.NoError(t, providertest.CheckNoEarlyExpiry(ctx, real))
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := brokenEnv(c.wrap)
			defer env.Store.Close()
			ctx, cancel := context.WithTimeout(context.Background(), providertest.Timeout)
			defer cancel()
			err := c.check(ctx, env)
			require.Error(t, err, "the check must catch the broken variant")
			require.Contains(t, err.Error(), c.want)
			t.Logf("caught: %v", err)
			// The real provider passes the same check.
			real := providertest.RealEnv(memstore.New(memstore.Config{}))
			defer real.Store.Close()
			require.NoError(t, c.check(ctx, real))
		})
	}
}

// halfTTL is a broken store: every record it writes or touches expires
// at half the TTL asked for.
type halfTTL struct{ provider.Store }

func (s halfTTL) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return s.Store.Add(ctx, key, value, ttl/2)
}

func (s halfTTL) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return s.Store.CompareAndSwap(ctx, key, value, cas, ttl/2)
}

func (s halfTTL) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return s.Store.Touch(ctx, key, ttl/2)
}
