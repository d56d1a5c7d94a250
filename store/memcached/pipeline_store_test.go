package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestPipelineStoreCloseWhilePending: closing a pipelined Store whose node hangs
// (SIGSTOP) fails the operations waiting on it at once, with the client
// closed, rather than leaving them to Timeout (a minute here).
func TestPipelineStoreCloseWhilePending(t *testing.T) {
	servers := startNodes(t, 1)
	w := newWire()
	s := newStore(t, servers, memcached.Config{Timeout: time.Minute, DialContext: w.dial})
	ctx := context.Background()
	const key = "sl:closepending"
	_, err := s.Add(ctx, key, record(1, "x"), time.Minute)
	require.NoError(t, err)
	before := w.at(servers[0].Addr()).sent

	require.NoError(t, servers[0].Pause())
	defer func() { _ = servers[0].Resume() }()
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Get(ctx, key)
			errs <- err
		}()
	}
	cmd := uint64(len("mg " + key + " c f v\r\n"))
	waitUntil(t, 10*time.Second, "every read to be written", func() bool {
		return w.at(servers[0].Addr()).sent-before >= n*cmd
	})
	require.Empty(t, errs)
	require.NoError(t, s.Close())
	for range n {
		err := <-errs
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.ErrorContains(t, err, "client closed", "failed by Close, not by Timeout")
	}
}

// TestConnMode: the zero Config pipelines; ConnsPooled, the text path
// and the witness scheme use pooled connections (New accepts the witness
// scheme with the zero Config: it does not pipeline); an unknown mode is
// refused.
func TestConnMode(t *testing.T) {
	one := []string{"127.0.0.1:1"}
	three := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	for _, tc := range []struct {
		name      string
		cfg       memcached.Config
		pipelined bool
	}{
		{"default", memcached.Config{Nodes: one}, true},
		{"default-three-nodes", memcached.Config{Nodes: three}, true},
		{"pooled", memcached.Config{Nodes: one, Conns: memcached.ConnsPooled}, false},
		{"text", memcached.Config{Nodes: one, TextProtocol: true}, false},
		{"witness", memcached.Config{Nodes: three, Backup: memcached.BackupWitness}, false},
		{"witness-pooled", memcached.Config{Nodes: three, Backup: memcached.BackupWitness, Conns: memcached.ConnsPooled}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := memcached.New(tc.cfg)
			require.NoError(t, err)
			defer s.Close()
			require.Equal(t, tc.pipelined, memcached.Pipelined(s))
		})
	}
	_, err := memcached.New(memcached.Config{Nodes: one, Conns: memcached.ConnsPooled + 1})
	require.ErrorContains(t, err, "unknown connection mode")
}
