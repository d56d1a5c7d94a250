package harness

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// serverWrites records every write of an app server's provider that
// changed a record (Add, CompareAndSwap) and succeeded or has an unknown
// outcome, with its key, its call and the request whose context made it
// (its timing's ID, 0 for none). Its within is the rule before (tests
// only): the stamps of a holder were its app server's writes of the
// record's key from the request's arrival to its handler's end, whatever
// request made them.
type serverWrites struct {
	provider.Store
	mu     sync.Mutex
	writes []serverWrite
}

type serverWrite struct {
	key string
	at  int64 // Unix ns of the call
	req uint64
}

func (s *serverWrites) note(ctx context.Context, key string, at time.Time, err error) {
	if err != nil && !errors.Is(err, provider.ErrOutcomeUnknown) {
		return
	}
	var req uint64
	if t, ok := ctx.Value(timingKey{}).(*timing); ok {
		req = t.ID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, serverWrite{key: key, at: at.UnixNano(), req: req})
}

func (s *serverWrites) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	at := time.Now()
	cas, err := s.Store.Add(ctx, key, value, ttl)
	s.note(ctx, key, at, err)
	return cas, err
}

func (s *serverWrites) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	at := time.Now()
	out, err := s.Store.CompareAndSwap(ctx, key, value, cas, ttl)
	s.note(ctx, key, at, err)
	return out, err
}

// GetAndTouch and ReadsSettleOutcomes keep the memory store's optional
// interfaces, so that the provider behaves as it does over it.
func (s *serverWrites) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	return s.Store.(provider.GetAndToucher).GetAndTouch(ctx, key, ttl)
}

func (s *serverWrites) ReadsSettleOutcomes() bool { return true }

// within returns the calls of the writes of key in [from, to]: the
// stamps of the rule before.
func (s *serverWrites) within(key string, from, to int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, w := range s.writes {
		if w.key == key && w.at >= from && w.at <= to {
			out = append(out, w.at)
		}
	}
	return out
}

// of returns the calls of request req's writes up to to.
func (s *serverWrites) of(req uint64, to int64) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, w := range s.writes {
		if w.req == req && w.at <= to {
			out = append(out, w.at)
		}
	}
	return out
}

// withStamps returns ctx carrying a new request's stamps.
func withStamps(ctx context.Context) (context.Context, *stamps) {
	s := &stamps{}
	return context.WithValue(ctx, stampsKey{}, s), s
}

// TestExclusionCountsOwnWritesOnly: a paused holder's lease runs from
// the call of its own last write of the record (its lock's, or a
// renewal's), not from another request's lock-free write of the same
// app server meanwhile, which renews no lease (waiters watch the lock's
// stamp, which a lock-free write leaves as it was). The rule before
// (stamps per app server and key, serverWrites.within) counted such a
// write as the holder's renewal and reported a takeover after the
// holder's lease as two holders (TestRealFaults/pause-app, a make test
// of the sixth session of 2026-12-01: "app 2 slow (handler 150 to 2656
// ms, status 409) and app 0 incr (handler from 1651 ms)"). Writes made
// through the real provider; a takeover within the holder's lease, or
// within a lease of its renewal, is still two holders.
func TestExclusionCountsOwnWritesOnly(t *testing.T) {
	const lease = 1500 * time.Millisecond
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	server := &serverWrites{Store: ms}
	p, err := provider.New(stamped(server), provider.Config{Lease: lease})
	require.NoError(t, err)
	ctx := context.Background()
	id, err := session.NewID()
	require.NoError(t, err)
	require.NoError(t, p.SetAndReleaseItemExclusive(ctx, id, p.CreateNewStoreData(0), 0, true))
	key, err := p.Key(id)
	require.NoError(t, err)

	// The holder takes the lock; another request of its app server then
	// writes the session lock-free.
	arrive := time.Now().UnixNano()
	hctx, held := withStamps(ctx)
	item, err := p.AcquireItem(hctx, id)
	require.NoError(t, err)
	fctx, free := withStamps(ctx)
	lf := p.LockFree()
	fitem, err := lf.GetItemExclusive(fctx, id)
	require.NoError(t, err)
	require.NoError(t, fitem.Data.Values.Set(keyFreePref+"1", 1))
	require.NoError(t, lf.SetAndReleaseItemExclusive(fctx, id, fitem.Data, fitem.LockID, false))

	end := time.Now().Add(time.Hour).UnixNano()
	require.Len(t, held.within(arrive, end), 1, "the holder's lock")
	require.Len(t, free.within(arrive, end), 1, "the lock-free write")
	lock, other := held.within(arrive, end)[0], free.within(arrive, end)[0]
	require.Greater(t, other-lock, int64(1), "the lock-free write after the lock")
	before := server.within(key, arrive, end)
	require.Len(t, before, 2, "the rule before: both writes the holder's")

	// twoHolders analyses the paused holder (app 2, fenced) with stamps
	// and a takeover by app 0 at takeover.
	twoHolders := func(stamps []int64, takeover int64) int {
		o := observations{cfg: Config{Lease: lease}.withDefaults(), sids: []string{"A"}, timings: map[uint64]timing{}, start: arrive}
		o.requests = append(o.requests, &request{ID: 1, Route: RouteSlow, SID: "A", Status: 409, Reason: "status_409"},
			&request{ID: 2, Route: RouteIncr, SID: "A", Status: 200, Value: 1})
		o.timings[1] = timing{ID: 1, Proc: 2, Route: RouteSlow, SID: "A", Arrive: arrive, Start: lock + 1, End: takeover + int64(time.Second), Done: end, Status: 409, Stamps: stamps}
		o.timings[2] = timing{ID: 2, Route: RouteIncr, SID: "A", Arrive: lock, Start: takeover, End: takeover + 10*msNs, Done: takeover + 10*msNs, Status: 200, Stamps: []int64{takeover}}
		o.states = map[string]sessionState{"A": {Found: true, Counter: 1}}
		return analyze(o).ExclusionViolations
	}
	after := lock + int64(lease) + (other-lock)/2 // past the holder's lease, within a lease of the lock-free write
	require.Zero(t, twoHolders(held.within(arrive, end), after), "a takeover past the holder's lease")
	require.Equal(t, 1, twoHolders(before, after), "the rule before: the lock-free write counted as a renewal")
	within := lock + int64(lease) - msNs
	require.Equal(t, 1, twoHolders(held.within(arrive, end), within), "a takeover within the holder's lease")
	require.Equal(t, 1, twoHolders(before, within), "the rule before")

	// The holder's own renewal after the lock-free write lengthens its
	// lease: the same takeover is then two holders.
	require.NoError(t, p.RenewLease(hctx, id, item.LockID))
	require.Len(t, held.within(arrive, end), 2, "the lock and the renewal")
	require.Equal(t, 1, twoHolders(held.within(arrive, end), after), "a takeover within a lease of the renewal")
}

// TestRenewalsStamped: an exclusive request's stamps (timing.Stamps) are
// the calls of the writes made with its context through the real
// middleware and provider: its lock's and the lease renewals of
// KeepLease (made with context.WithoutCancel of it), and none of another
// request's lock-free write of the same session on the same app server
// while it held the lock, which the rule before (serverWrites.within)
// counted.
func TestRenewalsStamped(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	server := &serverWrites{Store: ms}
	a, err := newApp(appConfig{Lease: 600 * time.Millisecond, Wait: "adaptive"}, server, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(a.mux)
	defer srv.Close()
	b := newBrowser(0, Config{}.withDefaults())
	ctx := context.Background()
	first := b.send(ctx, srv.URL, RouteInit, 1, -1)
	require.True(t, first.ok(), first.Reason)
	key, err := a.prov.Key(first.SID)
	require.NoError(t, err)

	// Request 2 holds the lock until its client goes away.
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held := make(chan *request, 1)
	go func() { held <- b.send(hctx, srv.URL, RouteHold, 2, -1) }()
	require.Eventually(t, func() bool { return slices.Contains(a.state().Holding, first.SID) },
		10*time.Second, 5*time.Millisecond, "the hold request's handler never ran")
	// Request 3 writes the session lock-free meanwhile.
	free := b.send(ctx, srv.URL, RouteFree, 3, -1)
	require.True(t, free.ok(), free.Reason)
	// Two renewals (a third of a lease apart) besides the lock.
	never := time.Now().Add(time.Hour).UnixNano()
	require.Eventually(t, func() bool { return len(server.of(2, never)) >= 3 },
		10*time.Second, 5*time.Millisecond, "no two renewals of the hold request's lease")
	cancel()
	<-held

	var hold timing
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		i := slices.IndexFunc(a.timings, func(x timing) bool { return x.ID == 2 })
		if i >= 0 {
			hold = a.timings[i]
		}
		return i >= 0
	}, 10*time.Second, 5*time.Millisecond, "the hold request's timing")
	require.True(t, hold.ran())

	own := server.of(2, hold.End)
	require.GreaterOrEqual(t, len(own), 3, "the lock and two renewals")
	require.Len(t, hold.Stamps, len(own), "the stamps: the request's own writes, %d", len(own))
	renewals := 0
	for _, s := range hold.Stamps {
		if s > hold.Start {
			renewals++
		}
	}
	require.GreaterOrEqual(t, renewals, 2, "renewals stamped while the handler ran")

	freeWrites := server.of(3, never)
	require.NotEmpty(t, freeWrites, "the lock-free request wrote nothing; the test proves nothing")
	for _, w := range freeWrites {
		require.True(t, w >= hold.Arrive && w <= hold.End, "the lock-free write while the lock was held")
	}
	require.Len(t, server.within(key, hold.Arrive, hold.End), len(hold.Stamps)+len(freeWrites),
		"the rule before: the lock-free write counted as the holder's")
}
