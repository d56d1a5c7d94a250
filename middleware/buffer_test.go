package middleware

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
)

// unlockFailer fails, while armed, every write that leaves a session
// unlocked: the CompareAndSwap of a commit or a release (and of a
// lock-free commit), and the Add of a new session. Lease renewals and
// lock takes, which write locked records, go through.
type unlockFailer struct {
	provider.Store
	armed  atomic.Bool
	failed atomic.Int64
}

var errNodeDown = fmt.Errorf("node down: %w", provider.ErrUnavailable)

func (f *unlockFailer) refuse(v []byte) bool {
	if !f.armed.Load() {
		return false
	}
	h, err := record.Parse(v)
	if err != nil || h.Locked {
		return false
	}
	f.failed.Add(1)
	return true
}

func (f *unlockFailer) CompareAndSwap(ctx context.Context, key string, v []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if f.refuse(v) {
		return 0, errNodeDown
	}
	return f.Store.CompareAndSwap(ctx, key, v, cas, ttl)
}

func (f *unlockFailer) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	if f.refuse(v) {
		return 0, errNodeDown
	}
	return f.Store.Add(ctx, key, v, ttl)
}

func (f *unlockFailer) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	return f.Store.(provider.GetAndToucher).GetAndTouch(ctx, key, ttl)
}

func newFailEnv(t *testing.T, cfg Config) (*env, *unlockFailer) {
	f := &unlockFailer{}
	e := newEnv(t, envOptions{config: cfg, wrap: func(s provider.Store) provider.Store { f.Store = s; return f }})
	return e, f
}

// storedValue reads key of session id as an int, whether the session is
// locked or not.
func (e *env) storedValue(id, key string) int {
	e.t.Helper()
	item, err := e.inspect.LockFree().GetItem(context.Background(), id)
	require.NoError(e.t, err)
	n, _, err := session.Get[int](item.Data.Values, key)
	require.NoError(e.t, err)
	return n
}

// outerHeader wraps h in a middleware that sets a header before it, as
// an outer middleware (CORS, security headers) would.
func outerHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outer", "kept")
		h.ServeHTTP(w, r)
	})
}

// answerOK is a handler that sets "n" (and a header), then answers 200.
func answerOK(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 42))
		w.Header().Set("X-Handler", "dropped")
		fmt.Fprint(w, "stored, trust me")
	})
}

func TestCommitFailureIsNever2xx(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode Mode
		new  bool
	}{
		{"exclusive", Exclusive, false},
		{"exclusive new session", Exclusive, true},
		{"lock-free", LockFree, false},
		{"auto", Auto, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newFailEnv(t, Config{})
			id := ""
			if !tc.new {
				id = e.create(map[string]any{"n": 1}, 0)
			}
			srv := httptest.NewServer(outerHeader(e.m.WithMode(tc.mode, answerOK(t))))
			defer srv.Close()
			f.armed.Store(true)
			res := post(t, srv.URL, id)
			require.Equal(t, http.StatusInternalServerError, res.StatusCode, "the commit failed: no 2xx")
			require.NotContains(t, res.body, "trust me", "the handler's response was dropped")
			require.Empty(t, res.Header.Get("X-Handler"), "the handler's headers were dropped")
			require.Equal(t, "kept", res.Header.Get("X-Outer"), "headers set before the middleware stay")
			require.Empty(t, res.Header.Values("Set-Cookie"), "no cookie for a session that was not stored")
			require.Positive(t, f.failed.Load())
			if id != "" {
				require.Equal(t, 1, e.storedValue(id, "n"), "nothing was stored")
			}
			require.Equal(t, 1.0, e.obs.get("store_error/unavailable"))
			require.Contains(t, e.logs.String(), "ending the request's session")
		})
	}
}

func TestReleaseFailureKeepsReadResponse(t *testing.T) {
	// A request that changed nothing loses nothing when its release fails:
	// its answer stands (the lock expires after its lease).
	e, f := newFailEnv(t, Config{})
	id := e.create(map[string]any{"n": 1}, 0)
	f.armed.Store(true)
	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, _ := session.Get[int](FromContext(r.Context()), "n")
		fmt.Fprint(w, n)
	})), request("GET", "/", id))
	require.Positive(t, f.failed.Load(), "the release was not refused; the test proves nothing")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "1", w.Body.String())
}

func TestCommitFailureAfterExplicitCommit(t *testing.T) {
	e, f := newFailEnv(t, Config{})
	id := e.create(map[string]any{"n": 1}, 0)
	f.armed.Store(true)
	var commitErr error // serve runs the handler on this goroutine
	handler := func(status int) http.Handler {
		return e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			assert.NoError(t, s.Set("n", 2))
			commitErr = s.Commit(r.Context())
			w.WriteHeader(status) // 200: ignores the error; 503: answers it
			fmt.Fprint(w, "handler")
		}))
	}
	w := serve(handler(http.StatusServiceUnavailable), request("POST", "/", id))
	require.ErrorIs(t, commitErr, provider.ErrUnavailable, "Commit returns the failure")
	require.Equal(t, http.StatusServiceUnavailable, w.Code, "the handler's own error answer stands")
	require.Equal(t, "handler", w.Body.String())

	require.Equal(t, 1, e.storedValue(id, "n"))

	// The failed commit left id locked until its lease ends: another one.
	id2 := e.create(map[string]any{"n": 1}, 0)
	w = serve(handler(http.StatusOK), request("POST", "/", id2))
	require.Equal(t, http.StatusInternalServerError, w.Code, "a 200 for changes that were not stored is replaced")
	require.NotContains(t, w.Body.String(), "handler")
	require.Equal(t, 1, e.storedValue(id2, "n"))
}

func TestUnbufferedLateCommitFailureKeeps200(t *testing.T) {
	// The documented risk of Unbuffered: the answer is out before the
	// commit, which then fails; the client was told of a change that was
	// never stored.
	e, f := newFailEnv(t, Config{Unbuffered: true})
	id := e.create(map[string]any{"n": 1}, 0)
	f.armed.Store(true)
	w := serve(e.m.WithMode(Exclusive, answerOK(t)), request("POST", "/", id))
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "stored, trust me", w.Body.String())
	require.Positive(t, f.failed.Load())
	require.Equal(t, 1, e.storedValue(id, "n"), "the acknowledged write was lost")
}

// takeOver makes another server break the lock of session id and commit
// n=7 under its own lock, as if it had decided the holder was dead.
func takeOver(t *testing.T, e *env, id string) {
	other, err := provider.New(e.mem, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = other.GetItemExclusive(ctx, id)
	var locked *provider.LockedError
	if assert.ErrorAs(t, err, &locked) {
		assert.NoError(t, other.BreakLock(ctx, id, locked.Stamp))
		item, err := other.GetItemExclusive(ctx, id)
		if assert.NoError(t, err) {
			assert.NoError(t, item.Data.Values.Set("n", 7))
			assert.NoError(t, other.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false))
		}
	}
}

func TestFencedCommitGoesToErrorHandler(t *testing.T) {
	var got error
	e := newEnv(t, envOptions{config: Config{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		http.Error(w, "try again", http.StatusTeapot)
	}}})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 99))
		takeOver(t, e, id)
		fmt.Fprint(w, "n is 99")
	}))
	w := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusTeapot, w.Code)
	require.Equal(t, "try again\n", w.Body.String())
	require.ErrorIs(t, got, ErrNotStored, "the handler can tell a commit failure from a load failure")
	require.ErrorIs(t, got, provider.ErrLockLost)
	require.False(t, Overloaded(got))
	n, _ := e.value(id, "n")
	require.Equal(t, 7, n, "the fenced commit wrote nothing")
}

func TestStreamingCommitsEarly(t *testing.T) {
	for name, flush := range map[string]func(http.ResponseWriter) error{
		"http.Flusher": func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil },
		"ResponseController": func(w http.ResponseWriter) error {
			return http.NewResponseController(w).Flush()
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			id := e.create(map[string]any{"n": 1}, 0)
			afterFlush := make(chan error, 1)
			step := make(chan struct{})
			h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				assert.NoError(t, s.Set("n", 2))
				fmt.Fprint(w, "chunk1\n")
				assert.NoError(t, flush(w))
				afterFlush <- s.Set("n", 3)
				<-step
				fmt.Fprint(w, "chunk2\n")
			}))
			srv := httptest.NewServer(h)
			defer srv.Close()
			letGo := sync.OnceFunc(func() { close(step) })
			defer letGo() // before srv.Close, also when the test fails
			req, err := http.NewRequest("POST", srv.URL, nil)
			require.NoError(t, err)
			req.Header.Set("Cookie", DefaultCookieName+"="+id)
			res, err := (&http.Client{Timeout: bound}).Do(req)
			require.NoError(t, err, "the headers arrive while the handler still runs")
			defer res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode)
			br := bufio.NewReader(res.Body)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "chunk1\n", line, "the first chunk is streamed")
			require.ErrorIs(t, recv(t, afterFlush, "the write after the flush"), ErrCommitted)
			n, _ := e.value(id, "n") // fails if the session is still locked
			require.Equal(t, 2, n, "the change was stored before the stream went on")
			letGo()
			rest, err := io.ReadAll(br)
			require.NoError(t, err)
			require.Equal(t, "chunk2\n", string(rest))
		})
	}
}

func TestFlushWithFailedCommit(t *testing.T) {
	e, f := newFailEnv(t, Config{})
	id := e.create(map[string]any{"n": 1}, 0)
	f.armed.Store(true)
	var flushErr, writeErr error // serve runs the handler on this goroutine
	w := serve(e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 2))
		fmt.Fprint(w, "chunk1")
		flushErr = http.NewResponseController(w).Flush()
		_, writeErr = fmt.Fprint(w, "chunk2")
	})), request("POST", "/", id))
	require.ErrorIs(t, flushErr, ErrNotStored, "the flush reports the failed commit")
	require.ErrorIs(t, flushErr, provider.ErrUnavailable)
	require.ErrorIs(t, writeErr, ErrNotStored, "later writes are refused")
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.NotContains(t, w.Body.String(), "chunk")
	require.Equal(t, 1, e.storedValue(id, "n"))
}

// readerOnly hides every method but Read, so that io.Copy goes through
// the destination's ReadFrom.
type readerOnly struct{ io.Reader }

func TestBufferLimitSwitchesToStreaming(t *testing.T) {
	const limit = 16
	for name, write := range map[string]func(w http.ResponseWriter, b string){
		"Write":    func(w http.ResponseWriter, b string) { _, _ = io.WriteString(w, b) },
		"ReadFrom": func(w http.ResponseWriter, b string) { _, _ = io.Copy(w, readerOnly{strings.NewReader(b)}) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: Config{ResponseBufferLimit: limit}})
			id := e.create(map[string]any{"n": 1}, 0)
			rec := httptest.NewRecorder()
			var afterLimit error
			h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				assert.NoError(t, s.Set("n", 2))
				write(w, strings.Repeat("a", limit))
				assert.Zero(t, rec.Body.Len(), "up to the limit the body is held back")
				assert.True(t, e.header(id).Locked, "and the session is not committed")
				write(w, "b")
				assert.Equal(t, limit+1, rec.Body.Len(), "past the limit the body streams")
				assert.Equal(t, 2, e.storedValue(id, "n"), "after an early commit")
				assert.False(t, e.header(id).Locked)
				afterLimit = s.Set("n", 3)
				write(w, strings.Repeat("c", 3*limit))
			}))
			h.ServeHTTP(rec, request("POST", "/", id))
			require.ErrorIs(t, afterLimit, ErrCommitted)
			require.Equal(t, http.StatusOK, rec.Code)
			require.Equal(t, strings.Repeat("a", limit)+"b"+strings.Repeat("c", 3*limit), rec.Body.String())
			n, _ := e.value(id, "n")
			require.Equal(t, 2, n)
		})
	}
}

func TestHijackCommitsEarly(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(map[string]any{"n": 1}, 0)
	afterHijack := make(chan error, 1)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.NoError(t, s.Set("n", 2))
		conn, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		defer conn.Close()
		afterHijack <- s.Set("n", 3)
		n := -1 // the session is still locked
		if item, err := e.inspect.GetItem(context.Background(), id); err == nil {
			n, _, _ = session.Get[int](item.Data.Values, "n")
		}
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%d", len(fmt.Sprint(n)), n)
		assert.NoError(t, rw.Flush())
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res := post(t, srv.URL, id)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "2", res.body, "the handler saw its change stored before it wrote on the connection")
	require.ErrorIs(t, recv(t, afterHijack, "the handler"), ErrCommitted)
}

func TestNewSessionCookieAfterBody(t *testing.T) {
	e := newEnv(t, envOptions{})
	h := e.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "body first")
		assert.NoError(t, FromContext(r.Context()).Set("n", 1), "buffered: the cookie can still be sent")
	}))
	w := serve(h, request("POST", "/", ""))
	require.Equal(t, http.StatusCreated, w.Code)
	require.Equal(t, "body first", w.Body.String())
	c := sessionCookie(w.Result(), DefaultCookieName)
	require.NotNil(t, c)
	n, _ := e.value(c.Value, "n")
	require.Equal(t, 1, n)
}

func TestPanicDropsBufferedResponse(t *testing.T) {
	e := newEnv(t, envOptions{})
	inner := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 1))
		w.Header().Set("X-Handler", "partial")
		fmt.Fprint(w, "partial body")
		panic("handler failed")
	}))
	recoverer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, "recovered", http.StatusInternalServerError)
			}
		}()
		inner.ServeHTTP(w, r)
	})
	w := serve(outerHeader(recoverer), request("POST", "/", ""))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Equal(t, "recovered\n", w.Body.String(), "the partial response was dropped")
	require.Empty(t, w.Header().Get("X-Handler"))
	require.Empty(t, w.Header().Values("Set-Cookie"), "no cookie for a session that was not stored")
	require.Equal(t, "kept", w.Header().Get("X-Outer"))
	require.Zero(t, e.count.Adds.Load(), "nothing stored")
}

func TestReadOnlyAndUnbufferedStream(t *testing.T) {
	// Buffered routes hold the body back until the handler returns;
	// read-only routes and Unbuffered managers pass it on at once.
	for _, tc := range []struct {
		name       string
		cfg        Config
		mode       Mode
		heldBack   bool
		storeWrite bool
	}{
		{"exclusive", Config{}, Exclusive, true, true},
		{"lock-free", Config{}, LockFree, true, true},
		{"read-only", Config{}, ReadOnly, false, false},
		{"off", Config{}, Off, false, false},
		{"unbuffered exclusive", Config{Unbuffered: true}, Exclusive, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: tc.cfg})
			id := e.create(map[string]any{"n": 1}, 0)
			rec := httptest.NewRecorder()
			var seen atomic.Int64
			seen.Store(-1)
			e.m.WithMode(tc.mode, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, "x")
				seen.Store(int64(rec.Body.Len()))
			})).ServeHTTP(rec, request("GET", "/", id))
			if tc.heldBack {
				require.Zero(t, seen.Load())
			} else {
				require.Equal(t, int64(1), seen.Load())
			}
			require.Equal(t, "x", rec.Body.String())
		})
	}
}

func TestFencedCommitUnbufferedKeepsResponse(t *testing.T) {
	e := newEnv(t, envOptions{config: Config{Unbuffered: true}})
	id := e.create(map[string]any{"n": 1}, 0)
	h := e.m.WithMode(Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, FromContext(r.Context()).Set("n", 99))
		takeOver(t, e, id)
		fmt.Fprint(w, "response stays")
	}))
	w := serve(h, request("POST", "/", id))
	require.Equal(t, http.StatusOK, w.Code, "unbuffered: the answer was out before the commit")
	require.Equal(t, "response stays", w.Body.String())
	n, _ := e.value(id, "n")
	require.Equal(t, 7, n, "the fenced commit wrote nothing")
	require.Equal(t, 1.0, e.obs.get("store_error/lock_lost"))
	require.Contains(t, e.logs.String(), "lock was taken over")
	require.Contains(t, e.logs.String(), "level=WARN")
}

// response is an HTTP response with its body read.
type response struct {
	*http.Response
	body string
}

// post sends a POST to url with session id (if any) in the cookie.
func post(t *testing.T, url, id string) response {
	t.Helper()
	req, err := http.NewRequest("POST", url, nil)
	require.NoError(t, err)
	if id != "" {
		req.Header.Set("Cookie", DefaultCookieName+"="+id)
	}
	res, err := (&http.Client{Timeout: bound}).Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{res, string(b)}
}
