package memcached_test

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-r11 m3 and m4 (docs/replication.md §2.2, R11, "How the store
// keeps the promise"): a touching call's decisions give the copies they
// write the session's T; a read that follows a refused decision backs off.

// rawTouch sets key's TTL on addr to exp seconds with `mg <key> T<exp>`,
// as a touching call's common read does (the token stays).
func rawTouch(t testing.TB, addr, key string, exp int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Write([]byte("mg " + key + " T" + strconv.Itoa(exp) + "\r\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "HD"), line)
}

// deadPromiseShort leaves key's session (writtenSession, T = 60 s) with a
// dead decision's promise of epoch 4 on c1 and 20 s left on both copies.
func deadPromiseShort(t *testing.T, key string) ([]*mcserver.Server, []string) {
	servers, _, cands, _ := writtenSession(t, key)
	it := rawGet(t, cands[1], key)
	raw, err := envelope.Promised(it.value, 4)
	require.NoError(t, err)
	rawSet(t, cands[1], key, raw, 20, it.flags)
	rawTouch(t, cands[0], key, 20)
	return servers, cands
}

// TestTouchingReballotKeepsTouch (review-r11 m3): a session with a dead
// promise on c1 and 20 s left on both copies; another process's touch of
// both (its common read's T60) lands between this call's anomaly read and
// its promise (the first `ms <key>` on c1), keeping the tokens. A
// GetAndTouch re-ballots with T: its promise, fence and copy (and the
// completion after) give both copies 60 s, which they have before the
// call's own touch (its touchCopies). The code before
// (SetDecisionNoTouch) wrote the 20 s its read saw, setting the other
// touch back on both copies until the call's own touch. A plain Get keeps
// the t it read (it extends nothing): the other touch is set back until
// that call's own touch, which every touching call sends after the read
// that returns the session (here its rest: a GetAndTouch of another
// process).
func TestTouchingReballotKeepsTouch(t *testing.T) {
	const key = "touchballot"
	for _, c := range []struct {
		name   string
		touch  bool
		broken func(*memcached.Store)
		want   int64 // both copies' t once the re-ballot is complete
	}{
		{"GetAndTouch", true, nil, 60},
		{"GetAndTouch/code-before", true, memcached.SetDecisionNoTouch, 20},
		{"Get", false, nil, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			servers, cands := deadPromiseShort(t, key)
			var touched atomic.Bool
			dial := hookedDial(&cands[1], key, func() {
				for _, a := range cands[:2] {
					rawTouch(t, a, key, 60)
				}
				touched.Store(true)
			})
			s := promiseStore(t, servers, dial, c.broken)
			// The TTLs once the re-ballot and its completion are
			// stored: before a touching call's own touch, or after a
			// Get.
			var mu sync.Mutex
			var ttls []int64
			snap := func() {
				mu.Lock()
				defer mu.Unlock()
				ttls = ttls[:0]
				for _, a := range cands[:2] {
					ttls = append(ttls, rawGet(t, a, key).ttl)
				}
			}
			memcached.SetBeforeTouchCopies(s, func(string) { snap() })
			var err error
			if c.touch {
				_, err = s.GetAndTouch(context.Background(), key, time.Minute)
			} else {
				_, err = s.Get(context.Background(), key)
				snap()
			}
			require.NoError(t, err)
			require.True(t, touched.Load(), "the other touch landed before the promise")
			for _, a := range cands[:2] {
				env, _, prom := envAt(t, a, key)
				require.Equal(t, [3]uint32{5, 0, 1}, [3]uint32{env.E, uint32(env.P), uint32(env.Q)}, "re-balloted on %s", a)
				require.Zero(t, prom)
			}
			mu.Lock()
			got := append([]int64(nil), ttls...)
			mu.Unlock()
			require.Len(t, got, 2)
			for i, ttl := range got {
				require.InDelta(t, c.want, ttl, 2, "c%d's t after the re-ballot (the touch gave 60 s, the read saw 20 s)", i)
			}
			if !c.touch {
				// The touching call the touch came from returns only
				// after its own touch of both copies.
				other := promiseStore(t, servers, nil, nil)
				_, err := other.GetAndTouch(context.Background(), key, time.Minute)
				require.NoError(t, err)
				for _, a := range cands[:2] {
					require.InDelta(t, 60, rawGet(t, a, key).ttl, 2, "%s after the touching call", a)
				}
			}
		})
	}
}

// backoffs records a store's back-offs (SetBackoffHook): the refusal
// count n of each.
type backoffs struct {
	mu sync.Mutex
	ns []int
}

func (b *backoffs) hook(_ string, n int, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ns = append(b.ns, n)
}

func (b *backoffs) get() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.ns...)
}

// waitClosed waits for ch, at most 10 s (a bound, not a sleep).
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: not within 10 s", what)
	}
}

// TestReballotDuelBacksOff (review-r11 m4, review-ballot m3): two
// processes (two stores) re-ballot a session with a dead promise (epoch
// 4 on c1) in the crossed order that cancels both: A promises 5 on c1; B
// reads that promise and promises 6 on c1; A's fence of 5 lands on c0; A's
// copy onto c1 is refused (B's promise); B's fence onto c0 is refused
// (A's fence). Each call then backs off once before its next read (its
// first refusal: n = 1), and both converge on one re-ballot of epoch 7:
// both return the session, and both copies hold the same record, no
// promise. A lone re-ballot (nothing refused) backs off never. The code
// before (SetNoBackoff) read again at once: no back-off.
//
// The crossed round is forced by hooks; what follows is left to the
// scheduler, so the test shows the back-off's trigger and that the duel
// converges with it, not that it would not converge without it (a duel
// that lasts needs the two calls in lock-step, which a hook would force
// whatever the back-off).
func TestReballotDuelBacksOff(t *testing.T) {
	const key = "duel"
	for _, c := range []struct {
		name   string
		broken func(*memcached.Store)
	}{{"backoff", nil}, {"code-before", memcached.SetNoBackoff}} {
		t.Run(c.name, func(t *testing.T) {
			servers, _, cands, _ := writtenSession(t, key)
			promiseAt(t, cands[1], key, 4)

			t.Run("alone", func(t *testing.T) {
				// Nothing refused: no back-off. (Its own servers: the
				// duel below needs the dead promise.)
				servers, _, cands, _ := writtenSession(t, key+"alone")
				promiseAt(t, cands[1], key+"alone", 4)
				s := promiseStore(t, servers, nil, c.broken)
				var bo backoffs
				memcached.SetBackoffHook(s, bo.hook)
				_, err := s.Get(context.Background(), key+"alone")
				require.NoError(t, err)
				require.Equal(t, [3]uint32{5, 0, 1}, configAt(t, cands[0], key+"alone"), "re-balloted")
				require.Empty(t, bo.get(), "no decision refused, no back-off")
			})

			aPromised, bPromised, aFenced := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var aOnce, bOnce, fOnce sync.Once
			// A's second `ms <key>` on c1 is its copy, sent once its
			// fence on c0 was stored.
			dialA := hookedDialNth(&cands[1], key, 2, func() { fOnce.Do(func() { close(aFenced) }) })
			a := promiseStore(t, servers, dialA, c.broken)
			b := promiseStore(t, servers, nil, c.broken)
			var boA, boB backoffs
			memcached.SetBackoffHook(a, boA.hook)
			memcached.SetBackoffHook(b, boB.hook)
			memcached.SetAfterPromise(a, func(string) {
				aOnce.Do(func() {
					close(aPromised)
					waitClosed(t, bPromised, "B's promise")
				})
			})
			memcached.SetAfterPromise(b, func(string) {
				bOnce.Do(func() {
					close(bPromised)
					waitClosed(t, aFenced, "A's fence")
				})
			})
			var wg sync.WaitGroup
			var errA, errB error
			var valA, valB string
			wg.Go(func() {
				e, err := a.Get(context.Background(), key)
				errA, valA = err, string(e.Value)
			})
			waitClosed(t, aPromised, "A's promise")
			wg.Go(func() {
				e, err := b.Get(context.Background(), key)
				errB, valB = err, string(e.Value)
			})
			wg.Wait()
			require.NoError(t, errA, "A")
			require.NoError(t, errB, "B")
			require.Equal(t, "v2", valA)
			require.Equal(t, "v2", valB)
			p, _, pprom := envAt(t, cands[0], key)
			q, _, qprom := envAt(t, cands[1], key)
			require.Equal(t, p.ID(), q.ID(), "both copies hold the same record")
			require.False(t, p.Pending)
			require.GreaterOrEqual(t, p.E, uint32(7), "above B's promise of 6")
			require.Zero(t, pprom)
			require.Zero(t, qprom)
			requireSessionIs(t, servers, key, "v2", "another app server reads the same")
			gotA, gotB := boA.get(), boB.get()
			t.Logf("back-offs: A %v, B %v", gotA, gotB)
			if c.broken != nil {
				require.Empty(t, gotA, "the code before: no back-off")
				require.Empty(t, gotB, "the code before: no back-off")
				return
			}
			for _, got := range [][]int{gotA, gotB} {
				require.NotEmpty(t, got, "a refused decision is followed by a back-off")
				require.Equal(t, 1, got[0], "the first back-off follows the first refusal")
				for i, n := range got {
					require.Equal(t, i+1, n, "one back-off per refusal, counted")
				}
			}
		})
	}
}
