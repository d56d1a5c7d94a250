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
		// The default configuration on one node (one copy) and on two
		// (a backup copy). With three nodes the default is the witness
		// scheme: TestConformanceWitness.
		{"OneNode", 1, memcached.Config{}},
		{"TwoNodes", 2, memcached.Config{}},
		// The backup copy, opt-in with three nodes.
		{"ThreeNodesBackupOn", 3, memcached.Config{Backup: memcached.BackupOn}},
		// A pool of connections, one operation at a time on each (the
		// default multiplexes operations over shared connections).
		{"OneNodePooled", 1, memcached.Config{Conns: memcached.ConnsPooled}},
		{"ThreeNodesBackupOnPooled", 3, memcached.Config{Backup: memcached.BackupOn, Conns: memcached.ConnsPooled}},
		// The text path (servers without meta commands): one copy.
		{"OneNodeText", 1, memcached.Config{TextProtocol: true}},
		{"ThreeNodesText", 3, memcached.Config{TextProtocol: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := startNodes(t, tc.nodes)
			providertest.Run(t, providertest.Options{NewStore: func(t *testing.T) provider.Store {
				flush(t, servers)
				s := newStore(t, servers, tc.cfg)
				if tc.cfg.TextProtocol {
					// No TTL reads on the text path: the I4 check is
					// skipped there (it runs on the meta path).
					return struct {
						provider.Store
						provider.GetAndToucher
					}{s, s}
				}
				return s
			}})
		})
	}
}
