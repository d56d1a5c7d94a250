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
// in front of PostgreSQL holding their durable copies.
func openTiered(ctx context.Context, spec storeSpec) (provider.Store, error) {
	mode, err := backupMode(spec.Backup)
	if err != nil {
		return nil, err
	}
	cache, err := memcached.New(memcached.Config{Nodes: spec.Nodes, Backup: mode})
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
