package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/lock"
	"github.com/sessionlock/sessionlock/provider"
)

// FaultAbandon: an app server takes a session's lock at At and its
// request stops (no renewal: a crashed, hung or paused holder), for good
// or, with Resume, until the writes are over, when it commits (it must
// be told ErrLockLost: the lock was broken meanwhile), while the other app servers write the session lock-free
// every 0.3 to 0.6 lease for Dur (3 to 4 leases) and app server Probe
// waits for the lock. No node fails. It is not among FaultKinds (it
// would move every other kind's seeds); TestSimAbandon runs it, and
// -kinds abandon.
const FaultAbandon FaultKind = "abandon"

// InvStuckWhileWritten: a lock whose holder stopped renewing it is taken
// by a waiter within abandonBound of the waiter's start, whatever
// lock-free writes the session gets meanwhile (docs/protocol.md, "The
// stamp follows the lock, not the data").
const InvStuckWhileWritten Invariant = "stuck-while-written"

// errAbandoned is the error recorded for the abandoned holder's request:
// its increment never commits (an unknown outcome to the checker, which
// may or may not have happened; it does not).
var errAbandoned = errors.New("sim: the holder stopped for good, holding the lock")

// abandonBound is how long a waiter may wait for an abandoned lock: it
// sees the stamp unchanged for a lease from its first look and then
// breaks the lock; two leases leave one for the holder's own lease,
// plus two of the waiter's longest polls and a client timeout for the
// store operations.
func abandonBound(p Params) time.Duration {
	return 2*p.Lease + 2*lock.DefaultPollCap + p.Timeout
}

// newAbandonSchedule draws one abandoned lock: its session, its holder,
// the waiter (another app server), the instant within p.Horizon and how
// long the lock-free writes go on.
func newAbandonSchedule(rng *rand.Rand, p Params) Schedule {
	holder := rng.IntN(p.Apps)
	f := Fault{
		Kind:    FaultAbandon,
		At:      time.Duration(rng.Int64N(int64(p.Horizon))),
		Session: rng.IntN(p.Sessions),
		Apps:    []int{holder},
		Probe:   (holder + 1 + rng.IntN(p.Apps-1)) % p.Apps,
		Dur:     3*p.Lease + time.Duration(rng.Int64N(int64(p.Lease))),
		Resume:  rng.IntN(2) == 0,
	}
	return Schedule{f}
}

// abandon runs f: at f.At app f.Apps[0] takes session id's lock and its
// request stops; then, for f.Dur, the other app servers write the
// session lock-free in turn, 0.3 to 0.6 lease apart, and app f.Probe
// waits for the lock (an increment, from a tenth of a lease on). add
// records a request.
func (r *runner) abandon(f Fault, seed uint64, provs []*provider.Provider, id string, add func(*Request)) {
	time.Sleep(f.At - r.now())
	holder := f.Apps[0]
	rng := rand.New(rand.NewPCG(seed, 0xab4d0))
	hq := &Request{ID: fmt.Sprintf("abandon%d", f.Session), App: holder, Session: f.Session, Kind: ReqIncr}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), reqKey{}, hq), 2*r.p.Lease+2*time.Second)
	hq.Call = r.now()
	it, err := provs[holder].AcquireItem(ctx, id)
	cancel()
	hq.Ret = r.now()
	add(hq)
	h := FaultHit{Fault: f, Start: hq.Ret}
	if err != nil {
		// The lock was not taken (the session busy past the deadline):
		// nothing is abandoned, and the checker has nothing to check.
		hq.Err = err
		h.End = h.Start
		r.addHit(h)
		return
	}
	hq.Acq, hq.LockID = true, it.LockID
	hq.N, hq.W, hq.Seen = values(it.Data.Values)
	hq.Err = errAbandoned

	var others []int
	for a := range r.p.Apps {
		if a != holder {
			others = append(others, a)
		}
	}
	wrng := rand.New(rand.NewPCG(seed, rng.Uint64()))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; r.now() < h.Start+f.Dur; i++ {
			a := others[i%len(others)]
			lf := &Request{ID: fmt.Sprintf("abandon%d.lf%d", f.Session, i), App: a, Session: f.Session, Kind: ReqLockFree}
			r.request(provs[a], id, lf, nil)
			add(lf)
			time.Sleep(r.p.Lease*3/10 + time.Duration(rng.Int64N(int64(r.p.Lease*3/10))))
		}
	})
	wg.Go(func() {
		time.Sleep(r.p.Lease / 10)
		wq := &Request{ID: fmt.Sprintf("abandon%d.wait", f.Session), App: f.Probe, Session: f.Session, Kind: ReqIncr}
		r.request(provs[f.Probe], id, wq, wrng)
		add(wq)
	})
	if f.Resume {
		// A paused holder: it runs again half a lease after the writes
		// stopped and commits its increment.
		wg.Go(func() {
			time.Sleep(h.Start + f.Dur + r.p.Lease/2 - r.now())
			_ = it.Data.Values.Set("n", hq.N+1)
			_ = it.Data.Values.Set("w", hq.ID)
			ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), reqKey{}, hq), 2*r.p.Lease)
			defer cancel()
			hq.phase = "commit"
			hq.CommitCall = r.now()
			hq.Err = provs[holder].SetAndReleaseItemExclusive(ctx, id, it.Data, it.LockID, false)
			hq.Ret = r.now()
		})
	}
	wg.Wait()
	h.End = r.now()
	r.addHit(h)
}

// stuckWhileWritten checks each abandoned lock of session s: some other
// request must take the lock (a successful locking CAS of an increment
// or a final acquire, or the CAS that breaks it) within abandonBound of
// the waiter's start, or else the waiter was kept waiting although the
// holder had stopped renewing.
func stuckWhileWritten(r *Result, s int, reqs []*Request) []Violation {
	var out []Violation
	for _, h := range r.Hits {
		if h.Kind != FaultAbandon || h.Session != s {
			continue
		}
		var holder, waiter *Request
		writes := 0
		for _, rq := range reqs {
			switch rq.ID {
			case fmt.Sprintf("abandon%d", s):
				holder = rq
			case fmt.Sprintf("abandon%d.wait", s):
				waiter = rq
			}
		}
		if holder == nil || !holder.Acq || waiter == nil {
			continue
		}
		var locked time.Duration // when the holder's locking CAS returned
		for _, op := range holder.Ops {
			if op.Name == "cas" && op.Err == nil {
				locked = op.Ret
			}
		}
		deadline := waiter.Call + abandonBound(r.Params)
		taken := time.Duration(-1)
		for _, rq := range slices.Concat(reqs, r.Finals) {
			if rq == holder || rq.Session != s {
				continue
			}
			if rq.Kind == ReqLockFree && rq.Err == nil && rq.Call > locked && rq.Ret < deadline {
				writes++
			}
			for _, op := range rq.Ops {
				if op.Name == "cas" && op.Err == nil && op.Call > locked && (taken < 0 || op.Ret < taken) {
					taken = op.Ret
				}
			}
		}
		if taken < 0 || taken > deadline {
			when := "never"
			if taken >= 0 {
				when = fmt.Sprintf("at %v", taken)
			}
			out = append(out, Violation{Inv: InvStuckWhileWritten, Session: s, Detail: fmt.Sprintf(
				"the lock that %s (app %d) took at %v and abandoned was not taken by %v (waiter %s on app %d from %v, bound %v; %d acknowledged lock-free writes meanwhile; taken %s): %v",
				holder.ID, holder.App, locked, deadline, waiter.ID, waiter.App, waiter.Call, abandonBound(r.Params), writes, when, waiter.Err)})
		}
	}
	return out
}
