package middleware

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// blockingStore holds the first CompareAndSwap after it is armed until
// release is closed, announcing on entered that the call is in the store.
type blockingStore struct {
	provider.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newBlockingStore() *blockingStore {
	return &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingStore) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if b.armed.CompareAndSwap(true, false) {
		close(b.entered)
		<-b.release
	}
	return b.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

// TestCommitDoesNotHoldTheSessionDuringStoreIO: while Commit's write is in
// the store (held there by the wrapper), the session's mutex is free and
// another goroutine of the handler reads the session; a change is refused
// with ErrCommitted. Before, finish held s.mu through
// SetAndReleaseItemExclusive, and TryLock failed here.
func TestCommitDoesNotHoldTheSessionDuringStoreIO(t *testing.T) {
	bs := newBlockingStore()
	e := newEnv(t, envOptions{wrap: func(st provider.Store) provider.Store { bs.Store = st; return bs }})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Set("n", 2))
		bs.armed.Store(true)
		done := make(chan error, 1)
		go func() { done <- s.Commit(r.Context()) }()
		recv(t, bs.entered, "the commit's write to reach the store")

		free := s.mu.TryLock()
		if free {
			s.mu.Unlock()
		}
		assert.True(t, free, "the session's mutex is free while the store works")
		if free { // else these would wait for the store
			n, ok, err := session.Get[int](s, "n")
			assert.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, 2, n, "the request's own change is readable during the commit")
			assert.Equal(t, id, s.ID())
			assert.Equal(t, []string{"n"}, s.Keys())
			assert.ErrorIs(t, s.Set("m", 1), ErrCommitted)
		}
		close(bs.release)
		assert.NoError(t, recv(t, done, "Commit"))
		assert.NoError(t, s.Commit(r.Context()), "a second Commit after the first is a no-op")
	}))
	res := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusOK, res.Code)
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n)
	require.False(t, e.header(id).Locked)
}

// TestCommitHonoursItsContext: a Commit whose context is already cancelled
// stores nothing and says why, and releases the lock; the request's
// response is then the error.
func TestCommitHonoursItsContext(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Set("n", 2))
		ctx, cancel := context.WithCancel(r.Context())
		cancel()
		assert.ErrorIs(t, s.Commit(ctx), context.Canceled)
	}))
	res := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusInternalServerError, res.Code, "a success status is not sent for changes not stored")
	require.False(t, e.header(id).Locked, "the lock is released, not left for a lease")
	n, _ := e.value(id, "n")
	require.Equal(t, 1, n)
}

// TestAbandonThenSetStartsANewSession: sign out and say so in two calls.
func TestAbandonThenSetStartsANewSession(t *testing.T) {
	for _, mode := range []Mode{Exclusive, LockFree} {
		t.Run(mode.String(), func(t *testing.T) { abandonThenSet(t, mode) })
	}
}

func abandonThenSet(t *testing.T, mode Mode) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"user": "ann", "n": 1}, 3*time.Minute)
	var during atomic.Value
	h := e.m.WithMode(mode, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Abandon())
		user, _, _ := session.Get[string](s, "user")
		assert.Equal(t, "ann", user, "values stay readable until the next change")
		require.NoError(t, s.Set("flash", "signed out"))
		assert.False(t, s.Has("user"), "the new session starts empty")
		assert.Equal(t, provider.DefaultTimeout, s.Timeout(), "with the default timeout")
		assert.NotEmpty(t, s.ID())
		assert.NotEqual(t, id, s.ID())
		during.Store(s.ID())
	}))
	res := serve(h, request("POST", "/logout", id)).Result()
	require.Equal(t, http.StatusOK, res.StatusCode)
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.Equal(t, during.Load(), c.Value, "the cookie carries the new id, not a deletion")
	require.GreaterOrEqual(t, c.MaxAge, 0)
	require.Len(t, res.Header.Values("Set-Cookie"), 1)

	_, err := e.inspect.GetItem(context.Background(), id)
	require.ErrorIs(t, err, provider.ErrNotFound, "the old session is removed")
	item, err := e.inspect.GetItem(context.Background(), c.Value)
	require.NoError(t, err)
	require.Equal(t, []string{"flash"}, item.Data.Values.Keys())
	require.Equal(t, provider.DefaultTimeout, item.Data.Timeout())

	// The next request pops the message from the new session.
	var flash atomic.Value
	serve(e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _, _ := session.Pop[string](FromContext(r.Context()), "flash")
		flash.Store(m)
	})), request("GET", "/", c.Value))
	require.Equal(t, "signed out", flash.Load())
}

// TestAbandonSetAbandonStoresNothing: abandoning the new session too
// leaves no session at all and deletes the cookie.
func TestAbandonSetAbandonStoresNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	var newID atomic.Value
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Abandon())
		require.NoError(t, s.Set("flash", "x"))
		newID.Store(s.ID())
		require.NoError(t, s.Abandon())
		assert.Empty(t, s.ID())
	}))
	res := serve(h, request("POST", "/", id)).Result()
	c := sessionCookie(res, DefaultCookieName)
	require.NotNil(t, c)
	require.Negative(t, c.MaxAge, "the cookie is deleted")
	for _, gone := range []string{id, newID.Load().(string)} {
		_, err := e.inspect.GetItem(context.Background(), gone)
		require.ErrorIs(t, err, provider.ErrNotFound)
	}
}

// popOnce serves one request in mode that pops "flash" and returns what it
// popped ("" when absent).
func popOnce(t *testing.T, m *Manager, mode Mode, id string) string {
	t.Helper()
	var got atomic.Value
	got.Store("")
	res := serve(m.WithMode(mode, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		msg, ok, err := session.Pop[string](s, "flash")
		assert.NoError(t, err)
		assert.False(t, s.Has("flash"), "popped: gone for the rest of the request")
		if ok {
			got.Store(msg)
		}
	})), request("GET", "/", id))
	require.Equal(t, http.StatusOK, res.Code)
	return got.Load().(string)
}

// TestPopShowsAFlashOnce: on Exclusive and on ReadOnly routes, a popped
// message is shown once and the session's other values stay.
func TestPopShowsAFlashOnce(t *testing.T) {
	for _, mode := range []Mode{Exclusive, ReadOnly, LockFree} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEnv(t, envOptions{})
			id := e.create(map[string]any{"flash": "saved", "n": 7}, 2*time.Minute)
			require.Equal(t, "saved", popOnce(t, e.m, mode, id))
			require.Equal(t, "", popOnce(t, e.m, mode, id), "shown once")
			item, err := e.inspect.GetItem(context.Background(), id)
			require.NoError(t, err)
			require.Equal(t, []string{"n"}, item.Data.Values.Keys())
			require.Equal(t, 2*time.Minute, item.Data.Timeout())
			require.False(t, e.header(id).Locked)
		})
	}
}

// TestPopReadOnlyWritesOnlyThePoppedKey: a read-only request that pops
// nothing writes nothing, and one that pops still may not change anything
// else.
func TestPopReadOnlyWritesOnlyThePoppedKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"flash": "hi"}, 0)
	before := e.header(id)
	serve(e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		_, ok, err := session.Pop[string](s, "absent")
		assert.False(t, ok)
		assert.NoError(t, err)
		assert.ErrorIs(t, s.Set("k", 1), ErrReadOnly)
	})), request("GET", "/", id))
	require.Equal(t, before.DataSeq, e.header(id).DataSeq, "nothing popped, nothing written")
	require.Equal(t, "hi", popOnce(t, e.m, ReadOnly, id))
	require.Equal(t, before.DataSeq+1, e.header(id).DataSeq, "one write for the pop")
}

// TestPopReadOnlyNeverDeletesANewerMessage: another request sets a new
// message while a read-only request shows the old one; the read-only
// request's deletion leaves the new message alone.
func TestPopReadOnlyNeverDeletesANewerMessage(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"flash": "old"}, 0)
	ctx := context.Background()
	var got atomic.Value
	serve(e.m.WithMode(ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg, _, _ := session.Pop[string](FromContext(r.Context()), "flash")
		got.Store(msg)
		// Meanwhile another request sets a new message.
		item, err := e.inspect.GetItemExclusive(ctx, id)
		require.NoError(t, err)
		require.NoError(t, item.Data.Values.Set("flash", "new"))
		require.NoError(t, e.inspect.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false))
	})), request("GET", "/", id))
	require.Equal(t, "old", got.Load())
	require.Equal(t, "new", popOnce(t, e.m, ReadOnly, id), "the newer message was kept")
}

// TestPopReadOnlySurvivesAHoldersCommit: a read-only pop that lands while
// an exclusive request holds the lock is kept when that request commits a
// change of another key.
func TestPopReadOnlySurvivesAHoldersCommit(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{ReadOnlyNoWait: true}})
	id := e.create(map[string]any{"flash": "hi", "n": 1}, 0)
	ctx := context.Background()
	holder, err := e.inspect.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "hi", popOnce(t, e.m, ReadOnly, id))
	require.NoError(t, holder.Data.Values.Set("n", 2))
	require.NoError(t, e.inspect.SetAndReleaseItemExclusive(ctx, id, holder.Data, holder.LockID, false))
	item, err := e.inspect.GetItem(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []string{"n"}, item.Data.Values.Keys(), "the pop survived the holder's commit")
	n, _ := e.value(id, "n")
	require.Equal(t, 2, n)
}

// TestPopOnMemcached: the same flash message on a real memcached pool of
// two nodes with backups: shown once on a ReadOnly route, once on an
// Exclusive one.
func TestPopOnMemcached(t *testing.T) {
	servers := mcserver.StartForTest(t, 2, mcserver.Config{})
	st, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	p, err := provider.New(st, provider.Config{})
	require.NoError(t, err)
	m, err := New(Config{Provider: p})
	require.NoError(t, err)
	ctx := context.Background()
	for _, mode := range []Mode{ReadOnly, Exclusive} {
		id, err := session.NewID()
		require.NoError(t, err)
		data := p.CreateNewStoreData(0)
		require.NoError(t, data.Values.Set("flash", "hello"))
		require.NoError(t, data.Values.Set("n", 1))
		require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, data, 0, true))
		require.Equal(t, "hello", popOnce(t, m, mode, id), mode)
		require.Equal(t, "", popOnce(t, m, mode, id), mode)
		item, err := p.GetItem(ctx, id)
		require.NoError(t, err)
		require.Equal(t, []string{"n"}, item.Data.Values.Keys(), mode)
	}
}
