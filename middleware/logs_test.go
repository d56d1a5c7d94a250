package middleware

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/logcheck"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// TestMain fails the package when any test's log line carried a whole
// session id (logcheck checks the default logger and every env's logger).
func TestMain(m *testing.M) { os.Exit(logcheck.Main(m)) }

// keyErrStore fails inserts (new sessions, new ids) with an error naming
// the key, as store errors do.
type keyErrStore struct{ provider.Store }

func (s keyErrStore) Add(ctx context.Context, key string, v []byte, ttl time.Duration) (uint64, error) {
	return 0, fmt.Errorf("add %s: %w", key, provider.ErrServer)
}

// TestFailedCommitsLogNoWholeID: the commits of a new session and of a
// regenerated one fail with store errors naming the new id; the log
// lines carry it shortened only.
func TestFailedCommitsLogNoWholeID(t *testing.T) {
	before := len(logcheck.Leaks())
	e := newEnv(t, envOptions{wrap: func(s provider.Store) provider.Store { return keyErrStore{s} }})
	ids := make(chan string, 2)
	write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.Set("k", 1))
		ids <- s.ID()
	})
	w := serve(e.m.Handler(write), request("POST", "/", ""))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	newID := recv(t, ids, "the new session's id")

	old := e.create(map[string]any{"k": 0}, 0)
	regen := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		require.NoError(t, s.RegenerateID())
		ids <- s.ID()
	})
	serve(e.m.Handler(regen), request("POST", "/", old))
	regenID := recv(t, ids, "the regenerated id")
	logs := e.logs.String()
	require.Contains(t, logs, "ending the request's session")
	for _, id := range []string{newID, regenID, old} {
		require.NotContains(t, logs, id)
		require.Contains(t, logs, id[:6]+"…")
	}
	require.Len(t, logcheck.Leaks(), before)
}

// TestLogCheckCatchesALeak: the checking handler catches the variant of
// before the fix (only the stored id shortened, "" for a new session).
func TestLogCheckCatchesALeak(t *testing.T) {
	before := len(logcheck.Leaks())
	defer logcheck.Truncate(before)
	l := slog.New(logcheck.Wrap(slog.NewTextHandler(io.Discard, nil)))
	id, err := session.NewID()
	require.NoError(t, err)
	storeErr := fmt.Errorf("add sessionlock/%s: %w", id, provider.ErrServer)

	l.Error("ending the request's session", "session", idPrefix(""), "err", redact(storeErr, "")) // the leaking variant
	require.Len(t, logcheck.Leaks(), before+1, "the leak is caught")
	l.With("err", storeErr.Error()).Info("x")
	require.Len(t, logcheck.Leaks(), before+2, "in attributes added With, too")
	l.Error("ending the request's session", "session", idPrefix(id), "err", redact(storeErr, "", id)) // fixed
	require.Len(t, logcheck.Leaks(), before+2, "a shortened id is not a leak")
}
