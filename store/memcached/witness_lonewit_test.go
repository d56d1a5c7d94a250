package memcached_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Tests of R8's Add over a lone witness and of an Add's CAS with no reply
// read again (docs/replication.md, R8), against real memcached. Run 12 of
// the real-process faults (no fault injected, load average 15): a new
// session's witness CAS was stored but its reply timed out, so the Add
// reported ErrOutcomeUnknown and left the witness alone on its node; for
// TW every read of the key found "session lost" and every Add "a
// candidate holds a record", and the provider gave up after 1000 tries.

// lostReplyStore is armedStore whose
// connections to key's candidate cand, once arm was called, execute the
// first `ms <key>` and lose its reply (a client timeout); after it, hook
// runs (nil: nothing).
func lostReplyStore(t *testing.T, key string, cand int, hook func()) (servers []*mcserver.Server, s *memcached.Store, cands []string, arm func()) {
	if hook == nil {
		hook = func() {}
	}
	return armedStore(t, key, cand, 2*time.Second, func(c armedConn) net.Conn {
		return &lostReplyConn{armedConn: c, hook: hook}
	})
}

// TestAddOverLoneWitness: an Add whose witness CAS was stored but whose
// reply was lost, and whose node could not be read again at once (the
// dial fails meanwhile), reports ErrOutcomeUnknown and leaves a lone
// witness. The next Add of the key takes it over and succeeds, and a Get
// finds the new session. Before R8's takeover it was ErrExists (and every
// Get ErrSessionLost) until the witness expired.
func TestAddOverLoneWitness(t *testing.T) {
	const key = "lonewit"
	var unreachable atomic.Bool
	servers := startNodes(t, 3)
	cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
	var mu sync.Mutex
	armed := false
	dial := refusingDial(cands[2], &unreachable, func(c net.Conn) net.Conn {
		return &lostReplyConn{armedConn: armedConn{Conn: c, mu: &mu, armed: &armed, key: key}, hook: func() { unreachable.Store(true) }}
	})
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second, DialContext: dial})
	ctx := context.Background()
	mu.Lock()
	armed = true
	mu.Unlock()
	_, err := s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the witness CAS's reply was lost and its node unreachable")
	unreachable.Store(false)
	require.Equal(t, [3]uint32{0, 0, 2}, kinds(t, cands, key), "a lone witness")

	other := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second})
	_, err = other.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound, "a lone witness is no session")
	_, err = other.Add(ctx, key, []byte("v2"), time.Minute)
	require.NoError(t, err, "an Add over a lone witness")
	require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, cands, key))
	requireSessionIs(t, servers, key, "v2", "the session created over the lone witness")
	// The creator's own retry finds the session: ErrExists.
	_, err = s.Add(ctx, key, []byte("v1"), time.Minute)
	require.ErrorIs(t, err, provider.ErrExists)
}

// TestAddLostReplyReadAgain: an Add whose CAS was stored on a candidate but
// whose reply was lost (a client timeout under load, no fault) reads that
// candidate again and goes on: the witness, the secondary's and the
// primary's step. SetAddNoResolve (the code before) reports the outcome
// unknown and leaves the records it stored: the negative control.
func TestAddLostReplyReadAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		cand int
	}{{"witness", 2}, {"secondary", 1}, {"primary", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			key := "lostadd-" + tc.name
			servers, s, cands, arm := lostReplyStore(t, key, tc.cand, nil)
			arm()
			_, err := s.Add(context.Background(), key, []byte("v1"), time.Minute)
			require.NoError(t, err, "the CAS was stored: read again, the Add goes on")
			require.Equal(t, [3]uint32{1, 1, 2}, kinds(t, cands, key))
			requireSessionIs(t, servers, key, "v1", "the Add's session")
		})
		t.Run(tc.name+"/no-resolve", func(t *testing.T) {
			key := "lostadd-nr-" + tc.name
			_, s, _, arm := lostReplyStore(t, key, tc.cand, nil)
			memcached.SetAddNoResolve(s)
			arm()
			_, err := s.Add(context.Background(), key, []byte("v1"), time.Minute)
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: a lost reply is unknown")
		})
	}
}

// TestTakeoverPoisonRefusesCreator: a creator X stored its witness and is
// held there (its next command not yet sent); a second process T reads the
// lone witness and two blanks and re-stamps both blanks; X then goes on.
// X's secondary CAS carries the old blank token: refused, X undoes its
// witness and reports ErrExists, never success; T's witness CAS is then
// refused (nothing of T's written), and the next Add creates the session.
// Without the re-stamp (SetTakeoverNoPoison, the model's
// TakeoverNoPoison) X completes, T replaces X's witness, is refused at the
// secondary and undoes its witness to a blank: X's acknowledged session
// has no witness (one flush of a data copy then loses it).
func TestTakeoverPoisonRefusesCreator(t *testing.T) {
	for _, broken := range []bool{false, true} {
		name := "poison"
		if broken {
			name = "no-poison"
		}
		t.Run(name, func(t *testing.T) {
			const key = "poison"
			ctx := context.Background()
			var tak *memcached.Store
			var takErr error
			poisoned, xDone, takDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
			// X's hook: right after its witness CAS's reply, T's Add
			// runs until its blanks are re-stamped; then X goes on.
			servers, x, cands, arm := afterReplyStore(t, key, 2, func(*memcached.Store) {
				go func() {
					defer close(takDone)
					_, takErr = tak.Add(ctx, key, []byte("t"), time.Minute)
				}()
				<-poisoned
			})
			tak = newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second})
			memcached.SetTakeoverHook(tak, func(string) {
				close(poisoned)
				<-xDone
			})
			if broken {
				memcached.SetTakeoverNoPoison(tak)
			}
			arm()
			_, xErr := x.Add(ctx, key, []byte("x"), time.Minute)
			close(xDone)
			<-takDone
			t.Logf("X: %v; T: %v; records %v", xErr, takErr, kinds(t, cands, key))
			if broken {
				require.NoError(t, xErr, "the broken variant: X completes")
				require.ErrorIs(t, takErr, provider.ErrExists)
				require.Equal(t, [3]uint32{1, 1, 0}, kinds(t, cands, key), "the broken variant: X's acknowledged session without its witness")
				return
			}
			require.ErrorIs(t, xErr, provider.ErrExists, "X's data CAS after the re-stamp: refused, X undone")
			require.ErrorIs(t, takErr, provider.ErrExists, "T's witness CAS after X's undo: refused")
			require.Equal(t, [3]uint32{0, 0, 0}, kinds(t, cands, key), "nothing left")
			_, err := tak.Add(ctx, key, []byte("t2"), time.Minute)
			require.NoError(t, err)
			requireSessionIs(t, servers, key, "t2", "the next Add's session")
		})
	}
}

// TestAddOverLoneWitnessOnPrimary (review-lonewit B1): the lone witness,
// of (E1, c1, c2), sits on the key's home primary c0 (a session that failed
// over off c0 once, its witness later put on c0, its two copies then
// expired), c1 and c2 blank. An Add Y takes the key over; between its
// secondary's CAS and its primary's a reader R reads the key. The fix
// blanks the witness (after the re-stamps) before R8 runs, so R finds
// R8's own window (a witness, a creation's secondary, a blank primary:
// R4.5), which no completion writes over: Y's primary CAS is stored (or,
// when R failed the creation over, Y's outcome is unknown), and a write
// acknowledged after it survives a flush of c0. The takeover that CASes
// its record over the witness in place (SetTakeoverInPlace) lets R
// complete the creation onto c0 first (R4.4): Y's primary CAS is refused
// and Y undoes its witness under two copies of its record that R
// observed; one flush of a copy then buries the session.
func TestAddOverLoneWitnessOnPrimary(t *testing.T) {
	for _, broken := range []bool{false, true} {
		name := "blank-first"
		if broken {
			name = "in-place"
		}
		t.Run(name, func(t *testing.T) {
			key := "lonewitp-" + name
			ctx := context.Background()
			var rd *memcached.Store
			var rdErr error
			var rdGot []byte
			fired := 0
			var arm func()
			// Y's hook on c1: the first reply is its re-stamp (arm
			// again), the second its data CAS: R reads then.
			servers, y, cands, arm0 := afterReplyStore(t, key, 1, func(*memcached.Store) {
				if fired++; fired == 1 {
					arm()
					return
				}
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				e, err := rd.Get(rctx, key)
				rdErr, rdGot = err, e.Value
			})
			arm = arm0
			rd = newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, Timeout: memcached.DefaultTimeout, FailoverAfter: 2 * time.Second})
			if broken {
				memcached.SetTakeoverInPlace(y)
				// With R4.4 as it was then: a reader now re-ballots a
				// creation over a foreign witness (review-resume-4 N4).
				memcached.SetCompleteOverWitness(rd)
			}
			v, flags := memcached.WitnessItem(y, 1, 1, 2)
			rawSet(t, cands[0], key, v, 120, flags)
			require.Equal(t, [3]uint32{2, 0, 0}, kinds(t, cands, key), "a lone witness of (E1, c1, c2) on c0")

			arm()
			_, yErr := y.Add(ctx, key, []byte("v1"), time.Minute)
			t.Logf("Y: %v; R during Y: %q, %v; records %v", yErr, rdGot, rdErr, kinds(t, cands, key))
			require.Equal(t, 2, fired, "R read between Y's secondary and primary CASes")
			if broken {
				require.NoError(t, rdErr, "the broken variant: R completes Y's creation onto c0 and returns it")
				require.Equal(t, "v1", string(rdGot))
				require.ErrorIs(t, yErr, provider.ErrOutcomeUnknown, "the broken variant: Y's primary CAS refused, its undo refused at c1")
				require.Equal(t, [3]uint32{1, 1, 0}, kinds(t, cands, key), "the broken variant: two copies of an observed record, no witness")
				return
			}
			if yErr != nil {
				// R4.5: R failed the creation over from its secondary
				// (the Add's outcome then unknown, never success).
				require.ErrorIs(t, yErr, provider.ErrOutcomeUnknown)
			}
			if rdErr == nil {
				require.Equal(t, "v1", string(rdGot), "R's read during the Add")
			}
			// A write acknowledged (R's repair of the stale c0 after its
			// failover may change the token first: read again, bounded).
			var err error
			for range 5 {
				var e provider.Entry
				e, err = rd.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "v1", string(e.Value))
				if _, err = rd.CompareAndSwap(ctx, key, []byte("v6"), e.CAS, time.Minute); err == nil {
					break
				}
				t.Logf("write: %v", err)
			}
			require.NoError(t, err, "a write acknowledged")
			for _, srv := range servers {
				if srv.Addr() == cands[0] {
					require.NoError(t, srv.FlushAll(ctx))
				}
			}
			requireSessionIs(t, servers, key, "v6", "the acknowledged write after a flush of c0")
		})
	}
}

// TestAdoptedWitnessTouched (review-lonewit M1): an Add whose read found
// the witness node W silent and held failed creates the session on P and
// Q only (nowit, R8). W still holds an old witness of the same home
// configuration (an expired session's: its data copies gone, 20 s left).
// When W answers again, R9 adopts that witness and clears nowit; it must
// first touch it T<TW>, so that it outlives the data (60 s): a witness
// that lapses first leaves, after one flush of a copy, a lone copy that
// R4.1 buries. SetAdoptNoTouch (the code before) clears nowit with the
// witness's 20 s left: the negative control.
func TestAdoptedWitnessTouched(t *testing.T) {
	for _, broken := range []bool{false, true} {
		name := "touched"
		if broken {
			name = "no-touch"
		}
		t.Run(name, func(t *testing.T) {
			const key = "adopt"
			var refuse atomic.Bool
			servers := startNodes(t, 3)
			cands := memcached.WitnessCandidates(newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness}), key)
			dial := refusingDial(cands[2], &refuse, func(c net.Conn) net.Conn { return &cutConn{Conn: c, cut: &refuse} })
			s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 700 * time.Millisecond, DialContext: dial})
			if broken {
				memcached.SetAdoptNoTouch(s)
			}
			ctx := context.Background()

			// The old session: its witness on W with 20 s left, its data
			// copies expired (deleted here).
			old := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness})
			_, err := old.Add(ctx, key, []byte("old"), time.Minute)
			require.NoError(t, err)
			require.NoError(t, raw(t, cands[2]).Touch(key, 20))
			for _, a := range cands[:2] {
				require.NoError(t, raw(t, a).Delete(key))
			}

			// W unreachable, then held failed: the Add creates nowit on P, Q.
			refuse.Store(true)
			testwait.Until(t, 10*time.Second, "an Add without the unreachable witness node", func() bool {
				_, err = s.Add(ctx, key, []byte("v1"), time.Minute)
				if err != nil {
					require.ErrorIs(t, err, provider.ErrUnavailable)
				}
				return err == nil
			})
			for _, a := range cands[:2] {
				env, _, err := envelope.Decode(rawGet(t, a, key).value)
				require.NoError(t, err)
				require.True(t, env.NoWit, "created without a witness on %s", a)
			}
			require.LessOrEqual(t, rawGet(t, cands[2], key).ttl, int64(20), "W keeps the old witness")

			// W answers again: R9 (the witness-less list) adopts it.
			refuse.Store(false)
			testwait.Until(t, 10*time.Second, "R9 to clear nowit", func() bool {
				return noWitCleared(t, key, cands[:2])
			})
			wit := rawGet(t, cands[2], key)
			require.Equal(t, uint32(2), wit.flags, "the witness")
			data := max(rawGet(t, cands[0], key).ttl, rawGet(t, cands[1], key).ttl)
			require.Greater(t, data, int64(50))
			if broken {
				require.Less(t, wit.ttl, data, "the code before: the adopted witness keeps its 20 s")
				return
			}
			require.GreaterOrEqual(t, wit.ttl, data, "the adopted witness outlives the data")
		})
	}
}

// cutConn fails every read and write once cut is set: a node that
// stopped answering (its connections reset).
type cutConn struct {
	net.Conn
	cut *atomic.Bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.cut.Load() {
		return 0, errors.New("connection reset (test)")
	}
	return c.Conn.Write(b)
}

func (c *cutConn) Read(b []byte) (int, error) {
	if c.cut.Load() {
		return 0, errors.New("connection reset (test)")
	}
	return c.Conn.Read(b)
}
