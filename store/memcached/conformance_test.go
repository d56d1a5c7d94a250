package memcached_test

import (
	"testing"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/memcached"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes int
		cfg   memcached.Config
	}{
		{"OneNode", 1, memcached.Config{}},
		{"ThreeNodes", 3, memcached.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := startNodes(t, tc.nodes)
			providertest.Run(t, providertest.Options{NewStore: func(t *testing.T) provider.Store {
				flush(t, servers)
				return newStore(t, servers, tc.cfg)
			}})
		})
	}
}
