package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestCarriesTouchMovedOn is rvcarries2 R3 (a): the writer's append is
// acknowledged from another process's decision that carries it (R7, as in
// TestCarriesAppendTouched), and before its touch of the decision's
// copies (held at SetTouchDecisionHold) a third Store writes v4 on the
// decision: a later record of its configuration built on it.
//
// both: v4 on both copies. Neither is touched (v4 set its own life): the
// append is applied, success, and the session is v4.
//
// one: v4 on the decision's primary (c0) only, the decision itself put
// back on its secondary (c2) with 5 s left (the rig: v4 in flight, P
// ahead). c2 is touched with the append's T; c0 is not: success.
//
// The code before (SetTouchMovedOnUnknown): ErrOutcomeUnknown ("a copy
// of the decision holds another record") in both.
func TestCarriesTouchMovedOn(t *testing.T) {
	for name, both := range map[string]bool{"both": true, "one": false} {
		t.Run(name, func(t *testing.T) {
			eachVariant(t, "moved-on", "code-before", memcached.SetTouchMovedOnUnknown, func(t *testing.T, broken bool, set func(*memcached.Store)) {
				const key = "touchmoved"
				r := heldWriteFailover(t, key, false, true, set)
				otherR7(t, r, key, "v23")
				held, resume := make(chan struct{}), make(chan struct{})
				var once bool
				memcached.SetTouchDecisionHold(r.a, func(k string) {
					if k == key && !once {
						once = true
						close(held)
						<-resume
					}
				})
				defer func() {
					select {
					case <-resume:
					default:
						close(resume)
					}
				}()
				r.release()
				recvWithin(t, held, "the writer about to touch the decision")
				d := rawGet(t, r.cands[2], key)
				ctx := context.Background()
				b := promiseStore(t, r.servers, nil, nil)
				e, err := b.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "v23", string(e.Value), "the rig: the decision carries the append")
				_, err = b.CompareAndSwap(ctx, key, []byte("v4"), e.CAS, time.Minute)
				require.NoError(t, err)
				if !both {
					rawSet(t, r.cands[2], key, d.value, 5, d.flags)
				}
				close(resume)
				err = recvWithin(t, r.wrote, "the writer's answer")
				if broken {
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: a copy moved on")
					require.ErrorContains(t, err, "a copy of the decision holds another record")
					return
				}
				require.NoError(t, err, "the append is applied: the decision carries it, v4 is built on it")
				_, payload, _ := envAt(t, r.cands[0], key)
				require.Equal(t, "v4", payload, "c0 keeps v4")
				if both {
					requireSessionIs(t, r.servers, key, "v4", "v4, built on the append, is the session")
					return
				}
				_, payload, _ = envAt(t, r.cands[2], key)
				require.Equal(t, "v23", payload, "c2 holds the decision")
				requireTouched(t, key, false, r.cands[2])
			})
		})
	}
}
