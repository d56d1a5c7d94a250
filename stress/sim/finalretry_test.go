package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// TestFinalRetriesUnknownOutcome replays seed 553 of BackupOn's expiry
// kind, where a final AcquireItem writes from a cached token after the
// primary's copy expired and before the backup's. Until BackupOn sent a
// write's backup half only after its primary half took it (first session
// of 2026-12-03, bocontract), the write stayed on the backup copy and
// returned ErrOutcomeUnknown, which BackupOn's provider does not settle:
// the final had to retry it (runner.final) to take the lock a lease
// later, and with the retry off (Params.noFinalRetry, the checker before
// it) the seed was reported stuck in about 9 runs of 10; the code before
// (715fdde) fails this test at its first run (a final retried; with the
// retry off, one stuck). Now the primary
// refuses it ("not found") and nothing is written anywhere: no final
// retries, and none is stuck even without the retry, in 10 runs each. The
// retry stays for the unknown outcomes BackupOn still gives (a primary
// that times out). On the witness scheme, whose reads settle outcomes, no
// final retries either.
func TestFinalRetriesUnknownOutcome(t *testing.T) {
	const seed, runs = 553, 10
	p := DefaultParams()
	p.Backup, p.Kinds = memcached.BackupOn, []FaultKind{FaultExpiry}
	noRetry := p
	noRetry.noFinalRetry = true
	for i := 0; i < runs; i++ {
		for _, q := range []Params{p, noRetry} {
			r := runSeed(t, seed, q)
			if r.Has(InvStuck) {
				t.Fatalf("seed %d (retry off: %v), run %d: a final is stuck:\n%s", seed, q.noFinalRetry, i, report(r))
			}
			for _, f := range r.Finals {
				if f.Retried != nil {
					t.Errorf("seed %d, run %d: %s retried after %v: its write from a cached token should be refused by the primary, with nothing written", seed, i, f.ID, f.Retried)
				}
			}
		}
	}

	r := runSeed(t, seed, DefaultParams())
	for _, f := range r.Finals {
		if f.Retried != nil {
			t.Errorf("the witness scheme settles outcomes, yet %s retried after %v", f.ID, f.Retried)
		}
	}
}

// TestRetriedFinalExpiredRead checks that a retried final's read is
// checked as any other: session 0 (own timeout 1 s) is read at 1 s, found
// gone at 3 s, then a final's first AcquireItem writes from a cached
// token (a CAS of unknown outcome, which may revive the session on a copy
// that outlived the others) and its retry reads it back. That read is an
// expired-session read. Before readAt looked at the retry only, the first
// attempt's CAS hid the retry's read.
func TestRetriedFinalExpiredRead(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	unknown := fmt.Errorf("the primary lost the key: %w", provider.ErrOutcomeUnknown)
	final := &Request{ID: "final0.0", Session: 0, Kind: ReqFinal, Call: ms(3100), Ret: ms(4700),
		Acq: true, Seen: true, N: 1, W: "r0", Retried: unknown, RetryOp: 1,
		Ops: []StoreOp{
			{Name: "cas", Call: ms(3100), Ret: ms(3102), Err: unknown},
			{Name: "get", Call: ms(3103), Ret: ms(3104)},
			{Name: "cas", Call: ms(4650), Ret: ms(4652)},
			{Name: "release-cas", Call: ms(4660), Ret: ms(4662)},
		}}
	res := &Result{
		Params:   Params{Sessions: 1, Lease: 1500 * time.Millisecond},
		Timeouts: []time.Duration{time.Second},
		Requests: []*Request{
			{ID: "r0", Session: 0, Kind: ReqRead, Call: ms(1000), Ret: ms(1002), Seen: true, N: 1, W: "init",
				Ops: []StoreOp{{Name: "get", Call: ms(1000), Ret: ms(1001)}}},
			{ID: "r1", Session: 0, Kind: ReqRead, Call: ms(3000), Ret: ms(3002), Err: provider.ErrNotFound,
				Ops: []StoreOp{{Name: "get", Call: ms(3000), Ret: ms(3001), Err: provider.ErrNotFound}}},
		},
		Finals: []*Request{final},
	}
	at, ok := readAt(final)
	if !ok || at != ms(3103) {
		t.Fatalf("readAt of the retried final = %v, %v: want the retry's get at %v", at, ok, ms(3103))
	}
	Check(res)
	if !res.Has(InvExpiredRead) {
		t.Errorf("a retried final read the session after r1 found it gone: no %s in %v", InvExpiredRead, res.Violations)
	}
	if res.Has(InvStuck) {
		t.Errorf("the retry succeeded, yet: %v", res.Violations)
	}

	// Its retry failing too: stuck, with both errors.
	final.Err, final.Seen, final.Acq = fmt.Errorf("store unavailable: %w", provider.ErrOutcomeUnknown), false, false
	Check(res)
	if !res.Has(InvStuck) {
		t.Errorf("a final whose retry failed too is not reported stuck: %v", res.Violations)
	}
}
