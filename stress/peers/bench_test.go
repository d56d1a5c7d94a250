package peers

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLatencyRatios reports, per kind of request, the median latency
// of ours over the median latency of scs, both through real HTTP on
// loopback to the same memcached node, their requests interleaved one by
// one (ours, scs, scs, ours, ...: each goes first half of the time) so
// that both see the same machine load. A "cold" request of ours is served
// by an app server that did not serve the session's previous request (a
// fresh one: read, lock, release); the others by the one that did. Run
// with -count 5 and take the median of the ratios:
//
//	go test -run '^$' -bench LatencyRatios -benchtime 2000x -count 5 .
func BenchmarkLatencyRatios(b *testing.B) {
	node := startMemcached(b)
	o := newOurs(b, node.Addr(), 1)
	s := newPeer(b, node.Addr())
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			id, token := o.create(b), s.create(b)
			// Warm the connections of both sides.
			for range 10 {
				if err := o.do(0, k.path, id); err != nil {
					b.Fatal(err)
				}
				if err := s.do(0, k.path, token); err != nil {
					b.Fatal(err)
				}
			}
			oursT := make([]time.Duration, 0, b.N)
			scsT := make([]time.Duration, 0, b.N)
			timeOurs := func() {
				if k.cold {
					o.fresh(b, 0)
				}
				start := time.Now()
				if err := o.do(0, k.path, id); err != nil {
					b.Fatal(err)
				}
				oursT = append(oursT, time.Since(start))
			}
			timeSCS := func() {
				start := time.Now()
				if err := s.do(0, k.path, token); err != nil {
					b.Fatal(err)
				}
				scsT = append(scsT, time.Since(start))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					timeOurs()
					timeSCS()
				} else {
					timeSCS()
					timeOurs()
				}
			}
			b.StopTimer()
			om, sm := median(oursT), median(scsT)
			b.ReportMetric(float64(om.Nanoseconds())/1e3, "ours-µs")
			b.ReportMetric(float64(sm.Nanoseconds())/1e3, "scs-µs")
			b.ReportMetric(float64(om)/float64(sm), "ours/scs")
		})
	}
}

// Throughput setting: sessions per side and concurrent clients.
const (
	throughputSessions = 1000
	throughputClients  = 32
)

// BenchmarkThroughput reports requests per second of each side with
// throughputClients concurrent clients over real HTTP, each client owning
// its share of throughputSessions sessions (a user's requests come one
// after another: no two clients share a session, so nothing waits for a
// lock) and visiting them in turn. b.N is the number of requests per side;
// they run in 20 phases per side, taking turns (ours, scs, scs, ours, ...)
// so that both see the same machine load. The "alternating" kind has two
// app servers of ours, a session's visits going to each in turn, as
// behind a load balancer without affinity: every exclusive request then
// finds its server's cached record stale (one refused lock write, then
// read, lock, release). Run:
//
//	go test -run '^$' -bench Throughput -benchtime 20000x -count 3 .
func BenchmarkThroughput(b *testing.B) {
	node := startMemcached(b)
	o := newOurs(b, node.Addr(), 2)
	s := newPeer(b, node.Addr())
	ids := make([]string, throughputSessions)
	tokens := make([]string, throughputSessions)
	for i := range throughputSessions {
		ids[i], tokens[i] = o.create(b), s.create(b)
	}
	type tkind struct {
		name, path string
		servers    int // ours: how many app servers a session's visits rotate over
	}
	for _, k := range []tkind{
		{"exclusive-incr", "/incr", 1},
		{"exclusive-read", "/read", 1},
		{"exclusive-read/alternating", "/read", 2},
		{"readonly", "/ro", 1},
		{"lockfree-read", "/lf-read", 1},
		{"lockfree-incr", "/lf-incr", 1},
	} {
		b.Run(k.name, func(b *testing.B) {
			const phases = 20
			per := max(throughputClients, b.N/phases)
			var oursDur, scsDur time.Duration
			runOurs := func() {
				oursDur += phase(b, per, func(visit, sess int) error {
					return o.do(visit%k.servers, k.path, ids[sess])
				})
			}
			runSCS := func() {
				scsDur += phase(b, per, func(_, sess int) error {
					return s.do(0, k.path, tokens[sess])
				})
			}
			phase(b, 2*throughputClients, func(visit, sess int) error { // warm connections
				if err := o.do(visit%k.servers, k.path, ids[sess]); err != nil {
					return err
				}
				return s.do(0, k.path, tokens[sess])
			})
			b.ResetTimer()
			for i := range phases {
				if i%2 == 0 {
					runOurs()
					runSCS()
				} else {
					runSCS()
					runOurs()
				}
			}
			b.StopTimer()
			n := float64(per * phases)
			ours, peer := n/oursDur.Seconds(), n/scsDur.Seconds()
			b.ReportMetric(ours, "ours-req/s")
			b.ReportMetric(peer, "scs-req/s")
			b.ReportMetric(ours/peer, "ours/scs")
		})
	}
}

// phase makes n requests with throughputClients concurrent clients and
// returns how long they took. Client c owns sessions c, c+clients, ...
// and visits them in turn; do gets the session's visit number (how many
// times this client came round to it) and its index.
func phase(b *testing.B, n int, do func(visit, sess int) error) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := time.Now()
	for c := range throughputClients {
		owned := (throughputSessions - c + throughputClients - 1) / throughputClients
		count := n / throughputClients
		wg.Go(func() {
			for j := range count {
				if err := do(j/owned, c+throughputClients*(j%owned)); err != nil {
					err = fmt.Errorf("client %d: %w", c, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return d
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
