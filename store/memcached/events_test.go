package memcached_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// eventLog records the events a store reports.
type eventLog struct {
	mu     sync.Mutex
	events []provider.Event
}

func (l *eventLog) add(e provider.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) count(kind provider.EventKind, node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind && e.Node == node {
			n++
		}
	}
	return n
}

// TestNodeEvents: a killed node is reported down (with a failover to the
// backups) once, back up once when it answers again, and the copy a read
// restores on it as a repair; through the middleware's Observer the
// events reach the log.
func TestNodeEvents(t *testing.T) {
	servers := startNodes(t, 2)
	events := &eventLog{}
	var logs bytes.Buffer
	var logMu sync.Mutex
	obs := middleware.Observers(middleware.LogEvents(slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))))
	s := newStore(t, servers, memcached.Config{OnEvent: func(e provider.Event) { events.add(e); obs.StoreEvent(e) }})
	p := newProvider(t, s)
	ids := createSessions(t, p, 1)
	key, err := p.Key(ids[0])
	require.NoError(t, err)
	primary, _ := s.Placement(key)
	victim := serverAt(t, servers, primary)

	victim.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for events.count(provider.EventNodeDown, primary) == 0 {
		require.NoError(t, ctx.Err(), "no node_down event")
		_, _ = s.Get(ctx, key) // the failed read marks the node down
	}
	require.NoError(t, increment(ctx, p, ids[0]), "served by the backup")
	require.Equal(t, 1, events.count(provider.EventNodeDown, primary))
	require.Equal(t, 1, events.count(provider.EventFailover, primary))

	require.NoError(t, victim.Restart(ctx))
	for !isUp(s, primary) {
		require.NoError(t, ctx.Err(), "the node never came back")
		time.Sleep(10 * time.Millisecond) // polling the health check, bounded by ctx
	}
	require.Equal(t, 1, events.count(provider.EventNodeUp, primary))
	require.Equal(t, 1, counter(t, p, ids[0]), "read from the restored copy")
	require.Equal(t, 1, events.count(provider.EventRepair, primary), "the empty primary got its copy back")

	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	require.Contains(t, out, "level=WARN msg=\"session store event\" kind=node_down node="+primary)
	require.Contains(t, out, "level=INFO msg=\"session store event\" kind=node_up node="+primary)
	require.NotContains(t, out, ids[0])
	// Metrics counts them the same way (middleware's TestMetrics); it is
	// left out here so this package's tests need no Prometheus module.
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
