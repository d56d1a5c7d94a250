package redis_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/redis"
)

// sessionBytes is the size of the benchmarked session's values.
const sessionBytes = 2 << 10

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

// requestKinds are the uncontended requests whose cost is measured,
// through today's provider.
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

// commandDelta returns the server's commands between two INFO
// commandstats readings, without the INFO and HELLO calls of the counting
// itself, per request.
func commandDelta(before, after map[string]uint64, n int) map[string]float64 {
	d := map[string]float64{}
	for name, calls := range after {
		if name == "info" || name == "hello" {
			continue
		}
		if delta := calls - before[name]; delta > 0 {
			d[name] = float64(delta) / float64(n)
		}
	}
	return d
}

// BenchmarkRequestCost reports, per uncontended request on a 2 KB session
// through the provider: client round trips (Store operations, each one
// command) and the server's commands from INFO commandstats, which counts
// a script call (evalsha) and the commands the script runs (getrange,
// set) each.
func BenchmarkRequestCost(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	for _, kind := range requestKinds {
		b.Run(kind.name, func(b *testing.B) {
			s := newStore(b, srv, redis.Config{Timeout: 10 * time.Second})
			counting := countingAppender{&providertest.CountingStore{Store: s}, s}
			p, err := provider.New(counting, provider.Config{})
			require.NoError(b, err)
			id := newBenchSession(b, p)
			require.NoError(b, kind.run(ctx, p, id, 0)) // warm connections and scripts
			before, err := srv.CommandStats(ctx)
			require.NoError(b, err)
			ops := counting.Ops()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := kind.run(ctx, p, id, i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after, err := srv.CommandStats(ctx)
			require.NoError(b, err)
			reportCommands(b, commandDelta(before, after, b.N))
			b.ReportMetric(float64(counting.Ops()-ops)/float64(b.N), "roundtrips/req")
		})
	}
}

// countingAppender is a providertest.CountingStore that is a
// provider.Appender too: the Store's CompareAndAppend, counted as a
// compare-and-swap (one round trip) unless it declined with
// provider.ErrNoAppend, having sent nothing (appending is off by default).
type countingAppender struct {
	*providertest.CountingStore
	s *redis.Store
}

func (c countingAppender) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (uint64, uint64, error) {
	newCAS, touched, err := c.s.CompareAndAppend(ctx, key, delta, cas, ttl)
	if !errors.Is(err, provider.ErrNoAppend) {
		c.CASes.Add(1)
	}
	return newCAS, touched, err
}

// scriptCommands are the commands the Store's scripts run: INFO
// commandstats counts them besides the script call (evalsha).
var scriptCommands = map[string]bool{"getrange": true, "set": true, "strlen": true, "append": true, "setrange": true, "pexpire": true, "exists": true}

// reportCommands reports each command per request, and their sum with
// and without the commands scripts run.
func reportCommands(b *testing.B, d map[string]float64) {
	var all, client float64
	for _, name := range slices.Sorted(maps.Keys(d)) {
		b.ReportMetric(d[name], name+"/req")
		all += d[name]
		if !(scriptCommands[name] && d["evalsha"] > 0) {
			client += d[name]
		}
	}
	b.ReportMetric(client, "client-cmds/req")
	b.ReportMetric(all, "server-cmds/req")
}

// BenchmarkStoreFloor reports the same costs for the Store calls a
// request needs when the provider uses what this Store offers: a read-only
// request as one GetAndTouch (GETEX), an exclusive one as Get, a locking
// CompareAndSwap and a committing CompareAndSwap with the token the lock
// returned (no re-read); and allocations per request on the client.
func BenchmarkStoreFloor(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	s := newStore(b, srv, redis.Config{Timeout: 10 * time.Second})
	value := []byte(strings.Repeat("x", sessionBytes))
	_, err := s.Add(ctx, "floor", value, time.Hour)
	require.NoError(b, err)
	for _, kind := range storeFloorKinds {
		b.Run(kind.name, func(b *testing.B) {
			b.ReportAllocs()
			require.NoError(b, kind.run(ctx, s, value))
			before, err := srv.CommandStats(ctx)
			require.NoError(b, err)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := kind.run(ctx, s, value); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after, err := srv.CommandStats(ctx)
			require.NoError(b, err)
			reportCommands(b, commandDelta(before, after, b.N))
			b.ReportMetric(float64(kind.roundTrips), "roundtrips/req")
		})
	}
}

var storeFloorKinds = []struct {
	name       string
	roundTrips int
	run        func(ctx context.Context, s *redis.Store, value []byte) error
}{
	{"read-only", 1, func(ctx context.Context, s *redis.Store, _ []byte) error {
		_, err := s.GetAndTouch(ctx, "floor", time.Hour)
		return err
	}},
	{"exclusive", 3, exclusiveFloor},
	// One compare-and-swap alone, on a key of its own, from the token the
	// last one returned: the client's work per write (allocs/op).
	{"compare-and-swap", 1, func() func(ctx context.Context, s *redis.Store, value []byte) error {
		var token uint64
		return func(ctx context.Context, s *redis.Store, value []byte) error {
			var err error
			if token == 0 {
				token, err = s.Add(ctx, "floor-cas", value, time.Hour)
			} else {
				token, err = s.CompareAndSwap(ctx, "floor-cas", value, token, time.Hour)
			}
			return err
		}
	}()},
}

func exclusiveFloor(ctx context.Context, s *redis.Store, value []byte) error {
	e, err := s.Get(ctx, "floor")
	if err != nil {
		return err
	}
	locked, err := s.CompareAndSwap(ctx, "floor", value, e.CAS, time.Hour)
	if err != nil {
		return err
	}
	_, err = s.CompareAndSwap(ctx, "floor", value, locked, time.Hour)
	return err
}

// BenchmarkExclusiveCycleLatency reports the latency of one exclusive
// request cycle (GetItemExclusive + SetAndReleaseItemExclusive of a 2 KB
// session through the provider: the lock appended as a delta, the commit
// whole; the same without Config.AppendDeltas (the default), both written whole; and the
// 3-call floor of BenchmarkStoreFloor) as a ratio to one raw GET of the same bytes on the
// same server, in the same run: one raw GET and one cycle alternate, so
// that both see the same machine load, and the ratio is of their medians
// (cycle/raw-get, as store/memcached's BenchmarkLatencyRatios reports);
// pair-ratio-p50 is the median of each cycle's ratio to the GET just
// before it.
// Run it with -count 5 and take the median. The parts/ sub-benchmarks
// split the cycle's time the same way (see cycles).
func BenchmarkExclusiveCycleLatency(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	// A long timeout: a loaded machine must slow the benchmark down, not
	// fail it.
	s := newStore(b, srv, redis.Config{Timeout: 10 * time.Second, AppendDeltas: true})
	p, err := provider.New(s, provider.Config{})
	require.NoError(b, err)
	id := newBenchSession(b, p)
	key, err := p.Key(id)
	require.NoError(b, err)
	// The same cycle with every write whole (the default, without
	// Config.AppendDeltas), on a session of its own.
	whole, err := provider.New(newStore(b, srv, redis.Config{Timeout: 10 * time.Second}), provider.Config{})
	require.NoError(b, err)
	wholeID := newBenchSession(b, whole)
	value := []byte(strings.Repeat("x", sessionBytes))
	_, err = s.Add(ctx, "floor", value, time.Hour)
	require.NoError(b, err)
	raw := srv.Client()
	defer raw.Close()
	// The parts of the cycle, each against its own raw GETs: two raw GETs
	// (the round trips alone), two raw EVALSHA of the compare-and-swap
	// script with ready arguments (+ the script's server time), two Store
	// compare-and-swaps (+ the Store's client work); the provider cycle
	// adds the provider's work.
	partsToken, err := s.Add(ctx, "parts", value, time.Hour)
	require.NoError(b, err)
	sha, err := raw.ScriptLoad(ctx, redis.CASScriptSource).Result()
	require.NoError(b, err)
	scriptArgs := []any{"12345678", "12345678" + string(value), time.Hour.Milliseconds()}
	require.NoError(b, raw.Set(ctx, "script", scriptArgs[1], time.Hour).Err())
	cycles := []struct {
		name string
		run  func(i int) error
	}{
		{"provider", func(i int) error { return requestKinds[2].run(ctx, p, id, i) }},
		{"provider-whole-writes", func(i int) error { return requestKinds[2].run(ctx, whole, wholeID, i) }},
		{"floor", func(int) error { return exclusiveFloor(ctx, s, value) }},
		{"parts/two-raw-gets", func(int) error {
			if err := raw.Get(ctx, key).Err(); err != nil {
				return err
			}
			return raw.Get(ctx, key).Err()
		}},
		{"parts/two-raw-evalsha", func(int) error {
			for range 2 {
				if n, err := raw.EvalSha(ctx, sha, []string{"script"}, scriptArgs...).Int64(); err != nil || n != 1 {
					return fmt.Errorf("evalsha: %d, %v", n, err)
				}
			}
			return nil
		}},
		{"parts/two-store-cas", func(int) error {
			for range 2 {
				var err error
				if partsToken, err = s.CompareAndSwap(ctx, "parts", value, partsToken, time.Hour); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, c := range cycles {
		b.Run(c.name, func(b *testing.B) {
			require.NoError(b, raw.Get(ctx, key).Err())
			require.NoError(b, c.run(0))
			rawTimes := make([]time.Duration, 0, b.N)
			cycleTimes := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if err := raw.Get(ctx, key).Err(); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := c.run(i); err != nil {
					b.Fatal(err)
				}
				rawTimes = append(rawTimes, mid.Sub(start))
				cycleTimes = append(cycleTimes, time.Since(mid))
			}
			b.StopTimer()
			ratios := make([]float64, len(rawTimes))
			for i := range ratios {
				ratios[i] = float64(cycleTimes[i]) / float64(rawTimes[i])
			}
			slices.Sort(ratios)
			rawNs, cycleNs := float64(median(rawTimes)), float64(median(cycleTimes))
			b.ReportMetric(rawNs, "raw-get-p50-ns")
			b.ReportMetric(cycleNs, "cycle-p50-ns")
			b.ReportMetric(cycleNs/rawNs, "cycle/raw-get")
			b.ReportMetric(ratios[len(ratios)/2], "pair-ratio-p50")
		})
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkServerTime reports the server's own time per command
// (usec_per_call of INFO commandstats, reset before each) for the
// commands of a request on a 2 KB session: GET, GETEX, the
// compare-and-swap script (EVALSHA; the time includes the GETRANGE and
// SET it runs), the append script with a record.DeltaLen-byte delta on
// the 2 KB value freshly set (the time includes its GETRANGE, STRLEN,
// APPEND, SETRANGE and PEXPIRE; the SET before each call is another
// command, not counted), a script making five GETRANGE calls (what each
// redis.call costs), and a script that only returns 1, called with no
// arguments and with the same 2 KB argument: what Lua itself costs, and
// what handing it 2 KB costs.
func BenchmarkServerTime(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	raw := srv.Client()
	defer raw.Close()
	value := "12345678" + strings.Repeat("x", sessionBytes)
	require.NoError(b, raw.Set(ctx, "k", value, time.Hour).Err())
	cas, err := raw.ScriptLoad(ctx, redis.CASScriptSource).Result()
	require.NoError(b, err)
	appendSHA, err := raw.ScriptLoad(ctx, redis.AppendScriptSource).Result()
	require.NoError(b, err)
	delta := strings.Repeat("d", rec.DeltaLen)
	five, err := raw.ScriptLoad(ctx, "#!lua\n"+strings.Repeat("redis.call('GETRANGE', KEYS[1], 0, 7)\n", 5)+"return 1").Result()
	require.NoError(b, err)
	ret1, err := raw.ScriptLoad(ctx, "#!lua\nreturn 1").Result()
	require.NoError(b, err)
	ms := time.Hour.Milliseconds()
	for _, c := range []struct {
		name, stat string
		args       []any
		reset      bool // SET k value before each call (not counted: another command)
	}{
		{"get", "get", []any{"get", "k"}, false},
		{"getex", "getex", []any{"getex", "k", "px", ms}, false},
		{"cas-script", "evalsha", []any{"evalsha", cas, 1, "k", value[:8], value, ms}, false},
		{"append-script", "evalsha", []any{"evalsha", appendSHA, 1, "k", value[:8], value[:8], delta, ms, 1 << 20}, true},
		{"five-getranges", "evalsha", []any{"evalsha", five, 1, "k"}, false},
		{"return-1", "evalsha", []any{"evalsha", ret1, 1, "k"}, false},
		{"return-1-with-2KB-argument", "evalsha", []any{"evalsha", ret1, 1, "k", value}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			require.NoError(b, raw.Do(ctx, "config", "resetstat").Err())
			for i := 0; i < b.N; i++ {
				if c.reset {
					if err := raw.Set(ctx, "k", value, time.Hour).Err(); err != nil {
						b.Fatal(err)
					}
				}
				if err := raw.Do(ctx, c.args...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			info, err := raw.Do(ctx, "info", "commandstats").Text()
			require.NoError(b, err)
			usec := -1.0
			for _, line := range strings.Split(info, "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+c.stat+":"); ok {
					for _, f := range strings.Split(rest, ",") {
						if v, ok := strings.CutPrefix(f, "usec_per_call="); ok {
							usec, err = strconv.ParseFloat(v, 64)
							require.NoError(b, err)
						}
					}
				}
			}
			require.GreaterOrEqual(b, usec, 0.0, "no usec_per_call for %s in %q", c.stat, info)
			b.ReportMetric(usec, "server-us/call")
		})
	}
}

// BenchmarkMemoryPerSession reports the server's memory for one 2 KB
// session's key (MEMORY USAGE, SAMPLES 0): written whole (a commit), and
// after a request that changed nothing (lock and release appended as
// deltas). APPEND grows a Redis string's allocation greedily (to twice
// the new length, below 1 MB), so a value carrying deltas holds about
// twice its bytes until the next whole write; without Config.AppendDeltas (the default) it
// stays at the first figure. b.N does not matter: one session is measured.
func BenchmarkMemoryPerSession(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	for _, whole := range []bool{false, true} {
		b.Run(fmt.Sprintf("whole-writes=%v", whole), func(b *testing.B) {
			s := newStore(b, srv, redis.Config{Timeout: 10 * time.Second, AppendDeltas: !whole})
			p, err := provider.New(s, provider.Config{})
			require.NoError(b, err)
			id := newBenchSession(b, p)
			key, err := p.Key(id)
			require.NoError(b, err)
			usage := func() float64 {
				n, err := srv.Do(ctx, "MEMORY", "USAGE", key, "SAMPLES", "0").Int64()
				require.NoError(b, err)
				return float64(n)
			}
			for i := 0; i < b.N; i++ {
				require.NoError(b, requestKinds[2].run(ctx, p, id, i)) // commit: written whole
			}
			b.ReportMetric(usage(), "bytes-after-commit")
			require.NoError(b, requestKinds[1].run(ctx, p, id, 0)) // lock + release
			b.ReportMetric(usage(), "bytes-after-unchanged")
		})
	}
}

// TestRequestCost asserts the round trips BenchmarkRequestCost reports:
// a read-only request is one command (GETEX); an exclusive one is two
// script calls when this process served the session last (lock, then
// commit or release, from the cached record and token), and at most
// three round trips when another process did (read, lock, commit).
func TestRequestCost(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	const n = 20
	clientCommands := func(d map[string]float64) map[string]float64 {
		c := map[string]float64{}
		for name, v := range d {
			if !(scriptCommands[name] && d["evalsha"] > 0) {
				c[name] = v
			}
		}
		return c
	}
	want := map[string]map[string]float64{
		"read-only":           {"getex": 1},
		"exclusive-unchanged": {"evalsha": 2},
		"exclusive-changed":   {"evalsha": 2},
	}
	for _, kind := range requestKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := newStore(t, srv, redis.Config{})
			p, err := provider.New(s, provider.Config{})
			require.NoError(t, err)
			id := newBenchSession(t, p)
			require.NoError(t, kind.run(ctx, p, id, 0)) // loads the scripts
			before, err := srv.CommandStats(ctx)
			require.NoError(t, err)
			for i := range n {
				require.NoError(t, kind.run(ctx, p, id, i+1))
			}
			after, err := srv.CommandStats(ctx)
			require.NoError(t, err)
			require.Equal(t, want[kind.name], clientCommands(commandDelta(before, after, n)))

			// Another process served the session last: each request is
			// served by a new provider.
			before, err = srv.CommandStats(ctx)
			require.NoError(t, err)
			for i := range n {
				fresh, err := provider.New(s, provider.Config{})
				require.NoError(t, err)
				require.NoError(t, kind.run(ctx, fresh, id, n+i+1))
			}
			after, err = srv.CommandStats(ctx)
			require.NoError(t, err)
			var roundTrips float64
			for _, v := range clientCommands(commandDelta(before, after, n)) {
				roundTrips += v
			}
			require.LessOrEqual(t, roundTrips, 3.0, "round trips per request from a cold process")
			if kind.name == "read-only" {
				require.Equal(t, 1.0, roundTrips, "read-only: one GETEX (the session has the default timeout)")
			}
		})
	}
}
