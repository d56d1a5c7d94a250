package tieredtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// Requests made with a warm cache, as the middleware makes them.
var requests = []struct {
	name string
	do   func(ctx context.Context, p *provider.Provider, id string, i int) error
}{
	{"ReadOnly", func(ctx context.Context, p *provider.Provider, id string, _ int) error {
		_, err := p.ReadItem(ctx, id)
		return err
	}},
	{"ExclusiveUnchanged", func(ctx context.Context, p *provider.Provider, id string, _ int) error {
		item, err := p.AcquireItem(ctx, id)
		if err != nil {
			return err
		}
		return p.ReleaseItemExclusive(ctx, id, item.LockID)
	}},
	{"Committing", func(ctx context.Context, p *provider.Provider, id string, i int) error {
		item, err := p.AcquireItem(ctx, id)
		if err != nil {
			return err
		}
		if err := item.Data.Values.Set("n", i); err != nil {
			return err
		}
		return p.SetAndReleaseItemExclusive(ctx, id, item.Data, item.LockID, false)
	}},
}

// TestStatementsPerRequest: with a warm cache, a read-only request and an
// exclusive request that changes nothing make no SQL statement; a commit
// makes one.
func TestStatementsPerRequest(t *testing.T) {
	s, durable := newTiered(t, pg.NewDatabase(t), memstore.New(memstore.Config{}), tiered.Config{})
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	id := createSession(t, p, 20*time.Minute)
	want := map[string]uint64{"ReadOnly": 0, "ExclusiveUnchanged": 0, "Committing": 1}
	for _, r := range requests {
		for i := 1; i <= 5; i++ {
			before := durable.Stats().Statements
			require.NoError(t, r.do(context.Background(), p, id, i))
			require.Equal(t, want[r.name], durable.Stats().Statements-before, "%s request %d", r.name, i)
		}
	}
}

// BenchmarkRequests reports SQL statements per request with a warm cache
// (sql_statements/op): (in store/sqlstore)
// go test -run '^$' -bench Requests ./internal/tieredtest
func BenchmarkRequests(b *testing.B) {
	for _, r := range requests {
		b.Run(r.name, func(b *testing.B) {
			s, durable := newTiered(b, pg.NewDatabase(b), memstore.New(memstore.Config{}), tiered.Config{})
			p, err := provider.New(s, provider.Config{})
			require.NoError(b, err)
			id := createSession(b, p, 20*time.Minute)
			ctx := context.Background()
			require.NoError(b, r.do(ctx, p, id, 0)) // warm
			before := durable.Stats().Statements
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := r.do(ctx, p, id, i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(durable.Stats().Statements-before)/float64(b.N), "sql_statements/op")
		})
	}
}
