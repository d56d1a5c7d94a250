package redisclients_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
)

// BenchmarkClients times, on one redis-server and a 2 KB session, the
// same requests on go-redis (store/redis) and on rueidis
// (rueidisStore), one of each in turn in every iteration so that all see
// the same machine load: a raw GET of the session's key on each client,
// the read-only request's one command (GetAndTouch: GETEX) on each store,
// and the exclusive cycle through a provider on each store
// (GetItemExclusive + SetAndReleaseItemExclusive changing one value: 2
// compare-and-swap scripts, warm). It reports each one's median and
// their ratios: a cycle to its own client's GET and to go-redis's.
func BenchmarkClients(b *testing.B) {
	srvs, err := redistest.StartN(context.Background(), 1, redistest.Config{})
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			b.Skip(redistest.SkipMessage)
		}
		b.Fatal(err)
	}
	srv := srvs[0]
	b.Cleanup(srv.Stop)
	ctx := context.Background()

	gs, err := redis.New(redis.Config{Addr: srv.Addr(), Timeout: 10 * time.Second})
	require.NoError(b, err)
	b.Cleanup(func() { _ = gs.Close() })
	rs, err := newRueidisStore(srv.Addr())
	require.NoError(b, err)
	b.Cleanup(func() { _ = rs.Close() })
	gp, err := provider.New(gs, provider.Config{})
	require.NoError(b, err)
	rp, err := provider.New(rs, provider.Config{})
	require.NoError(b, err)
	gid, rid := newSession(b, gp), newSession(b, rp)
	gkey, err := gp.Key(gid)
	require.NoError(b, err)
	rkey, err := rp.Key(rid)
	require.NoError(b, err)
	raw := srv.Client() // go-redis, as store/redis's BenchmarkExclusiveCycleLatency
	b.Cleanup(func() { _ = raw.Close() })

	ops := []struct {
		name string
		run  func(i int) error
	}{
		{"goredis-get", func(int) error { return raw.Get(ctx, gkey).Err() }},
		{"rueidis-get", func(int) error { return rs.c.Do(ctx, rs.c.B().Get().Key(rkey).Build()).Error() }},
		{"goredis-getex", func(int) error { _, err := gs.GetAndTouch(ctx, gkey, time.Hour); return err }},
		{"rueidis-getex", func(int) error { _, err := rs.GetAndTouch(ctx, rkey, time.Hour); return err }},
		{"goredis-cycle", func(i int) error { return cycle(ctx, gp, gid, i) }},
		{"rueidis-cycle", func(i int) error { return cycle(ctx, rp, rid, i) }},
	}
	times := make([][]time.Duration, len(ops))
	for j, op := range ops {
		require.NoError(b, op.run(0), op.name) // warm connections and scripts
		times[j] = make([]time.Duration, 0, b.N)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, op := range ops {
			start := time.Now()
			if err := op.run(i); err != nil {
				b.Fatal(op.name, err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	b.StopTimer()
	p50 := map[string]float64{}
	for j, op := range ops {
		slices.Sort(times[j])
		p50[op.name] = float64(times[j][len(times[j])/2])
		b.ReportMetric(p50[op.name], op.name+"-p50-ns")
	}
	b.ReportMetric(p50["goredis-cycle"]/p50["goredis-get"], "goredis-cycle/goredis-get")
	b.ReportMetric(p50["rueidis-cycle"]/p50["rueidis-get"], "rueidis-cycle/rueidis-get")
	b.ReportMetric(p50["rueidis-cycle"]/p50["goredis-get"], "rueidis-cycle/goredis-get")
	b.ReportMetric(p50["rueidis-get"]/p50["goredis-get"], "rueidis-get/goredis-get")
	b.ReportMetric(p50["rueidis-getex"]/p50["goredis-getex"], "rueidis-getex/goredis-getex")
	b.ReportMetric(p50["rueidis-cycle"]/p50["goredis-cycle"], "rueidis-cycle/goredis-cycle")
}

// newSession stores one session of about 2 KB through p.
func newSession(b *testing.B, p *provider.Provider) string {
	b.Helper()
	id, err := session.NewID()
	require.NoError(b, err)
	d := p.CreateNewStoreData(0)
	require.NoError(b, d.Values.Set("blob", strings.Repeat("x", 2<<10)))
	require.NoError(b, d.Values.Set("n", 0))
	require.NoError(b, p.SetAndReleaseItemExclusive(context.Background(), id, d, 0, true))
	return id
}

// cycle is one exclusive request changing one value.
func cycle(ctx context.Context, p *provider.Provider, id string, i int) error {
	item, err := p.GetItemExclusive(ctx, id)
	if err != nil {
		return err
	}
	if err := item.Data.Values.Set("n", i); err != nil {
		return err
	}
	return p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
}
