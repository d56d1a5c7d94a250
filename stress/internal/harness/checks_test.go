package harness_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/stress/internal/harness"
)

// TestStaleReadsAreCaught runs two app servers over a store that serves
// every other read of a changed record from its previous snapshot
// (staleReads): no update is lost, but read-only requests return a
// counter older than increments acknowledged before they were sent. The
// harness must report counter_not_linearizable, and fail.
func TestStaleReadsAreCaught(t *testing.T) {
	var served atomic.Int64
	res := run(t, harness.Config{
		Procs: 2, InProcess: true, Sessions: 3, Burst: 6, Requests: 300,
		Mix:   harness.Mix{Incr: 3, Read: 3},
		Lease: 500 * time.Millisecond,
		WrapStore: func(s provider.Store) provider.Store {
			return newStaleReads(s, &served)
		},
	})
	require.Positive(t, served.Load(), "no read was stale; the test proves nothing")
	require.Positive(t, res.CounterNotLinearizable, "counter_not_linearizable")
	require.Contains(t, res.Violations(), "counter_not_linearizable")
	require.False(t, res.OK())
	require.Contains(t, res.CounterVerdict(), "not linearizable")
}

// TestExpiryProbes runs expiry probes (Config.ExpiryProbes) on the memory
// store: every probe's session, idle past its own 1 s timeout, is read
// back through both app servers and found gone; the counter histories are
// checked and linearizable.
func TestExpiryProbes(t *testing.T) {
	res := run(t, harness.Config{
		Procs: 2, InProcess: true, Sessions: 3, Burst: 6, Requests: 600,
		ExpiryProbes: 2,
	})
	requireClean(t, res)
	require.Equal(t, 2, res.ExpiryProbes)
	require.GreaterOrEqual(t, res.ExpiryReads, 2*2, "each probe's session through each app server")
	require.Positive(t, res.CounterHistories)
	require.Equal(t, "linearizable", res.CounterVerdict())
}

// TestExpiredSessionRevivedIsCaught runs expiry probes over a store that
// ignores the provider's TTL (noExpiry: every item lives an hour): the
// probes' sessions, idle past their own timeout, are still there at the
// read-back. The harness must report expired_session_revived, and fail.
func TestExpiredSessionRevivedIsCaught(t *testing.T) {
	var ignored atomic.Int64
	res := run(t, harness.Config{
		Procs: 2, InProcess: true, Sessions: 3, Burst: 6, Requests: 600,
		ExpiryProbes: 2,
		WrapStore: func(s provider.Store) provider.Store {
			return noExpiry{Store: s, ignored: &ignored}
		},
	})
	require.Positive(t, ignored.Load(), "no TTL was ignored; the test proves nothing")
	require.Positive(t, res.ExpiredRevived, "expired_session_revived")
	require.Contains(t, res.Violations(), "expired_session_revived")
	require.False(t, res.OK())
}
