package memcached_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// oldServer listens on 127.0.0.1 and answers as memcached before 1.6 does
// to a meta command: ERROR to every line (its text commands are not
// needed here). memcached 1.5 is not installable on the test machine.
func oldServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := c.Write([]byte("ERROR\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestNewOldServer (docs/replication.md §11.2): a node that does not speak
// the meta protocol (memcached before 1.6 answers ERROR) is named as such:
// a call fails with an error that says so and points at
// Config.TextProtocol, and the store reports the node once
// (EventWarning), instead of a bare "unexpected reply" on every call.
func TestNewOldServer(t *testing.T) {
	for _, nodes := range []int{1, 2, 3} {
		t.Run(strconv.Itoa(nodes)+"nodes", func(t *testing.T) {
			var addrs []string
			for range nodes {
				addrs = append(addrs, oldServer(t))
			}
			var mu sync.Mutex
			var events []provider.Event
			s, err := memcached.New(memcached.Config{Nodes: addrs, OnEvent: func(e provider.Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}})
			require.NoError(t, err, "New contacts no node: a node may be down at start")
			t.Cleanup(func() { s.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = s.Get(ctx, "k")
			require.ErrorIs(t, err, memcached.ErrNoMetaProtocol, "%v", err)
			require.Contains(t, err.Error(), "TextProtocol")
			require.False(t, errors.Is(err, provider.ErrNotFound))
			if s.Backup() != memcached.BackupWitness {
				return // the event is the witness scheme's (its connection hello)
			}
			mu.Lock()
			defer mu.Unlock()
			var warned int
			for _, e := range events {
				if e.Kind == provider.EventWarning && strings.Contains(e.Detail, "meta protocol") {
					warned++
				}
			}
			require.Equal(t, nodes, warned, "one warning a node; events: %+v", events)
		})
	}
}
