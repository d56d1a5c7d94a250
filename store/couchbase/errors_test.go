package couchbase

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/couchbase/gocb/v2"
	"github.com/couchbase/gocbcore/v10"
	"github.com/couchbase/gocbcore/v10/memd"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

// The errors below are built as gocb returns them: key-value failures in a
// *gocb.KeyValueError, timeouts in a *gocb.TimeoutError, both wrapping the
// gocbcore error.
func TestErrorMapping(t *testing.T) {
	kv := func(err error, status memd.StatusCode) error {
		return &gocb.KeyValueError{InnerError: err, StatusCode: status, DocumentID: "app:sl:aaaabbbbccccddddeeeeffff"}
	}
	timeout := func(err error) error { return &gocb.TimeoutError{InnerError: err} }
	cases := []struct {
		name      string
		err       error
		want      error
		ambiguous bool
	}{
		{"not found", kv(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound), provider.ErrNotFound, false},
		{"exists", kv(gocb.ErrDocumentExists, memd.StatusKeyExists), provider.ErrExists, false},
		{"cas mismatch", kv(gocb.ErrCasMismatch, memd.StatusKeyExists), provider.ErrCASConflict, false},
		{"locked", kv(gocb.ErrDocumentLocked, memd.StatusLocked), provider.ErrCASConflict, false},
		{"too large", kv(gocb.ErrValueTooLarge, memd.StatusTooBig), provider.ErrTooLarge, false},
		{"ambiguous timeout", timeout(gocb.ErrAmbiguousTimeout), provider.ErrUnavailable, true},
		{"unambiguous timeout", timeout(gocb.ErrUnambiguousTimeout), provider.ErrUnavailable, false},
		{"plain timeout", gocb.ErrTimeout, provider.ErrUnavailable, true},
		{"durability ambiguous", kv(gocb.ErrDurabilityAmbiguous, memd.StatusSyncWriteAmbiguous), provider.ErrUnavailable, true},
		{"durability impossible", kv(gocb.ErrDurabilityImpossible, memd.StatusDurabilityImpossible), provider.ErrUnavailable, false},
		{"sync write in progress", kv(gocb.ErrDurableWriteInProgress, memd.StatusSyncWriteInProgress), provider.ErrUnavailable, false},
		{"request canceled", kv(gocb.ErrRequestCanceled, 0), provider.ErrUnavailable, true},
		{"socket closed in flight", kv(gocbcore.ErrSocketClosed, 0), provider.ErrUnavailable, true},
		{"memd client closed", kv(gocbcore.ErrMemdClientClosed, 0), provider.ErrUnavailable, true},
		{"context canceled", context.Canceled, provider.ErrUnavailable, true},
		{"service not available", gocb.ErrServiceNotAvailable, provider.ErrUnavailable, false},
		{"circuit breaker open", kv(gocb.ErrCircuitBreakerOpen, 0), provider.ErrUnavailable, false},
		{"temporary failure", kv(gocb.ErrTemporaryFailure, memd.StatusTmpFail), provider.ErrUnavailable, false},
		{"overload", gocb.ErrOverload, provider.ErrUnavailable, false},
		{"cluster closed", gocb.ErrShutdown, provider.ErrClosed, false},
		{"agent shut down", kv(gocbcore.ErrShutdown, 0), provider.ErrClosed, false},
		{"path not found", kv(gocb.ErrPathNotFound, memd.StatusSubDocPathNotFound), provider.ErrCorrupt, false},
		{"document not JSON", kv(gocb.ErrDocumentNotJSON, memd.StatusSubDocNotJSON), provider.ErrCorrupt, false},
		{"authentication", gocb.ErrAuthenticationFailure, provider.ErrServer, false},
		{"collection not found", kv(gocb.ErrCollectionNotFound, memd.StatusCollectionUnknown), provider.ErrServer, false},
		{"unknown", errors.New("something else"), provider.ErrServer, false},
	}
	sentinels := []error{provider.ErrNotFound, provider.ErrExists, provider.ErrCASConflict, provider.ErrTooLarge,
		provider.ErrUnavailable, provider.ErrServer, provider.ErrCorrupt, provider.ErrClosed}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := wrapErr(context.Background(), "op", "app:sl:aaaabbbbccccddddeeeeffff", c.err)
			require.ErrorIs(t, got, c.want)
			for _, s := range sentinels {
				if s != c.want {
					require.NotErrorIs(t, got, s, "maps to more than one sentinel")
				}
			}
			require.ErrorIs(t, got, c.err, "the gocb error stays matchable")
			require.Equal(t, c.ambiguous, isAmbiguous(c.err), "isAmbiguous")
			require.NotContains(t, got.Error(), "aaaabbbbccccddddeeeeffff", "the document id reached the message")
		})
	}
}

func TestWrapErrKeepsContextAndSentinels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := wrapErr(ctx, "get", "key-1234", &gocb.KeyValueError{InnerError: gocb.ErrRequestCanceled})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.ErrorIs(t, err, context.Canceled, "the caller's context error is matchable")
	require.ErrorIs(t, err, gocb.ErrRequestCanceled)

	ours := fmt.Errorf("couchbase: %w: bad document", provider.ErrCorrupt)
	require.Same(t, ours, wrapErr(context.Background(), "get", "key-1234", ours), "errors already mapped pass through")
	require.NoError(t, wrapErr(context.Background(), "get", "key-1234", nil))
}

func TestRedactedError(t *testing.T) {
	const id = `app:"sl":aaaabbbbccccddddeeeeffff`
	inner := &gocb.KeyValueError{InnerError: gocb.ErrDocumentLocked, DocumentID: id, StatusCode: memd.StatusLocked}
	require.Contains(t, inner.Error(), "aaaabbbbccccddddeeeeffff", "gocb prints the id (test premise)")
	err := redacted{inner, id}
	require.NotContains(t, err.Error(), "aaaabbbbccccddddeeeeffff")
	require.Contains(t, err.Error(), "<key>")
	var kve *gocb.KeyValueError
	require.ErrorAs(t, err, &kve)
	require.Equal(t, id, kve.DocumentID, "the wrapped error is untouched")

	plain := redacted{errors.New("k is short"), "k"}
	require.Equal(t, "k is short", plain.Error(), "keys too short to be session keys are not replaced")
	require.False(t, strings.Contains(redacted{errors.New("x abcd y"), "abcd"}.Error(), "abcd"))
}
