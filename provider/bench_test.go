package provider_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sessionlock/sessionlock/internal/longrun"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// benchSession stores a session of about 2 KB in ten values.
func benchSession(b *testing.B, p *provider.Provider) string {
	b.Helper()
	id, err := session.NewID()
	if err != nil {
		b.Fatal(err)
	}
	d := p.CreateNewStoreData(0)
	for i := range 10 {
		if err := d.Values.Set(string(rune('a'+i)), strings.Repeat("x", 190)); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true); err != nil {
		b.Fatal(err)
	}
	return id
}

func newBenchProvider(b *testing.B) *provider.Provider {
	s := memstore.New(memstore.Config{})
	b.Cleanup(func() { s.Close() })
	p, err := provider.New(s, provider.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkExclusiveCycle is one exclusive request that changes one value:
// GetItemExclusive + SetAndReleaseItemExclusive on the memory store.
func BenchmarkExclusiveCycle(b *testing.B) {
	p := newBenchProvider(b)
	id := benchSession(b, p)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		item, err := p.GetItemExclusive(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		n++
		if err := item.Data.Values.Set("counter", n); err != nil {
			b.Fatal(err)
		}
		if err := p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExclusiveUnchanged is one exclusive request that changes
// nothing: GetItemExclusive + ReleaseItemExclusive.
func BenchmarkExclusiveUnchanged(b *testing.B) {
	p := newBenchProvider(b)
	id := benchSession(b, p)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		item, err := p.GetItemExclusive(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.ReleaseItemExclusive(ctx, id, item.LockID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetItem is one read-only request.
func BenchmarkGetItem(b *testing.B) {
	p := newBenchProvider(b)
	id := benchSession(b, p)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.GetItem(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLongRun drives b.N × 1000 distinct 2 KB sessions through the
// provider over the memory store (internal/longrun), reporting a
// request's mean latency in the run's last tenth over its first
// (last/first, near 1 when no cost grows with the sessions seen) and the
// heap in use. Run it with -benchtime=300x for 300,000 sessions.
func BenchmarkLongRun(b *testing.B) {
	longrun.Bench(b, newBenchProvider(b))
}
