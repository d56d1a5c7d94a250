package memcached_test

import (
	"context"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// rv-d4 m3 (BackupOn, real memcached): a write that one copy refused while
// the other half's reply was lost after it landed (the connection closes
// once the node holds the write: closingDialer) answers unknown, never the
// refusal, which says nothing was written:
//
//   - add-primary-lost: an Add whose backup half finds a backup copy
//     (exists) while its primary add landed and its reply was lost:
//     addPrimary's ErrUnavailable branch.
//   - add-backup-lost: an Add the primary refuses (exists) whose backup
//     add landed with its reply lost: addPrimary's last branch.
//   - append-backup-lost: an append the primary refuses (its token is
//     stale there) whose backup append landed with its reply lost
//     (bakAppend.undo with no new CAS).
//
// Each asserts that the landed half holds the write, where other processes
// read it. The broken variant (SetRefusedUnsure) answers the refusal.
func TestRefusedOtherHalfReplyLost(t *testing.T) {
	for _, c := range []string{"add-primary-lost", "add-backup-lost", "append-backup-lost"} {
		for _, broken := range []bool{false, true} {
			t.Run(c+map[bool]string{false: "", true: "/broken"}[broken], func(t *testing.T) {
				ctx := context.Background()
				ld := &closingDialer{t: t}
				var (
					s                   *memcached.Store
					landedOn, landedKey string
					want                []byte
					refusal             error
					err                 error
				)
				if c == "append-backup-lost" {
					e := newAppendEnvDial(t, false, ld.dial)
					s = e.s1
					if broken {
						memcached.SetRefusedUnsure(s)
					}
					en, _, delta := readLocking(t, s, e.key) // the pair: the backup append is sent in parallel
					newCAS(t, e.primary, e.key)              // the primary refuses
					ld.arm(e.backup, e.bakKey)
					landedOn, landedKey = e.backup, e.bakKey
					want = append(append([]byte(nil), en.Value...), delta...)
					refusal = provider.ErrCASConflict
					_, _, err = s.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
				} else {
					servers := startNodes(t, 2)
					s = newStore(t, servers, memcached.Config{DialContext: ld.dial})
					if broken {
						memcached.SetRefusedUnsure(s)
					}
					key := "sl:refused:" + c
					primary, backup := s.Placement(key)
					other := &memcache.Item{Value: record(1, "other"), Expiration: 60}
					want, refusal = record(1, "mine"), provider.ErrExists
					switch c {
					case "add-primary-lost":
						other.Key = "bak:" + key
						require.NoError(t, raw(t, backup).Set(other))
						ld.arm(primary, key)
						landedOn, landedKey = primary, key
					case "add-backup-lost":
						other.Key = key
						require.NoError(t, raw(t, primary).Set(other))
						ld.arm(backup, "bak:"+key)
						landedOn, landedKey = backup, "bak:"+key
					}
					_, err = s.Add(ctx, key, want, time.Minute)
				}
				t.Logf("%s: %v", c, err)
				it, gerr := raw(t, landedOn).Get(landedKey)
				require.NoError(t, gerr)
				require.Equal(t, want, it.Value, "the half whose reply was lost landed")
				if broken {
					require.ErrorIs(t, err, refusal)
					require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
					return
				}
				require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
				require.NotErrorIs(t, err, refusal, "the refusal says nothing was written")
			})
		}
	}
}
