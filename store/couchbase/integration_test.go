package couchbase

// Tests against a live Couchbase endpoint. They run when COUCHBASE_CONNSTR
// is set (with COUCHBASE_USERNAME, COUCHBASE_PASSWORD, COUCHBASE_BUCKET,
// and optionally COUCHBASE_SCOPE and COUCHBASE_COLLECTION) and skip
// otherwise. Each store gets a fresh random key prefix, so runs share a
// bucket without seeing each other's keys.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/couchbase/gocb/v2"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
)

const skipMessage = "Couchbase tests skipped: set COUCHBASE_CONNSTR (e.g. couchbase://127.0.0.1), " +
	"COUCHBASE_USERNAME, COUCHBASE_PASSWORD and COUCHBASE_BUCKET (optionally COUCHBASE_SCOPE, " +
	"COUCHBASE_COLLECTION) to run them against a cluster"

// liveConfig returns the Config of the endpoint named by the environment,
// with a fresh key prefix, or skips the test.
func liveConfig(t *testing.T) Config {
	t.Helper()
	cfg := Config{
		ConnStr:    os.Getenv("COUCHBASE_CONNSTR"),
		Username:   os.Getenv("COUCHBASE_USERNAME"),
		Password:   os.Getenv("COUCHBASE_PASSWORD"),
		Bucket:     os.Getenv("COUCHBASE_BUCKET"),
		Scope:      os.Getenv("COUCHBASE_SCOPE"),
		Collection: os.Getenv("COUCHBASE_COLLECTION"),
	}
	if cfg.ConnStr == "" {
		t.Skip(skipMessage)
	}
	if cfg.Bucket == "" {
		t.Fatal("COUCHBASE_CONNSTR is set but COUCHBASE_BUCKET is not")
	}
	var p [6]byte
	_, _ = rand.Read(p[:])
	cfg.KeyPrefix = "sltest-" + hex.EncodeToString(p[:]) + ":"
	return cfg
}

// live is the package's one connection to the endpoint, shared by every
// live test: each test's store has its own key prefix over it.
var live struct {
	once  sync.Once
	store *Store
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if live.store != nil {
		_ = live.store.Close()
	}
	os.Exit(code)
}

// liveKV returns the shared connection's kv, connecting on first use.
func liveKV(t *testing.T) *gocbKV {
	t.Helper()
	cfg := liveConfig(t)
	live.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg.KeyPrefix = ""
		live.store, live.err = New(ctx, cfg)
	})
	require.NoError(t, live.err, "connecting to COUCHBASE_CONNSTR")
	return live.store.kv.(*gocbKV)
}

// liveStore returns a Store with cfg over the shared connection, closed
// when t ends (closing it leaves the connection open, as a store from
// NewFromCollection does).
func liveStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	g := liveKV(t)
	cfg = cfg.withDefaults()
	k, err := newGocbKV(nil, g.coll, cfg)
	require.NoError(t, err)
	s := newStore(k, cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// wrapped returns a Store sharing s's connection whose kv is wrap(s.kv),
// to inject failures in front of the live cluster.
func wrapped(s *Store, cfg Config, wrap func(kv) kv) *Store {
	return newStore(wrap(s.kv), cfg.withDefaults())
}

// TestConformance runs the provider's conformance suite in both layouts
// and counts the store's fallbacks: the suite writes every session through
// one layout, so a header-only write never meets a binary document and
// must never fall back (a broken sub-document path would show here as
// one fallback per lock change).
func TestConformance(t *testing.T) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			liveConfig(t) // skip early, before the suite's subtests
			scale := 1.0
			if testing.Short() {
				scale = 0.3
			}
			var ev events
			providertest.Run(t, providertest.Options{
				NewStore: func(t *testing.T) provider.Store {
					cfg := liveConfig(t)
					cfg.Layout = layout
					cfg.OnEvent = ev.record
					return liveStore(t, cfg)
				},
				Scale: scale,
			})
			fb := ev.fallbacks()
			t.Logf("fallbacks counted: %d", len(fb))
			for _, e := range fb[:min(len(fb), 3)] {
				t.Errorf("fallback: %s: %v", e.Detail, e.Err)
			}
		})
	}
}

func TestLiveStoreContract(t *testing.T) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			cfg := liveConfig(t)
			cfg.Layout = layout
			s := liveStore(t, cfg)
			checkContract(t, s)
		})
	}
}

// checkContract drives one store through the provider.Store contract.
func checkContract(t *testing.T, s *Store) {
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, bytes.Repeat([]byte("v"), 300))

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)
	_, err = s.CompareAndSwap(ctx, "k", rec, 12345, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.ErrorIs(t, s.Touch(ctx, "k", time.Minute), provider.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "k"), provider.ErrNotFound)

	cas, err := s.Add(ctx, "k", rec, time.Minute)
	require.NoError(t, err)
	require.NotZero(t, cas)
	_, err = s.Add(ctx, "k", rec, time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)

	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, rec, e.Value)
	require.Equal(t, cas, e.CAS, "Add returns the CAS that Get reports")

	// Lock-only change, then a change of the values.
	locked := testRecord(t, 2, 1, true, bytes.Repeat([]byte("v"), 300))
	cas2, err := s.CompareAndSwap(ctx, "k", locked, cas, time.Minute)
	require.NoError(t, err)
	changed := testRecord(t, 3, 1, false, []byte("new values"))
	_, err = s.CompareAndSwap(ctx, "k", changed, cas, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "a stale CAS conflicts")
	cas3, err := s.CompareAndSwap(ctx, "k", changed, cas2, time.Minute)
	require.NoError(t, err)
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, changed, e.Value)
	require.Equal(t, cas3, e.CAS, "CompareAndSwap returns the CAS that Get reports")

	// TTL: set by writes and by Touch, in whole seconds.
	ttl, err := s.TTL(ctx, "k")
	require.NoError(t, err)
	require.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 3)
	require.NoError(t, s.Touch(ctx, "k", time.Hour))
	ttl, err = s.TTL(ctx, "k")
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 3)
	_, err = s.TTL(ctx, "missing")
	require.ErrorIs(t, err, provider.ErrNotFound)

	require.NoError(t, s.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrNotFound)

	require.NoError(t, s.Close())
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrClosed)
	require.NoError(t, s.Close(), "closing twice")
}

func TestLiveExpiry(t *testing.T) {
	s := liveStore(t, liveConfig(t))
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, []byte("x"))
	_, err := s.Add(ctx, "short", rec, time.Second)
	require.NoError(t, err)
	waitUntil(t, 10*time.Second, func() bool {
		_, err := s.Get(ctx, "short")
		return errors.Is(err, provider.ErrNotFound)
	})
	_, err = s.Add(ctx, "short", rec, time.Minute)
	require.NoError(t, err, "an expired key can be added again")
}

// TestLiveNew connects a store of its own, as an application does: by
// default as soon as one node answers, or once all do.
func TestLiveNew(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(map[bool]string{false: "degraded accepted", true: "all nodes"}[all], func(t *testing.T) {
			cfg := liveConfig(t)
			cfg.WaitForAllNodes = all
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := New(ctx, cfg)
			require.NoError(t, err)
			_, err = s.Add(ctx, "n", testRecord(t, 1, 0, false, nil), time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			_, err = s.Get(ctx, "n")
			require.ErrorIs(t, err, provider.ErrClosed)
		})
	}
}

// TestLiveNewFromCollection uses a cluster the application opened: the
// store works on it and closing the store leaves it open.
func TestLiveNewFromCollection(t *testing.T) {
	cfg := liveConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster, err := gocb.Connect(cfg.ConnStr, gocb.ClusterOptions{
		Authenticator: gocb.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password},
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, cluster.Close(nil)) }()
	cfg = cfg.withDefaults()
	coll := cluster.Bucket(cfg.Bucket).Scope(cfg.Scope).Collection(cfg.Collection)

	s, err := NewFromCollection(ctx, coll, Config{KeyPrefix: cfg.KeyPrefix, Layout: LayoutSubdoc})
	require.NoError(t, err)
	rec := testRecord(t, 1, 0, false, []byte("app's cluster"))
	cas, err := s.Add(ctx, "c", rec, time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "c", testRecord(t, 2, 1, true, []byte("app's cluster")), cas, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Get(ctx, "c")
	require.ErrorIs(t, err, provider.ErrClosed)

	res, err := coll.Get(cfg.KeyPrefix+"c", &gocb.GetOptions{Context: ctx})
	require.NoError(t, err, "the application's cluster is still open")
	require.NotZero(t, res.Cas())
}

// TestLiveLockedDocumentFailsFast locks a document with GetAndLock, as an
// administrator's tool might, and checks that the store's writes fail at
// once with a CAS conflict instead of being retried until the KV timeout
// (which would end in a timeout error).
func TestLiveLockedDocumentFailsFast(t *testing.T) {
	cfg := liveConfig(t)
	s := liveStore(t, cfg)
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, []byte("x"))
	cas, err := s.Add(ctx, "locked", rec, time.Minute)
	require.NoError(t, err)

	coll := s.kv.(*gocbKV).coll
	res, err := coll.GetAndLock(cfg.KeyPrefix+"locked", 15*time.Second, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = coll.Unlock(cfg.KeyPrefix+"locked", res.Cas(), nil) })

	_, err = s.CompareAndSwap(ctx, "locked", testRecord(t, 2, 1, true, []byte("x")), cas, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	require.ErrorIs(t, err, gocb.ErrDocumentLocked)
	require.NotErrorIs(t, err, gocb.ErrTimeout, "the locked document was retried until the timeout")

	err = s.Touch(ctx, "locked", time.Minute)
	require.ErrorIs(t, err, gocb.ErrDocumentLocked)
	require.NotErrorIs(t, err, gocb.ErrTimeout)
}

// TestLiveHeaderOnlyWrites checks that with LayoutSubdoc a lock-only
// change moves only the header, and that both layouts read each other's
// documents.
func TestLiveHeaderOnlyWrites(t *testing.T) {
	cfg := liveConfig(t)
	cfg.Layout = LayoutSubdoc
	var ev events
	cfg.OnEvent = ev.record
	sub := liveStore(t, cfg)
	bcfg := cfg
	bcfg.Layout = LayoutBinary
	bin := wrapped(sub, bcfg, func(k kv) kv { return k })
	ctx := context.Background()
	values := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB

	rec := testRecord(t, 1, 0, false, values)
	_, err := sub.Add(ctx, "s", rec, time.Minute)
	require.NoError(t, err)
	e, err := sub.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, rec, e.Value)

	before := sub.sent.Load()
	locked := testRecord(t, 2, 7, true, values)
	cas, err := sub.CompareAndSwap(ctx, "s", locked, e.CAS, time.Minute)
	require.NoError(t, err)
	sent := sub.sent.Load() - before
	require.Less(t, sent, int64(100), "a lock-only change sent %d payload bytes", sent)

	// The binary-layout store reads the JSON document and writes it back
	// whole; the subdoc store then reads the binary document.
	e, err = bin.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, locked, e.Value)
	require.Equal(t, cas, e.CAS)
	released := testRecord(t, 3, 7, false, values)
	_, err = bin.CompareAndSwap(ctx, "s", released, cas, time.Minute)
	require.NoError(t, err)
	e, err = sub.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, released, e.Value)

	// Header-only write on a binary document: the server answers
	// SUBDOC_DOC_NOT_JSON, which gocb reports as ErrValueNotJSON ...
	_, err = sub.kv.replaceHeader(ctx, cfg.KeyPrefix+"s", "AAAA", e.CAS, time.Minute)
	require.True(t, isNotJSON(err), "a MutateIn of a binary document: %v", err)
	// ... and the store falls back to a whole write, once, counted.
	require.Empty(t, ev.fallbacks())
	relocked := testRecord(t, 4, 8, true, values)
	cas, err = sub.compareAndSwapHeader(ctx, "s", released, relocked, e.CAS, time.Minute)
	require.NoError(t, err)
	require.Len(t, ev.fallbacks(), 1)
	e, err = sub.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, relocked, e.Value)
	require.Equal(t, cas, e.CAS)

	// A stale CAS on a header-only write: gocb reports ErrDocumentExists
	// (GOCBC-1019), the store a CAS conflict.
	_, err = sub.compareAndSwapHeader(ctx, "s", relocked, testRecord(t, 5, 8, false, values), cas-1, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict)
	require.True(t, isCASMismatch(err))
	t.Logf("gocb's error for a MutateIn CAS mismatch: ErrDocumentExists=%v ErrCasMismatch=%v",
		errors.Is(err, gocb.ErrDocumentExists), errors.Is(err, gocb.ErrCasMismatch))
	require.Len(t, ev.fallbacks(), 1, "a conflict is no fallback")
}

// TestLiveReplicaRead makes the active node unreachable for reads (the kv
// in front of the cluster fails them as gocb does) and reads a replica.
func TestLiveReplicaRead(t *testing.T) {
	cfg := liveConfig(t)
	cfg.ReadFromReplica = true
	s := liveStore(t, cfg)
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, []byte("replicated"))
	_, err := s.Add(ctx, "r", rec, time.Minute)
	require.NoError(t, err)

	down := wrapped(s, cfg, func(k kv) kv { return &activeDown{kv: k} })
	var e provider.Entry
	waitUntil(t, 10*time.Second, func() bool { // replication is asynchronous
		e, err = down.Get(ctx, "r")
		return err == nil
	})
	require.Equal(t, rec, e.Value)
	require.Equal(t, ReplicaCAS, e.CAS)
	_, err = down.CompareAndSwap(ctx, "r", testRecord(t, 2, 1, true, []byte("replicated")), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.ErrorIs(t, err, ErrReplicaCAS)

	// A replica read of an absent key lasts until the KV timeout or the
	// context's end: no replica answering is all it learns.
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = down.Get(actx, "absent")
	require.ErrorIs(t, err, provider.ErrUnavailable, "no replica has it: no proof it is absent")
}

// activeDown fails reads of the active node as gocb does when the node is
// unreachable.
type activeDown struct{ kv }

func (a *activeDown) get(context.Context, string) (doc, uint64, error) {
	return doc{}, 0, errActiveDown()
}

func TestLiveDurability(t *testing.T) {
	for _, d := range []Durability{DurabilityMajority, DurabilityPersistToMajority} {
		t.Run(string(d), func(t *testing.T) {
			cfg := liveConfig(t)
			cfg.Durability = d
			s := liveStore(t, cfg)
			ctx := context.Background()
			rec := testRecord(t, 1, 0, false, []byte("durable"))
			cas, err := s.Add(ctx, "d", rec, time.Minute)
			if errors.Is(err, gocb.ErrDurabilityLevelNotAvailable) || errors.Is(err, gocb.ErrFeatureNotAvailable) ||
				errors.Is(err, gocb.ErrDurabilityImpossible) {
				t.Skipf("the endpoint cannot give durability %q: %v", d, err)
			}
			require.NoError(t, err)
			cas, err = s.CompareAndSwap(ctx, "d", testRecord(t, 2, 1, true, []byte("durable")), cas, time.Minute)
			require.NoError(t, err)
			e, err := s.Get(ctx, "d")
			require.NoError(t, err)
			require.Equal(t, cas, e.CAS)
		})
	}
}

// TestLiveAmbiguousWrites injects ambiguous timeouts around real writes:
// after the server applied them, and before it saw them.
func TestLiveAmbiguousWrites(t *testing.T) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			cfg := liveConfig(t)
			cfg.Layout = layout
			s := liveStore(t, cfg)
			ctx := context.Background()
			values := bytes.Repeat([]byte("z"), 500)
			cas, err := s.Add(ctx, "a", testRecord(t, 1, 0, false, values), time.Minute)
			require.NoError(t, err)
			_, err = s.Get(ctx, "a") // remember the version (LayoutSubdoc)
			require.NoError(t, err)

			for i, applied := range []bool{true, false} {
				amb := &ambiguousOnce{kv: s.kv, applied: applied}
				as := newStore(amb, s.cfg)
				as.versions = s.versions
				want := testRecord(t, uint64(2+i), uint64(1+i), true, values)
				newCAS, err := as.CompareAndSwap(ctx, "a", want, cas, time.Minute)
				require.NoError(t, err, "applied=%v", applied)
				e, err := s.Get(ctx, "a")
				require.NoError(t, err)
				require.Equal(t, want, e.Value)
				require.Equal(t, e.CAS, newCAS)
				cas = newCAS
			}

			// Add whose Insert landed but timed out.
			amb := &ambiguousOnce{kv: s.kv, applied: true}
			as := newStore(amb, s.cfg)
			rec := testRecord(t, 1, 0, false, values)
			addCAS, err := as.Add(ctx, "b", rec, time.Minute)
			require.NoError(t, err)
			e, err := s.Get(ctx, "b")
			require.NoError(t, err)
			require.Equal(t, addCAS, e.CAS)

			if layout != LayoutSubdoc {
				return
			}
			// A header-only write to a binary document whose request
			// timed out: the re-send after the read-back falls back to a
			// whole write, as the first send would have.
			bcfg := s.cfg
			bcfg.Layout = LayoutBinary
			old := testRecord(t, 1, 0, false, values)
			bcas, err := newStore(s.kv, bcfg).Add(ctx, "bin", old, time.Minute)
			require.NoError(t, err)
			var ev events
			scfg := s.cfg
			scfg.OnEvent = ev.record
			as = newStore(&ambiguousOnce{kv: s.kv}, scfg)
			want := testRecord(t, 2, 1, true, values)
			newCAS, err := as.compareAndSwapHeader(ctx, "bin", old, want, bcas, time.Minute)
			require.NoError(t, err)
			e, err = s.Get(ctx, "bin")
			require.NoError(t, err)
			require.Equal(t, want, e.Value)
			require.Equal(t, e.CAS, newCAS)
			require.Len(t, ev.fallbacks(), 1)
		})
	}
}

// ambiguousOnce makes the first write fail with an ambiguous timeout,
// after sending it to the cluster when applied is set.
type ambiguousOnce struct {
	kv
	applied bool
	mu      sync.Mutex
	done    bool
}

func (a *ambiguousOnce) fail(send func() error) error {
	a.mu.Lock()
	first := !a.done
	a.done = true
	a.mu.Unlock()
	if !first {
		return send()
	}
	if a.applied {
		if err := send(); err != nil {
			return err
		}
	}
	return &gocb.TimeoutError{InnerError: gocb.ErrAmbiguousTimeout}
}

func (a *ambiguousOnce) insert(ctx context.Context, key string, d doc, ttl time.Duration) (cas uint64, err error) {
	err = a.fail(func() error { cas, err = a.kv.insert(ctx, key, d, ttl); return err })
	return cas, err
}

func (a *ambiguousOnce) replace(ctx context.Context, key string, d doc, c uint64, ttl time.Duration) (cas uint64, err error) {
	err = a.fail(func() error { cas, err = a.kv.replace(ctx, key, d, c, ttl); return err })
	return cas, err
}

func (a *ambiguousOnce) replaceHeader(ctx context.Context, key string, h string, c uint64, ttl time.Duration) (cas uint64, err error) {
	err = a.fail(func() error { cas, err = a.kv.replaceHeader(ctx, key, h, c, ttl); return err })
	return cas, err
}
