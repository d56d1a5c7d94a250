package provider_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/provider/providertest"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// gateStore records the value of every CompareAndSwap and, once armed,
// runs arm before forwarding the next one: a second request decided on
// the same record runs whole before the first request's write.
type gateStore struct {
	provider.Store
	mu     sync.Mutex
	arm    func()
	values [][]byte
}

func (g *gateStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	g.mu.Lock()
	arm := g.arm
	g.arm = nil
	g.values = append(g.values, value)
	g.mu.Unlock()
	if arm != nil {
		arm()
	}
	return g.Store.CompareAndSwap(ctx, key, value, cas, ttl)
}

// TestTwinChangesDiffer: a change that hands something out once (a
// claim of InitializeItem, a creation over a tombstone, a conditional
// deletion of a flash message) writes bytes of its own when its record is
// unlocked (stampOwn): two such changes decided on one record are not the
// same record, which a store could take for one write sent twice and
// acknowledge to both (tiered's write-through did: the conformance
// suite's I6 on tiered over memcached; TestTwinsOnce in store/tiered).
// On a record another request holds locked nothing is stamped (a new lock
// id would fence the holder): the twins are the same bytes there, and it
// is tiered's sentBefore that refuses the second.
func TestTwinChangesDiffer(t *testing.T) {
	ctx := context.Background()
	kinds := []struct {
		name    string
		locked  bool // the record is held by a third request
		prepare func(p *provider.Provider, id string) (change func(p *provider.Provider) error)
	}{
		{name: "claim", prepare: func(p *provider.Provider, id string) func(*provider.Provider) error {
			require.NoError(t, p.CreateUninitializedItem(ctx, id, 0))
			return func(p *provider.Provider) error {
				_, err := p.GetItem(ctx, id)
				return err
			}
		}},
		{name: "creation over a tombstone", prepare: func(p *provider.Provider, id string) func(*provider.Provider) error {
			removeOnce(t, p, id)
			return func(p *provider.Provider) error {
				err := p.CreateUninitializedItem(ctx, id, 0)
				if errors.Is(err, provider.ErrExists) {
					return nil // the twin that lost
				}
				return err
			}
		}},
		{name: "new item over a tombstone", prepare: func(p *provider.Provider, id string) func(*provider.Provider) error {
			removeOnce(t, p, id)
			return func(p *provider.Provider) error {
				data := p.CreateNewStoreData(0)
				if err := data.Values.Set("k", "v"); err != nil {
					return err
				}
				err := p.SetAndReleaseItemExclusive(ctx, id, data, 0, true)
				if errors.Is(err, provider.ErrExists) {
					return nil
				}
				return err
			}
		}},
		{name: "pop", prepare: func(p *provider.Provider, id string) func(*provider.Provider) error {
			return popper(t, p, id)
		}},
		{name: "pop of a locked record", locked: true, prepare: func(p *provider.Provider, id string) func(*provider.Provider) error {
			pop := popper(t, p, id)
			_, err := p.GetItemExclusive(ctx, id)
			require.NoError(t, err)
			return pop
		}},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			brokenOrNot(t, func(t *testing.T, broken bool) {
				g := &gateStore{Store: memstore.New(memstore.Config{})}
				t.Cleanup(func() { _ = g.Close() })
				mk := func() *provider.Provider {
					p, err := provider.New(g, provider.Config{})
					require.NoError(t, err)
					if broken {
						p = provider.WithoutWriteNonce(p)
					}
					return p
				}
				a, b := mk(), mk()
				id, err := session.NewID()
				require.NoError(t, err)
				change := kind.prepare(a, id)
				var secondErr error
				g.mu.Lock()
				g.values = nil
				g.arm = func() { secondErr = change(b) }
				g.mu.Unlock()
				require.NoError(t, change(a))
				require.NoError(t, secondErr)
				g.mu.Lock()
				defer g.mu.Unlock()
				require.GreaterOrEqual(t, len(g.values), 2)
				first, second := g.values[0], g.values[1]
				if broken || kind.locked {
					require.Equal(t, first, second, "the twins write the same bytes")
					return
				}
				require.NotEqual(t, first, second, "each twin writes bytes of its own")
			})
		})
	}
}

// removeOnce creates session id and removes it: its record is a tombstone.
func removeOnce(t *testing.T, p *provider.Provider, id string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, p.CreateUninitializedItem(ctx, id, 0))
	held, err := p.GetItemExclusive(ctx, id)
	require.NoError(t, err)
	require.NoError(t, p.RemoveItem(ctx, id, held.LockID))
}

// popper stores session id with a flash message and returns a pop of it.
func popper(t *testing.T, p *provider.Provider, id string) func(*provider.Provider) error {
	t.Helper()
	ctx := context.Background()
	want, err := providertest.StoreFlash(ctx, p, id)
	require.NoError(t, err)
	return func(p *provider.Provider) error {
		_, err := p.DeleteValuesIf(ctx, id, want)
		return err
	}
}

// brokenOrNot runs f as two subtests: with the write nonce, and with the
// code before.
func brokenOrNot(t *testing.T, f func(t *testing.T, broken bool)) {
	for _, broken := range []bool{false, true} {
		name := "write nonce"
		if broken {
			name = "no write nonce (broken)"
		}
		t.Run(name, func(t *testing.T) { f(t, broken) })
	}
}
