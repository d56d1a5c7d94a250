package redis_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// defaultParallel is how many t.Parallel tests run at once unless
// -parallel says otherwise. The long tests here (the conformance suites,
// the cluster and failover tests) spend their time waiting on servers,
// lease takeovers and failure detection, not on the CPU, so they overlap
// well past GOMAXPROCS (the default), even on 2 cores.
const defaultParallel = 6

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", fmt.Sprint(max(defaultParallel, runtime.GOMAXPROCS(0)))); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// startServer starts one redis-server for t (skipping when redis-server
// is not installed).
func startServer(t testing.TB, args ...string) *redistest.Server {
	t.Helper()
	return redistest.StartForTest(t, 1, redistest.Config{Args: args})[0]
}

// newStore returns a Store on srv, closed when t ends.
func newStore(t testing.TB, srv *redistest.Server, cfg redis.Config) *redis.Store {
	t.Helper()
	cfg.Addr = srv.Addr()
	s, err := redis.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// flush empties srv.
func flush(t testing.TB, srv *redistest.Server) {
	t.Helper()
	require.NoError(t, srv.FlushAll(context.Background()))
}

// startReplicated starts a master and a replica of it, without the 5 s
// Redis waits by default before a replica's first (diskless) sync, and
// returns once the replica is in sync.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	servers := redistest.StartForTest(t, 2, redistest.Config{Args: []string{"--repl-diskless-sync-delay", "0"}})
	master, replica = servers[0], servers[1]
	ctx := context.Background()
	require.NoError(t, replica.Do(ctx, "REPLICAOF", "127.0.0.1", master.Port()).Err())
	waitUntil(t, 10*time.Second, "the replica to connect", func() bool {
		info, err := master.Do(ctx, "INFO", "replication").Text()
		return err == nil && strings.Contains(info, "state=online")
	})
	return master, replica
}
