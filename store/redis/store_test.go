package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// waitUntil polls cond until it holds, failing t after bound.
func waitUntil(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, bound, what, cond)
}

// events collects store events.
type events struct {
	mu  sync.Mutex
	got []provider.Event
}

func (e *events) add(ev provider.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) kinds() []provider.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []provider.EventKind
	for _, ev := range e.got {
		k = append(k, ev.Kind)
	}
	return k
}

func TestTokensFromWrites(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{})
	ctx := context.Background()

	t1, err := s.Add(ctx, "k", []byte("one"), time.Minute)
	require.NoError(t, err)
	require.NotZero(t, t1)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "one", string(e.Value))
	require.Equal(t, t1, e.CAS, "Add returns the token Get reads")

	// A commit with the token the previous write returned, no re-read.
	t2, err := s.CompareAndSwap(ctx, "k", []byte("two"), t1, time.Minute)
	require.NoError(t, err)
	require.NotEqual(t, t1, t2)
	t3, err := s.CompareAndSwap(ctx, "k", []byte("three"), t2, time.Minute)
	require.NoError(t, err)
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "three", string(e.Value))
	require.Equal(t, t3, e.CAS)

	_, err = s.CompareAndSwap(ctx, "k", []byte("stale"), t2, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	_, err = s.CompareAndSwap(ctx, "absent", []byte("x"), t3, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.Add(ctx, "k", []byte("again"), time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)

	// Touch keeps the token; GetAndTouch reads it and sets the TTL.
	require.NoError(t, s.Touch(ctx, "k", 2*time.Minute))
	e, err = s.GetAndTouch(ctx, "k", 3*time.Minute)
	require.NoError(t, err)
	require.Equal(t, t3, e.CAS)
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.InDelta(t, float64(3*time.Minute), float64(ttl), float64(5*time.Second))
	_, err = s.GetAndTouch(ctx, "absent", time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)

	require.NoError(t, s.Delete(ctx, "k"))
	require.ErrorIs(t, s.Delete(ctx, "k"), provider.ErrNotFound)
	require.ErrorIs(t, s.Touch(ctx, "k", time.Minute), provider.ErrNotFound)
	_, err = s.TTL(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
}

func TestTTLMilliseconds(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{})
	ctx := context.Background()
	start := time.Now()
	_, err := s.Add(ctx, "k", []byte("v"), 1500*time.Millisecond)
	require.NoError(t, err)
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, 1500*time.Millisecond, "not rounded up to whole seconds")
	require.GreaterOrEqual(t, ttl, 1500*time.Millisecond-time.Since(start)-time.Millisecond)
	// Sub-millisecond TTLs round up, never to zero (which Redis refuses).
	require.NoError(t, s.Touch(ctx, "k", time.Microsecond))
}

// staleTokenMatches reports whether a token held from before a key's
// value was replaced behind the writers' backs (expiry and re-creation, or
// a failover that dropped an acknowledged write) still matches the new
// value: the bug class the random tokens rule out.
type tokenScenario func(t *testing.T, s *redis.Store, srv *redistest.Server) (staleMatches bool)

var tokenScenarios = map[string]tokenScenario{
	// The key expires and is created again with the same bytes; a holder
	// of the first incarnation's token writes.
	"ExpiryAndRecreation": func(t *testing.T, s *redis.Store, _ *redistest.Server) bool {
		ctx := context.Background()
		old, err := s.Add(ctx, "k", []byte("v"), 50*time.Millisecond)
		require.NoError(t, err)
		waitUntil(t, 5*time.Second, "expiry", func() bool {
			_, err := s.Get(ctx, "k")
			return errors.Is(err, provider.ErrNotFound)
		})
		_, err = s.Add(ctx, "k", []byte("v"), time.Minute)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, "k", []byte("stale holder"), old, time.Minute)
		if err == nil {
			return true
		}
		require.ErrorIs(t, err, provider.ErrCASConflict)
		return false
	},
	// The same, the stale holder appending (a lock change as a delta).
	"ExpiryAndRecreationAppend": func(t *testing.T, s *redis.Store, _ *redistest.Server) bool {
		ctx := context.Background()
		old, err := s.Add(ctx, "k", []byte("v"), 50*time.Millisecond)
		require.NoError(t, err)
		waitUntil(t, 5*time.Second, "expiry", func() bool {
			_, err := s.Get(ctx, "k")
			return errors.Is(err, provider.ErrNotFound)
		})
		_, err = s.Add(ctx, "k", []byte("v"), time.Minute)
		require.NoError(t, err)
		_, _, err = s.CompareAndAppend(ctx, "k", []byte("stale holder"), old, time.Minute)
		if err == nil {
			return true
		}
		require.ErrorIs(t, err, provider.ErrCASConflict)
		return false
	},
	// A write W is acknowledged (token tw), then a failover puts back the
	// replica's older copy (DUMP/RESTORE plays the replica); another
	// writer reads the older copy and writes. The holder of tw must not
	// match that writer's value.
	"FailoverDropsAcknowledgedWrite": func(t *testing.T, s *redis.Store, srv *redistest.Server) bool {
		ctx := context.Background()
		c := srv.Client()
		defer c.Close()
		t0, err := s.Add(ctx, "k", []byte("v0"), time.Minute)
		require.NoError(t, err)
		replica, err := c.Dump(ctx, "k").Result()
		require.NoError(t, err)
		tw, err := s.CompareAndSwap(ctx, "k", []byte("acknowledged, then lost"), t0, time.Minute)
		require.NoError(t, err)
		require.NoError(t, c.RestoreReplace(ctx, "k", time.Minute, replica).Err())
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, t0, e.CAS)
		_, err = s.CompareAndSwap(ctx, "k", []byte("other writer"), e.CAS, time.Minute)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, "k", []byte("holder of the lost write"), tw, time.Minute)
		if err == nil {
			return true
		}
		require.ErrorIs(t, err, provider.ErrCASConflict)
		return false
	},
}

// TestStaleTokenNeverMatches runs each scenario with the Store's random
// tokens (no stale token matches) and with counter tokens kept in test
// code (the stale token matches: the check can fail).
func TestStaleTokenNeverMatches(t *testing.T) {
	srv := startServer(t)
	for name, scenario := range tokenScenarios {
		t.Run(name, func(t *testing.T) {
			flush(t, srv)
			require.False(t, scenario(t, newStore(t, srv, redis.Config{AppendDeltas: true}), srv), "a stale token matched a different value")
		})
		t.Run(name+"/CounterTokens", func(t *testing.T) {
			flush(t, srv)
			s := newStore(t, srv, redis.Config{AppendDeltas: true})
			redis.UseCounterTokens(s)
			require.True(t, scenario(t, s, srv), "the broken variant was not caught")
		})
	}
}

func TestScriptReloadedAfterFlush(t *testing.T) {
	srv := startServer(t)
	var ev events
	s := newStore(t, srv, redis.Config{OnEvent: ev.add})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	tok, err = s.CompareAndSwap(ctx, "k", []byte("v1"), tok, time.Minute) // first call loads it
	require.NoError(t, err)
	before, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	tok, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.NoError(t, err)
	after, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	require.Equal(t, before["evalsha"]+1, after["evalsha"], "a loaded script is called by its hash")
	require.Equal(t, before["eval"], after["eval"], "and not sent again")

	require.NoError(t, srv.Do(ctx, "SCRIPT", "FLUSH").Err())
	n := len(ev.kinds())
	tok, err = s.CompareAndSwap(ctx, "k", []byte("v3"), tok, time.Minute)
	require.NoError(t, err, "the script is reloaded after SCRIPT FLUSH")
	require.Equal(t, []provider.EventKind{provider.EventFallback}, ev.kinds()[n:])
	_, err = s.CompareAndSwap(ctx, "k", []byte("stale"), tok-1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v3", string(e.Value))
	require.Equal(t, tok, e.CAS)
	exists, err := srv.Do(ctx, "SCRIPT", "EXISTS", scriptSHA(t, srv)).Int64Slice()
	require.NoError(t, err)
	require.Equal(t, []int64{1}, exists, "loaded again")
}

// scriptSHA returns the SHA1 of the compare-and-swap script, as the
// server computes it.
func scriptSHA(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	sha, err := srv.Do(context.Background(), "SCRIPT", "LOAD", redis.CASScriptSource).Text()
	require.NoError(t, err)
	return sha
}

func TestBadInput(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{MaxValueSize: 1024})
	ctx := context.Background()
	before, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	for _, key := range []string{"", strings.Repeat("k", redis.MaxKeyLen+1)} {
		_, err := s.Get(ctx, key)
		require.ErrorIs(t, err, redis.ErrInvalidKey)
		_, err = s.Add(ctx, key, []byte("v"), time.Minute)
		require.ErrorIs(t, err, redis.ErrInvalidKey)
		_, err = s.CompareAndSwap(ctx, key, []byte("v"), 1, time.Minute)
		require.ErrorIs(t, err, redis.ErrInvalidKey)
		require.ErrorIs(t, s.Touch(ctx, key, time.Minute), redis.ErrInvalidKey)
		require.ErrorIs(t, s.Delete(ctx, key), redis.ErrInvalidKey)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		_, err := s.Add(ctx, "k", []byte("v"), ttl)
		require.ErrorIs(t, err, redis.ErrInvalidTTL)
		require.ErrorIs(t, s.Touch(ctx, "k", ttl), redis.ErrInvalidTTL)
		_, err = s.GetAndTouch(ctx, "k", ttl)
		require.ErrorIs(t, err, redis.ErrInvalidTTL)
	}
	_, err = s.Add(ctx, "k", make([]byte, 1025), time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	after, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	for _, admin := range []string{"info", "hello"} { // the counting itself
		delete(after, admin)
		delete(before, admin)
	}
	require.Equal(t, before, after, "bad input sent no command")

	// An oversized CAS writes nothing.
	tok, err := s.Add(ctx, "k", []byte("small"), time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", make([]byte, 1025), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "small", string(e.Value))

	// Foreign values: too short for a token, or not a string.
	require.NoError(t, srv.Do(ctx, "SET", "short", "abc").Err())
	_, err = s.Get(ctx, "short")
	require.ErrorIs(t, err, provider.ErrCorrupt)
	_, err = s.CompareAndSwap(ctx, "short", []byte("v"), 1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a foreign value is never replaced")
	require.NoError(t, srv.Do(ctx, "HSET", "hash", "f", "v").Err())
	_, err = s.Get(ctx, "hash")
	require.ErrorIs(t, err, provider.ErrCorrupt)
	_, err = s.CompareAndSwap(ctx, "hash", []byte("v"), 1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	_, err = s.GetAndTouch(ctx, "hash", time.Minute)
	require.ErrorIs(t, err, provider.ErrCorrupt)
	typ, err := srv.Do(ctx, "TYPE", "hash").Text()
	require.NoError(t, err)
	require.Equal(t, "hash", typ)

	// A cancelled context: its error, nothing sent.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(cctx, "k")
	require.ErrorIs(t, err, context.Canceled)

	// After Close.
	require.NoError(t, s.Close())
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrClosed)
	_, err = s.CompareAndSwap(ctx, "k", []byte("v"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrClosed)
	require.NoError(t, s.Close())

	_, err = redis.New(redis.Config{DB: -1})
	require.Error(t, err)
}

func TestKeyPrefixAndDB(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{DB: 3, KeyPrefix: "app1:"})
	ctx := context.Background()
	_, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	c := srv.Client()
	defer c.Close()
	require.NoError(t, c.Do(ctx, "SELECT", 3).Err())
	n, err := c.Exists(ctx, "app1:k").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "stored as KeyPrefix+key in DB 3")
	c0 := srv.Client()
	defer c0.Close()
	n, err = c0.Exists(ctx, "app1:k").Result()
	require.NoError(t, err)
	require.Zero(t, n, "not in DB 0")
}

func TestAuth(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	require.NoError(t, srv.Do(ctx, "ACL", "SETUSER", "app", "on", ">secret", "~*", "+@all", "-evalsha", "-eval").Err())
	require.NoError(t, srv.Do(ctx, "ACL", "SETUSER", "default", "off").Err())

	bad := newStore(t, srv, redis.Config{Username: "app", Password: "wrong"})
	_, err := bad.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrServer, "a wrong password is the server's answer")

	s := newStore(t, srv, redis.Config{Username: "app", Password: "secret"})
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	// A script the user may not run: a server error, nothing written.
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrServer)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
}

func TestOutOfMemory(t *testing.T) {
	srv := startServer(t, "--maxmemory-policy", "noeviction")
	s := newStore(t, srv, redis.Config{})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	require.NoError(t, srv.Do(ctx, "CONFIG", "SET", "maxmemory", "1").Err())
	_, err = s.Add(ctx, "other", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrServer)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.Contains(t, err.Error(), "OOM")
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrServer, "the script is refused before it runs")
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	e, err := s.Get(ctx, "k") // reads still work
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
	require.Equal(t, tok, e.CAS)
	require.NoError(t, srv.Do(ctx, "CONFIG", "SET", "maxmemory", "0").Err())
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.NoError(t, err)
}

// TestReadOnlyReplica: writes to a replica are refused (READONLY) and a
// replica cut from its master refuses reads (MASTERDOWN): unavailable,
// nothing executed.
func TestReadOnlyReplica(t *testing.T) {
	t.Parallel() // mostly waits: a hung server, replication, cluster start
	master, replica := startReplicated(t)
	ctx := context.Background()
	m := newStore(t, master, redis.Config{})
	tok, err := m.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	r := newStore(t, replica, redis.Config{})
	waitUntil(t, 10*time.Second, "replication", func() bool {
		e, err := r.Get(ctx, "k")
		return err == nil && e.CAS == tok
	})
	_, err = r.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "READONLY: nothing was executed")
	require.Contains(t, err.Error(), "READONLY")
	_, err = r.Add(ctx, "new", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)

	// A replica that has lost its master and serves no stale data answers
	// MASTERDOWN: unavailable.
	require.NoError(t, replica.Do(ctx, "CONFIG", "SET", "replica-serve-stale-data", "no").Err())
	master.Kill()
	waitUntil(t, 10*time.Second, "the replica to answer MASTERDOWN", func() bool {
		_, err = r.Get(ctx, "k")
		return err != nil && strings.Contains(err.Error(), "MASTERDOWN")
	})
	require.ErrorIs(t, err, provider.ErrUnavailable)
}

func TestServerDownAndBack(t *testing.T) {
	srv := startServer(t)
	var ev events
	s := newStore(t, srv, redis.Config{OnEvent: ev.add})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	srv.Kill()
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
	// Connection refused: the write was never sent, so its outcome is
	// known.
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	_, err = s.Add(ctx, "k2", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.Equal(t, []provider.EventKind{provider.EventNodeDown}, ev.kinds(), "reported once")

	require.NoError(t, srv.Restart(ctx))
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound, "the restarted server is empty")
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound, "its scripts are loaded again")
	kinds := ev.kinds()
	require.Equal(t, []provider.EventKind{provider.EventNodeDown, provider.EventNodeUp}, kinds[:2])
	for _, ev := range ev.got {
		require.Equal(t, srv.Addr(), ev.Node)
	}
}

// TestHungServerOutcomeUnknown hangs the server (SIGSTOP) while a CAS is
// in flight: the CAS times out and must be reported as of unknown outcome,
// because it is applied once the server goes on (SIGCONT).
func TestHungServerOutcomeUnknown(t *testing.T) {
	t.Parallel() // mostly waits: a hung server
	for _, tc := range []struct {
		name string
		cfg  redis.Config
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"Timeout", redis.Config{Timeout: 300 * time.Millisecond}, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, provider.ErrUnavailable},
		{"ContextDeadline", redis.Config{Timeout: 10 * time.Second}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			s := newStore(t, srv, tc.cfg)
			ctx := context.Background()
			tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
			require.NoError(t, err)
			_, err = s.CompareAndSwap(ctx, "k", []byte("warm"), tok, time.Minute) // load the script
			require.NoError(t, err)
			e, err := s.Get(ctx, "k")
			require.NoError(t, err)

			hang(t, srv)
			opCtx, cancel := tc.ctx()
			defer cancel()
			_, err = s.CompareAndSwap(opCtx, "k", []byte("applied later"), e.CAS, time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.ErrorIs(t, err, tc.want)
			require.NotErrorIs(t, err, provider.ErrCASConflict)
			require.NoError(t, srv.Resume())

			// The "unknown" write was applied: reporting it as not written
			// would have been wrong.
			waitUntil(t, 5*time.Second, "the server to answer", func() bool {
				e, err = s.Get(ctx, "k")
				return err == nil
			})
			require.Equal(t, "applied later", string(e.Value))

			// A read that times out is just unavailable.
			hang(t, srv)
			rctx, rcancel := tc.ctx()
			defer rcancel()
			_, err = s.Get(rctx, "k")
			require.Error(t, err)
			require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
			require.NoError(t, srv.Resume())
		})
	}
}

// hang stops srv (SIGSTOP) until the test resumes it or ends: it keeps its
// connections, and what is sent meanwhile runs once it goes on.
func hang(t *testing.T, srv *redistest.Server) {
	t.Helper()
	require.NoError(t, srv.Pause())
	t.Cleanup(func() { _ = srv.Resume() })
}

// TestConcurrentCAS: of many writers with the same token exactly one wins,
// and the winner's returned token is the stored one.
func TestConcurrentCAS(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	const writers = 16
	var wg sync.WaitGroup
	results := make(chan uint64, writers)
	for i := range writers {
		wg.Go(func() {
			n, err := s.CompareAndSwap(ctx, "k", fmt.Appendf(nil, "w%d", i), tok, time.Minute)
			if err == nil {
				results <- n
			} else if !errors.Is(err, provider.ErrCASConflict) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(results)
	var won []uint64
	for n := range results {
		won = append(won, n)
	}
	require.Len(t, won, 1)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, won[0], e.CAS)
}

// TestScriptErrors: a script that fails on the server is ErrServer and
// writes nothing; a server busy with another client's long script
// answers BUSY before running anything, which is ErrUnavailable; neither
// is of unknown outcome.
func TestScriptErrors(t *testing.T) {
	srv := startServer(t, "--busy-reply-threshold", "100")
	ctx := context.Background()
	s := newStore(t, srv, redis.Config{AppendDeltas: true})
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	redis.SetAppendScript(s, "#!lua\nreturn redis.call('NOSUCHCOMMAND', KEYS[1])\n")
	_, _, err = s.CompareAndAppend(ctx, "k", []byte("+"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrServer)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.ErrorContains(t, err, "Unknown Redis command called from script")
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tok, e.CAS, "nothing written")

	// Another client's script loops past busy-reply-threshold.
	looping := make(chan error, 1)
	c, probe := srv.Client(), srv.Client()
	defer c.Close()
	defer probe.Close()
	go func() { looping <- c.Do(ctx, "EVAL", "while true do end", 0).Err() }()
	waitUntil(t, 10*time.Second, "the server to answer BUSY", func() bool {
		err := probe.Ping(ctx).Err()
		return err != nil && strings.HasPrefix(err.Error(), "BUSY")
	})
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "BUSY: nothing was executed")
	require.ErrorContains(t, err, "BUSY")
	_, err = s.Add(ctx, "k2", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.NoError(t, probe.Do(ctx, "SCRIPT", "KILL").Err())
	require.Error(t, <-looping, "the looping script was killed")
	tok, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.NoError(t, err, "the server serves again")
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tok, e.CAS)
}

// TestPoolSize: PoolSize bounds the Store's connections however many
// requests run at once; the default (go-redis's, 10 per GOMAXPROCS)
// opens more under the same load, so the count can fail.
func TestPoolSize(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	conns := func(s *redis.Store) int64 {
		t.Helper()
		_, err := s.Add(ctx, "k", []byte("v"), time.Minute)
		require.True(t, err == nil || errors.Is(err, provider.ErrExists), "%v", err)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 50 {
					_, err := s.Get(ctx, "k")
					require.NoError(t, err)
				}
			})
		}
		wg.Wait()
		list, err := srv.Do(ctx, "CLIENT", "LIST").Text()
		require.NoError(t, err)
		return int64(strings.Count(strings.TrimSpace(list), "\n")) // without the counting connection
	}
	require.LessOrEqual(t, conns(newStore(t, srv, redis.Config{PoolSize: 2})), int64(2))
	require.NoError(t, srv.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
	require.Greater(t, conns(newStore(t, srv, redis.Config{})), int64(2), "the default pool opens more connections")
}

// TestReadSlidesOwnTimeout: a read-only request is one GETEX with the
// timeout the session is expected to have. A process that knows the
// session's own timeout (it wrote it, or read it once) sends that one
// command and the key's TTL becomes the session's own timeout (I4); a
// process that does not yet know it slides by the default and corrects
// the TTL with one compare-and-swap of the unchanged record, then knows.
func TestReadSlidesOwnTimeout(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	s := newStore(t, srv, redis.Config{})
	const own = 7 * time.Minute
	writer, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, writer.SetAndReleaseItemExclusive(ctx, id, writer.CreateNewStoreData(own), 0, true))
	key, err := writer.Key(id)
	require.NoError(t, err)
	item, err := writer.GetItemExclusive(ctx, id) // loads the script
	require.NoError(t, err)
	require.NoError(t, writer.ReleaseItemExclusive(ctx, id, item.LockID))

	read := func(p *provider.Provider) map[string]uint64 {
		t.Helper()
		before, err := srv.CommandStats(ctx)
		require.NoError(t, err)
		_, err = p.GetItem(ctx, id)
		require.NoError(t, err)
		after, err := srv.CommandStats(ctx)
		require.NoError(t, err)
		sent := map[string]uint64{}
		for name, n := range after {
			if d := n - before[name]; d > 0 && name != "info" && name != "hello" {
				sent[name] = d
			}
		}
		ttl, err := s.TTL(ctx, key)
		require.NoError(t, err)
		require.LessOrEqual(t, ttl, own, "the key's TTL is the session's own timeout")
		require.Greater(t, ttl, own-time.Minute)
		return sent
	}
	require.Equal(t, map[string]uint64{"getex": 1}, read(writer), "the writer knows the timeout: one GETEX")
	other, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{"getex": 1, "evalsha": 1, "getrange": 1, "set": 1}, read(other),
		"another process slides by the default, then corrects the TTL")
	require.Equal(t, map[string]uint64{"getex": 1}, read(other), "and remembers")
}
