package couchbase

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/couchbase/gocb/v2"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

func TestFakeStoreContract(t *testing.T) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			s, _ := fakeStore(t, Config{Layout: layout, KeyPrefix: "app:"})
			checkContract(t, s)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{ConnStr: "couchbase://127.0.0.1", Bucket: "b"}
	cases := map[string]func(c *Config){
		"no ConnStr":         func(c *Config) { c.ConnStr = "" },
		"no Bucket":          func(c *Config) { c.Bucket = "" },
		"unknown durability": func(c *Config) { c.Durability = "always" },
		"unknown layout":     func(c *Config) { c.Layout = "xml" },
		"negative timeout":   func(c *Config) { c.Timeouts.KV = -time.Second },
		"prefix too long":    func(c *Config) { c.KeyPrefix = strings.Repeat("p", MaxKeyLen) },
		"prefix not UTF-8":   func(c *Config) { c.KeyPrefix = "\xff" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			mutate(&c)
			_, err := New(context.Background(), c)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestNewUnreachableCluster(t *testing.T) {
	// Nothing listens on port 1; New gives up after the connect timeout.
	_, err := New(context.Background(), Config{
		ConnStr: "couchbase://127.0.0.1:1", Bucket: "b",
		Timeouts: Timeouts{Connect: 300 * time.Millisecond},
	})
	require.ErrorIs(t, err, provider.ErrUnavailable)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = New(ctx, Config{ConnStr: "couchbase://127.0.0.1:1", Bucket: "b"})
	require.ErrorIs(t, err, context.Canceled)
}

func TestConfigDefaults(t *testing.T) {
	c := Config{ConnStr: "couchbase://h", Bucket: "b"}.withDefaults()
	require.Equal(t, DefaultScope, c.Scope)
	require.Equal(t, DefaultCollection, c.Collection)
	require.Equal(t, DurabilityNone, c.Durability)
	require.Equal(t, LayoutBinary, c.Layout)
	require.Equal(t, DefaultHeaderCacheSize, c.HeaderCacheSize)
	require.Equal(t, Timeouts{Connect: DefaultConnectTimeout, Ready: DefaultConnectTimeout, KV: DefaultKVTimeout,
		KVDurable: DefaultKVDurableTimeout, Resolve: DefaultKVTimeout}, c.Timeouts)
	require.False(t, c.WaitForAllNodes)
	require.Nil(t, c.OnEvent)
	d := Config{ConnStr: "couchbase://h", Bucket: "b", Durability: DurabilityMajority}.withDefaults()
	require.Equal(t, DefaultKVDurableTimeout, d.Timeouts.Resolve, "durable writes settle within the durable timeout")
}

func TestBadInput(t *testing.T) {
	s, f := fakeStore(t, Config{KeyPrefix: "p:"})
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, nil)
	for _, key := range []string{"", strings.Repeat("k", MaxKeyLen-1), "\xff\xfe"} {
		_, err := s.Get(ctx, key)
		require.ErrorIs(t, err, ErrInvalidKey, "key %q", key)
		_, err = s.Add(ctx, key, rec, time.Minute)
		require.ErrorIs(t, err, ErrInvalidKey)
	}
	_, err := s.Add(ctx, "k", rec, 0)
	require.Error(t, err)
	_, err = s.Add(ctx, "k", rec, MaxTTL+time.Second)
	require.Error(t, err)
	require.Error(t, s.Touch(ctx, "k", -time.Second))
	require.Zero(t, f.count("insert")+f.count("touch"), "bad input reached the cluster")

	cas, err := s.Add(ctx, "k", rec, time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", rec, 0, time.Minute)
	require.ErrorIs(t, err, provider.ErrCASConflict, "cas 0 would be an unconditional write")
	require.Zero(t, f.count("replace"))
	_, err = s.CompareAndSwap(ctx, "k", rec, cas, time.Minute)
	require.NoError(t, err)

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(ctx2, "k")
	require.ErrorIs(t, err, context.Canceled)
}

func TestTTLRoundedUpToSeconds(t *testing.T) {
	s, f := fakeStore(t, Config{})
	ctx := context.Background()
	_, err := s.Add(ctx, "k", testRecord(t, 1, 0, false, nil), 1500*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, f.lastTTL)
	require.NoError(t, s.Touch(ctx, "k", time.Millisecond))
	require.Equal(t, time.Second, f.lastTTL)
	require.NoError(t, s.Touch(ctx, "k", time.Minute))
	require.Equal(t, time.Minute, f.lastTTL)
}

// TestAmbiguousCompareAndSwap feeds the store ambiguous outcomes and checks
// each is settled by reading back, never guessed.
func TestAmbiguousCompareAndSwap(t *testing.T) {
	ambiguous := &gocb.TimeoutError{InnerError: gocb.ErrAmbiguousTimeout}
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			ctx := context.Background()
			values := bytes.Repeat([]byte("v"), 100)
			// setup returns a store holding rec at cas, read through Get.
			setup := func(t *testing.T) (*Store, *fakeKV, uint64) {
				s, f := fakeStore(t, Config{Layout: layout})
				_, err := s.Add(ctx, "k", testRecord(t, 1, 0, false, values), time.Minute)
				require.NoError(t, err)
				e, err := s.Get(ctx, "k")
				require.NoError(t, err)
				return s, f, e.CAS
			}
			op := "replace"
			if layout == LayoutSubdoc {
				op = "replaceHeader" // a lock-only change of a version the store read
			}
			want := testRecord(t, 2, 1, true, values)

			t.Run("landed", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: ambiguous, applied: true})
				newCAS, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.NoError(t, err)
				e, err := s.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, want, e.Value)
				require.Equal(t, e.CAS, newCAS, "the read-back CAS is reported")
				require.Equal(t, 1, f.count(op), "a landed write is not sent again")
			})
			t.Run("lost", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: ambiguous})
				newCAS, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.NoError(t, err)
				e, err := s.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, want, e.Value)
				require.Equal(t, e.CAS, newCAS)
				require.Equal(t, 2, f.count(op), "the unchanged document gets the same conditional write again")
			})
			t.Run("lost, document changed", func(t *testing.T) {
				s, f, cas := setup(t)
				other := testRecord(t, 2, 9, true, values)
				f.inject(op, fault{err: ambiguous, hook: func() { f.set("k", encodeDoc(other, layout)) }})
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.ErrorIs(t, err, provider.ErrCASConflict)
				e, err := s.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, other, e.Value, "the other writer's value stands")
			})
			t.Run("lost, document gone", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: ambiguous, hook: func() {
					f.mu.Lock()
					delete(f.docs, "k")
					f.mu.Unlock()
				}})
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.ErrorIs(t, err, provider.ErrNotFound)
			})
			t.Run("read-back fails", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: ambiguous, applied: true})
				f.inject("get", fault{err: &gocb.TimeoutError{InnerError: gocb.ErrUnambiguousTimeout}})
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				require.ErrorIs(t, err, gocb.ErrAmbiguousTimeout)
				require.NotErrorIs(t, err, provider.ErrUnavailable, "an unknown outcome is not reported as unavailable")
				require.NotErrorIs(t, err, provider.ErrCASConflict)
			})
			t.Run("always ambiguous", func(t *testing.T) {
				s, f, cas := setup(t)
				for range 1 + resolveAttempts {
					f.inject(op, fault{err: ambiguous})
				}
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				require.NotErrorIs(t, err, provider.ErrUnavailable)
				require.Equal(t, 1+resolveAttempts, f.count(op))
			})
			t.Run("durability ambiguous", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: &gocb.KeyValueError{InnerError: gocb.ErrDurabilityAmbiguous}, applied: true})
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.NoError(t, err)
			})
			t.Run("caller cancelled", func(t *testing.T) {
				s, f, cas := setup(t)
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				f.inject(op, fault{err: &gocb.KeyValueError{InnerError: gocb.ErrRequestCanceled}, applied: true, hook: cancel})
				_, err := s.CompareAndSwap(cctx, "k", want, cas, time.Minute)
				require.NoError(t, err, "the outcome is settled even though the caller gave up")
			})
			t.Run("unambiguous timeout is not resolved", func(t *testing.T) {
				s, f, cas := setup(t)
				f.inject(op, fault{err: &gocb.TimeoutError{InnerError: gocb.ErrUnambiguousTimeout}})
				_, err := s.CompareAndSwap(ctx, "k", want, cas, time.Minute)
				require.ErrorIs(t, err, provider.ErrUnavailable)
				require.Equal(t, 1, f.count(op))
				require.Equal(t, 1, f.count("get"), "no read-back")
			})
		})
	}
}

func TestAmbiguousAdd(t *testing.T) {
	ambiguous := &gocb.TimeoutError{InnerError: gocb.ErrAmbiguousTimeout}
	ctx := context.Background()
	rec := testRecord(t, 1, 0, false, []byte("mine"))

	s, f := fakeStore(t, Config{})
	f.inject("insert", fault{err: ambiguous, applied: true})
	cas, err := s.Add(ctx, "landed", rec, time.Minute)
	require.NoError(t, err)
	e, err := s.Get(ctx, "landed")
	require.NoError(t, err)
	require.Equal(t, e.CAS, cas)
	require.Equal(t, 1, f.count("insert"))

	f.inject("insert", fault{err: ambiguous})
	_, err = s.Add(ctx, "lost", rec, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 3, f.count("insert"), "an absent key gets the insert again")

	other := testRecord(t, 1, 0, false, []byte("theirs"))
	f.inject("insert", fault{err: ambiguous, hook: func() { f.set("raced", doc{body: other}) }})
	_, err = s.Add(ctx, "raced", rec, time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)
}

func TestReplicaRead(t *testing.T) {
	ctx := context.Background()
	rec := testRecord(t, 5, 2, false, []byte("current"))
	stale := testRecord(t, 4, 2, true, []byte("current"))

	s, f := fakeStore(t, Config{ReadFromReplica: true})
	_, err := s.Add(ctx, "k", rec, time.Minute)
	require.NoError(t, err)

	_, err = s.Get(ctx, "missing")
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.Zero(t, f.count("getAnyReplica"), "a reachable active's answer is final")

	f.activeErr = errActiveDown()
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, rec, e.Value)
	require.Equal(t, ReplicaCAS, e.CAS)

	_, err = s.CompareAndSwap(ctx, "k", testRecord(t, 6, 3, true, []byte("current")), e.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.ErrorIs(t, err, ErrReplicaCAS)
	require.NotErrorIs(t, err, provider.ErrCASConflict, "the provider must not loop re-reading the replica")
	require.Zero(t, f.count("replace"), "a replica's token never reaches the cluster")

	// A lagging replica serves an older record: the trade-off.
	f.replicas = map[string]doc{s.prefix + "k": {body: stale}}
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, stale, e.Value)

	f.replicaErr = &gocb.TimeoutError{InnerError: gocb.ErrDocumentUnretrievable}
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrNotFound, "no replica answering proves nothing")

	off, f2 := fakeStore(t, Config{})
	f2.activeErr = errActiveDown()
	_, err = off.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.Zero(t, f2.count("getAnyReplica"))
}

func TestHeaderOnlyWrites(t *testing.T) {
	ctx := context.Background()
	values := bytes.Repeat([]byte("0123456789abcdef"), 256)
	rec := testRecord(t, 1, 0, false, values)
	locked := testRecord(t, 2, 1, true, values)
	released := testRecord(t, 3, 1, false, values)
	committed := testRecord(t, 3, 1, false, []byte("new values"))

	t.Run("after Get", func(t *testing.T) {
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		before := s.sent.Load()
		cas, err := s.CompareAndSwap(ctx, "k", locked, e.CAS, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replaceHeader"))
		require.Zero(t, f.count("replace"))
		require.Equal(t, int64(subdocMutationBytes("h", 74)), s.sent.Load()-before)
		// The version written is remembered: the release needs no Get.
		cas, err = s.CompareAndSwap(ctx, "k", released, cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, f.count("replaceHeader"))
		e, err = s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, released, e.Value)
		require.Equal(t, cas, e.CAS)
		// Changed values are written whole.
		_, err = s.CompareAndSwap(ctx, "k", committed, cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replace"))
	})
	t.Run("stale CAS conflicts", func(t *testing.T) {
		s, _ := fakeStore(t, Config{Layout: LayoutSubdoc})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, "k", locked, e.CAS, time.Minute)
		require.NoError(t, err)
		_, err = s.compareAndSwapHeader(ctx, "k", rec, locked, e.CAS, time.Minute)
		require.ErrorIs(t, err, provider.ErrCASConflict)
	})
	t.Run("after Touch", func(t *testing.T) {
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Touch(ctx, "k", time.Hour))
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, "k", locked, e.CAS, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replaceHeader"), "Get after Touch remembers the new CAS")
	})
	t.Run("binary layout", func(t *testing.T) {
		s, f := fakeStore(t, Config{})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		cas, err := s.CompareAndSwap(ctx, "k", locked, e.CAS, time.Minute)
		require.NoError(t, err)
		_, err = s.compareAndSwapHeader(ctx, "k", locked, released, cas, time.Minute)
		require.NoError(t, err)
		require.Zero(t, f.count("replaceHeader"))
		require.Equal(t, 2, f.count("replace"))
	})
	t.Run("cache disabled", func(t *testing.T) {
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc, HeaderCacheSize: -1})
		_, err := s.Add(ctx, "k", rec, time.Minute)
		require.NoError(t, err)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		cas, err := s.CompareAndSwap(ctx, "k", locked, e.CAS, time.Minute)
		require.NoError(t, err)
		require.Zero(t, f.count("replaceHeader"))
		_, err = s.compareAndSwapHeader(ctx, "k", locked, released, cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replaceHeader"), "the explicit extension needs no cache")
	})
	t.Run("binary document", func(t *testing.T) {
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc})
		cas := f.set("k", doc{body: rec}) // written by a LayoutBinary store
		newCAS, err := s.compareAndSwapHeader(ctx, "k", rec, locked, cas, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, f.count("replaceHeader"))
		require.Equal(t, 1, f.count("replace"), "falls back to a whole write")
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, locked, e.Value)
		require.Equal(t, newCAS, e.CAS)
	})
	t.Run("not a record", func(t *testing.T) {
		s, f := fakeStore(t, Config{Layout: LayoutSubdoc})
		cas, err := s.Add(ctx, "k", []byte("opaque"), time.Minute)
		require.NoError(t, err)
		_, err = s.compareAndSwapHeader(ctx, "k", []byte("opaque"), []byte("opaque"), cas, time.Minute)
		require.NoError(t, err)
		require.Zero(t, f.count("replaceHeader"))
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, []byte("opaque"), e.Value, "non-records are stored binary")
	})
}

func TestVersionCacheBounded(t *testing.T) {
	c := newVersionCache(2)
	rec := testRecord(t, 1, 0, false, []byte("v"))
	for i, k := range []string{"a", "b", "c", "d"} {
		c.remember(k, uint64(i+1), rec)
		require.LessOrEqual(t, c.len(), 2)
	}
	require.True(t, c.unchanged("d", 4, testRecord(t, 9, 9, true, []byte("v"))))
	require.False(t, c.unchanged("d", 3, rec), "another CAS")
	require.False(t, c.unchanged("d", 4, testRecord(t, 1, 0, false, []byte("w"))), "other values")
	require.False(t, c.unchanged("d", 4, []byte("not a record")))
	c.forget("d")
	require.False(t, c.unchanged("d", 4, rec))
	require.Nil(t, newVersionCache(0))
	var none *versionCache
	none.remember("a", 1, rec) // a nil cache is a no-op
	require.False(t, none.unchanged("a", 1, rec))
}

func TestDecodeDocRejectsForeignJSON(t *testing.T) {
	for _, body := range []string{`{"a":1}`, `[]`, `{"h":"AAAA","v":""}`, `not json`} {
		_, err := decodeDoc(doc{body: []byte(body), json: true})
		require.ErrorIs(t, err, provider.ErrCorrupt, body)
	}
	rec := testRecord(t, 1, 0, false, []byte{0, 1, 2, 0xff, '"', '\\'})
	d := encodeDoc(rec, LayoutSubdoc)
	require.True(t, d.json)
	got, err := decodeDoc(d)
	require.NoError(t, err)
	require.Equal(t, rec, got)
}

// TestConcurrentIncrements runs read-modify-write loops from many
// goroutines through one store (and its version cache): each increment is
// a lock-only change followed by a commit, as the provider makes them.
func TestConcurrentIncrements(t *testing.T) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		t.Run(string(layout), func(t *testing.T) {
			s, _ := fakeStore(t, Config{Layout: layout})
			ctx := context.Background()
			counter := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
			_, err := s.Add(ctx, "k", testRecord(t, 0, 0, false, counter(0)), time.Minute)
			require.NoError(t, err)
			const workers, iters = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for done := 0; done < iters; {
						e, err := s.Get(ctx, "k")
						if err != nil {
							errs <- err
							return
						}
						h, err := record.Parse(e.Value)
						if err != nil {
							errs <- err
							return
						}
						if h.Locked {
							continue
						}
						_, vals, _ := record.Split(e.Value)
						n := binary.BigEndian.Uint64(vals)
						cas, err := s.CompareAndSwap(ctx, "k", testRecord(t, h.Seq+1, h.LockID+1, true, vals), e.CAS, time.Minute)
						if errors.Is(err, provider.ErrCASConflict) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						// Holding the lock: nobody else may write.
						if _, err := s.CompareAndSwap(ctx, "k", testRecord(t, h.Seq+2, h.LockID+1, false, counter(n+1)), cas, time.Minute); err != nil {
							errs <- err
							return
						}
						done++
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			e, err := s.Get(ctx, "k")
			require.NoError(t, err)
			_, vals, _ := record.Split(e.Value)
			require.Equal(t, uint64(workers*iters), binary.BigEndian.Uint64(vals))
		})
	}
}
