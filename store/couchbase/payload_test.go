package couchbase

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/record"
)

// Payload bytes are what the store hands to gocb and gets back: document
// bodies, and for a sub-document mutation its spec (opcode, flags, lengths,
// path, value). The 24-byte memcached header, key, extras and snappy
// compression are left out: they are the same for both layouts, except
// that compression shrinks base64 less than it shrinks the raw bytes.

// requestBytes is the payload one exclusive request moves the way the
// provider makes it: Get + CompareAndSwap (lock), then Get +
// CompareAndSwap (release, or commit when dirty).
type requestBytes struct {
	lockWrite       int64 // sent by the lock's CompareAndSwap
	clean, dirty    int64 // whole request, sent + received
	get             int64 // received by one Get
	releaseNoGet    int64 // release sent with the CAS the lock returned
	cleanWithoutGet int64 // Get + lock + release without the second Get
}

func measure(t *testing.T, layout Layout, n int) requestBytes {
	s, _ := fakeStore(t, Config{Layout: layout})
	ctx := context.Background()
	values := bytes.Repeat([]byte{0xa5}, n)
	total := func() int64 { return s.sent.Load() + s.received.Load() }
	run := func(key string, dirty bool) (r requestBytes) {
		if _, err := s.Add(ctx, key, testRecord(t, 1, 0, false, values), time.Minute); err != nil {
			t.Fatal(err)
		}
		start := total()
		e, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		r.get = total() - start
		sent := s.sent.Load()
		cas, err := s.CompareAndSwap(ctx, key, testRecord(t, 2, 1, true, values), e.CAS, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		r.lockWrite = s.sent.Load() - sent
		afterLock := total()
		e, err = s.Get(ctx, key)
		if err != nil || e.CAS != cas {
			t.Fatal(err, e.CAS, cas)
		}
		next := testRecord(t, 3, 1, false, values)
		if dirty {
			next = testRecord(t, 3, 1, false, append([]byte{1}, values[1:]...))
		}
		beforeRelease := total()
		if _, err := s.CompareAndSwap(ctx, key, next, e.CAS, time.Minute); err != nil {
			t.Fatal(err)
		}
		r.releaseNoGet = total() - beforeRelease
		r.clean = total() - start
		r.cleanWithoutGet = r.clean - (beforeRelease - afterLock)
		return r
	}
	r := run("clean", false)
	r.dirty = run("dirty", true).clean
	return r
}

// TestPayloadBytes measures the payload of lock-only changes and of whole
// requests in both layouts, and checks the sub-document saving.
//
//	go test -run TestPayloadBytes -v ./store/couchbase/
func TestPayloadBytes(t *testing.T) {
	t.Logf("%-8s %-6s %10s %8s %13s %13s %16s", "values", "layout", "lock write", "Get", "clean request", "dirty request", "clean, 1 Get")
	for _, n := range []int{256, 1024, 4096, 16384, 65536} {
		bin := measure(t, LayoutBinary, n)
		sub := measure(t, LayoutSubdoc, n)
		for _, m := range []struct {
			l Layout
			r requestBytes
		}{{LayoutBinary, bin}, {LayoutSubdoc, sub}} {
			t.Logf("%-8d %-6s %10d %8d %13d %13d %16d", n, m.l, m.r.lockWrite, m.r.get, m.r.clean, m.r.dirty, m.r.cleanWithoutGet)
		}
		// A lock-only write moves the header alone, whatever the size.
		if sub.lockWrite != int64(subdocMutationBytes("h", 74)) {
			t.Errorf("%d-byte values: subdoc lock write %d bytes, want %d", n, sub.lockWrite, subdocMutationBytes("h", 74))
		}
		if want := int64(record.MinLen + n); bin.lockWrite != want {
			t.Errorf("%d-byte values: binary lock write %d bytes, want the whole record %d", n, bin.lockWrite, want)
		}
		if sub.clean >= bin.clean {
			t.Errorf("%d-byte values: a clean request moves %d bytes with subdoc, %d binary", n, sub.clean, bin.clean)
		}
		// Reads and whole writes cost base64's third more: a dirty
		// request (two Gets and a commit in JSON) about breaks even from
		// 1 KiB of values (below, the JSON framing shows: +11% at 256 B).
		if limit := map[bool]float64{true: 1.12, false: 1.05}[n < 1024]; float64(sub.dirty) > limit*float64(bin.dirty) {
			t.Errorf("%d-byte values: a dirty request moves %d bytes with subdoc, %d binary", n, sub.dirty, bin.dirty)
		}
	}
}

// BenchmarkLockWrite reports the payload of one lock-only
// CompareAndSwap (payload-B/op) in each layout.
//
//	go test -run '^$' -bench BenchmarkLockWrite ./store/couchbase/
func BenchmarkLockWrite(b *testing.B) {
	for _, layout := range []Layout{LayoutBinary, LayoutSubdoc} {
		for _, n := range []int{1024, 16384} {
			b.Run(fmt.Sprintf("%s/%d", layout, n), func(b *testing.B) {
				f := newFakeKV()
				s := newStore(f, Config{ConnStr: "x", Bucket: "x", Layout: layout}.withDefaults())
				ctx := context.Background()
				values := bytes.Repeat([]byte{0xa5}, n)
				recs := [2][]byte{testRecord(b, 1, 0, false, values), testRecord(b, 2, 1, true, values)}
				cas, err := s.Add(ctx, "k", recs[0], time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
				start, ops := s.sent.Load(), 0
				for b.Loop() {
					ops++
					if cas, err = s.CompareAndSwap(ctx, "k", recs[ops%2], cas, time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(s.sent.Load()-start)/float64(ops), "payload-B/op")
			})
		}
	}
}
