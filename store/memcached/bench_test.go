package memcached_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/longrun"
	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/netdelay"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// sessionBytes is the size of the benchmarked session's values.
const sessionBytes = 2 << 10

// opCounts are memcached's own counters, summed over servers.
type opCounts struct{ get, set, cas, touch, del, bytes uint64 }

func countOps(b testing.TB, servers []*mcserver.Server) opCounts {
	b.Helper()
	var c opCounts
	for _, srv := range servers {
		st, err := srv.Stats(context.Background())
		require.NoError(b, err)
		c.get += st.Uint("cmd_get")
		c.set += st.Uint("cmd_set") // storage commands, cas included
		c.cas += st.Uint("cas_hits") + st.Uint("cas_misses") + st.Uint("cas_badval")
		c.touch += st.Uint("cmd_touch")
		c.del += st.Uint("delete_hits") + st.Uint("delete_misses")
		c.bytes += st.Uint("bytes_read") + st.Uint("bytes_written") // on the wire, both ways
	}
	return c
}

// total is the number of operations: mg counts in cmd_get (in cmd_touch
// when it sets the TTL), ms in cmd_set, md in delete_hits or
// delete_misses.
func (c opCounts) total() uint64 { return c.get + c.set + c.touch + c.del }

// newBenchSession stores one session of about sessionBytes.
func newBenchSession(b testing.TB, p *provider.Provider) string {
	b.Helper()
	id, err := session.NewID()
	require.NoError(b, err)
	d := p.CreateNewStoreData(0)
	require.NoError(b, d.Values.Set("blob", strings.Repeat("x", sessionBytes)))
	require.NoError(b, d.Values.Set("n", 0))
	require.NoError(b, p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
	return id
}

// requestKinds are the three uncontended requests whose cost is measured.
var requestKinds = []struct {
	name string
	run  func(ctx context.Context, p *provider.Provider, id string, i int) error
}{
	{"read-only", func(ctx context.Context, p *provider.Provider, id string, _ int) error {
		_, err := p.GetItem(ctx, id)
		return err
	}},
	{"exclusive-unchanged", func(ctx context.Context, p *provider.Provider, id string, _ int) error {
		item, err := p.GetItemExclusive(ctx, id)
		if err != nil {
			return err
		}
		return p.ReleaseItemExclusive(ctx, id, item.LockID)
	}},
	{"exclusive-changed", func(ctx context.Context, p *provider.Provider, id string, i int) error {
		item, err := p.GetItemExclusive(ctx, id)
		if err != nil {
			return err
		}
		if err := item.Data.Values.Set("n", i); err != nil {
			return err
		}
		return p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	}},
}

// BenchmarkRequestCost reports memcached operations per request, counted by
// the servers' own stats, for a 2 KB session on two nodes with the backup
// copy off and on, and on three nodes with the witness replication.
// ops/req = get + set (cas included) + touch + delete.
func BenchmarkRequestCost(b *testing.B) {
	servers := mcserver.StartForTest(b, 3, mcserver.Config{})
	ctx := context.Background()
	for _, backup := range []struct {
		name string
		mode memcached.BackupMode
	}{{"backup=off", memcached.BackupOff}, {"backup=on", memcached.BackupOn}, {"backup=witness", memcached.BackupWitness}} {
		for _, kind := range requestKinds {
			b.Run(backup.name+"/"+kind.name, func(b *testing.B) {
				s := newStore(b, servers, memcached.Config{Backup: backup.mode})
				p, err := provider.New(s, provider.Config{})
				require.NoError(b, err)
				id := newBenchSession(b, p)
				require.NoError(b, kind.run(ctx, p, id, 0)) // warm connections and caches
				before := countOps(b, servers)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := kind.run(ctx, p, id, i); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				after := countOps(b, servers)
				n := float64(b.N)
				get, set := float64(after.get-before.get)/n, float64(after.set-before.set)/n
				touch, del := float64(after.touch-before.touch)/n, float64(after.del-before.del)/n
				b.ReportMetric(get, "get/req")
				b.ReportMetric(set, "set/req")
				b.ReportMetric(float64(after.cas-before.cas)/n, "cas/req")
				b.ReportMetric(touch, "touch/req")
				b.ReportMetric(del, "delete/req")
				b.ReportMetric(get+set+touch+del, "ops/req")
				b.ReportMetric(float64(after.bytes-before.bytes)/n, "wire-bytes/req")
			})
		}
	}
}

// BenchmarkExclusiveCycleLatency reports the latency of one exclusive
// request cycle (GetItemExclusive + SetAndReleaseItemExclusive of a 2 KB
// session) as a ratio to one raw gomemcache Get of the same session bytes
// on the same node, measured in the same run.
func BenchmarkExclusiveCycleLatency(b *testing.B) {
	servers := mcserver.StartForTest(b, 3, mcserver.Config{})
	ctx := context.Background()
	for _, backup := range []struct {
		name string
		mode memcached.BackupMode
	}{{"backup=off", memcached.BackupOff}, {"backup=on", memcached.BackupOn}, {"backup=witness", memcached.BackupWitness}} {
		b.Run(backup.name, func(b *testing.B) {
			s := newStore(b, servers, memcached.Config{Backup: backup.mode})
			p, err := provider.New(s, provider.Config{})
			require.NoError(b, err)
			id := newBenchSession(b, p)
			key, err := p.Key(id)
			require.NoError(b, err)
			primary, _ := s.Placement(key)
			client := raw(b, primary)
			if _, err := client.Get(key); err != nil {
				b.Fatal(err)
			}
			cycle := requestKinds[2].run

			// Interleave rounds of raw gets and cycles so that both see
			// the same machine load.
			const rounds = 10
			var rawTime, cycleTime time.Duration
			var raws, cycles int
			b.ResetTimer()
			for r := range rounds {
				per := max(1, b.N/rounds)
				start := time.Now()
				for range per {
					if _, err := client.Get(key); err != nil {
						b.Fatal(err)
					}
				}
				rawTime += time.Since(start)
				raws += per
				start = time.Now()
				for i := range per {
					if err := cycle(ctx, p, id, r*per+i); err != nil {
						b.Fatal(err)
					}
				}
				cycleTime += time.Since(start)
				cycles += per
			}
			b.StopTimer()
			rawNs := float64(rawTime.Nanoseconds()) / float64(raws)
			cycleNs := float64(cycleTime.Nanoseconds()) / float64(cycles)
			b.ReportMetric(rawNs, "raw-get-ns")
			b.ReportMetric(cycleNs, "cycle-ns")
			b.ReportMetric(cycleNs/rawNs, "cycle/raw-get")
		})
	}
}

// copySettings are the replication settings whose cost is measured, each
// named explicitly (the default depends on the number of nodes): one copy,
// two copies (the backup copy) and two copies with a witness on a third
// node (docs/replication.md).
var copySettings = []struct {
	name  string
	nodes int
	mode  memcached.BackupMode
}{
	{"copies=1", 1, memcached.BackupOff},
	{"copies=2", 2, memcached.BackupOn},
	{"copies=2+W", 3, memcached.BackupWitness},
}

// dataCopy is where one data copy of a session is: its node and key.
type dataCopy struct{ addr, key string }

// dataCopies returns key's data copies under mode, the primary first (the
// backup copy is "bak:" + key on its node; the witness scheme's copies
// are key on the first two candidates).
func dataCopies(s *memcached.Store, mode memcached.BackupMode, key string) []dataCopy {
	if mode == memcached.BackupWitness {
		cs := memcached.WitnessCandidates(s, key)
		return []dataCopy{{cs[0], key}, {cs[1], key}}
	}
	primary, backup := s.Placement(key)
	if backup == "" || mode == memcached.BackupOff {
		return []dataCopy{{primary, key}}
	}
	return []dataCopy{{primary, key}, {backup, "bak:" + key}}
}

// BenchmarkLatencyRatios reports, per replication setting (copySettings)
// and request kind, the median latency of the request over the median
// latency of one raw gomemcache Get of the same 2 KB session on the
// session's primary node, the two interleaved one by one so that both see
// the same machine load (the loopback Get is bimodal on a shared machine).
// "cold" requests are served by a process that did not write the session
// last (a fresh provider: read, lock, commit), "warm" ones by the process
// that did (lock, commit). floor/raw-get is the median of as many raw Gets
// back to back as the request has sequential round trips (1, 2 or 3), timed
// right after it, over the same median raw Get: the part of the ratio the
// round trips alone take on this machine now (the Get's bimodal latency
// puts it above 2 or 3), so that the rest is the client's and the
// provider's work. With two copies, pfloor/raw-get is the same with each
// round trip a raw Get to both data copies' nodes in parallel (the Store's
// floor: it waits for the slower copy). Run with -count 5 and take the
// median of the ratios:
//
//	go test -run '^$' -bench LatencyRatios -benchtime 2000x -count 5 ./store/memcached/
//
// With MEMCACHED_BENCH_DELAY set (a duration such as 250us) every node
// the benchmark uses sits behind a proxy that delays each direction by
// that much (internal/netdelay): the raw Gets, the floors and the Store's
// requests all cross it, as they would cross a network between machines.
// The delay is a lower bound (the timer's wake-up adds tens of µs);
// raw-get-ns is the round trip actually paid.
func BenchmarkLatencyRatios(b *testing.B) {
	all := mcserver.StartForTest(b, 3, mcserver.Config{})
	addrs := benchAddrs(b, all)
	ctx := context.Background()
	for _, set := range copySettings {
		servers := all[:set.nodes]
		s := newStore(b, servers, memcached.Config{Backup: set.mode, Nodes: addrs[:set.nodes]})
		newProvider := func() *provider.Provider {
			p, err := provider.New(s, provider.Config{})
			require.NoError(b, err)
			return p
		}
		for _, kind := range []struct {
			name string
			run  func(ctx context.Context, p *provider.Provider, id string, i int) error
			cold bool
		}{
			{"read-only", requestKinds[0].run, false},
			{"exclusive-changed/cold", requestKinds[2].run, true},
			{"exclusive-changed/warm", requestKinds[2].run, false},
			{"exclusive-unchanged/cold", requestKinds[1].run, true},
			{"exclusive-unchanged/warm", requestKinds[1].run, false},
		} {
			b.Run(set.name+"/"+kind.name, func(b *testing.B) {
				p := newProvider()
				id := newBenchSession(b, p)
				key, err := p.Key(id)
				require.NoError(b, err)
				copies := dataCopies(s, set.mode, key)
				clients := make([]*memcache.Client, len(copies))
				for i, c := range copies {
					clients[i] = raw(b, c.addr)
					clients[i].MaxIdleConns = 4
					if _, err := clients[i].Get(c.key); err != nil {
						b.Fatal(err)
					}
				}
				client := clients[0]                        // the primary's
				require.NoError(b, kind.run(ctx, p, id, 0)) // warm connections
				raws := make([]time.Duration, 0, b.N)
				reqs := make([]time.Duration, 0, b.N)
				// floors: the same number of raw Gets back to back as the
				// request has sequential round trips, timed after it: what
				// the round trips alone cost on this machine now.
				trips := 2
				if kind.cold {
					trips = 3
				}
				if kind.name == "read-only" {
					trips = 1
				}
				floors := make([]time.Duration, 0, b.N)
				pfloors := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if _, err := client.Get(key); err != nil {
						b.Fatal(err)
					}
					raws = append(raws, time.Since(start))
					rp := p
					if kind.cold {
						b.StopTimer()
						rp = newProvider()
						b.StartTimer()
					}
					start = time.Now()
					if err := kind.run(ctx, rp, id, i); err != nil {
						b.Fatal(err)
					}
					reqs = append(reqs, time.Since(start))
					start = time.Now()
					for range trips {
						if _, err := client.Get(key); err != nil {
							b.Fatal(err)
						}
					}
					floors = append(floors, time.Since(start))
					if len(clients) > 1 {
						start = time.Now()
						for range trips {
							if err := parallelGets(clients, copies); err != nil {
								b.Fatal(err)
							}
						}
						pfloors = append(pfloors, time.Since(start))
					}
				}
				b.StopTimer()
				rawMed, reqMed := median(raws), median(reqs)
				b.ReportMetric(float64(rawMed.Nanoseconds()), "raw-get-ns")
				b.ReportMetric(float64(reqMed.Nanoseconds()), "req-ns")
				b.ReportMetric(float64(reqMed)/float64(rawMed), "req/raw-get")
				b.ReportMetric(float64(median(floors))/float64(rawMed), "floor/raw-get")
				if len(pfloors) > 0 {
					b.ReportMetric(float64(median(pfloors))/float64(rawMed), "pfloor/raw-get")
				}
			})
		}
	}
}

// benchAddrs returns the addresses the latency benchmark dials for
// servers: theirs, or with MEMCACHED_BENCH_DELAY set those of a delaying
// proxy in front of each (netdelay), closed when b ends.
func benchAddrs(b *testing.B, servers []*mcserver.Server) []string {
	b.Helper()
	env := os.Getenv("MEMCACHED_BENCH_DELAY")
	if env == "" {
		return mcserver.Addrs(servers)
	}
	delay, err := time.ParseDuration(env)
	if err != nil || delay < 0 {
		b.Fatalf("MEMCACHED_BENCH_DELAY=%q: want a duration such as 250us", env)
	}
	addrs := make([]string, len(servers))
	for i, srv := range servers {
		p, err := netdelay.Start(srv.Addr(), delay)
		require.NoError(b, err)
		b.Cleanup(func() { _ = p.Close() })
		addrs[i] = p.Addr()
	}
	b.Logf("every node behind a proxy delaying each direction by %v", delay)
	return addrs
}

// parallelGets gets each copy with its client at once (the first on the
// calling goroutine, the others each on a goroutine of its own: the
// Store sends its copies' commands from the caller's goroutine, wdoAll)
// and waits for all.
func parallelGets(clients []*memcache.Client, copies []dataCopy) error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients[1:] {
		wg.Go(func() { _, errs[i+1] = c.Get(copies[i+1].key) })
	}
	_, errs[0] = clients[0].Get(copies[0].key)
	wg.Wait()
	return errors.Join(errs...)
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkLongRun drives b.N × 1000 distinct 2 KB sessions through the
// provider over the default three-node Store (the witness scheme, with
// the default repair scan and health checks), reporting a request's mean
// latency in the run's last tenth over its first (last/first, near 1 when
// no cost grows with the sessions seen) and the Go heap in use
// (internal/longrun). The servers have the memory to keep every session:
//
//	go test -run '^$' -bench LongRun -benchtime 100x ./store/memcached/
func BenchmarkLongRun(b *testing.B) {
	servers := mcserver.StartForTest(b, 3, mcserver.Config{MemoryMB: 1024})
	s, err := memcached.New(memcached.Config{Nodes: mcserver.Addrs(servers)})
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	require.Equal(b, memcached.BackupWitness, s.Backup())
	testwait.Until(b, 10*time.Second, "the eviction baseline", func() bool { return memcached.EvictionChecks(s) > 0 })
	p, err := provider.New(s, provider.Config{})
	require.NoError(b, err)
	longrun.Bench(b, p)
}

// BenchmarkWitlessListLoad measures the background reads of the
// witness-less list (docs/replication.md §2.2, R8: R9 runs on the listed
// keys until their witness is stored). One of three nodes is killed,
// b.N × 1000 sessions are created (each goes on the list: every key has
// the dead node among its three candidates), and then, with no request
// running, the live nodes' gets are counted over 8 ticks of the witness
// loop (2 s): gets/s is the load the list puts on the live nodes while
// the node stays dead. With MEMCACHED_WITLESS_BEFORE=1 the code before
// (every listed key read at every tick: about 24,000 gets/s at 60,000
// sessions, and a tick lasting a whole pass).
//
//	go test -run '^$' -bench WitlessListLoad -benchtime 20x ./store/memcached/
func BenchmarkWitlessListLoad(b *testing.B) {
	servers := mcserver.StartForTest(b, 3, mcserver.Config{MemoryMB: 256})
	var ticks atomic.Int64
	s := newStore(b, servers, memcached.WithHooks(memcached.Config{}, func(s *memcached.Store) {
		memcached.SetAfterTick(s, func() { ticks.Add(1) })
		if os.Getenv("MEMCACHED_WITLESS_BEFORE") != "" {
			memcached.SetWitlessVisitFailed(s)
		}
	}))
	p, err := provider.New(s, provider.Config{})
	require.NoError(b, err)
	servers[2].Kill()
	for range b.N * 1000 {
		newBenchSession(b, p)
	}
	listed := memcached.WitlessKeys(s)
	live := servers[:2]
	before, start, tick := countOps(b, live), time.Now(), ticks.Load()
	testwait.Until(b, 5*time.Minute, "8 ticks of the witness loop", func() bool { return ticks.Load() >= tick+8 })
	after, took := countOps(b, live), time.Since(start)
	b.ReportMetric(float64(listed), "listed")
	b.ReportMetric(float64(after.get-before.get)/took.Seconds(), "gets/s")
	b.ReportMetric(took.Seconds()/8, "tick-s")
}
