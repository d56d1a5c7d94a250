package harness

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/sqlstore"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// openTiered opens the tiered store: memcached holding the live records
// in front of PostgreSQL holding their durable copies. The cache is built
// as the memcached backend is (memcachedConfig), its node events sent to
// onEvent.
func openTiered(ctx context.Context, spec storeSpec, onEvent provider.EventFunc) (provider.Store, error) {
	mc, err := memcachedConfig(spec, onEvent)
	if err != nil {
		return nil, err
	}
	cache, err := memcached.New(mc)
	if err != nil {
		return nil, err
	}
	durable, err := sqlstore.New(ctx, sqlstore.Config{DSNs: []string{spec.PGDSN}})
	if err != nil {
		_ = cache.Close()
		return nil, fmt.Errorf("%w: PostgreSQL: %w", ErrUnreachable, err)
	}
	s, err := tiered.New(tiered.Config{Cache: cache, Durable: durable})
	if err != nil {
		return nil, errors.Join(err, cache.Close(), durable.Close())
	}
	return s, nil
}
