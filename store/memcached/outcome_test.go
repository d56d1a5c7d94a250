package memcached_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestWriteOutcomeUnknownOnHungNode: a write sent to a node that stops
// answering (SIGSTOP) may have landed: it fails with both
// provider.ErrUnavailable (the node is marked down) and
// provider.ErrOutcomeUnknown, never as "not written"; a read that times out
// is ErrUnavailable only. On both client paths (pooled and pipelined) and
// on the text path.
func TestWriteOutcomeUnknownOnHungNode(t *testing.T) {
	for _, cfg := range outcomeConfigs() {
		t.Run(cfg.name, func(t *testing.T) {
			servers := startNodes(t, 1)
			ctx := context.Background()
			const key = "sl:hungwrite"
			setup := newStore(t, servers, memcached.Config{})
			_, err := setup.Add(ctx, key, record(1, "before"), time.Minute)
			require.NoError(t, err)
			e, err := setup.Get(ctx, key)
			require.NoError(t, err)

			c := cfg.cfg
			c.Timeout = 200 * time.Millisecond
			reader := newStore(t, servers, c)
			writer := newStore(t, servers, c)
			// Connect both before the node hangs.
			_, err = reader.Get(ctx, key)
			require.NoError(t, err)
			_, err = writer.Get(ctx, key)
			require.NoError(t, err)

			require.NoError(t, servers[0].Pause())
			defer func() { _ = servers[0].Resume() }()
			_, err = reader.Get(ctx, key)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.False(t, errors.Is(err, provider.ErrOutcomeUnknown), "a read has no outcome to lose: %v", err)

			_, err = writer.CompareAndSwap(ctx, key, record(2, "during"), e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the write was sent")
			require.False(t, isUp(writer, servers[0].Addr()))

			// The node is down now: a write not sent is not unknown.
			_, err = writer.CompareAndSwap(ctx, key, record(2, "during"), e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.False(t, errors.Is(err, provider.ErrOutcomeUnknown), "nothing was sent: %v", err)
		})
	}
}

// TestWriteNotSentOnRefusedNode: a write whose connection is refused (a
// killed node) was never sent: ErrUnavailable, not ErrOutcomeUnknown.
func TestWriteNotSentOnRefusedNode(t *testing.T) {
	for _, cfg := range outcomeConfigs() {
		t.Run(cfg.name, func(t *testing.T) {
			servers := startNodes(t, 1)
			ctx := context.Background()
			const key = "sl:refused"
			s := newStore(t, servers, cfg.cfg)
			_, err := s.Add(ctx, key, record(1, "before"), time.Minute)
			require.NoError(t, err)
			e, err := s.Get(ctx, key)
			require.NoError(t, err)
			servers[0].Kill()
			fresh := newStore(t, servers, cfg.cfg) // no connection to reuse: the write dials
			_, err = fresh.CompareAndSwap(ctx, key, record(2, "after"), e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.False(t, errors.Is(err, provider.ErrOutcomeUnknown), "nothing was sent: %v", err)
			_, err = fresh.Add(ctx, "sl:refused2", record(1, "x"), time.Minute)
			require.ErrorIs(t, err, provider.ErrUnavailable)
			require.False(t, errors.Is(err, provider.ErrOutcomeUnknown), "nothing was sent: %v", err)
		})
	}
}

type namedConfig struct {
	name string
	cfg  memcached.Config
}

func outcomeConfigs() []namedConfig {
	return []namedConfig{
		{"pipelined", memcached.Config{}},
		{"pooled", memcached.Config{Conns: memcached.ConnsPooled}},
		{"text", memcached.Config{TextProtocol: true}},
	}
}
