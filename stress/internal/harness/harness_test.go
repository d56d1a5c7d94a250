package harness_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// TestMain lets the test binary serve as the harness's app server
// processes: -procs re-executes the running binary in serve mode.
func TestMain(m *testing.M) {
	if harness.IsChild() {
		os.Exit(harness.ServeChild())
	}
	os.Exit(m.Run())
}

func run(t *testing.T, cfg harness.Config) *harness.Result {
	t.Helper()
	timeout := 2 * time.Minute
	if cfg.Duration > 0 {
		timeout += cfg.Duration // a long run's own time (make soak)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := harness.Run(ctx, cfg)
	require.NoError(t, err)
	t.Logf("requests %d (ok %d, failed %v), lost_updates %d, stuck_locks %d (%d sessions, %d waits; %d locked by a failed request), sessions_lost %d, sessions_unavailable %d, exclusion_violations %d (%d holders across a revival), failed_after_failover %d of %d (%d more on unavailable sessions), fenced %d, wait p50 %.2f ms p99 %.2f ms, makespan %.2f x ideal",
		res.RequestsTotal, res.RequestsOK, res.FailedByReason, res.LostUpdates, res.StuckLocks, res.StuckSessions, res.StuckWaits, res.LockedAfterFailure,
		res.SessionsLost, res.SessionsUnavailable, res.ExclusionViolations, res.HoldersAcrossRevival, res.FailedAfterFailover, res.RequestsAfterFailover, res.FailedOnUnavailable, res.FencedWritesRejected, res.WaitP50Ms, res.WaitP99Ms, res.MakespanRatio)
	t.Logf("counter: %s: %d histories, %d operations (longest %d, %d of unknown outcome), checked in %.1f ms (longest %.1f ms)",
		res.CounterVerdict(), res.CounterHistories, res.CounterOps, res.CounterOpsMax, res.CounterMaybeOps, res.CounterCheckMs, res.CounterCheckMaxMs)
	if res.ExpiryProbes > 0 {
		t.Logf("expiry: %d probe sessions (own timeout %.0f ms), %d read-backs after waiting %.0f ms: %d revived, %d unavailable, %d unchecked; %d found gone while written after a gap past their timeout (up to %.0f ms)",
			res.ExpiryProbes, res.ExpiryTimeoutMs, res.ExpiryReads, res.ExpiryWaitMs, res.ExpiredRevived, res.ExpiredUnavailable, res.ExpiryUnchecked, res.ExpiryReplaced, res.ExpiryReplacedGapMaxMs)
	}
	for _, f := range res.Findings {
		t.Logf("finding: %s", f)
	}
	return res
}

// requireClean asserts that a run kept every invariant.
func requireClean(t *testing.T, res *harness.Result) {
	t.Helper()
	require.Zero(t, res.LostUpdates, "lost_updates")
	require.Zero(t, res.StuckLocks, "stuck_locks")
	require.Zero(t, res.SessionsLost, "sessions_lost")
	require.Zero(t, res.SessionsUnavailable, "sessions_unavailable")
	require.Zero(t, res.ExclusionViolations, "exclusion_violations")
	require.Zero(t, res.CounterNotLinearizable, "counter_not_linearizable")
	require.Zero(t, res.CounterUnchecked, "counter histories unchecked")
	require.Zero(t, res.ExpiredRevived, "expired_session_revived")
	require.Zero(t, res.ExpiryUnchecked, "expiry read-backs failed")
	require.True(t, res.OK())
	require.Empty(t, res.Violations())
}

// TestMemoryRun runs the real thing on the embedded store: every request
// succeeds and every invariant holds.
func TestMemoryRun(t *testing.T) {
	res := run(t, harness.Config{Sessions: 8, Burst: 8, Requests: 800, SlowTime: 2 * time.Millisecond})
	requireClean(t, res)
	require.Equal(t, res.RequestsTotal, res.RequestsOK, "failed: %v", res.FailedByReason)
	// 8 first page loads, 3 probes per route of the mix, 800 workload
	// requests.
	require.Equal(t, 8+3*5+800, res.RequestsTotal)
	require.Positive(t, res.BurstsMeasured)
	require.GreaterOrEqual(t, res.MakespanRatio, 1.0, "a burst cannot beat its serialized handlers")
	require.Positive(t, res.WaitMaxMs, "bursts of exclusive requests on one session must wait")
	for _, route := range []string{harness.RouteIncr, harness.RouteAppend, harness.RouteRead, harness.RouteFree, harness.RouteSlow} {
		require.Positive(t, res.Routes[route].OK, "route %s", route)
	}
}

// TestInProcessAppServers runs two app servers over one memory store, each
// with its own provider: the locks are contended through the store.
func TestInProcessAppServers(t *testing.T) {
	res := run(t, harness.Config{Procs: 2, InProcess: true, Sessions: 4, Burst: 8, Requests: 400, SlowTime: time.Millisecond})
	requireClean(t, res)
	require.Equal(t, res.RequestsTotal, res.RequestsOK, "failed: %v", res.FailedByReason)
}

// TestDroppedReleaseIsCaught runs the harness against a store whose
// unlocking CAS is tried once with its failure ignored (the Couchbase
// provider's stuck-lock bug), with touches that change the CAS so that
// releases really race: the harness must report stuck locks and lost
// updates, and fail.
func TestDroppedReleaseIsCaught(t *testing.T) {
	var dropped atomic.Int64
	res := run(t, harness.Config{
		Sessions: 4, Burst: 8, Conns: 8,
		Mix:      harness.Mix{Incr: 3, Free: 4, Read: 1},
		Requests: -1, Duration: 1500 * time.Millisecond,
		// A long lease keeps a lock whose release was lost stuck for the
		// rest of the run; the short timeout ends the requests stuck
		// behind it.
		Lease: time.Minute, Timeout: time.Second,
		WrapStore: func(s provider.Store) provider.Store {
			return droppedRelease{Store: providertest.TouchChangesCAS{Store: s}, dropped: &dropped}
		},
	})
	require.Positive(t, dropped.Load(), "the broken store never dropped a release; the test proves nothing")
	require.Positive(t, res.StuckLocks, "stuck_locks")
	require.Positive(t, res.StuckSessions)
	require.Positive(t, res.LostUpdates, "lost_updates: a dropped commit loses its increment")
	require.False(t, res.OK())
	require.Contains(t, res.Violations(), "stuck_locks")
}

// TestBlindWritesAreCaught runs two app servers over a store whose CAS
// ignores its token (writes are not fenced): two requests take the same
// lock and overwrite each other's commits. The harness must report lost
// updates and overlapping holders, and fail.
func TestBlindWritesAreCaught(t *testing.T) {
	var overwrote atomic.Int64
	res := run(t, harness.Config{
		Procs: 2, InProcess: true, Sessions: 3, Burst: 8, Conns: 8,
		Mix:      harness.Mix{Incr: 4, Free: 2, Append: 2},
		Requests: 300,
		// A slow store widens the window between a read and its CAS. A
		// lock left behind by a lost release is taken over after a lease.
		Latency: 100 * time.Microsecond, Lease: 500 * time.Millisecond,
		WrapStore: func(s provider.Store) provider.Store {
			return blindWrites{Store: s, overwrote: &overwrote}
		},
	})
	require.Positive(t, overwrote.Load(), "no write was blind; the test proves nothing")
	require.Positive(t, res.LostUpdates, "lost_updates")
	require.False(t, res.OK())
	require.Contains(t, res.Violations(), "lost_updates")
}

// TestMemcachedNodeKilled runs two app servers on three managed memcached
// nodes and kills one mid-run: requests may fail while the clients fail
// over, but nothing acknowledged is lost and no lock stays stuck.
func TestMemcachedNodeKilled(t *testing.T) {
	skipWithoutMemcached(t)
	at, err := harness.ParseAt("40%")
	require.NoError(t, err)
	res := run(t, harness.Config{
		Backend: harness.BackendMemcached, Managed: 3,
		Procs: 2, InProcess: true, Sessions: 10, Burst: 8, Requests: 1500,
		SlowTime: time.Millisecond, KillNode: at,
	})
	requireClean(t, res)
	require.Len(t, res.Events, 1)
	require.Contains(t, res.Events[0].What, "killed memcached node 0")
	require.Greater(t, res.RequestsOK, res.RequestsTotal*9/10, "failed: %v", res.FailedByReason)
}

// TestTieredSurvivesFlush runs two app servers on the tiered backend
// (three managed memcached nodes, the cache's default witness scheme, in
// front of PostgreSQL) and flushes every memcached node mid-run, one after
// the other: every session survives from the durable tier, nothing
// acknowledged is lost, no lock stays stuck. Requests whose lock the flush
// took are fenced (409), never acknowledged. (On two nodes the cache is
// BackupOn, whose copies can go back in time between two flushes: tiered's
// documented undetected case, store/tiered's doc; one lost update in one
// make test run of 2026-11-30, none in 62 runs since.)
func TestTieredSurvivesFlush(t *testing.T) {
	skipWithoutMemcached(t)
	skipWithoutPostgres(t)
	at, err := harness.ParseAt("40%")
	require.NoError(t, err)
	res := run(t, harness.Config{
		Backend: harness.BackendTiered, Managed: 3,
		Procs: 2, InProcess: true, Sessions: 10, Burst: 8, Requests: 1500,
		SlowTime: time.Millisecond, Flush: at, FlushAll: true,
	})
	requireClean(t, res)
	require.Len(t, res.Events, 1)
	require.Contains(t, res.Events[0].What, "flushed all 3 memcached nodes")
	require.Zero(t, res.SessionsLost)
}

// TestCrashedHolderIsTakenOver runs two app server processes over
// memcached and kills one while it holds session locks: the other takes
// the sessions over after a lease, and nothing acknowledged is lost.
func TestCrashedHolderIsTakenOver(t *testing.T) {
	skipWithoutMemcached(t)
	res := run(t, harness.Config{
		Backend: harness.BackendMemcached, Managed: 1,
		Procs: 2, Sessions: 4, Burst: 4, Requests: 300,
		SlowTime: time.Millisecond, Lease: time.Second, CrashHolder: true,
	})
	requireClean(t, res)
	require.Len(t, res.TakeoversMs, 3, "each crashed holder's session is taken over: %v", res.Events)
	require.Positive(t, res.TakeoverMs)
	require.Positive(t, res.RequestsFailed, "the crashed process's requests fail")
}

// TestConfigErrors: bad configurations are refused with a clear error
// before anything starts.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  harness.Config
		want string
	}{
		{"memory across processes", harness.Config{Procs: 2}, "memory backend"},
		{"unknown backend", harness.Config{Backend: "cassandra"}, "unknown backend"},
		{"memcached without nodes", harness.Config{Backend: harness.BackendMemcached}, "-managed"},
		{"kill without managed nodes", harness.Config{KillNode: harness.At{After: time.Second}}, "managed"},
		{"crash holder in one process", harness.Config{Backend: harness.BackendMemcached, Managed: 1, CrashHolder: true}, "-procs 2"},
		{"couchbase without bucket", harness.Config{Backend: harness.BackendCouchbase, Couchbase: harness.Couchbase{ConnStr: "couchbase://127.0.0.1"}}, "-cb-bucket"},
		{"no bound", harness.Config{Requests: -1, Duration: -1}, "bound"},
		{"negative burst", harness.Config{Burst: -1}, "-burst"},
		{"expiry skew without managed nodes", harness.Config{ExpirySkew: 3 * time.Second}, "-expiry-skew needs"},
		{"expiry skew under 2 s", harness.Config{Backend: harness.BackendMemcached, Managed: 3, ExpirySkew: -time.Second}, "at least 2s"},
		{"expiry skew node out of range", harness.Config{Backend: harness.BackendMemcached, Managed: 3, ExpirySkew: 3 * time.Second, ExpirySkewNode: 3}, "-expiry-skew"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := harness.Run(context.Background(), c.cfg)
			require.ErrorIs(t, err, harness.ErrConfig)
			require.ErrorContains(t, err, c.want)
		})
	}
}

// TestCouchbaseUnreachable: a Couchbase cluster that is not there is one
// clear error.
func TestCouchbaseUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := harness.Run(ctx, harness.Config{Backend: harness.BackendCouchbase,
		Couchbase: harness.Couchbase{ConnStr: "couchbase://127.0.0.1:1", Bucket: "sessions", Username: "u", Password: "p"}})
	require.ErrorIs(t, err, harness.ErrUnreachable)
}

func skipWithoutMemcached(t *testing.T) {
	t.Helper()
	mcserver.StartForTest(t, 1, mcserver.Config{}) // skips (or fails when servers are required)
}

func skipWithoutPostgres(t *testing.T) {
	t.Helper()
	if _, err := pgserver.FindBinDir(); err != nil {
		if os.Getenv(pgserver.EnvRequire) != "" {
			t.Fatalf("%s is set but %v", pgserver.EnvRequire, err)
		}
		t.Skip(err)
	}
}
