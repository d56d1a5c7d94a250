package tiered_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/tiered"
	"github.com/sessionlock/sessionlock/store/tiered/durabletest"
)

// TestTwinsOnce: two requests decided on one record make a change that
// hands something out once, the second run whole between the first's
// durable write and its cache write (the write-through window). Exactly
// one of them gets it. Before, the two could be the same bytes: the
// durable tier took the second's write for the first's sent again
// (sentAgain), its cache write landed, and the first's refused cache write
// found its very bytes in the cache (afterLostCAS): both were acknowledged
// (the conformance suite's I6 on tiered over memcached, twice in
// clean-clone CI). Two fixes, each shown to suffice where it applies: the
// provider's write nonce (stampOwn: the twins differ, on an unlocked
// record) and tiered's sentBefore (only a change this process reported
// unknown is taken for sent again, on any record). A pop of a record a
// third request holds locked gets no nonce: only sentBefore holds it.
func TestTwinsOnce(t *testing.T) {
	kinds := []struct {
		name string
		// locked: the record is held by a third request (no nonce).
		locked bool
		// prepare stores what the twins race for and returns the
		// change and how many of its results got the thing.
		prepare func(t *testing.T, p *provider.Provider, id string) func(p *provider.Provider) (got int, err error)
	}{
		{name: "claim", prepare: func(t *testing.T, p *provider.Provider, id string) func(*provider.Provider) (int, error) {
			require.NoError(t, p.CreateUninitializedItem(context.Background(), id, 0))
			return func(p *provider.Provider) (int, error) {
				it, err := p.GetItem(context.Background(), id)
				if err != nil {
					return 0, err
				}
				if it.Actions&session.InitializeItem != 0 {
					return 1, nil
				}
				return 0, nil
			}
		}},
		{name: "creation over a tombstone", prepare: func(t *testing.T, p *provider.Provider, id string) func(*provider.Provider) (int, error) {
			ctx := context.Background()
			require.NoError(t, p.CreateUninitializedItem(ctx, id, 0))
			held, err := p.GetItemExclusive(ctx, id)
			require.NoError(t, err)
			require.NoError(t, p.RemoveItem(ctx, id, held.LockID))
			return func(p *provider.Provider) (int, error) {
				switch err := p.CreateUninitializedItem(ctx, id, 0); {
				case err == nil:
					return 1, nil
				case errors.Is(err, provider.ErrExists):
					return 0, nil
				default:
					return 0, err
				}
			}
		}},
		{name: "pop", prepare: popper},
		{name: "pop of a locked record", locked: true, prepare: func(t *testing.T, p *provider.Provider, id string) func(*provider.Provider) (int, error) {
			pop := popper(t, p, id)
			_, err := p.GetItemExclusive(context.Background(), id)
			require.NoError(t, err)
			return pop
		}},
	}
	for _, kind := range kinds {
		for _, before := range []bool{false, true} {
			name := kind.name + "/fixed"
			if before {
				name = kind.name + "/tiered before"
			}
			t.Run(name, func(t *testing.T) {
				durable := &durabletest.Twin{}
				s, err := tiered.New(tiered.Config{Cache: memstore.New(memstore.Config{}), Durable: durable})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				if before {
					tiered.SentAnyBytes(s)
				}
				mk := func() *provider.Provider {
					p, err := provider.New(s, provider.Config{})
					require.NoError(t, err)
					return p
				}
				a, b := mk(), mk()
				id, err := session.NewID()
				require.NoError(t, err)
				change := kind.prepare(t, a, id)
				var first, second int
				var firstErr, secondErr error
				require.NoError(t, durable.Race(
					func() { first, firstErr = change(a) },
					func() { second, secondErr = change(b) }))
				require.NoError(t, firstErr)
				require.NoError(t, secondErr)
				if before && kind.locked {
					require.Equal(t, 2, first+second, "the code before acknowledges both twins")
					return
				}
				require.Equal(t, 1, first+second, "exactly one twin gets it (first %d, second %d)", first, second)
			})
		}
	}
}

// popper stores session id with a flash message and returns a pop of it,
// whose result counts the deletion.
func popper(t *testing.T, p *provider.Provider, id string) func(*provider.Provider) (int, error) {
	t.Helper()
	ctx := context.Background()
	want, err := providertest.StoreFlash(ctx, p, id)
	require.NoError(t, err)
	return func(p *provider.Provider) (int, error) {
		return p.DeleteValuesIf(ctx, id, want)
	}
}
