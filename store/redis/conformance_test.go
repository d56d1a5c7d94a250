package redis_test

import (
	"testing"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/redis"
)

func TestConformance(t *testing.T) {
	t.Parallel() // mostly waits: lease takeovers, expiry
	srv := startServer(t)
	providertest.Run(t, providertest.Options{NewStore: func(t *testing.T) provider.Store {
		flush(t, srv)
		return newStore(t, srv, redis.Config{KeyPrefix: "conf:"})
	}})
}
