package couchbase

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/couchbase/gocb/v2"
	"github.com/couchbase/gocbcore/v10"
	"github.com/couchbase/gocbcore/v10/memd"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
)

// Tests of the settings and failure behaviour a production cluster needs
// (durable timeouts, degraded start, sub-document fallbacks, replica
// reads, clusters the application opened). Errors come from fake_test.go,
// each built as gocb returns it.

// events records the store events a test's store emits.
type events struct {
	mu   sync.Mutex
	list []provider.Event
}

func (e *events) record(ev provider.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

// fallbacks returns the EventFallback events recorded so far.
func (e *events) fallbacks() []provider.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []provider.Event
	for _, ev := range e.list {
		if ev.Kind == provider.EventFallback {
			out = append(out, ev)
		}
	}
	return out
}

// TestDurableWritesCarryTheDurableTimeout: gocb bounds a write at
// DurabilityLevelMajority by its KV timeout, not its durable one
// (gocb v2.12.4, kvopmanager_core.go, getTimeout: "durabilityLevel >
// memd.DurabilityLevelMajority"), so a Majority write gave up after 2.5 s.
// Every durable request must carry Timeouts.KVDurable itself.
func TestDurableWritesCarryTheDurableTimeout(t *testing.T) {
	ctx := context.Background()
	for _, d := range []Durability{DurabilityNone, DurabilityMajority, DurabilityPersistToMajority} {
		t.Run(string(d), func(t *testing.T) {
			cfg := Config{ConnStr: "couchbase://h", Bucket: "b", Durability: d,
				Timeouts: Timeouts{KV: 2 * time.Second, KVDurable: 7 * time.Second}}.withDefaults()
			g, err := newGocbKV(nil, nil, cfg)
			require.NoError(t, err)
			want := 7 * time.Second
			if d == DurabilityNone {
				want = 2 * time.Second
			}
			require.Equal(t, want, g.insertOptions(ctx, time.Minute).Timeout, "Insert")
			require.Equal(t, want, g.replaceOptions(ctx, 1, time.Minute).Timeout, "Replace")
			require.Equal(t, want, g.mutateInOptions(ctx, 1, time.Minute).Timeout, "MutateIn")
			require.Equal(t, want, g.removeOptions(ctx).Timeout, "Remove")
			require.Equal(t, 2*time.Second, g.getOptions(ctx).Timeout, "reads keep the KV timeout")

			level, _ := d.level()
			require.Equal(t, level, g.insertOptions(ctx, time.Minute).DurabilityLevel)
			require.Equal(t, level, g.mutateInOptions(ctx, 1, time.Minute).DurabilityLevel)
			// The store's retry strategy travels with each request, so a
			// cluster opened by the application does not retry locked
			// documents until the timeout.
			require.IsType(t, &FailFastRetryStrategy{}, g.replaceOptions(ctx, 1, time.Minute).RetryStrategy)
			require.IsType(t, &FailFastRetryStrategy{}, g.getOptions(ctx).RetryStrategy)
		})
	}
}

// TestNewAcceptsADegradedCluster: without a desired state gocb waits for
// ClusterStateOnline, every node's connections (gocb v2.12.4,
// waituntilreadyprovider.go), so an application could not start while one
// node was down and not yet failed over.
func TestNewAcceptsADegradedCluster(t *testing.T) {
	ctx := context.Background()
	cfg := Config{ConnStr: "couchbase://h", Bucket: "b"}.withDefaults()
	o := cfg.waitUntilReadyOptions(ctx)
	require.Equal(t, gocb.ClusterStateDegraded, o.DesiredState, "one node's data service suffices")
	require.Equal(t, []gocb.ServiceType{gocb.ServiceTypeKeyValue}, o.ServiceTypes)
	require.Equal(t, ctx, o.Context)
	require.Equal(t, DefaultConnectTimeout, cfg.Timeouts.Ready)

	cfg = Config{ConnStr: "couchbase://h", Bucket: "b", WaitForAllNodes: true,
		Timeouts: Timeouts{Connect: time.Second, Ready: 3 * time.Second}}.withDefaults()
	require.Equal(t, gocb.ClusterStateOnline, cfg.waitUntilReadyOptions(ctx).DesiredState)
	require.Equal(t, 3*time.Second, cfg.Timeouts.Ready)

	bad := Config{ConnStr: "couchbase://h", Bucket: "b", Timeouts: Timeouts{Ready: -time.Second}}
	require.ErrorIs(t, bad.check(), ErrInvalidConfig)
}

// TestHeaderOnlyWriteFallback: a header-only write is written whole only
// when the stored document is not JSON; every fallback is an event, and a
// healthy JSON path makes none.
func TestHeaderOnlyWriteFallback(t *testing.T) {
	ctx := context.Background()
	values := []byte("values that stay the same")
	rec := func(seq uint64, locked bool) []byte { return testRecord(t, seq, seq, locked, values) }

	t.Run("healthy JSON path makes no fallback", func(t *testing.T) {
		var ev events
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc, OnEvent: ev.record})
		_, err := s.Add(ctx, "k", rec(1, false), time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		cas := e.CAS
		const cycles = 50
		for i := range uint64(cycles) {
			cas, err = s.CompareAndSwap(ctx, "k", rec(2+2*i, true), cas, time.Minute)
			require.NoError(t, err)
			cas, err = s.compareAndSwapHeader(ctx, "k", rec(2+2*i, true), rec(3+2*i, false), cas, time.Minute)
			require.NoError(t, err)
		}
		require.Equal(t, 2*cycles, f.count("replaceHeader"))
		require.Zero(t, f.count("replace"), "no whole writes")
		require.Empty(t, ev.fallbacks())
	})

	t.Run("binary document falls back once", func(t *testing.T) {
		var ev events
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc, OnEvent: ev.record, KeyPrefix: "app:"})
		const key = "aaaabbbbccccddddeeee"
		cas := f.set("app:"+key, doc{body: rec(1, false)}) // a LayoutBinary store wrote it
		cas, err := s.compareAndSwapHeader(ctx, key, rec(1, false), rec(2, true), cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replace"))
		fb := ev.fallbacks()
		require.Len(t, fb, 1)
		require.ErrorIs(t, fb[0].Err, gocb.ErrValueNotJSON)
		require.NotContains(t, fb[0].Err.Error()+fb[0].Detail, key, "events never carry the key")
		// The document is JSON now: the next lock-only change is a
		// header-only write again.
		_, err = s.CompareAndSwap(ctx, key, rec(3, false), cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, f.count("replaceHeader"))
		require.Len(t, ev.fallbacks(), 1)
	})

	t.Run("not JSON as the status of the whole request", func(t *testing.T) {
		var ev events
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc, OnEvent: ev.record})
		cas, err := s.Add(ctx, "k", rec(1, false), time.Minute)
		require.NoError(t, err)
		f.inject("replaceHeader", fault{err: kvErr(gocbcore.ErrValueNotJSON, memd.StatusSubDocNotJSON)})
		_, err = s.CompareAndSwap(ctx, "k", rec(2, true), cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replace"))
		require.Len(t, ev.fallbacks(), 1)
	})

	// Any other failure of the sub-document path is reported, not hidden
	// behind a second, whole write per request. (A mock cluster that
	// failed every MutateIn with "internal server failure" once made
	// 5,116 such fallbacks in one conformance run, unnoticed.)
	for name, refusal := range map[string]error{
		"internal server failure": subdocErr(0, gocbcore.ErrInternalServerFailure, memd.StatusInternalError),
		"top-level server error":  kvErr(gocbcore.ErrInternalServerFailure, memd.StatusInternalError),
		"path not found":          errPathNotFound(),
		"path mismatch":           subdocErr(0, gocbcore.ErrPathMismatch, memd.StatusSubDocPathMismatch),
		"value invalid":           subdocErr(0, gocbcore.ErrValueInvalid, memd.StatusSubDocCantInsert),
	} {
		t.Run("no fallback on "+name, func(t *testing.T) {
			var ev events
			s, f := fakeStore(t, Config{Layout: LayoutSubdoc, OnEvent: ev.record})
			cas, err := s.Add(ctx, "k", rec(1, false), time.Minute)
			require.NoError(t, err)
			f.headerErr = refusal
			_, err = s.CompareAndSwap(ctx, "k", rec(2, true), cas, time.Minute)
			require.Error(t, err)
			require.ErrorIs(t, err, refusal)
			require.NotErrorIs(t, err, provider.ErrCASConflict)
			require.Zero(t, f.count("replace"), "fell back to a whole write")
			require.Empty(t, ev.fallbacks())
		})
	}
}

// TestResolveFallsBackOnBinaryDocument: an ambiguous header-only write to
// a binary document is settled by re-sending it, and the re-send needs the
// same fallback as the first send; without it the write ended as an error
// of the server's instead of being settled.
func TestResolveFallsBackOnBinaryDocument(t *testing.T) {
	ctx := context.Background()
	values := []byte("vvvv")
	old, want := testRecord(t, 1, 0, false, values), testRecord(t, 2, 1, true, values)
	for name, flt := range map[string]fault{
		"lost before the server": {err: errAmbiguous()},
		// The server refused it as not JSON, and the answer was lost.
		"refused, answer lost": {err: errAmbiguous(), applied: true},
	} {
		t.Run(name, func(t *testing.T) {
			var ev events
			s, f := fakeStore(t, Config{Layout: LayoutSubdoc, OnEvent: ev.record})
			cas := f.set("k", doc{body: old})
			f.inject("replaceHeader", flt)
			newCAS, err := s.compareAndSwapHeader(ctx, "k", old, want, cas, time.Minute)
			require.NoError(t, err)
			e, err := s.Get(ctx, "k")
			require.NoError(t, err)
			require.Equal(t, want, e.Value)
			require.Equal(t, e.CAS, newCAS)
			require.Equal(t, 1, f.count("replace"), "written whole once")
			require.Len(t, ev.fallbacks(), 1)
		})
	}
}

// TestCASMismatchOnMutateIn: gocbcore reports a CAS mismatch of a MutateIn
// as ErrCasMismatch (errmapcomponent.go, translateMemdError) and gocb turns
// it back into ErrDocumentExists (kvprovider_coresubdoc.go, GOCBC-1019).
// Either is a CAS conflict, on the first send and on a re-send.
func TestCASMismatchOnMutateIn(t *testing.T) {
	ctx := context.Background()
	values := []byte("vvvv")
	for name, mismatch := range map[string]error{
		"as gocb reports it":     errMutateInCasMismatch(),
		"as gocbcore reports it": kvErr(gocbcore.ErrCasMismatch, memd.StatusKeyExists),
	} {
		t.Run(name, func(t *testing.T) {
			s, f := fakeStore(t, Config{Layout: LayoutSubdoc})
			cas, err := s.Add(ctx, "k", testRecord(t, 1, 0, false, values), time.Minute)
			require.NoError(t, err)
			f.inject("replaceHeader", fault{err: mismatch})
			_, err = s.CompareAndSwap(ctx, "k", testRecord(t, 2, 1, true, values), cas, time.Minute)
			require.ErrorIs(t, err, provider.ErrCASConflict)
			require.NotErrorIs(t, err, provider.ErrExists)

			// Ambiguous, then the re-send meets the mismatch: the next
			// read-back decides (here: unchanged, so it is sent again).
			f.inject("replaceHeader", fault{err: errAmbiguous()}, fault{err: mismatch})
			_, err = s.CompareAndSwap(ctx, "k", testRecord(t, 2, 1, true, values), cas, time.Minute)
			require.NoError(t, err)
			require.Equal(t, 4, f.count("replaceHeader"))
		})
	}
}

// TestReplicaReadOnlyWhenUnreachable: a busy node answers; reading a
// replica then costs a second KV timeout for a possibly stale answer.
func TestReplicaReadOnlyWhenUnreachable(t *testing.T) {
	ctx := context.Background()
	busy := map[string]error{
		"temporary failure":           kvErr(gocbcore.ErrTemporaryFailure, memd.StatusTmpFail),
		"timeout retrying tmpfail":    timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.KVTemporaryFailureRetryReason),
		"timeout retrying sync write": timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.KVSyncWriteInProgressRetryReason),
		"timeout retrying locked":     timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.KVLockedRetryReason),
		"client overload":             gocbcore.ErrOverload,
		"timeout retrying full queue": timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.RetryReason(gocbcore.PipelineOverloadedRetryReason)),
		"request canceled":            kvErr(gocbcore.ErrRequestCanceled, 0),
		"authentication":              gocb.ErrAuthenticationFailure,
		"not found is an answer":      errNotFound(),
	}
	unreachable := map[string]error{
		"timeout, no answer":          errActiveDown(),
		"timeout, socket not ready":   timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.SocketNotAvailableRetryReason),
		"timeout, node not available": timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.NodeNotAvailableRetryReason),
		"timeout, circuit breaker":    timeoutErr(gocbcore.ErrUnambiguousTimeout, gocb.CircuitBreakerOpenRetryReason),
		"circuit breaker open":        kvErr(gocbcore.ErrCircuitBreakerOpen, 0),
		"service not available":       gocbcore.ErrServiceNotAvailable,
		"socket closed in flight":     kvErr(gocbcore.ErrSocketClosed, 0),
		"connection closed":           kvErr(gocbcore.ErrMemdClientClosed, 0),
	}
	rec := testRecord(t, 1, 0, false, []byte("v"))
	check := func(t *testing.T, activeErr error, wantReplica bool) {
		var ev events
		s, f := fakeStore(t, Config{ReadFromReplica: true, OnEvent: ev.record})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		f.activeErr = activeErr
		e, err := s.Get(ctx, "k")
		if !wantReplica {
			require.Error(t, err)
			require.Zero(t, f.count("getAnyReplica"), "read a replica")
			require.Empty(t, ev.fallbacks())
			return
		}
		require.NoError(t, err)
		require.Equal(t, ReplicaCAS, e.CAS)
		require.Equal(t, 1, f.count("getAnyReplica"))
		fb := ev.fallbacks()
		require.Len(t, fb, 1, "each replica read is a fallback event")
		require.ErrorIs(t, fb[0].Err, activeErr)
	}
	for name, err := range busy {
		t.Run("busy/"+name, func(t *testing.T) {
			require.False(t, isUnreachable(err))
			check(t, err, false)
		})
	}
	for name, err := range unreachable {
		t.Run("unreachable/"+name, func(t *testing.T) {
			require.True(t, isUnreachable(err))
			check(t, err, true)
		})
	}
}

// TestUnknownOutcomes: a write whose outcome cannot be settled is
// provider.ErrOutcomeUnknown, never ErrUnavailable ("may be unknown") or
// a definite answer.
func TestUnknownOutcomes(t *testing.T) {
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, []byte("v"))
	for _, op := range []string{"touch", "remove"} {
		for name, err := range map[string]error{
			"ambiguous timeout": errAmbiguous(),
			"socket closed":     kvErr(gocbcore.ErrSocketClosed, 0),
			"request canceled":  kvErr(gocbcore.ErrRequestCanceled, 0),
		} {
			t.Run(op+"/"+name, func(t *testing.T) {
				s, f := fakeStore(t, Config{})
				_, aerr := s.Add(ctx, "k", rec, time.Minute)
				require.NoError(t, aerr)
				f.inject(op, fault{err: err, applied: true})
				if op == "touch" {
					err = s.Touch(ctx, "k", time.Hour)
				} else {
					err = s.Delete(ctx, "k")
				}
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				require.NotErrorIs(t, err, provider.ErrUnavailable)
			})
		}
	}
	t.Run("re-send fails otherwise", func(t *testing.T) {
		s, f := fakeStore(t, Config{})
		cas, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		// The first send timed out; the read-back shows it absent; the
		// re-send is refused: the first may still land.
		f.inject("replace", fault{err: errAmbiguous()}, fault{err: kvErr(gocbcore.ErrTemporaryFailure, memd.StatusTmpFail)})
		_, err = s.CompareAndSwap(ctx, "k", testRecord(t, 2, 1, true, []byte("v")), cas, time.Minute)
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
		require.ErrorIs(t, err, gocb.ErrAmbiguousTimeout)
		require.ErrorIs(t, err, gocb.ErrTemporaryFailure)
	})
	t.Run("not ambiguous is not unknown", func(t *testing.T) {
		s, f := fakeStore(t, Config{})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		f.inject("touch", fault{err: kvErr(gocbcore.ErrTemporaryFailure, memd.StatusTmpFail)})
		err = s.Touch(ctx, "k", time.Hour)
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	})
}

// TestNotJSONMapping: SUBDOC_DOC_NOT_JSON reaches the store as
// ErrValueNotJSON (gocbcore errmapcomponent.go, translateMemdError: its
// first case for the status), which was left to the catch-all
// provider.ErrServer; in either shape it is the document's layout.
func TestNotJSONMapping(t *testing.T) {
	for name, err := range map[string]error{
		"spec status":     errNotJSON(),
		"request status":  kvErr(gocbcore.ErrValueNotJSON, memd.StatusSubDocNotJSON),
		"the other name":  kvErr(gocbcore.ErrDocumentNotJSON, memd.StatusSubDocNotJSON),
		"wrapped further": errors.Join(errors.New("context"), errNotJSON()),
	} {
		t.Run(name, func(t *testing.T) {
			require.True(t, isNotJSON(err))
			require.ErrorIs(t, wrapErr(context.Background(), "op", "id-1234", err), provider.ErrCorrupt)
		})
	}
	for _, err := range []error{errPathNotFound(), errMutateInCasMismatch(), kvErr(gocbcore.ErrInternalServerFailure, memd.StatusInternalError)} {
		require.False(t, isNotJSON(err), "%v", err)
	}
}

// noopTracer and noopMeter stand for an application's tracer and meter.
type noopTracer struct{ gocb.NoopTracer }
type noopMeter struct{ gocb.NoopMeter }

// TestClusterOptions: the application's tracer and meter reach gocb; by
// default gocb's no-op ones do (not gocb's logging defaults).
func TestClusterOptions(t *testing.T) {
	cfg := Config{ConnStr: "couchbase://h", Bucket: "b", Username: "u", Password: "p",
		Timeouts: Timeouts{Connect: time.Second, KV: 2 * time.Second, KVDurable: 3 * time.Second}}.withDefaults()
	o := cfg.clusterOptions()
	require.IsType(t, &gocb.NoopTracer{}, o.Tracer)
	require.IsType(t, &gocb.NoopMeter{}, o.Meter)
	require.IsType(t, &FailFastRetryStrategy{}, o.RetryStrategy)
	require.Equal(t, gocb.TimeoutsConfig{ConnectTimeout: time.Second, KVTimeout: 2 * time.Second, KVDurableTimeout: 3 * time.Second}, o.TimeoutsConfig)
	require.Equal(t, gocb.PasswordAuthenticator{Username: "u", Password: "p"}, o.Authenticator)

	tr, m := &noopTracer{}, &noopMeter{}
	cfg.Tracer, cfg.Meter = tr, m
	o = cfg.clusterOptions()
	require.Same(t, tr, o.Tracer)
	require.Same(t, m, o.Meter)
}

func TestNewFromCollectionRejectsBadInput(t *testing.T) {
	_, err := NewFromCollection(context.Background(), nil, Config{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	for name, cfg := range map[string]Config{
		"unknown layout":   {Layout: "xml"},
		"negative timeout": {Timeouts: Timeouts{KV: -1}},
		"prefix too long":  {KeyPrefix: strings.Repeat("p", MaxKeyLen)},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, cfg.checkSettings(), ErrInvalidConfig)
		})
	}
	require.NoError(t, Config{}.checkSettings(), "no connection settings are needed")
}

// TestCloseLeavesTheApplicationsCluster: a store over a collection the
// application passed closes nothing of it.
func TestCloseLeavesTheApplicationsCluster(t *testing.T) {
	g, err := newGocbKV(nil, nil, Config{}.withDefaults())
	require.NoError(t, err)
	require.NoError(t, g.close(), "a nil cluster is the application's: nothing to close")
}
