package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/redis"
)

// storedRecord decodes the record under key as stored, with its deltas.
func storedRecord(t *testing.T, s *redis.Store, key string) rec.Record {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	r, err := rec.Decode(e.Value)
	require.NoError(t, err)
	return r
}

// TestAppendSetsTTL: APPEND and SETRANGE keep a key's TTL, so the append
// script sets it (PEXPIRE) in the same call: the TTL right after a lock,
// a lease renewal or a release written as a delta is the session's own
// timeout (I4), warm and cold. The check runs on a deliberately broken
// variant too (the script without its PEXPIRE), and must fail there.
func TestAppendSetsTTL(t *testing.T) {
	srv := startServer(t)
	check := func(t *testing.T, broken bool) []string {
		flush(t, srv)
		s := newStore(t, srv, redis.Config{AppendDeltas: true})
		if broken {
			redis.SetAppendWithoutTTL(s)
		}
		failures, err := providertest.AppendTTLFailures(context.Background(), s)
		require.NoError(t, err)
		return failures
	}
	require.Empty(t, check(t, false))
	require.Len(t, check(t, true), 5, "the broken variant (append without PEXPIRE) must fail every step")
}

// TestCompareAndAppend: the append is applied only under the caller's
// token, returns a new token (which it also reports as the value whose
// TTL it set), leaves the token and value alone on a conflict, a miss or
// a value that would grow too large, and sends nothing without AppendDeltas.
func TestCompareAndAppend(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	s := newStore(t, srv, redis.Config{AppendDeltas: true, MaxValueSize: 8})
	tok, err := s.Add(ctx, "k", []byte("abc"), time.Minute)
	require.NoError(t, err)
	unchanged := func(value string, cas uint64) {
		t.Helper()
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, value, string(e.Value))
		require.Equal(t, cas, e.CAS)
	}

	_, touched, err := s.CompareAndAppend(ctx, "k", []byte("de"), tok+1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	require.Zero(t, touched)
	unchanged("abc", tok)

	newTok, touched, err := s.CompareAndAppend(ctx, "k", []byte("de"), tok, 90*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, tok, newTok)
	require.Equal(t, newTok, touched, "the TTL is set on the value the append made")
	unchanged("abcde", newTok)
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.Greater(t, ttl, time.Minute, "the append's TTL")

	_, _, err = s.CompareAndAppend(ctx, "k", []byte("f"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "the old token no longer matches")
	_, err = s.CompareAndSwap(ctx, "k", []byte("x"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)

	_, _, err = s.CompareAndAppend(ctx, "k", []byte("fghi"), newTok, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge, "9 bytes: over MaxValueSize")
	unchanged("abcde", newTok)
	_, _, err = s.CompareAndAppend(ctx, "k", []byte("123456789"), newTok, time.Minute)
	require.ErrorIs(t, err, provider.ErrTooLarge, "refused before it is sent")
	newTok, _, err = s.CompareAndAppend(ctx, "k", []byte("fgh"), newTok, time.Minute)
	require.NoError(t, err, "8 bytes: at the limit")
	unchanged("abcdefgh", newTok)

	_, _, err = s.CompareAndAppend(ctx, "absent", []byte("x"), newTok, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.Get(ctx, "absent")
	require.ErrorIs(t, err, provider.ErrNotFound, "not created")
	_, _, err = s.CompareAndAppend(ctx, "k", []byte("x"), newTok, 0)
	require.ErrorIs(t, err, redis.ErrInvalidTTL)

	whole := newStore(t, srv, redis.Config{})
	before, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	_, _, err = whole.CompareAndAppend(ctx, "k", []byte("x"), newTok, time.Minute)
	require.ErrorIs(t, err, provider.ErrNoAppend)
	after, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	require.Equal(t, before["evalsha"]+before["eval"], after["evalsha"]+after["eval"], "nothing sent")
	unchanged("abcdefgh", newTok)
}

// TestAppendToMissingKey: an append from a provider's cached record to a
// session deleted meanwhile reports ErrNotFound, creates nothing, and the
// provider then finds the session gone.
func TestAppendToMissingKey(t *testing.T) {
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{AppendDeltas: true})
	ctx := context.Background()
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id := newBenchSession(t, p)
	key, err := p.Key(id)
	require.NoError(t, err)
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	cur, err := rec.Decode(e.Value)
	require.NoError(t, err)
	next := cur
	next.Seq++
	next.Locked = true
	d, ok := rec.Delta(&cur, &next)
	require.True(t, ok)
	require.NoError(t, s.Delete(ctx, key))
	_, touched, err := s.CompareAndAppend(ctx, key, d, e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.Zero(t, touched)
	_, err = s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound, "APPEND would have created it: the script must not")
	_, err = p.GetItemExclusive(ctx, id) // from its cache: the append misses, the read too
	require.ErrorIs(t, err, provider.ErrNotFound)
}

// TestAppendTooLargeWritesWhole: a session whose record is exactly
// MaxValueSize: a delta does not fit, the script refuses it (ErrTooLarge),
// and the provider writes the lock and the release whole instead.
func TestAppendTooLargeWritesWhole(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	p, err := provider.New(newStore(t, srv, redis.Config{AppendDeltas: true}), provider.Config{})
	require.NoError(t, err)
	id := newBenchSession(t, p)
	key, err := p.Key(id)
	require.NoError(t, err)
	e, err := newStore(t, srv, redis.Config{AppendDeltas: true}).Get(ctx, key)
	require.NoError(t, err)

	s := newStore(t, srv, redis.Config{AppendDeltas: true, MaxValueSize: len(e.Value) + rec.DeltaLen - 1})
	p, err = provider.New(s, provider.Config{})
	require.NoError(t, err)
	for i := range 3 {
		item, err := p.GetItemExclusive(ctx, id)
		require.NoError(t, err, "lock %d", i)
		r := storedRecord(t, s, key)
		require.True(t, r.Locked)
		require.Zero(t, r.Deltas, "a delta does not fit: written whole")
		require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	}
	// With room for one delta, the lock is appended, the release whole.
	s = newStore(t, srv, redis.Config{AppendDeltas: true, MaxValueSize: len(e.Value) + rec.DeltaLen})
	p, err = provider.New(s, provider.Config{})
	require.NoError(t, err)
	item, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.Equal(t, 1, storedRecord(t, s, key).Deltas, "the lock appended")
	require.NoError(t, p.ReleaseItemExclusive(ctx, id, item.LockID))
	require.Zero(t, storedRecord(t, s, key).Deltas, "the release written whole")
}

// TestAppendScriptReloadedAfterFlush: the append script is called by its
// hash, and sent again with its source after SCRIPT FLUSH.
func TestAppendScriptReloadedAfterFlush(t *testing.T) {
	srv := startServer(t)
	var ev events
	s := newStore(t, srv, redis.Config{AppendDeltas: true, OnEvent: ev.add})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("1"), tok, time.Minute) // loads it
	require.NoError(t, err)
	before, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("2"), tok, time.Minute)
	require.NoError(t, err)
	after, err := srv.CommandStats(ctx)
	require.NoError(t, err)
	require.Equal(t, before["evalsha"]+1, after["evalsha"], "a loaded script is called by its hash")
	require.Equal(t, before["eval"], after["eval"], "and not sent again")
	for _, c := range []string{"getrange", "strlen", "append", "setrange", "pexpire"} {
		require.Equal(t, before[c]+1, after[c], "the script runs %s once", c)
	}

	require.NoError(t, srv.Do(ctx, "SCRIPT", "FLUSH").Err())
	n := len(ev.kinds())
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("3"), tok, time.Minute)
	require.NoError(t, err, "the script is reloaded after SCRIPT FLUSH")
	require.Equal(t, []provider.EventKind{provider.EventFallback}, ev.kinds()[n:])
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v123", string(e.Value))
	require.Equal(t, tok, e.CAS)
	sha, err := srv.Do(ctx, "SCRIPT", "LOAD", redis.AppendScriptSource).Text()
	require.NoError(t, err)
	exists, err := srv.Do(ctx, "SCRIPT", "EXISTS", sha).Int64Slice()
	require.NoError(t, err)
	require.Equal(t, []int64{1}, exists)
}

// TestAppendWaitReplicas: WAIT follows an append as every write; an
// append no replica acknowledged is applied on the master and reported as
// of unknown outcome.
func TestAppendWaitReplicas(t *testing.T) {
	t.Parallel() // mostly waits: replication, WAIT's timeout
	master, replica := startReplicated(t)
	ctx := context.Background()
	s := newStore(t, master, redis.Config{AppendDeltas: true, WaitReplicas: 1, WaitTimeout: 2 * time.Second})
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("0"), tok, time.Minute) // loads the script
	require.NoError(t, err)
	before, err := master.CommandStats(ctx)
	require.NoError(t, err)
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("1"), tok, time.Minute)
	require.NoError(t, err)
	after, err := master.CommandStats(ctx)
	require.NoError(t, err)
	require.Equal(t, before["evalsha"]+1, after["evalsha"])
	require.Equal(t, before["wait"]+1, after["wait"], "one WAIT behind the append")
	e, err := newStore(t, replica, redis.Config{AppendDeltas: true}).Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, tok, e.CAS, "acknowledged means on the replica")
	require.Equal(t, "v01", string(e.Value))

	replica.Kill()
	_, touched, err := s.CompareAndAppend(ctx, "k", []byte("2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.ErrorContains(t, err, "acknowledged by 0 of 1 replicas")
	require.Zero(t, touched)
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v012", string(e.Value), "applied on the master")
}

// TestAppendHungServerOutcomeUnknown: an append whose reply does not come
// in time is reported as of unknown outcome, never as a conflict or as
// not written, and it was in fact applied.
func TestAppendHungServerOutcomeUnknown(t *testing.T) {
	t.Parallel() // mostly waits: a hung server
	srv := startServer(t)
	s := newStore(t, srv, redis.Config{AppendDeltas: true, Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	tok, _, err = s.CompareAndAppend(ctx, "k", []byte("1"), tok, time.Minute) // load the script
	require.NoError(t, err)

	hang(t, srv)
	_, touched, err := s.CompareAndAppend(ctx, "k", []byte("2"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.NotErrorIs(t, err, provider.ErrCASConflict)
	require.Zero(t, touched)
	require.NoError(t, srv.Resume())
	var e provider.Entry
	waitUntil(t, 5*time.Second, "the server to answer", func() bool {
		e, err = s.Get(ctx, "k")
		return err == nil
	})
	require.Equal(t, "v12", string(e.Value), "applied later")
}
