package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/stress/internal/counterlin"
)

// Invariant names a guarantee of docs/protocol.md the checker verifies.
type Invariant string

// The invariants checked on every run.
const (
	// InvLostUpdate: every acknowledged increment is counted once: no two
	// acknowledged increments read the same value, and the final value
	// descends from every acknowledged one.
	InvLostUpdate Invariant = "lost-update"
	// InvTwoHolders: never two holders whose leases are both valid.
	InvTwoHolders Invariant = "two-holders"
	// InvFailedApplied: a write reported as not written (ErrLockLost,
	// ErrNotFound, ErrCASConflict) was not applied.
	InvFailedApplied Invariant = "failed-write-applied"
	// InvSessionLost: a session that was never removed and never idle
	// past its timeout is found.
	InvSessionLost Invariant = "session-lost"
	// InvLockFreeLost: acknowledged lock-free keys are present.
	InvLockFreeLost Invariant = "lock-free-key-lost"
	// InvNotLinearizable: counter reads are linearizable (porcupine).
	InvNotLinearizable Invariant = "reads-not-linearizable"
	// InvStuck: nothing is stuck a lease after the faults healed.
	InvStuck Invariant = "stuck"
	// InvDiverged: after the faults healed every app server reads the
	// same session.
	InvDiverged Invariant = "copies-diverged"
	// InvExpiredRead: a session that expired (no operation set its
	// expiry for longer than its own timeout plus the store's rounding,
	// docs/protocol.md I4) is never read back with its old values, nor
	// after a read found it gone (an expired session never comes back
	// from a copy that outlived the others).
	InvExpiredRead Invariant = "expired-session-read"
)

// Invariants lists them in the order reports print them.
var Invariants = []Invariant{InvLostUpdate, InvTwoHolders, InvFailedApplied, InvSessionLost, InvLockFreeLost, InvNotLinearizable, InvStuck, InvDiverged, InvExpiredRead, InvStuckWhileWritten}

// Violation is one broken invariant, with what shows it.
type Violation struct {
	Inv     Invariant
	Session int
	Detail  string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s (session %d): %s", v.Inv, v.Session, v.Detail)
}

// Has reports whether the run broke inv.
func (r *Result) Has(inv Invariant) bool {
	for _, v := range r.Violations {
		if v.Inv == inv {
			return true
		}
	}
	return false
}

// Check runs the history checker on a finished run and stores its
// violations in r.Violations.
func Check(r *Result) []Violation {
	var out []Violation
	add := func(inv Invariant, s int, format string, args ...any) {
		out = append(out, Violation{Inv: inv, Session: s, Detail: fmt.Sprintf(format, args...)})
	}
	for s := range r.Params.Sessions + len(r.Creations) {
		var reqs []*Request
		for _, rq := range r.Requests {
			if rq.Session == s {
				reqs = append(reqs, rq)
			}
		}
		var finals []*Request
		for _, rq := range r.Finals {
			if rq.Session == s {
				finals = append(finals, rq)
			}
		}
		byID := map[string]*Request{}
		for _, rq := range reqs {
			byID[rq.ID] = rq
		}

		// No session lost: nothing is removed and nothing idles past its
		// 20-minute timeout, so not-found is a loss; a session with a
		// short own timeout (FaultExpiry) is lost when found gone before
		// its timeout ran out since an operation surely set its expiry.
		lost := false
		var timeout time.Duration
		if s < len(r.Timeouts) {
			timeout = r.Timeouts[s]
		}
		all := append(slices.Clone(reqs), finals...)
		// A session created during the run exists from its creation's
		// acknowledgement, or from the first request that read it (a
		// creation of unknown outcome that landed); before that, "not
		// found" is no loss. A creation reported as not done must not
		// have been.
		from := time.Duration(-1)
		if c := r.creation(s); c != nil {
			from = time.Duration(1<<62 - 1)
			if c.Req.Err == nil {
				from = c.Req.Ret
			}
			for _, rq := range all {
				if rq.Seen && rq.Ret < from {
					from = rq.Ret
				}
			}
			if i := slices.IndexFunc(all, func(rq *Request) bool { return rq.Seen }); i >= 0 && outcome(c.Req.Err) == Failed {
				add(InvFailedApplied, s, "creation %s failed with %q but %s read the session", c.Req.ID, c.Req.Err, all[i].ID)
			}
		}
		for _, rq := range all {
			if !errors.Is(rq.Err, provider.ErrNotFound) || rq.Call < from {
				continue
			}
			lost = true
			if timeout == 0 {
				add(InvSessionLost, s, "%s %s at %v: %v", rq.Kind, rq.ID, rq.Ret, rq.Err)
				break
			}
			if alive := aliveUntil(r, all, rq.Call, timeout); rq.Ret < alive {
				add(InvSessionLost, s, "%s %s found it gone at %v, before %v (own timeout %v after the last operation that surely set its expiry)", rq.Kind, rq.ID, rq.Ret, alive, timeout)
				break
			}
		}
		if timeout > 0 {
			out = append(out, expiredReads(r, s, all, timeout)...)
		}

		// Every acknowledged increment counted once.
		children := map[string][]string{}
		for _, rq := range reqs {
			if rq.Kind == ReqIncr && rq.Acq && rq.Err == nil {
				children[rq.W] = append(children[rq.W], rq.ID)
			}
		}
		for parent, cs := range children {
			if len(cs) > 1 {
				add(InvLostUpdate, s, "acknowledged increments %v all read n from write %s", cs, parent)
			}
		}
		// A write reported as not written was not applied: nobody saw it.
		seen := map[string]string{}
		for _, rq := range append(slices.Clone(reqs), finals...) {
			if rq.Seen {
				seen[rq.W] = rq.ID
			}
		}
		for _, rq := range reqs {
			if rq.Kind == ReqIncr && rq.Acq && outcome(rq.Err) == Failed {
				if by, ok := seen[rq.ID]; ok {
					add(InvFailedApplied, s, "increment %s failed with %q but %s read its value", rq.ID, rq.Err, by)
				}
			}
		}
		// Final state: every app server reads the same, and the chain of
		// writes it descends from holds every acknowledged increment.
		var fin *Request
		for _, f := range finals {
			if f.Err != nil && !errors.Is(f.Err, provider.ErrNotFound) {
				retried := ""
				if f.Retried != nil {
					retried = fmt.Sprintf("; a retry, after %v", f.Retried)
				}
				add(InvStuck, s, "%s on app %d after the faults healed: %v (%v%s)", f.ID, f.App, f.Err, f.Ret-f.Call, retried)
				continue
			}
			if !f.Seen {
				continue
			}
			if fin == nil {
				fin = f
			} else if f.W != fin.W || f.N != fin.N {
				add(InvDiverged, s, "app %d reads n=%d from %s, app %d reads n=%d from %s", fin.App, fin.N, fin.W, f.App, f.N, f.W)
			}
		}
		if fin != nil && !lost {
			chain := map[string]bool{}
			for w, guard := fin.W, 0; w != "init" && guard <= len(reqs); guard++ {
				chain[w] = true
				rq := byID[w]
				if rq == nil {
					break
				}
				w = rq.W
			}
			var missing []string
			acks := 0
			for _, rq := range reqs {
				if rq.Kind == ReqIncr && rq.Acq && rq.Err == nil {
					acks++
					if !chain[rq.ID] {
						missing = append(missing, rq.ID)
					}
				}
			}
			if len(missing) > 0 {
				add(InvLostUpdate, s, "final n=%d (from %s) lost %d of %d acknowledged increments: %v", fin.N, fin.W, len(missing), acks, missing)
			}
			// Acknowledged lock-free keys are present.
			have := map[string]bool{}
			for _, k := range fin.LFKeys {
				have[k] = true
			}
			for _, rq := range reqs {
				if rq.Kind == ReqLockFree && rq.Err == nil && !have[rq.Key] {
					add(InvLockFreeLost, s, "acknowledged lock-free key %s missing from the final session", rq.Key)
				}
			}
		}
		out = append(out, stuckWhileWritten(r, s, reqs)...)
		out = append(out, twoHolders(s, reqs, r.Params.Lease)...)
		if !lost {
			if ok, why := linearizable(reqs); !ok {
				add(InvNotLinearizable, s, "%s", why)
			}
		}
	}
	r.Violations = out
	return out
}

// creation returns session s's Creation if it was created during the run
// (Params.Creates), else nil.
func (r *Result) creation(s int) *Creation {
	if i := s - r.Params.Sessions; i >= 0 && i < len(r.Creations) {
		return r.Creations[i]
	}
	return nil
}

// twoHolders finds a lock taken while another holder's lease was surely
// valid: B's locking CAS returned before A's lease could have run out (A's
// last successful stamp-changing CAS started less than a lease earlier)
// and before A started to release it, and started after A's locking CAS
// returned.
func twoHolders(s int, reqs []*Request, lease time.Duration) []Violation {
	type hold struct {
		rq        *Request
		lock      StoreOp // the CAS that took the lock
		stamps    []StoreOp
		releaseAt time.Duration // commit started; max when none
	}
	var holds []hold
	for _, rq := range reqs {
		if rq.Kind != ReqIncr || !rq.Acq {
			continue
		}
		h := hold{rq: rq, releaseAt: time.Duration(1<<62 - 1)}
		for _, op := range rq.Ops {
			switch {
			case op.Err == nil && op.Name == "renew-cas":
				h.stamps = append(h.stamps, op)
			case op.Name != "cas" && op.Name != "add":
			case op.Err == nil || errors.Is(op.Err, provider.ErrOutcomeUnknown):
				// The lock's write: a successful one, or one of unknown
				// outcome that the provider settled by reading it back
				// (the request acquired): the lease runs from its call
				// at the latest, so counting it never hides two holders.
				h.lock = op
				h.stamps = append(h.stamps, op)
			}
		}
		if rq.CommitCall > 0 {
			h.releaseAt = rq.CommitCall
		}
		if h.lock.Ret == 0 {
			continue
		}
		holds = append(holds, h)
	}
	var out []Violation
	for _, a := range holds {
		for _, b := range holds {
			if a.rq == b.rq || b.lock.Call <= a.lock.Ret {
				continue
			}
			var validTo time.Duration
			for _, st := range a.stamps {
				if st.Ret <= b.lock.Call {
					validTo = max(validTo, st.Call+lease)
				}
			}
			if b.lock.Ret < min(validTo, a.releaseAt) {
				out = append(out, Violation{Inv: InvTwoHolders, Session: s, Detail: fmt.Sprintf(
					"%s (app %d, lock %d) took the lock at %v while %s (app %d, lock %d) held a lease valid until at least %v",
					b.rq.ID, b.rq.App, b.rq.LockID, b.lock.Ret, a.rq.ID, a.rq.App, a.rq.LockID, min(validTo, a.releaseAt))})
				return out
			}
		}
	}
	return out
}

// linearizable checks the session's counter history (counterlin): reads
// that saw the counter, acknowledged increments, and increments of unknown
// outcome as ones that may or may not have happened. A history porcupine
// cannot decide within 5 s passes, as before the check moved to counterlin.
func linearizable(reqs []*Request) (bool, string) {
	var hist []counterlin.Op
	for _, rq := range reqs {
		switch {
		case rq.Kind == ReqRead && rq.Err == nil && rq.Seen:
			hist = append(hist, counterlin.Op{Read: true, N: rq.N, Call: int64(rq.Call), Return: int64(rq.Ret)})
		case rq.Kind == ReqIncr && rq.Acq:
			switch outcome(rq.Err) {
			case Acked:
				hist = append(hist, counterlin.Op{N: rq.N, Call: int64(rq.Call), Return: int64(rq.Ret)})
			case Unknown:
				hist = append(hist, counterlin.Op{N: rq.N, Maybe: true, Call: int64(rq.Call), Return: counterlin.Never})
			case Failed:
				// Reported as not written: it must not be in the history.
			}
		}
	}
	if counterlin.Check(hist, 5*time.Second) == counterlin.NotLinearizable {
		var reads []string
		for _, rq := range reqs {
			if rq.Kind == ReqRead && rq.Seen {
				reads = append(reads, fmt.Sprintf("%s:%d", rq.ID, rq.N))
			}
		}
		return false, "no linearization of " + fmt.Sprint(len(hist)) + " counter operations; reads " + strings.Join(reads, " ")
	}
	return true, ""
}

// expiryBound is how long an item given a TTL of timeout may live: the
// store sends whole seconds rounded up, plus two (store/memcached
// expiration.go, docs/protocol.md I4), so n < timeout + 3 s, and the
// node's clock reaches the item's expiration at most n ticks after it was
// stored, each at most 1 s + maxClockDrift apart (clockModel).
func expiryBound(timeout time.Duration) time.Duration {
	return (timeout + 3*time.Second) / time.Second * (time.Second + maxClockDrift)
}

// setsExpiry reports whether a store operation sets the session's
// expiry (a CAS, an add or a touch, in any phase of a request).
func setsExpiry(name string) bool {
	return strings.HasSuffix(name, "cas") || strings.HasSuffix(name, "add") || strings.HasSuffix(name, "touch") || strings.HasSuffix(name, "gat")
}

// aliveUntil is the instant before which the session must be present to
// an observation starting at x: a timeout after the latest operation
// that surely set its expiry before x (one that succeeded and returned
// before x; its creation counts as one).
func aliveUntil(r *Result, all []*Request, x, timeout time.Duration) time.Duration {
	alive := timeout // created at or after instant 0
	for _, rq := range all {
		for _, op := range rq.Ops {
			if op.Err == nil && setsExpiry(op.Name) && op.Ret <= x {
				alive = max(alive, op.Call+timeout)
			}
		}
	}
	return alive
}

// goneAfter is the instant after which the session must be absent to an
// observation starting at x: a timeout plus the store's rounding after the
// latest operation that may have set its expiry before x (any that started
// before x, whatever it returned).
func goneAfter(r *Result, all []*Request, x, timeout time.Duration) time.Duration {
	gone := r.Created + expiryBound(timeout)
	for _, rq := range all {
		for _, op := range rq.Ops {
			if setsExpiry(op.Name) && op.Call < x {
				gone = max(gone, op.Ret+expiryBound(timeout))
			}
		}
	}
	return gone
}

// readAt is when rq read the values it saw, at the earliest: the start of
// its last read before its first operation that sets the expiry, in the
// attempt that returned them (a retried final's retry, from RetryOp).
func readAt(rq *Request) (time.Duration, bool) {
	at, ok := time.Duration(0), false
	for _, op := range rq.Ops[rq.RetryOp:] {
		if strings.HasSuffix(op.Name, "gat") {
			return op.Call, true // reads and sets the expiry at once
		}
		if setsExpiry(op.Name) {
			break
		}
		if strings.HasSuffix(op.Name, "get") {
			at, ok = op.Call, true
		}
	}
	return at, ok
}

// expiredReads finds reads of a session with a short own timeout that
// saw its values after it surely expired, or after a request had found
// it gone.
func expiredReads(r *Result, s int, all []*Request, timeout time.Duration) []Violation {
	var out []Violation
	for _, rq := range all {
		if !rq.Seen {
			continue
		}
		at, ok := readAt(rq)
		if !ok {
			continue
		}
		if gone := goneAfter(r, all, at, timeout); at > gone {
			out = append(out, Violation{Inv: InvExpiredRead, Session: s, Detail: fmt.Sprintf(
				"%s %s read n=%d (from %s) at %v, after the session expired at %v at the latest (own timeout %v)", rq.Kind, rq.ID, rq.N, rq.W, at, gone, timeout)})
			return out
		}
		for _, nf := range all {
			if errors.Is(nf.Err, provider.ErrNotFound) && nf.Ret < at {
				out = append(out, Violation{Inv: InvExpiredRead, Session: s, Detail: fmt.Sprintf(
					"%s %s read n=%d (from %s) at %v, after %s found the session gone at %v", rq.Kind, rq.ID, rq.N, rq.W, at, nf.ID, nf.Ret)})
				return out
			}
		}
	}
	return out
}
