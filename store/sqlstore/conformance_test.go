package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/session"
)

func TestConformance(t *testing.T) {
	dsn := pg.NewDatabase(t)
	providertest.Run(t, providertest.Options{
		NewStore: func(t *testing.T) provider.Store {
			s, err := New(context.Background(), Config{DSNs: []string{dsn}, Table: "t" + itoa(tableSeq.Add(1))})
			require.NoError(t, err)
			return s
		},
	})
}

func TestConformancePartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dsns := []string{pg.NewDatabase(t), pg.NewDatabase(t)}
	providertest.Run(t, providertest.Options{
		NewStore: func(t *testing.T) provider.Store {
			s, err := New(context.Background(), Config{DSNs: dsns, Table: "t" + itoa(tableSeq.Add(1))})
			require.NoError(t, err)
			return s
		},
		Scale: 0.5,
	})
}

// A row whose bytes were damaged in the database is reported as corrupt,
// never decoded into a session.
func TestCorruptRow(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := newStore(t, Config{DSNs: []string{dsn}, Table: "records"})
	c := connect(t, dsn)
	p, err := provider.New(s, provider.Config{})
	require.NoError(t, err)
	ctx := context.Background()

	for name, damage := range map[string]string{
		"garbage":      `UPDATE records SET value = '\xdeadbeef'::bytea WHERE key = $1`,
		"empty":        `UPDATE records SET value = ''::bytea WHERE key = $1`,
		"flipped byte": `UPDATE records SET value = set_byte(value, length(value) - 6, get_byte(value, length(value) - 6) # 1) WHERE key = $1`,
	} {
		t.Run(name, func(t *testing.T) {
			id, err := session.NewID()
			require.NoError(t, err)
			require.NoError(t, p.CreateUninitializedItem(ctx, id, time.Minute))
			key, err := p.Key(id)
			require.NoError(t, err)
			require.EqualValues(t, 1, exec(t, c, damage, key))

			_, err = p.GetItem(ctx, id)
			require.ErrorIs(t, err, provider.ErrCorrupt)
			_, err = p.GetItemExclusive(ctx, id)
			require.ErrorIs(t, err, provider.ErrCorrupt)
		})
	}
}
