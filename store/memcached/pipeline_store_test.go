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
		{"default-two-nodes", memcached.Config{Nodes: three[:2]}, true},
		{"default-three-nodes", memcached.Config{Nodes: three}, false}, // the witness scheme
		{"on-three-nodes", memcached.Config{Nodes: three, Backup: memcached.BackupOn}, true},
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

// TestPipelineExclusiveCycleOnCaller: with nothing else in flight, every
// step of an exclusive request on a pipelined Store (read, lock with its
// touch, commit or release) is one write, and its reply is read by the
// caller itself: no request is handed to a connection's goroutines (the
// idle connection's shortcut, send). Cold (another provider wrote last):
// 3 writes; warm (this provider's cache is fresh): 2.
func TestPipelineExclusiveCycleOnCaller(t *testing.T) {
	servers := startNodes(t, 1)
	w := newWire()
	s := newStore(t, servers, memcached.Config{DialContext: w.dial, HealthCheckInterval: time.Hour})
	if !memcached.Pipelined(s) {
		t.Skip("pooled connections (MEMCACHED_POOLED)")
	}
	ctx := context.Background()
	newProvider := func() *provider.Provider {
		p, err := provider.New(s, provider.Config{})
		require.NoError(t, err)
		return p
	}
	warm := newProvider()
	id := newBenchSession(t, warm)
	addr := servers[0].Addr()
	for _, kind := range requestKinds[1:] {
		for _, cold := range []bool{true, false} {
			p := warm
			if !cold {
				// The cold round left warm's cache stale: one request
				// (a retry) makes it fresh.
				require.NoError(t, kind.run(ctx, p, id, 0))
			}
			before, handoffs := w.at(addr), memcached.PipelineHandoffs(s)
			const n = 20
			for i := range n {
				if cold {
					p = newProvider()
				}
				require.NoError(t, kind.run(ctx, p, id, i))
			}
			got := w.at(addr).minus(before)
			writes := uint64(2)
			if cold {
				writes = 3
			}
			require.Equal(t, n*writes, got.writes, "%s cold=%v: writes", kind.name, cold)
			require.Equal(t, handoffs, memcached.PipelineHandoffs(s), "%s cold=%v: requests handed to a connection's goroutines", kind.name, cold)
		}
	}
}
