package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestKilledPrimaryRedirectedWriteMidWrite: the primary is killed right
// after a write of Seq 77 landed on it, before its backup write completes,
// and the other Store, failing over, writes Seq 77 of its own on the
// backup copy (Seq 76) in that window. The other Store's write was
// acknowledged, so the first write must not replace it: it fails, and the
// backup copy holds the other Store's write. It fails with
// ErrOutcomeUnknown, not ErrCASConflict: it landed on the primary, which
// to this Store is silent, killed or only slow, and read by others
// (sixth session, d4).
func TestKilledPrimaryRedirectedWriteMidWrite(t *testing.T) {
	killedMidWrite(t, "sl:killmid", 1)
}

// TestKilledPrimaryRedirectedWritesMidWrite: as above, but the other Store
// writes Seq 77 and then 78 on the backup copy: a newer copy there does
// not mean it includes the first write.
func TestKilledPrimaryRedirectedWritesMidWrite(t *testing.T) {
	killedMidWrite(t, "sl:killmid2", 2)
}

// killedMidWrite runs the scenario above with that many writes redirected by
// the other Store; the last one must survive.
func killedMidWrite(t *testing.T, key string, writes int) {
	servers := startNodes(t, 2)
	s1 := newStore(t, servers, memcached.Config{})
	s2 := newStore(t, servers, memcached.Config{})
	ctx := context.Background()
	_, err := s1.Add(ctx, key, record(75, "seventy-five"), time.Minute)
	require.NoError(t, err)
	e, err := s2.Get(ctx, key)
	require.NoError(t, err)
	_, err = s2.CompareAndSwap(ctx, key, record(76, "seventy-six"), e.CAS, time.Minute)
	require.NoError(t, err)
	p, _ := s1.Placement(key)
	var other []byte
	e, err = s1.Get(ctx, key)
	require.NoError(t, err)
	memcached.ForgetBackupCopies(s1) // its Get read both copies
	memcached.SetTestHooks(s1, func(string) {
		serverAt(t, servers, p).Kill()
		for i := range writes { // the first fails over to the backup copy, Seq 76
			e, err := s2.Get(ctx, key)
			require.NoError(t, err)
			other = record(77+uint64(i), "other")
			_, err = s2.CompareAndSwap(ctx, key, other, e.CAS, time.Minute)
			require.NoError(t, err)
		}
	}, nil)
	_, err = s1.CompareAndSwap(ctx, key, record(77, "seventy-seven"), e.CAS, time.Minute)
	require.Error(t, err, "a write on a dead primary replaced an acknowledged write on the backup")
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the write landed on the primary")
	require.NotErrorIs(t, err, provider.ErrCASConflict, "a conflict says nothing was written")
	for _, s := range []*memcached.Store{s1, s2} {
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, other, e.Value)
	}
}
