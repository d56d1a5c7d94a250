package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
)

func TestPartitionPlacement(t *testing.T) {
	dsns := []string{pg.NewDatabase(t), pg.NewDatabase(t), pg.NewDatabase(t)}
	s := newStore(t, Config{DSNs: dsns, Table: "records"})
	ctx := context.Background()
	conns := make([]*pgx.Conn, len(dsns))
	for i, dsn := range dsns {
		conns[i] = connect(t, dsn)
	}
	const keys = 300
	perPart := make([]int, len(dsns))
	for i := 0; i < keys; i++ {
		key := fmt.Sprintf("sl:%024d", i)
		_, err := s.Add(ctx, key, []byte("v"), time.Hour)
		require.NoError(t, err)
		want := placementOf(key, s.Partitions())
		require.Equal(t, want, s.PartitionOf(key))
		for p, c := range conns {
			var n int
			require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM records WHERE key = $1`, key).Scan(&n))
			if p == want {
				require.Equal(t, 1, n, "key %s on its partition", key)
			} else {
				require.Zero(t, n, "key %s on exactly one partition", key)
			}
		}
		perPart[want]++
	}
	for p, n := range perPart {
		require.Greater(t, n, keys/6, "partition %d holds %d of %d keys", p, n, keys)
	}

	// Another process listing the databases in another order finds every key.
	reversed := slices.Clone(dsns)
	slices.Reverse(reversed)
	s2 := newStore(t, Config{DSNs: reversed, Table: "records"})
	for i := 0; i < keys; i++ {
		_, err := s2.Get(ctx, fmt.Sprintf("sl:%024d", i))
		require.NoError(t, err)
	}
	// Explicit names decide placement, not the DSNs.
	s3 := newStore(t, Config{DSNs: dsns, Names: []string{"a", "b", "c"}, Table: "records"})
	require.Equal(t, []string{"a", "b", "c"}, s3.Partitions())
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("sl:%024d", i)
		require.Equal(t, placementOf(key, []string{"a", "b", "c"}), s3.PartitionOf(key))
	}
}

// One database down: its keys fail with ErrUnavailable naming it, the
// other partition's keys keep working.
func TestPartitionDown(t *testing.T) {
	up := pg.NewDatabase(t)
	if _, err := pgserver.FindBinDir(); err != nil {
		t.Skipf("needs a second server to stop: %v", err)
	}
	srv, err := pgserver.Start(context.Background(), pgserver.Config{})
	require.NoError(t, err)
	defer srv.Stop()
	down := srv.DSN()

	s := newStore(t, Config{DSNs: []string{up, down}, Table: "records", Timeout: 3 * time.Second})
	ctx := context.Background()
	downName := s.Partitions()[1]
	var onUp, onDown []string
	cas := map[string]uint64{}
	for i := 0; len(onUp) < 10 || len(onDown) < 10; i++ {
		key := fmt.Sprintf("sl:%d", i)
		c, err := s.Add(ctx, key, []byte("v"), time.Hour)
		require.NoError(t, err)
		cas[key] = c
		if s.PartitionOf(key) == 0 {
			onUp = append(onUp, key)
		} else {
			onDown = append(onDown, key)
		}
	}

	require.NoError(t, srv.Stop())

	for _, key := range onDown {
		_, err := s.Get(ctx, key)
		require.ErrorIs(t, err, provider.ErrUnavailable, "key on the stopped database")
		require.Contains(t, err.Error(), downName)
		_, err = s.CompareAndSwap(ctx, key, []byte("w"), cas[key], time.Hour)
		require.ErrorIs(t, err, provider.ErrUnavailable)
		_, err = s.Add(ctx, key+"new", []byte("v"), time.Hour)
		if s.PartitionOf(key+"new") == 1 {
			require.ErrorIs(t, err, provider.ErrUnavailable)
		} else {
			require.NoError(t, err)
		}
		require.ErrorIs(t, s.Touch(ctx, key, time.Hour), provider.ErrUnavailable)
		require.ErrorIs(t, s.Delete(ctx, key), provider.ErrUnavailable)
	}
	for _, key := range onUp {
		e, err := s.Get(ctx, key)
		require.NoError(t, err, "key on the running database")
		_, err = s.CompareAndSwap(ctx, key, []byte("w"), e.CAS, time.Hour)
		require.NoError(t, err)
		require.NoError(t, s.Touch(ctx, key, time.Hour))
	}
	_, err = s.Sweep(ctx)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.Contains(t, err.Error(), downName)
}

// placementOf is where the rendezvous rule puts key among the named
// partitions.
func placementOf(key string, names []string) int {
	seeds := make([]uint64, len(names))
	for i, n := range names {
		seeds[i] = rendezvous.Seed(n)
	}
	first, _ := rendezvous.Top2(seeds, key)
	return first
}
