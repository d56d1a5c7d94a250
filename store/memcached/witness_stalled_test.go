package memcached_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestUndoStalledAfterPrimaryHeld is the stalled writer (the contention
// row's residual; a clean-clone CI run's TestRealFaults/flush-one-node,
// second session of 2026-12-02: an append answered ErrOutcomeUnknown, "the
// session was more than 8 versions past this write when its writer read
// it again"). P refused the write (re-stamped: R9 after a flush), Q stored
// it, and before the writer's own completion read P another process moved
// P on (atRead); the writer then stalled (held at the undo's start) while
// another app server acted on the session (stall). The code before
// (SetUndoForgetsHeld) sent the undo, refused, and read both copies, past
// the ancestors the records keep: unknown. What its read of P proved is
// now kept (primaryShows):
//   - held: a reader's completion copied the write onto P (held), or P
//     holds a record built on it (descendant): the session is then written
//     over envelope.Lineage+1 times: success, and the session is built on
//     the write;
//   - a competitor on P: of the write's version (beaten), or two versions
//     of another chain (competitor-next), or a chain already past the
//     ancestors (competitor-far), or another record of the base's version
//     (below-the-write): never success (the cold review rv-held's
//     M1: a mutant taking these as held acknowledged a write on no chain);
//   - held, then Q blanked (a flush and a reader's get-or-blank) during
//     the stall: not past the ancestors, so held alone does not answer (an
//     append copied onto P may carry Q's old life: the "both hold" row
//     touches it first): unknown;
//   - held, then the session read, deleted and created again and written k
//     times (rv-held m1: a configuration names no lifetime, so the undo's
//     rows of certain conflict, by one chain of versions, fire): a write a
//     read returned is never reported not applied: unknown (success once
//     the new lifetime is past the ancestors); the code before
//     (SetUndoHeldConflict with SetLifetimeIgnored) answered
//     ErrCASConflict; either fix alone answers unknown (lifetime-alone:
//     the records' lifetimes, §16 item 5).
func TestUndoStalledAfterPrimaryHeld(t *testing.T) {
	const key = "stalled"
	type rig struct {
		servers []string
		other   *memcached.Store // another app server
	}
	// rewrite writes the session n times through the other app server.
	rewrite := func(t *testing.T, r rig, n int) {
		ctx := context.Background()
		for i := range n {
			got, err := r.other.Get(ctx, key)
			require.NoError(t, err)
			_, err = r.other.CompareAndSwap(ctx, key, fmt.Appendf(got.Value, "+%d", i), got.CAS, time.Minute)
			require.NoError(t, err, "the other app server's write %d", i)
		}
	}
	over := func(t *testing.T, r rig) { rewrite(t, r, envelope.Lineage+1) }
	// chain puts n versions of another chain on both copies.
	chain := func(n int) func(t *testing.T, p, q string) {
		return func(t *testing.T, p, q string) {
			base, payload, err := envelope.Decode(rawGet(t, p, key).value)
			require.NoError(t, err)
			cur := base
			for i := range n {
				cur = cur.Next(rand.Uint64(), base.Timeout)
				payload = fmt.Appendf(payload, "-other%d", i)
				rawSet(t, p, key, cur.Wrap(payload), 60, 1)
				rawSet(t, q, key, cur.Wrap(payload), 60, 1)
			}
		}
	}
	// other puts on both copies another record of the base's version (a
	// chain that left the base's before the write).
	other := func(t *testing.T, p, q string) {
		base, payload, err := envelope.Decode(rawGet(t, p, key).value)
		require.NoError(t, err)
		base.Nonce = rand.Uint64()
		rawSet(t, p, key, base.Wrap(append(payload, "-other"...)), 60, 1)
		rawSet(t, q, key, base.Wrap(append(payload, "-other"...)), 60, 1)
	}
	// completed is a reader's R4.4 completion of the write: Q re-stamped,
	// its record copied onto P.
	completed := func(t *testing.T, p, q string) {
		it := rawGet(t, q, key)
		rawSet(t, q, key, it.value, 60, 1)
		rawSet(t, p, key, it.value, 60, 1)
	}
	// descendant: the next version, built on the write, on both copies.
	descendant := func(t *testing.T, p, q string) {
		x, payload, err := envelope.Decode(rawGet(t, q, key).value)
		require.NoError(t, err)
		next := x.Next(rand.Uint64(), x.Timeout).Wrap(append(payload, "+d"...))
		rawSet(t, p, key, next, 60, 1)
		rawSet(t, q, key, next, 60, 1)
	}
	// recreated reads the session (returning the write), deletes it, adds
	// it again and writes it k times.
	recreated := func(k int) func(t *testing.T, r rig) {
		return func(t *testing.T, r rig) {
			ctx := context.Background()
			got, err := r.other.Get(ctx, key)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(string(got.Value), "v3"), "the rig: the write %q was read", got.Value)
			require.NoError(t, r.other.Delete(ctx, key))
			_, err = r.other.Add(ctx, key, []byte("n"), time.Minute)
			require.NoError(t, err)
			rewrite(t, r, k)
		}
	}
	// forgetsHeld is the code before primaryShows, which came before §16
	// item 4's "not applied, however far" too (the rig's completion of
	// the write by a reader is one R4.4′ no longer makes: only the
	// writer's own completion copies a write on Q alone onto P).
	forgetsHeld := func(s *memcached.Store) {
		memcached.SetUndoForgetsHeld(s)
		memcached.SetFarNotAppliedOff(s)
	}
	applied := func(t *testing.T, err error, session, mine string) {
		require.NoError(t, err, "P held the write before the stall: applied")
		require.True(t, strings.HasPrefix(session, mine), "the session %q is built on the write %q", session, mine)
	}
	unknown := func(why string) func(t *testing.T, err error, session, mine string) {
		return func(t *testing.T, err error, session, mine string) {
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, why)
			require.NotErrorIs(t, err, provider.ErrCASConflict)
		}
	}
	stalled := func(t *testing.T, err error, session, mine string) {
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: the undo's reads past the ancestors")
		require.ErrorContains(t, err, stalledWriter)
	}
	notSuccess := func(t *testing.T, err error, session, mine string) {
		require.Error(t, err, "the write was never on P: never success")
		require.False(t, strings.HasPrefix(session, mine), "the rig: the session %q is not built on the write", session)
	}
	conflict := func(t *testing.T, err error, session, mine string) {
		require.ErrorIs(t, err, provider.ErrCASConflict, "a competitor held P's version: the write is on no chain")
		require.False(t, strings.HasPrefix(session, mine), "the rig: the session %q is not built on the write", session)
	}
	for _, c := range []struct {
		name   string
		append bool
		atRead func(t *testing.T, p, q string)
		stall  func(t *testing.T, r rig)
		hook   func(*memcached.Store)
		check  func(t *testing.T, err error, session, mine string)
	}{
		{"held/cas", false, completed, over, nil, applied},
		{"held/append", true, completed, over, nil, applied},
		{"held/cas/code-before", false, completed, over, forgetsHeld, stalled},
		{"held/append/code-before", true, completed, over, forgetsHeld, stalled},
		{"descendant", false, descendant, over, nil, applied},
		{"descendant/code-before", false, descendant, over, forgetsHeld, stalled},
		{"beaten", false, chain(1), over, nil, conflict},
		{"competitor-next", false, chain(2), over, nil, notSuccess},
		{"competitor-far", false, chain(envelope.Lineage + 2), over, nil, notSuccess},
		{"below-the-write", false, other, over, nil, conflict},
		{"held/append/q-blanked", true, completed, func(t *testing.T, r rig) {
			rawSet(t, r.servers[1], key, nil, 30, 0)
		}, nil, unknown("held alone, not past the ancestors: an append on P may carry Q's old life")},
		{"held/recreated-1", false, completed, recreated(1), nil, unknown("a write a read returned is not reported not applied")},
		{"held/recreated-2", false, completed, recreated(2), nil, unknown("a write a read returned is not reported not applied")},
		{"held/recreated-1/code-before", false, completed, recreated(1), func(s *memcached.Store) {
			memcached.SetUndoHeldConflict(s)
			memcached.SetLifetimeIgnored(s)
		}, func(t *testing.T, err error, session, mine string) {
			require.ErrorIs(t, err, provider.ErrCASConflict, "the code before: replaced on both copies")
		}},
		// The lifetime nonce alone (§16 item 5) keeps the answer unknown:
		// Q's record is of the new session's lifetime.
		{"held/recreated-1/lifetime-alone", false, completed, recreated(1), memcached.SetUndoHeldConflict, unknown("a record of another lifetime")},
		{"held/recreated-past-ancestors", false, completed, recreated(envelope.Lineage + 4), nil, func(t *testing.T, err error, session, mine string) {
			require.NoError(t, err, "held, and the copies past the ancestors: success")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cands []string
			// Right after Q stored the write, before the writer reads P.
			servers, s, cs, arm := afterReplyStore(t, key, 1, func(*memcached.Store) { c.atRead(t, cands[0], cands[1]) })
			cands = cs
			if c.hook != nil {
				c.hook(s)
			}
			ctx := context.Background()
			e := writtenOnce(t, s, key)
			r := rig{servers: cands, other: newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 700 * time.Millisecond})}
			undos := 0
			memcached.SetUndoStart(s, func(string) {
				undos++
				c.stall(t, r)
			})
			// R9's re-stamp of P (same bytes, a new token): P refuses the
			// write's token.
			rawSet(t, cands[0], key, rawGet(t, cands[0], key).value, 60, 1)
			arm()
			var err error
			mine := "v3"
			if c.append {
				mine = "v2d"
				_, _, err = s.CompareAndAppend(ctx, key, []byte("d"), e.CAS, time.Minute)
			} else {
				_, err = s.CompareAndSwap(ctx, key, []byte("v3"), e.CAS, time.Minute)
			}
			require.Equal(t, 1, undos, "the rig: the writer reached the undo once")
			session := ""
			if got, gerr := r.other.Get(ctx, key); gerr == nil {
				session = string(got.Value)
			}
			t.Logf("answer: %v; the session: %q", err, session)
			c.check(t, err, session, mine)
		})
	}
}
