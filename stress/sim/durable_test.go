package sim

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/tiered"
)

func simRecord(seq uint64) []byte {
	return record.Record{Header: record.Header{Seq: seq, DataSeq: seq, Timeout: time.Minute}}.Encode()
}

// must returns v, failing the test given to it on err:
// must(c.Get(ctx, key))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// The simulated durable tier answers as store/sqlstore does: its ClaimOf
// decisions are those of sqlstore's TestClaimOf, PutRecord keeps the
// highest Seq, an expired row is gone to every operation but ClaimOf and
// is replaced by Add, and a statement the client gave up on still runs:
// a write is reported with an unknown outcome, a read as unavailable.
func TestDurableNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := NewDurableNode()
		defer d.Shutdown()
		c := d.Client(rand.New(rand.NewPCG(1, 2)), time.Second, time.Millisecond, 2*time.Millisecond)
		ctx := context.Background()
		claimOf := func(key string, cas uint64, want tiered.ClaimState, why string) {
			t.Helper()
			if got := must(c.ClaimOf(ctx, key, cas))(t); got != want {
				t.Errorf("ClaimOf(%s, %d) = %v, want %v: %s", key, cas, got, want, why)
			}
		}
		v1 := must(c.Add(ctx, "k", simRecord(1), time.Hour))(t)
		claimOf("k", v1, tiered.NotClaimed, "current")
		claimOf("k", 0, tiered.ClaimUnknown, "token 0")
		claimOf("absent", v1, tiered.ClaimUnknown, "no row")
		v2 := must(c.Claim(ctx, "k", simRecord(2), v1, time.Hour))(t)
		claimOf("k", v1, tiered.Claimed, "replaced by a claim")
		res := must(c.PutRecord(ctx, "k", simRecord(3), time.Hour))(t)
		if !res.Stored {
			t.Fatal("a higher Seq was refused")
		}
		v4 := must(c.CompareAndSwap(ctx, "k", simRecord(4), res.CAS, time.Hour))(t)
		if err := c.Touch(ctx, "k", time.Hour); err != nil {
			t.Fatal(err)
		}
		claimOf("k", v1, tiered.Claimed, "claimed, through later writes")
		claimOf("k", v2, tiered.NotClaimed, "overwritten by PutRecord")
		claimOf("k", res.CAS, tiered.NotClaimed, "overwritten by CompareAndSwap")
		res5 := must(c.PutRecord(ctx, "k", simRecord(5), time.Hour))(t)
		_ = must(c.Claim(ctx, "k", simRecord(6), res5.CAS, time.Hour))(t)
		claimOf("k", v4, tiered.NotClaimed, "overwritten, then its successor claimed")
		claimOf("k", res5.CAS, tiered.Claimed, "claimed")
		claimOf("k", v1, tiered.ClaimUnknown, "a later claim replaced the record of it")

		// PutRecord keeps the newest record.
		old := must(c.PutRecord(ctx, "k", simRecord(6), time.Hour))(t)
		if old.Stored || old.KeptSeq != 6 {
			t.Errorf("PutRecord of an equal Seq: %+v, want refused with KeptSeq 6", old)
		}
		if _, err := c.PutRecord(ctx, "k", []byte("not a record"), time.Hour); !errors.Is(err, provider.ErrCorrupt) {
			t.Errorf("PutRecord of a value that is not a record: %v", err)
		}

		// Expiry: gone to reads, CAS and Touch; ClaimOf still reads the
		// row; Add replaces it, created anew.
		e := must(c.Add(ctx, "x", simRecord(1), time.Second))(t)
		time.Sleep(time.Second)
		if _, err := c.Get(ctx, "x"); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Get of an expired row: %v", err)
		}
		if _, err := c.CompareAndSwap(ctx, "x", simRecord(2), e, time.Hour); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("CompareAndSwap of an expired row: %v", err)
		}
		claimOf("x", e, tiered.NotClaimed, "an expired row still tells")
		_ = must(c.Add(ctx, "x", simRecord(1), time.Hour))(t)
		claimOf("x", e, tiered.ClaimUnknown, "created again since")

	})
	// A paused node: the client gives up after its timeout; the write
	// runs when the node resumes.
	synctest.Test(t, func(t *testing.T) {
		d := NewDurableNode()
		defer d.Shutdown()
		c := d.Client(rand.New(rand.NewPCG(1, 2)), time.Second, time.Millisecond, 2*time.Millisecond)
		ctx := context.Background()
		v := must(c.Add(ctx, "k", simRecord(1), time.Hour))(t)
		d.Pause()
		if _, err := c.CompareAndSwap(ctx, "k", simRecord(2), v, time.Hour); !errors.Is(err, provider.ErrOutcomeUnknown) || !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("a write the client gave up on: %v, want an unknown outcome", err)
		}
		if _, err := c.Get(ctx, "k"); errors.Is(err, provider.ErrOutcomeUnknown) || !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("a read the client gave up on: %v, want unavailable", err)
		}
		d.Resume()
		synctest.Wait() // the queued statements ran
		got := must(c.Get(ctx, "k"))(t)
		if h, _ := record.Parse(got.Value); h.Seq != 2 {
			t.Errorf("after the resume the row holds Seq %d, want 2: the late write ran", h.Seq)
		}
	})
}
