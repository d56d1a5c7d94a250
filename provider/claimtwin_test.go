package provider_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// twinDurable is one durable row ordered by Seq (tiered.Durable's
// PutRecord), for one key. The first PutRecord it stores calls during,
// once, before it returns: another request's write runs between this
// write's durable half and its cache half.
type twinDurable struct {
	tiered.Durable
	mu      sync.Mutex
	value   []byte
	cas     uint64
	during  func()
	refused chan struct{} // closed at the first PutRecord refused
}

func (d *twinDurable) Add(_ context.Context, _ string, value []byte, _ time.Duration) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.value = value
	d.cas++
	return d.cas, nil
}

func (d *twinDurable) PutRecord(_ context.Context, _ string, value []byte, _ time.Duration) (tiered.PutResult, error) {
	d.mu.Lock()
	next, err := record.Parse(value)
	if err != nil {
		d.mu.Unlock()
		return tiered.PutResult{}, err
	}
	if cur, err := record.Parse(d.value); err == nil && cur.Seq >= next.Seq {
		refused := d.refused
		d.refused = nil
		d.mu.Unlock()
		if refused != nil {
			close(refused)
		}
		return tiered.PutResult{KeptSeq: cur.Seq}, nil
	}
	d.value = value
	d.cas++
	res := tiered.PutResult{Stored: true, CAS: d.cas}
	during := d.during
	d.during = nil
	d.mu.Unlock()
	if during != nil {
		during()
	}
	return res, nil
}

func (d *twinDurable) GetWithTTL(context.Context, string) (provider.Entry, time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.value == nil {
		return provider.Entry{}, 0, provider.ErrNotFound
	}
	return provider.Entry{Value: d.value, CAS: d.cas}, time.Minute, nil
}

func (d *twinDurable) Touch(context.Context, string, time.Duration) error { return nil }

func (d *twinDurable) Close() error { return nil }

// TestInitializeItemClaimedOnce (I6): two read-only requests decided on
// the same uninitialized record, the second run whole between the first's
// durable write and its cache write (tiered: the write-through window).
// Both clear the flag from the same record: without a nonce of its own
// the two claims are byte for byte the same record, the durable tier
// takes the second's for the first's sent again (tiered's sentAgain), its
// cache write lands, and the first's refused cache write finds its very
// bytes in the cache (afterLostCAS): both were acknowledged, and both
// handed InitializeItem (the conformance suite's I6 on tiered over
// memcached, twice in clean-clone CI). Each claim carries a lock id of
// its own (claimInitialize): the first's cache write is refused, the
// store undoes its durable write, and it re-reads the flag cleared.
func TestInitializeItemClaimedOnce(t *testing.T) {
	for _, broken := range []bool{false, true} {
		name := "claim nonce"
		if broken {
			name = "no claim nonce (broken)"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			durable := &twinDurable{}
			s, err := tiered.New(tiered.Config{Cache: memstore.New(memstore.Config{}), Durable: durable})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			mk := func() *provider.Provider {
				p, err := provider.New(s, provider.Config{})
				require.NoError(t, err)
				if broken {
					p = provider.ClaimWithoutNonce(p)
				}
				return p
			}
			a, b := mk(), mk()
			id, err := session.NewID()
			require.NoError(t, err)
			require.NoError(t, a.CreateUninitializedItem(ctx, id, 0))
			// The second request starts inside the first's durable
			// write, which returns once the second is done or its
			// durable write was refused (it then retries until the
			// first's cache write lands, as against a writer between
			// its two halves).
			var second *provider.Item
			var secondErr error
			done := make(chan struct{})
			refused := make(chan struct{})
			durable.refused = refused
			durable.during = func() {
				go func() {
					defer close(done)
					second, secondErr = b.GetItem(ctx, id)
				}()
				select {
				case <-done:
				case <-refused:
				case <-time.After(10 * time.Second):
					t.Error("the second request neither returned nor was refused")
				}
			}
			first, err := a.GetItem(ctx, id)
			require.NoError(t, err)
			require.Nil(t, durable.during, "the second request ran inside the first's durable write")
			<-done
			require.NoError(t, secondErr)
			flagged := 0
			for _, it := range []*provider.Item{first, second} {
				if it.Actions&session.InitializeItem != 0 {
					flagged++
				}
			}
			if broken {
				require.Equal(t, 2, flagged, "the broken variant hands the flag to both")
				return
			}
			require.Equal(t, 1, flagged, "InitializeItem handed to exactly one request")
			third, err := a.GetItem(ctx, id)
			require.NoError(t, err)
			require.Zero(t, third.Actions&session.InitializeItem, "the flag stays cleared")
		})
	}
}
