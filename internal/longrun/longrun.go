// Package longrun drives many distinct sessions through a provider, to
// show per-request cost that grows with the number of sessions a
// long-running process has seen, and memory that grows with it. It
// reports the mean latency of a request in the run's first and last
// tenths (their ratio, in one run, is near 1 when nothing grows) and the
// heap in use after a collection at the middle and at the end of the run.
package longrun

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
)

// SessionBytes is the size of a driven session's value.
const SessionBytes = 2 << 10

// Result is one run's figures.
type Result struct {
	Sessions          int
	FirstNs, LastNs   float64 // mean ns per request in the first and last tenth
	HeapMidMB, HeapMB float64 // heap in use after GC at the middle and the end
}

// Ratio is LastNs / FirstNs.
func (r Result) Ratio() float64 { return r.LastNs / r.FirstNs }

func (r Result) String() string {
	return fmt.Sprintf("sessions=%d first=%.0fns last=%.0fns last/first=%.2f heap-mid=%.1fMB heap-end=%.1fMB",
		r.Sessions, r.FirstNs, r.LastNs, r.Ratio(), r.HeapMidMB, r.HeapMB)
}

// Run creates n sessions of about SessionBytes, one after the other. Each
// session i is created (a new item's SetAndReleaseItemExclusive), goes
// through one exclusive cycle that changes it, and one earlier session,
// drawn at random, is read; every fourth session is then removed. So a
// step is four requests (five for the removed ones), and the sessions
// stored grow to about 3n/4.
func Run(ctx context.Context, p *provider.Provider, n int) (Result, error) {
	blob := strings.Repeat("x", SessionBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 0, n)
	tenth := max(1, n/10)
	var first, last time.Duration
	var firstReqs, lastReqs int
	res := Result{Sessions: n}
	for i := range n {
		id, err := session.NewID()
		if err != nil {
			return res, err
		}
		start := time.Now()
		reqs, err := step(ctx, p, id, i, blob, ids, rng)
		took := time.Since(start)
		if err != nil {
			return res, fmt.Errorf("session %d: %w", i, err)
		}
		if i%4 != 3 {
			ids = append(ids, id)
		}
		switch {
		case i < tenth:
			first += took
			firstReqs += reqs
		case i >= n-tenth:
			last += took
			lastReqs += reqs
		}
		if i == n/2 {
			res.HeapMidMB = heapMB()
		}
	}
	res.HeapMB = heapMB()
	res.FirstNs = float64(first.Nanoseconds()) / float64(firstReqs)
	res.LastNs = float64(last.Nanoseconds()) / float64(lastReqs)
	return res, nil
}

// Bench runs Run with b.N × 1000 sessions and reports its figures as
// b's metrics.
func Bench(b *testing.B, p *provider.Provider) {
	b.Helper()
	r, err := Run(context.Background(), p, b.N*1000)
	if err != nil {
		b.Fatal(err)
	}
	b.Log(r)
	b.ReportMetric(r.FirstNs, "first-ns/req")
	b.ReportMetric(r.LastNs, "last-ns/req")
	b.ReportMetric(r.Ratio(), "last/first")
	b.ReportMetric(r.HeapMidMB, "heap-mid-MB")
	b.ReportMetric(r.HeapMB, "heap-end-MB")
}

// step runs session i's requests and returns how many it ran.
func step(ctx context.Context, p *provider.Provider, id string, i int, blob string, earlier []string, rng *rand.Rand) (int, error) {
	d := p.CreateNewStoreData(0)
	if err := d.Values.Set("blob", blob); err != nil {
		return 0, err
	}
	if err := d.Values.Set("n", 0); err != nil {
		return 0, err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, d, 0, true); err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	item, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return 1, fmt.Errorf("get exclusive: %w", err)
	}
	if err := item.Data.Values.Set("n", i); err != nil {
		return 2, err
	}
	if err := p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false); err != nil {
		return 2, fmt.Errorf("set and release: %w", err)
	}
	reqs := 3
	if len(earlier) > 0 {
		// A read of an evicted session (the memcached servers' memory is
		// bounded) finds nothing: that is no error.
		if _, err := p.GetItem(ctx, earlier[rng.IntN(len(earlier))]); err != nil && !errors.Is(err, provider.ErrNotFound) {
			return reqs, fmt.Errorf("read earlier: %w", err)
		}
		reqs++
	}
	if i%4 == 3 {
		item, err := p.GetItemExclusive(ctx, id)
		if err != nil {
			return reqs, fmt.Errorf("get exclusive to remove: %w", err)
		}
		if err := p.RemoveItem(ctx, id, item.LockID); err != nil {
			return reqs, fmt.Errorf("remove: %w", err)
		}
		reqs += 2
	}
	return reqs, nil
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}
