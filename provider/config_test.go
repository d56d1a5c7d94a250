package provider_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// TestConfigDefaults: the zero Config means the documented defaults, a
// negative Lease is ASP.NET's behaviour, and New never silently replaces
// a field the caller set: a Wait.StaleAfter other than the one the
// provider derives is refused; the Config a provider returns is accepted
// again.
func TestConfigDefaults(t *testing.T) {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	p, err := provider.New(store, provider.Config{})
	require.NoError(t, err)
	cfg := p.Config()
	require.Equal(t, provider.DefaultKeyPrefix, cfg.KeyPrefix)
	require.Equal(t, provider.DefaultTimeout, cfg.DefaultTimeout)
	require.Equal(t, provider.DefaultLease, cfg.Lease)
	require.Equal(t, provider.DefaultLockTimeout, cfg.LockTimeout)
	require.Equal(t, provider.DefaultTombstoneTTL, cfg.TombstoneTTL)
	require.Equal(t, provider.DefaultLease, cfg.Wait.StaleAfter, "a waiter takes over after one lease")

	_, err = provider.New(store, cfg)
	require.NoError(t, err, "the Config a provider returns is valid again")

	aspnet, err := provider.New(store, provider.Config{Lease: -1, LockTimeout: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, aspnet.Config().Wait.StaleAfter, "no leases: takeover after LockTimeout")

	_, err = provider.New(store, provider.Config{Wait: lock.Config{StaleAfter: time.Second}})
	require.ErrorContains(t, err, "Wait.StaleAfter")

	_, err = provider.New(store, provider.Config{DefaultTimeout: -time.Minute})
	require.Error(t, err)
}
