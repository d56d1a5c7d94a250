package memcached_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// Sixth session, d4 (BackupOn, real memcached): a whole write landed on
// the primary, and before its backup half completed, the copies changed
// (the hook runs between the two: afterPrimaryWrite). The write was
// stored, and others may have read it: it never answers a conflict, which
// says nothing was written (the provider's next decision then finds its
// own release and answers ErrLockLost: the simulation's
// defect4-failed-commit-applied, 177 of 2,400 seeds of delay and
// flush-each before the fix).
//
//   - slid: the backup copy is flushed (the slow path finds it empty and
//     checks the primary) and a reader's sliding CAS rewrote the
//     primary's copy, the same bytes under a new CAS: unknown outcome,
//     not success. The Store cannot tell it from the primary having lost
//     the write and a twin written from the older copy (two lock-free
//     increments of one base write the same bytes, no nonce): answering
//     success there loses one of the two acknowledged increments.
//   - replaced: the same, the primary holding another record of the
//     write's Seq (the primary lost the write and a write based on the
//     older copy replaced it): unknown outcome.
//   - silent: the backup copy holds another record of the write's Seq
//     and the primary stops answering (killed here; a slow primary that
//     other processes still read is the same to this Store): unknown.
//
// The broken variant (SetLandedConflict) answers ErrCASConflict in all
// three.
func TestLandedWriteNotConflict(t *testing.T) {
	for _, c := range []string{"slid", "replaced", "silent"} {
		for _, broken := range []bool{false, true} {
			t.Run(c+map[bool]string{false: "", true: "/broken"}[broken], func(t *testing.T) {
				ctx := context.Background()
				e := newAppendEnv(t, false)
				en, next, _ := readLocking(t, e.s1, e.key)
				other := next
				other.LockID++
				memcached.ForgetBackupCopies(e.s1) // the backup half takes the slow path
				var herr error
				var once sync.Once
				memcached.SetTestHooks(e.s1, func(string) {
					once.Do(func() {
						switch c {
						case "slid", "replaced":
							herr = raw(t, e.backup).Delete(e.bakKey)
							if herr == nil && c == "slid" {
								newCAS(t, e.primary, e.key)
							}
							if herr == nil && c == "replaced" {
								it, err := raw(t, e.primary).Get(e.key)
								require.NoError(t, err)
								it.Value = other.Encode()
								herr = raw(t, e.primary).CompareAndSwap(it)
							}
						case "silent":
							it, err := raw(t, e.backup).Get(e.bakKey)
							require.NoError(t, err)
							it.Value = other.Encode()
							herr = raw(t, e.backup).CompareAndSwap(it)
							serverAt(t, e.servers, e.primary).Kill()
						}
					})
				}, nil)
				if broken {
					memcached.SetLandedConflict(e.s1) // after SetTestHooks, which resets the hooks
				}
				_, err := e.s1.CompareAndSwap(ctx, e.key, next.Encode(), en.CAS, time.Minute)
				require.NoError(t, herr, "changing the copies")
				switch {
				case broken:
					require.ErrorIs(t, err, provider.ErrCASConflict)
					require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
				default:
					require.ErrorIs(t, err, provider.ErrOutcomeUnknown, "the write landed on the primary")
					require.NotErrorIs(t, err, provider.ErrCASConflict, "a conflict says nothing was written")
				}
			})
		}
	}
}

// writeOnce's connections to addr, once armed, hand the first write that
// contains match to do, with the connection, instead of sending it.
type writeOnce struct {
	mu    sync.Mutex
	addr  string
	match []byte
	do    func(c net.Conn, b []byte) (int, error)
	fired bool
}

func (w *writeOnce) arm(addr, match string, do func(c net.Conn, b []byte) (int, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addr, w.match, w.do, w.fired = addr, []byte(match), do, false
}

// hit reports whether the write armed for was handed to do.
func (w *writeOnce) hit() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

func (w *writeOnce) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return wrapDial(func(addr string, c net.Conn) net.Conn { return &onceConn{Conn: c, w: w, addr: addr} })(ctx, network, addr)
}

type onceConn struct {
	net.Conn
	w    *writeOnce
	addr string
}

func (c *onceConn) Write(b []byte) (int, error) {
	w := c.w
	w.mu.Lock()
	do := w.do
	hit := do != nil && !w.fired && c.addr == w.addr && bytes.Contains(b, w.match)
	if hit {
		w.fired = true
	}
	w.mu.Unlock()
	if !hit {
		return c.Conn.Write(b)
	}
	return do(c.Conn, b)
}
