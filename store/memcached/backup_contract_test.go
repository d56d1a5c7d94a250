package memcached_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// The unknown-outcome contract on BackupOn (doc.go, "The unknown-outcome
// contract"; issue 13): a write answered "not written" (a conflict, not
// found, exists) is on no copy, so no Store ever reads it. The broken
// variant of each test (SetBackupParallel: the backup half sent in
// parallel with the primary half, the code before, without its undo)
// must break it.

// notWritten reports whether err tells the provider that nothing was
// written.
func notWritten(err error) bool {
	return errors.Is(err, provider.ErrCASConflict) || errors.Is(err, provider.ErrNotFound) || errors.Is(err, provider.ErrExists)
}

// holdsValue reports whether mc holds value under key.
func holdsValue(mc *memcache.Client, key string, value []byte) bool {
	it, err := mc.Get(key)
	return err == nil && bytes.Equal(it.Value, value)
}

// contractCases runs f on a fresh two-node BackupOn appendEnv whose s1
// dials through w: as the Store is ("fix"), and with the broken variant
// SetBackupParallel on s1 ("parallel").
func contractCases(t *testing.T, f func(t *testing.T, broken bool, w *writeOnce, e *appendEnv)) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "parallel"}[broken], func(t *testing.T) {
			var w writeOnce
			e := newAppendEnvDial(t, false, w.dial)
			if broken {
				memcached.SetBackupParallel(e.s1)
			}
			f(t, broken, &w, e)
		})
	}
}

// waitBackupHalf waits (bounded), in the broken variant, until the backup
// copy holds value: its backup half, sent in parallel with the primary
// write being held. As the Store is, the backup half waits for the
// primary's answer, so there is nothing to wait for.
func waitBackupHalf(t *testing.T, broken bool, e *appendEnv, value []byte) {
	mb := raw(t, e.backup)
	if broken && !testwait.Poll(5*time.Second, func() bool { return holdsValue(mb, e.bakKey, value) }) {
		t.Errorf("the broken variant's backup half never landed")
	}
}

// rv-d4 M1: s1 writes W from its token; while its primary write is on the
// wire (held by the dialer: in the broken variant, once W's backup half
// is on the backup copy), the primary is flushed and s2's read repairs it
// from the backup copy. s1's primary CAS is then refused. The answer is
// "not written", and no Store reads W afterwards: through s1, through s2,
// and after the primary loses the key again.
func TestBackupOnRefusedRepairedNotRead(t *testing.T) {
	contractCases(t, func(t *testing.T, broken bool, w *writeOnce, e *appendEnv) {
		ctx := context.Background()
		en, next, _ := readLocking(t, e.s1, e.key) // s1 learns the pair: its backup write is conditioned
		value := next.Encode()
		var repaired []byte
		w.arm(e.primary, "ms "+e.key+" ", func(c net.Conn, b []byte) (int, error) {
			waitBackupHalf(t, broken, e, value)
			require.NoError(t, raw(t, e.primary).FlushAll())
			got, err := e.s2.Get(ctx, e.key) // misses, repairs from the backup copy
			if err == nil {
				repaired = got.Value
			}
			return c.Write(b)
		})
		_, err := e.s1.CompareAndSwap(ctx, e.key, value, en.CAS, time.Minute)
		require.True(t, w.hit(), "the primary write was held")
		t.Logf("answer: %v", err)
		seen := [][]byte{repaired}
		for _, s := range []*memcached.Store{e.s1, e.s2} {
			got, gerr := s.Get(ctx, e.key)
			require.NoError(t, gerr)
			seen = append(seen, got.Value)
		}
		require.NoError(t, raw(t, e.primary).Delete(e.key)) // the primary loses the key
		for _, s := range []*memcached.Store{e.s2, e.s1} {
			got, gerr := s.Get(ctx, e.key)
			require.NoError(t, gerr)
			seen = append(seen, got.Value)
		}
		readW := false
		for _, v := range seen {
			readW = readW || bytes.Equal(v, value)
		}
		if broken {
			require.True(t, notWritten(err) && readW, "the broken variant kept the contract (err %v, W read %v): the test cannot fail", err, readW)
			return
		}
		require.True(t, notWritten(err), "refused: %v", err)
		require.False(t, readW, "a write answered not written was read")
	})
}

// The residual window of the code before: s1's write is refused at the
// primary (its token is stale there), while s3, which takes the primary
// for down (it cannot reach it), serves the key from the backup copy:
// s3 reads it during the write (once, in the broken variant, W's backup
// half is there) and after it. s3 never sees W.
func TestBackupOnRefusedNotReadByBackupReader(t *testing.T) {
	contractCases(t, func(t *testing.T, broken bool, w *writeOnce, e *appendEnv) {
		ctx := context.Background()
		var cut atomic.Bool
		s3 := newStore(t, e.servers, memcached.Config{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == e.primary && cut.Load() {
				return nil, fmt.Errorf("partitioned from %s", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}})
		cut.Store(true)
		testwait.Until(t, 10*time.Second, "s3 to take the primary for down", func() bool {
			_, _ = s3.Get(ctx, e.key)
			return !isUp(s3, e.primary)
		})
		en, next, _ := readLocking(t, e.s1, e.key)
		value := next.Encode()
		newCAS(t, e.primary, e.key) // s1's token is stale on the primary; the pair still stands on the backup
		var during []byte
		w.arm(e.primary, "ms "+e.key+" ", func(c net.Conn, b []byte) (int, error) {
			waitBackupHalf(t, broken, e, value)
			if got, err := s3.Get(ctx, e.key); err == nil {
				during = got.Value
			}
			return c.Write(b)
		})
		_, err := e.s1.CompareAndSwap(ctx, e.key, value, en.CAS, time.Minute)
		require.True(t, w.hit(), "the primary write was held")
		after, aerr := s3.Get(ctx, e.key)
		require.NoError(t, aerr)
		readW := bytes.Equal(during, value) || bytes.Equal(after.Value, value)
		if broken {
			require.True(t, notWritten(err) && readW, "the broken variant kept the contract (err %v, W read %v): the test cannot fail", err, readW)
			return
		}
		require.ErrorIs(t, err, provider.ErrCASConflict)
		require.False(t, readW, "a process that takes the primary for down read a write answered not written")
	})
}

// contentionCounts are the answers of TestBackupOnContentionNoFault's
// writes, by kind, and what the readers found.
type contentionCounts struct {
	ok, notWritten, unknown, other atomic.Int64
	// readNotWritten: a Get returned a value whose write was answered
	// not written. onBackup: a sample of the backup copy held one (the
	// copy a process that takes the primary for down reads).
	readNotWritten, onBackup atomic.Int64
}

func (c *contentionCounts) String() string {
	return fmt.Sprintf("ok %d, not written %d, unknown %d, other %d; not-written values read %d, on the backup copy %d",
		c.ok.Load(), c.notWritten.Load(), c.unknown.Load(), c.other.Load(), c.readNotWritten.Load(), c.onBackup.Load())
}

// TestBackupOnContentionNoFault: two Stores × 4 goroutines each run
// contended lock-free increments (read, CAS the next record) and
// lock-style ones (read, CAS a locked record, then CAS the incremented
// unlocked one) on one key, with no fault, for a bounded number of
// operations. Every answer is counted by kind; every value answered not
// written must never be read (by a Get of either Store, or on the backup
// copy, sampled meanwhile); no answer is unknown. The broken variant
// (both Stores SetBackupParallel) leaves refused values on the backup copy.
func TestBackupOnContentionNoFault(t *testing.T) {
	servers := startNodes(t, 2)
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "parallel"}[broken], func(t *testing.T) {
			flush(t, servers)
			c := runContention(t, servers, broken, 4, 150)
			t.Logf("%s", c)
			if broken {
				require.Positive(t, c.readNotWritten.Load()+c.onBackup.Load(), "the broken variant left no refused value where it is read: the test cannot fail (%s)", c)
				return
			}
			require.Zero(t, c.readNotWritten.Load(), "%s", c)
			require.Zero(t, c.onBackup.Load(), "%s", c)
			require.Zero(t, c.unknown.Load(), "no fault, no unknown outcome: %s", c)
			require.Positive(t, c.notWritten.Load(), "no contention: %s", c)
		})
	}
}

// runContention runs TestBackupOnContentionNoFault's load: per Store g
// goroutines of ops writes each.
func runContention(t *testing.T, servers []*mcserver.Server, broken bool, g, ops int) *contentionCounts {
	ctx := context.Background()
	stores := []*memcached.Store{newStore(t, servers, memcached.Config{}), newStore(t, servers, memcached.Config{})}
	if broken {
		for _, s := range stores {
			memcached.SetBackupParallel(s)
		}
	}
	const key = "contended"
	_, backup := stores[0].Placement(key)
	var refused sync.Map // value bytes (string) -> struct{}: answered not written
	var c contentionCounts
	seen := make(chan []byte, 1024)
	var readers sync.WaitGroup
	var seenAll [][]byte
	readers.Go(func() {
		for v := range seen {
			seenAll = append(seenAll, v)
		}
	})
	_, err := stores[0].Add(ctx, key, record(1, "init"), time.Minute)
	require.NoError(t, err)
	var n atomic.Int64
	write := func(s *memcached.Store, cas uint64, v []byte) (uint64, error) {
		t2, err := s.CompareAndSwap(ctx, key, v, cas, time.Minute)
		switch {
		case err == nil:
			c.ok.Add(1)
		case errors.Is(err, provider.ErrOutcomeUnknown):
			c.unknown.Add(1)
		case notWritten(err):
			c.notWritten.Add(1)
			refused.Store(string(v), struct{}{})
		default:
			c.other.Add(1)
		}
		return t2, err
	}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		mb := memcache.New(backup)
		defer mb.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if it, err := mb.Get("bak:" + key); err == nil {
				seen <- append([]byte("B"), it.Value...)
			}
		}
	})
	var wg sync.WaitGroup
	for si, s := range stores {
		for gi := range g {
			wg.Go(func() {
				for i := range ops {
					en, err := s.Get(ctx, key)
					if err != nil {
						c.other.Add(1)
						continue
					}
					seen <- append([]byte("G"), en.Value...)
					seq := recordSeq(en.Value)
					tag := fmt.Sprintf("s%d-g%d-%d-%d", si, gi, i, n.Add(1))
					if i%2 == 0 {
						_, _ = write(s, en.CAS, record(seq+1, "free "+tag))
						continue
					}
					locked, err := write(s, en.CAS, record(seq+1, "locked "+tag))
					if err == nil {
						_, _ = write(s, locked, record(seq+2, "unlocked "+tag))
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(seen)
	readers.Wait()
	for _, v := range seenAll {
		if _, ok := refused.Load(string(v[1:])); ok {
			if v[0] == 'B' {
				c.onBackup.Add(1)
			} else {
				c.readNotWritten.Add(1)
			}
		}
	}
	return &c
}

// recordSeq returns the Seq of a record built by record.
func recordSeq(v []byte) uint64 {
	var seq uint64
	for _, b := range v[5:13] {
		seq = seq<<8 | uint64(b)
	}
	return seq
}

// TestUnknownPrimaryWriteOneView (cold review rvbo M2): s1's write lands
// on the primary and its reply is lost (the connection closed): unknown,
// and s1 takes the primary for down. Its backup half is sent all the same
// (the answer is unknown whatever it does), so s1, now reading the backup
// copy, and s2, reading the primary, both read the write, as when both
// halves went in parallel. With SetNoBackupAfterUnknown (bocontract's
// first version) s1 reads the old copy while s2 reads the write.
func TestUnknownPrimaryWriteOneView(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "no-backup-after-unknown"}[broken], func(t *testing.T) {
			ctx := context.Background()
			var w writeOnce
			e := newAppendEnvDial(t, false, w.dial)
			if broken {
				memcached.SetNoBackupAfterUnknown(e.s1)
			}
			en, next, _ := readLocking(t, e.s1, e.key)
			value := next.Encode()
			mp := raw(t, e.primary)
			w.arm(e.primary, "ms "+e.key+" ", func(c net.Conn, b []byte) (int, error) {
				n, err := c.Write(b)
				require.True(t, testwait.Poll(5*time.Second, func() bool { return holdsValue(mp, e.key, value) }), "the primary took the write")
				_ = c.Close() // its reply is lost
				return n, err
			})
			_, err := e.s1.CompareAndSwap(ctx, e.key, value, en.CAS, time.Minute)
			require.True(t, w.hit())
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
			g1, err := e.s1.Get(ctx, e.key)
			require.NoError(t, err)
			g2, err := e.s2.Get(ctx, e.key)
			require.NoError(t, err)
			require.Equal(t, string(value), string(g2.Value), "s2 reads the primary, which took the write")
			if broken {
				require.NotEqual(t, string(value), string(g1.Value), "the broken variant: s1 reads the backup copy's old record")
				return
			}
			require.Equal(t, string(value), string(g1.Value), "s1, taking the primary for down, reads the write on the backup copy")
		})
	}
}
