package memcached_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// F2's open row (review-oc31; docs/replication.md, D1): a witness
// append stored on a data copy whose touch (`mg <key> c f T<T>`) then
// found another item than the append made (strayed: another token), not
// a blank, counted the copy stored with the append's token, whatever
// that item held. The model's rule (stress/replmodel, appendTouched,
// rStray): the copy is stored only when the item holds this write (a
// reader's re-stamp: the handle then carries the item's token) or a
// record built on it; otherwise the write was replaced there, as a gone
// copy in R3's table save that it never makes "not found": P stored and
// Q replaced completes Q; every other row with a replaced copy is
// ErrOutcomeUnknown. goneDialer runs each case's change of a copy
// between its append and the append's touch, on both append paths.
// SetAppendStrayStored is the code before; SetAppendReplacedAsGone a
// replaced copy taken for a gone one in every row.

// strayEnv is witGoneEnv with the record read before the append.
type strayEnv struct {
	*witGoneEnv
	en    provider.Entry
	next  rec.Record // the append's record
	delta []byte
	pre   [2]rawItem // the data copies before the append
}

// nextRecord returns a record written over item (a data item's bytes),
// of its configuration and the version after it, with nonce and the
// change change makes of item's record.
func nextRecord(t *testing.T, item []byte, nonce uint64, change func(*rec.Record)) []byte {
	t.Helper()
	env, payload, err := envelope.Decode(item)
	require.NoError(t, err)
	cur, err := rec.Decode(payload)
	require.NoError(t, err)
	next := cur
	next.Seq++
	change(&next)
	delta, ok := rec.Delta(&cur, &next)
	require.True(t, ok)
	return env.Next(nonce, env.Timeout).Wrap(append(append([]byte(nil), payload...), delta...))
}

// foreignRecord returns a record of pre's configuration and version after
// it, not built on the append (another writer's write of the same
// version: another nonce, another lock id).
func foreignRecord(t *testing.T, pre []byte) []byte {
	return nextRecord(t, pre, 0x5eed5eed, func(r *rec.Record) {
		r.Locked, r.LockID, r.LockedAt = true, r.LockID+1000, time.Now()
	})
}

// strangerRecord returns a record of pre's configuration two versions
// after it, built on a rival of the append (another writer's write of
// the append's version, then its next): not built on the append; of the
// rival's line (rivalLine: the tie row beside a refused copy).
func strangerRecord(t *testing.T, pre []byte) []byte {
	return nextRecord(t, foreignRecord(t, pre), 0x57a2657a, func(r *rec.Record) { r.Locked = false })
}

// withEnvelope returns b (a data item's bytes) with its envelope changed
// by change.
func withEnvelope(t *testing.T, b []byte, change func(*envelope.Envelope)) []byte {
	t.Helper()
	env, payload, err := envelope.Decode(b)
	require.NoError(t, err)
	change(&env)
	return env.Wrap(payload)
}

// laterRecord returns a record of pre's configuration n versions after
// it, built on a rival of the append (foreignRecord), each later version
// another writer's.
func laterRecord(t *testing.T, pre []byte, n int) []byte {
	b := foreignRecord(t, pre)
	for i := 1; i < n; i++ {
		b = nextRecord(t, b, 0x57a26500+uint64(i), func(r *rec.Record) { r.Locked = false })
	}
	return b
}

// builtOnRecord returns the next version of now (a data item holding the
// append's record): a record built on the append (a release of its lock).
func builtOnRecord(t *testing.T, now []byte) []byte {
	return nextRecord(t, now, 0xb0170b17, func(r *rec.Record) { r.Locked = false })
}

// lockedByRec reports whether item is a data copy locked by id.
func lockedByRec(t *testing.T, it rawItem, id uint64) bool {
	t.Helper()
	if !it.found || it.flags != 1 {
		return false
	}
	_, payload, err := envelope.Decode(it.value)
	require.NoError(t, err)
	r, err := rec.Decode(payload)
	require.NoError(t, err)
	return r.Locked && r.LockID == id
}

// strayCase: what happens to each data copy (c0 = P, c1 = Q) between
// its append and the append's touch ("" nothing): "foreign" (another
// record of the configuration, not built on the write, replaces it),
// "gone" (deleted), "restamp" (the append's own item re-stamped: the same
// bytes, a new token, as a reader's R4.4 or R9), "later" (a record built
// on the write replaces it). check judges the append's outcome; broken
// lists the variants that must fail it.
type strayCase struct {
	name   string
	at     [2]string
	check  func(t *testing.T, e *strayEnv, id uint64, err error) error
	broken []string
}

// strayVariants are the broken variants by name.
var strayVariants = map[string]func(*memcached.Store){
	"before":      memcached.SetAppendStrayStored,
	"as-gone":     memcached.SetAppendReplacedAsGone,
	"fix":         func(*memcached.Store) {},
	"untouch0":    memcached.SetAppendNoUntouch,
	"tie-unknown": memcached.SetAppendTieUnknown,
	"tie-any":     memcached.SetAppendTieAnyCopy,
	"tie-line":    memcached.SetAppendTieLineUnknown,
	"tie-wide":    memcached.SetAppendTieWide,
	"rolled-back": memcached.SetRolledBackAsReplaced,
}

func runStray(t *testing.T, c strayCase) {
	for _, twoTrips := range []bool{false, true} {
		for _, v := range append([]string{"fix"}, c.broken...) {
			name := map[bool]string{false: "pipelined", true: "two trips"}[twoTrips]
			if v != "fix" {
				name += "/" + v
			}
			t.Run(name, func(t *testing.T) {
				err := strayRun(t, c, twoTrips, strayVariants[v])
				switch {
				case v != "fix" && err == nil:
					t.Fatalf("the broken variant %s passed the check", v)
				case v != "fix":
					t.Logf("the broken variant %s fails: %v", v, err)
				case err != nil:
					t.Fatal(err)
				}
			})
		}
	}
}

// strayRun reads the session through s (a handle just read), arms c's
// changes, appends a lock and returns check's verdict.
func strayRun(t *testing.T, c strayCase, twoTrips bool, variant func(*memcached.Store)) error {
	e := &strayEnv{witGoneEnv: newWitGoneEnv(t, twoTrips, false)}
	variant(e.s)
	e.en, e.next, e.delta = readLocking(t, e.s, e.key)
	for i := range 2 {
		e.pre[i] = rawGet(t, e.cands[i], e.key)
		require.True(t, e.pre[i].found, "c%d before the append", i)
	}
	var armed []int
	for i, what := range c.at {
		addr := e.cands[i]
		var fn func()
		switch what {
		case "":
			continue
		case "rival-first":
			// A rival write of the same base stored on this copy before
			// the append (which it refuses).
			rawSet(t, addr, e.key, foreignRecord(t, e.pre[i].value), 30, 1)
			continue
		case "restamp-first":
			// This copy re-stamped before the append (R9, or a reader's
			// roll-back), which it refuses.
			if r := rawCommand(t, addr, "ms "+e.key+" 0 MA\r\n", false); r[0] != "HD" {
				t.Fatalf("re-stamping %s on %s: %v", e.key, addr, r)
			}
			continue
		case "rolled-back":
			// A reader's roll-back (R4.4′): the copy CASed back to the
			// primary's bytes as read, the append's base.
			fn = func() { rawSet(t, addr, e.key, e.pre[0].value, 30, 1) }
		case "foreign":
			fn = func() { rawSet(t, addr, e.key, foreignRecord(t, e.pre[i].value), 30, 1) }
		case "stranger":
			fn = func() { rawSet(t, addr, e.key, strangerRecord(t, e.pre[i].value), 30, 1) }
		case "other-line": // the rival's next, its chain naming another parent
			fn = func() {
				rawSet(t, addr, e.key, withEnvelope(t, strangerRecord(t, e.pre[i].value), func(env *envelope.Envelope) { env.Ancestors[1] = 0x0bad0bad }), 30, 1)
			}
		case "newer-epoch": // the rival's next, of a greater epoch
			fn = func() {
				rawSet(t, addr, e.key, withEnvelope(t, strangerRecord(t, e.pre[i].value), func(env *envelope.Envelope) { env.E++ }), 30, 1)
			}
		case "pending-line": // the rival's next, pending
			fn = func() {
				rawSet(t, addr, e.key, withEnvelope(t, strangerRecord(t, e.pre[i].value), func(env *envelope.Envelope) { env.Pending = true }), 30, 1)
			}
		case "far-line": // the rival's line, as many versions on as the chain names
			fn = func() { rawSet(t, addr, e.key, laterRecord(t, e.pre[i].value, envelope.Lineage+1), 30, 1) }
		case "gone":
			fn = func() {
				if err := raw(t, addr).Delete(e.key); err != nil {
					t.Errorf("deleting %s on %s between its append and its touch: %v", e.key, addr, err)
				}
			}
		case "restamp":
			fn = func() {
				r := rawCommand(t, addr, "ms "+e.key+" 0 MA\r\n", false)
				if r[0] != "HD" {
					t.Errorf("re-stamping %s on %s: %v", e.key, addr, r)
				}
			}
		case "later":
			fn = func() {
				now := rawGet(t, addr, e.key)
				rawSet(t, addr, e.key, builtOnRecord(t, now.value), int(max(now.ttl, 30)), 1)
			}
		default:
			t.Fatalf("unknown change %q", what)
		}
		e.d.on(e.key, addr, fn)
		armed = append(armed, i)
	}
	id, _, err := e.s.CompareAndAppend(context.Background(), e.key, e.delta, e.en.CAS, time.Minute)
	e.fired(t, armed...)
	return c.check(t, e, id, err)
}

// handleCurrent checks that the handle id (0: none, the caller reads
// again) carries the copies' tokens as they are now.
func handleCurrent(t *testing.T, e *strayEnv, id uint64) error {
	if id == 0 {
		return nil
	}
	cas, _, ok := memcached.WitnessHandle(e.s, id)
	if !ok {
		return fmt.Errorf("no handle %d", id)
	}
	for i := range 2 {
		if now := rawGet(t, e.cands[i], e.key); now.cas != cas[i] {
			return fmt.Errorf("the handle carries c%d's token %d, the copy's is %d: the next write through it is refused", i, cas[i], now.cas)
		}
	}
	return nil
}

// conflictNothingLeft checks a conflict (ErrCASConflict, which the
// provider reports as "not written") with neither copy holding the
// append.
func conflictNothingLeft(t *testing.T, e *strayEnv, id uint64, err error) error {
	if !errors.Is(err, provider.ErrCASConflict) {
		return fmt.Errorf("CompareAndAppend = (%d, %v), want a conflict (a rival of the same base won the tie)", id, err)
	}
	for i := range 2 {
		if now := rawGet(t, e.cands[i], e.key); lockedByRec(t, now, e.next.LockID) {
			return fmt.Errorf("a conflict, yet c%d holds the append (lock %d)", i, e.next.LockID)
		}
	}
	return nil
}

// TestWitnessAppendStray: the cases of a stored append whose touch found
// another item than the append's.
func TestWitnessAppendStray(t *testing.T) {
	unknownKept := func(replaced ...int) func(t *testing.T, e *strayEnv, id uint64, err error) error {
		return func(t *testing.T, e *strayEnv, id uint64, err error) error {
			if !errors.Is(err, provider.ErrOutcomeUnknown) {
				return fmt.Errorf("CompareAndAppend = (%d, %v), want unknown (a copy held the append, then another record replaced it)", id, err)
			}
			for _, i := range replaced {
				// Left as it is, with its own TTL back (untouch), not
				// the call's T.
				now := rawGet(t, e.cands[i], e.key)
				if lockedByRec(t, now, e.next.LockID) || !now.found {
					return fmt.Errorf("c%d, replaced, now holds the append or nothing", i)
				}
				env, _, derr := envelope.Decode(now.value)
				require.NoError(t, derr)
				if env.Timeout > 70 && now.ttl <= 65 {
					return fmt.Errorf("c%d, replaced, keeps the call's T (TTL %d s), not its own (%d s)", i, now.ttl, env.Timeout)
				}
			}
			return nil
		}
	}
	for _, c := range []strayCase{
		{
			// P stored and touched, Q replaced: Q is missing (R3's
			// completion): CASed to the write, two live copies (the code
			// before: acknowledged with Q holding the other record).
			name: "secondary replaced", at: [2]string{"", "foreign"}, broken: []string{"before"},
			check: func(t *testing.T, e *strayEnv, id uint64, err error) error {
				if err != nil {
					return fmt.Errorf("CompareAndAppend: %w, want the completion", err)
				}
				for i := range 2 {
					if now := rawGet(t, e.cands[i], e.key); !lockedByRec(t, now, e.next.LockID) {
						return fmt.Errorf("acknowledged, yet c%d does not hold the append (lock %d)", i, e.next.LockID)
					}
				}
				return handleCurrent(t, e, id)
			},
		},
		{
			// P replaced, Q stored: unknown, Q left as it is (the code
			// before: acknowledged with P holding the other record).
			name: "primary replaced", at: [2]string{"foreign", ""}, broken: []string{"before", "untouch0"},
			check: unknownKept(0),
		},
		{
			// Both replaced by records not built on the write (and not
			// rivals of its base): unknown, never "not found" (the key
			// is there); the code before acknowledged it, the variant
			// as-gone answers not found.
			name: "both replaced", at: [2]string{"other-line", "other-line"}, broken: []string{"before", "as-gone"},
			check: unknownKept(0, 1),
		},
		{
			// A rival of the same base stored on P first (the append
			// refused there) and completed over Q's append before its
			// touch (its writer's R3): the rival won the tie, nothing of
			// the write was returned or is left: a conflict, not
			// unknown (the model's rTie; tie-unknown is stray's rule).
			name: "secondary lost the tie, primary refused", at: [2]string{"rival-first", "foreign"}, broken: []string{"tie-unknown"},
			check: conflictNothingLeft,
		},
		{
			// The same, the rival moved on before the append's touch
			// (a record built on it on Q; the simulation's flush-step
			// seed 1461, a failover time after the last fault): a
			// conflict too (tie-line is the code before: unknown).
			name: "secondary lost the tie to a rival moved on, primary refused", at: [2]string{"rival-first", "stranger"}, broken: []string{"tie-unknown", "tie-line"},
			check: conflictNothingLeft,
		},
		{
			// §16 item 6: P re-stamped (it refuses the append), Q's
			// append rolled back before its touch (a reader's R4.4′ put
			// P's bytes, the append's base, back on Q): the append was
			// never on P, nothing of it was returned or is left: a
			// conflict (rolled-back, the code before: a replaced copy,
			// unknown).
			name: "secondary rolled back, primary refused", at: [2]string{"restamp-first", "rolled-back"}, broken: []string{"rolled-back"},
			check: conflictNothingLeft,
		},
		{
			// The tie row's bounds (its cold review, rv-tieline): Q
			// replaced by a record that is not of the rival's line (its
			// chain names another parent; a greater epoch; pending; the
			// rival's line further on than the chain tells) beside a
			// refused P stays unknown. tie-wide takes any data record
			// for the rival's line.
			name: "secondary replaced by another line, primary refused", at: [2]string{"rival-first", "other-line"}, broken: []string{"tie-wide"},
			check: unknownKept(1),
		},
		{
			name: "secondary replaced by a newer epoch, primary refused", at: [2]string{"rival-first", "newer-epoch"}, broken: []string{"tie-wide"},
			check: unknownKept(1),
		},
		{
			name: "secondary replaced by a pending record, primary refused", at: [2]string{"rival-first", "pending-line"}, broken: []string{"tie-wide"},
			check: unknownKept(1),
		},
		{
			name: "secondary replaced by the rival's line too far on, primary refused", at: [2]string{"rival-first", "far-line"}, broken: []string{"tie-wide"},
			check: unknownKept(1),
		},
		{
			// Both copies lost the tie (unreachable by the protocol's
			// steps: the append was on its own primary): unknown, as
			// every row with a replaced copy but the tie row (the code
			// before acknowledged it).
			name: "both lost the tie", at: [2]string{"foreign", "foreign"}, broken: []string{"before", "tie-any"},
			check: unknownKept(0, 1),
		},
		{
			// P lost the tie, Q refused (a rival first there): unknown,
			// not the tie row (the append was on its own primary).
			name: "primary lost the tie, secondary refused", at: [2]string{"foreign", "rival-first"}, broken: []string{"tie-any"},
			check: unknownKept(0),
		},
		{
			// P replaced, Q gone: unknown, not "not found".
			name: "primary replaced, secondary gone", at: [2]string{"foreign", "gone"}, broken: []string{"as-gone"},
			check: unknownKept(0),
		},
		{
			// The append's own item re-stamped: stored; the handle
			// carries the re-stamp's token (the code before: the
			// append's, refused by the next write).
			name: "primary re-stamped", at: [2]string{"restamp", ""}, broken: []string{"before"},
			check: func(t *testing.T, e *strayEnv, id uint64, err error) error {
				if err != nil || id == 0 {
					return fmt.Errorf("CompareAndAppend = (%d, %v), want success", id, err)
				}
				return handleCurrent(t, e, id)
			},
		},
		{
			name: "secondary re-stamped", at: [2]string{"", "restamp"}, broken: []string{"before"},
			check: func(t *testing.T, e *strayEnv, id uint64, err error) error {
				if err != nil || id == 0 {
					return fmt.Errorf("CompareAndAppend = (%d, %v), want success", id, err)
				}
				return handleCurrent(t, e, id)
			},
		},
		{
			// A record built on the write replaced Q's: applied, and
			// written over since: success with no handle (0: read
			// again); Q keeps the later record.
			name: "secondary built on", at: [2]string{"", "later"}, broken: []string{"before"},
			check: func(t *testing.T, e *strayEnv, id uint64, err error) error {
				if err != nil {
					return fmt.Errorf("CompareAndAppend: %w, want success", err)
				}
				if now := rawGet(t, e.cands[1], e.key); lockedByRec(t, now, e.next.LockID) {
					return errors.New("Q's later record was written over")
				}
				return handleCurrent(t, e, id)
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) { runStray(t, c) })
	}
}

// TestWitnessAppendRetouchStray: Q's touch got an error reply, and
// another writer's record replaced Q's copy before the touch sent again
// (W3's retouch), which finds it: Q replaced, as a first touch finding
// it, so the write is completed onto Q (the code before,
// SetAppendStrayStored: acknowledged with Q holding the other record).
func TestWitnessAppendRetouchStray(t *testing.T) {
	for _, twoTrips := range []bool{false, true} {
		for _, before := range []bool{false, true} {
			name := map[bool]string{false: "pipelined", true: "two trips"}[twoTrips] + map[bool]string{false: "", true: "/before"}[before]
			t.Run(name, func(t *testing.T) {
				d := &witTouchErrDialer{}
				var broken func(*memcached.Store)
				if before {
					broken = memcached.SetAppendStrayStored
				}
				s, key, cands := newTouchErrStore(t, d, twoTrips, broken)
				en, next, delta := readLocking(t, s, key)
				pre := rawGet(t, cands[1], key)
				var retouched atomic.Bool
				d.mu.Lock()
				d.key, d.addr = key, cands[1]
				d.retouched = func() {
					retouched.Store(true)
					rawSet(t, cands[1], key, foreignRecord(t, pre.value), 30, 1)
				}
				d.mu.Unlock()
				_, _, err := s.CompareAndAppend(context.Background(), key, delta, en.CAS, time.Minute)
				d.mu.Lock()
				fired := d.fired
				d.mu.Unlock()
				require.True(t, fired && retouched.Load(), "Q's touch got its error reply, and the touch was sent again")
				held := err == nil && lockedByRec(t, rawGet(t, cands[1], key), next.LockID)
				switch {
				case before && err == nil && !held:
					t.Logf("the code before acknowledges the append with Q holding another record")
				case before:
					t.Fatalf("the code before: CompareAndAppend = %v, Q holding the append %v: the test does not reach the stray", err, held)
				default:
					require.NoError(t, err, "P stored, Q replaced: the completion")
					require.True(t, held, "Q completed to the append")
				}
			})
		}
	}
}
