package sim

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// This file is the simulated durable tier of the tiered store
// (store/tiered): one database node with the semantics of store/sqlstore's
// statements (queries.go, records.go), and the clients the app servers'
// tiered Stores call it through (tiered.Durable).
//
// Each call is one statement. It travels to the node (a latency), waits
// while the node is paused, runs atomically at that instant (PostgreSQL's
// row lock: statements on one row are serialised, in whatever order they
// arrive), and its answer travels back. Statements of concurrent calls
// reorder freely, as they do over a connection pool. The client gives up
// at the earlier of its context's deadline and DurableTimeout, as
// sqlstore's operation timeout does; the statement still runs on the
// node, and the caller is told what sqlstore tells it: a write (Add,
// CompareAndSwap, Claim, PutRecord, Delete) fails with
// provider.ErrOutcomeUnknown and provider.ErrUnavailable, anything else
// with provider.ErrUnavailable.
//
// Faults: Pause (statements queue and run late, in arrival order), Delay
// (each statement waits up to a bound first, reordering them further) and
// a hook after each stored PutRecord (the fault that flushes the cache as
// a data change's durable write runs, holding its answer). There is no
// sweep: an expired row stays until it is written again, which is what
// sqlstore's sweep leaves between two runs (ClaimOf reads expired rows).

// DurableNode is the simulated database node.
type DurableNode struct {
	mu      sync.Mutex
	rows    map[string]*drow
	version uint64 // the version sequence: every statement that writes draws from it

	resume     chan struct{} // nil while running; closed on resume
	delayUntil time.Time
	maxDelay   time.Duration
	// afterPut, when set, runs after each PutRecord that stored its
	// record, outside the node's lock; it returns how long the
	// statement's answer is held before it travels back.
	afterPut func() time.Duration

	inflight sync.WaitGroup // statements still running on the node
}

// drow is one row of sqlstore's records table.
type drow struct {
	value                         []byte
	version                       uint64
	expires                       time.Time
	created, claimed, overwritten uint64
}

// NewDurableNode returns an empty database node.
func NewDurableNode() *DurableNode { return &DurableNode{rows: make(map[string]*drow)} }

// Pause stops the node until Resume: statements queue.
func (d *DurableNode) Pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.resume == nil {
		d.resume = make(chan struct{})
	}
}

// Resume runs the statements queued while the node was paused.
func (d *DurableNode) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.resume != nil {
		close(d.resume)
		d.resume = nil
	}
}

// Delay makes every statement that reaches the node within dur wait up to
// max first.
func (d *DurableNode) Delay(dur, max time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delayUntil = time.Now().Add(dur)
	d.maxDelay = max
}

// Shutdown ends the node's faults and waits for its statements to finish
// (a bubble must not end with one running).
func (d *DurableNode) Shutdown() {
	d.mu.Lock()
	d.afterPut = nil
	d.mu.Unlock()
	d.Resume()
	d.inflight.Wait()
}

// Live reports whether the node holds a live row for key.
func (d *DurableNode) Live(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live(key, time.Now()) != nil
}

// live returns key's live row, or nil. d.mu must be held.
func (d *DurableNode) live(key string, now time.Time) *drow {
	if r := d.rows[key]; r != nil && r.expires.After(now) {
		return r
	}
	return nil
}

func (d *DurableNode) next() uint64 {
	d.version++
	return d.version
}

// expiry is when a row written now with ttl expires: ttl in whole
// microseconds, rounded up (sqlstore's micros).
func expiry(now time.Time, ttl time.Duration) time.Time {
	return now.Add((ttl + time.Microsecond - 1) / time.Microsecond * time.Microsecond)
}

// remaining is a live row's time to live as sqlstore reports it, in
// microseconds.
func remaining(r *drow, now time.Time) time.Duration {
	return r.expires.Sub(now).Truncate(time.Microsecond)
}

// isRecord is sqlstore's {isrecord}: long enough for a header, record.Magic
// and a known format version.
func isRecord(v []byte) bool {
	return len(v) >= record.MinLen && string(v[:len(record.Magic)]) == record.Magic &&
		v[len(record.Magic)] >= record.MinVersion && v[len(record.Magic)] <= record.Version
}

// seqOf is sqlstore's {seq}: the record's Seq read from its bytes.
func seqOf(v []byte) uint64 {
	return binary.BigEndian.Uint64(v[record.SeqOffset : record.SeqOffset+record.SeqLen])
}

// DurableClient is one app server's connection pool to the node: a
// tiered.Durable with sqlstore's semantics and error kinds.
type DurableClient struct {
	node    *DurableNode
	timeout time.Duration

	mu             sync.Mutex
	rng            *rand.Rand
	minLat, maxLat time.Duration

	closed     atomic.Bool
	statements atomic.Int64
}

var _ tiered.Durable = (*DurableClient)(nil)

// Client returns a client of the node: each statement's latency each way
// is drawn between minLat and maxLat from rng, and the client gives up on
// a statement after timeout.
func (d *DurableNode) Client(rng *rand.Rand, timeout, minLat, maxLat time.Duration) *DurableClient {
	return &DurableClient{node: d, timeout: timeout, rng: rng, minLat: minLat, maxLat: maxLat}
}

func (c *DurableClient) latency(extra time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.minLat
	if c.maxLat > c.minLat {
		l += time.Duration(c.rng.Int64N(int64(c.maxLat - c.minLat)))
	}
	if extra > 0 {
		l += time.Duration(c.rng.Int64N(int64(extra)))
	}
	return l
}

// stmt is one statement.
type stmt struct {
	write bool
	op    string
	// run executes the statement on the node at now, with d.mu held.
	run func(d *DurableNode, now time.Time) error
	// put: a PutRecord that stored (its answer may be held).
	put bool
}

// exec sends st to the node and waits for its answer, at most the
// client's timeout.
func (c *DurableClient) exec(ctx context.Context, st *stmt) error {
	if c.closed.Load() {
		return fmt.Errorf("sqlstore: %w", provider.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.statements.Add(1)
	d := c.node
	done := make(chan error, 1)
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		d.mu.Lock()
		var extra time.Duration
		if time.Now().Before(d.delayUntil) {
			extra = d.maxDelay
		}
		d.mu.Unlock()
		time.Sleep(c.latency(extra))
		var err error
		for {
			d.mu.Lock()
			if w := d.resume; w != nil {
				d.mu.Unlock()
				<-w
				continue
			}
			err = st.run(d, time.Now())
			break
		}
		hook := d.afterPut
		d.mu.Unlock()
		var hold time.Duration
		if st.put && hook != nil {
			hold = hook()
		}
		time.Sleep(hold + c.latency(0))
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if st.write {
			return fmt.Errorf("sqlstore: partition sim: %s: %w: %w: %w", st.op, provider.ErrOutcomeUnknown, provider.ErrUnavailable, ctx.Err())
		}
		return fmt.Errorf("sqlstore: partition sim: %s: %w: %w", st.op, provider.ErrUnavailable, ctx.Err())
	}
}

func checkValue(value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("sqlstore: ttl %v must be positive", ttl)
	}
	return nil
}

var (
	errNotFound = fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	errExists   = fmt.Errorf("sqlstore: %w", provider.ErrExists)
	errConflict = fmt.Errorf("sqlstore: %w", provider.ErrCASConflict)
)

// Get implements provider.Store.
func (c *DurableClient) Get(ctx context.Context, key string) (provider.Entry, error) {
	e, _, err := c.getTTL(ctx, "get", key)
	return e, err
}

// GetWithTTL implements tiered.Durable.
func (c *DurableClient) GetWithTTL(ctx context.Context, key string) (provider.Entry, time.Duration, error) {
	e, ttl, err := c.getTTL(ctx, "get", key)
	if err != nil {
		return provider.Entry{}, 0, err
	}
	return e, max(ttl, time.Microsecond), nil
}

func (c *DurableClient) getTTL(ctx context.Context, op, key string) (provider.Entry, time.Duration, error) {
	var e provider.Entry
	var ttl time.Duration
	err := c.exec(ctx, &stmt{op: op, run: func(d *DurableNode, now time.Time) error {
		r := d.live(key, now)
		if r == nil {
			return errNotFound
		}
		e = provider.Entry{Value: slices.Clone(r.value), CAS: r.version}
		ttl = remaining(r, now)
		return nil
	}})
	if err != nil {
		return provider.Entry{}, 0, err
	}
	return e, ttl, nil
}

// TTL implements provider.TTLReader.
func (c *DurableClient) TTL(ctx context.Context, key string) (time.Duration, error) {
	_, ttl, err := c.getTTL(ctx, "ttl", key)
	return ttl, err
}

// Add implements provider.Store: insert if absent; an expired row is
// replaced, created anew.
func (c *DurableClient) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := checkValue(value, ttl); err != nil {
		return 0, err
	}
	value = slices.Clone(value)
	var version uint64
	err := c.exec(ctx, &stmt{write: true, op: "add", run: func(d *DurableNode, now time.Time) error {
		v := d.next()
		if d.live(key, now) != nil {
			return errExists
		}
		d.rows[key] = &drow{value: value, version: v, expires: expiry(now, ttl), created: v}
		version = v
		return nil
	}})
	return version, err
}

// CompareAndSwap implements provider.Store; the row records the version it
// replaces as overwritten.
func (c *DurableClient) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return c.compareAndSwap(ctx, "compare-and-swap", false, key, value, cas, ttl)
}

// Claim implements tiered.Durable: CompareAndSwap that records the version
// it replaces as claimed.
func (c *DurableClient) Claim(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return c.compareAndSwap(ctx, "claim", true, key, value, cas, ttl)
}

func (c *DurableClient) compareAndSwap(ctx context.Context, op string, claim bool, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := checkValue(value, ttl); err != nil {
		return 0, err
	}
	if cas > 1<<63-1 {
		cas = 0 // no row ever has this token
	}
	value = slices.Clone(value)
	var version uint64
	err := c.exec(ctx, &stmt{write: true, op: op, run: func(d *DurableNode, now time.Time) error {
		r := d.live(key, now)
		switch {
		case r == nil:
			return errNotFound
		case cas == 0 || r.version != cas:
			return errConflict
		}
		r.value, r.version, r.expires = value, d.next(), expiry(now, ttl)
		if claim {
			r.claimed = cas
		} else {
			r.overwritten = cas
		}
		version = r.version
		return nil
	}})
	return version, err
}

// Touch implements provider.Store. It keeps the token. A timeout is
// reported as unavailable, not as an unknown outcome (sqlstore's wrap).
func (c *DurableClient) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := checkValue(nil, ttl); err != nil {
		return err
	}
	return c.exec(ctx, &stmt{op: "touch", run: func(d *DurableNode, now time.Time) error {
		r := d.live(key, now)
		if r == nil {
			return errNotFound
		}
		r.expires = expiry(now, ttl)
		return nil
	}})
}

// Delete implements provider.Store: an expired row is deleted too, and
// reported as not found.
func (c *DurableClient) Delete(ctx context.Context, key string) error {
	return c.exec(ctx, &stmt{write: true, op: "delete", run: func(d *DurableNode, now time.Time) error {
		r := d.rows[key]
		if r == nil {
			return errNotFound
		}
		delete(d.rows, key)
		if !r.expires.After(now) {
			return errNotFound
		}
		return nil
	}})
}

// PutRecord implements tiered.Durable: an upsert ordered by the records'
// Seq. An absent or expired row is created anew; a live row that is not a
// record or holds a lower Seq is replaced and records the version it
// overwrote; otherwise nothing is stored and KeptSeq is the row's Seq.
func (c *DurableClient) PutRecord(ctx context.Context, key string, value []byte, ttl time.Duration) (tiered.PutResult, error) {
	if err := checkValue(value, ttl); err != nil {
		return tiered.PutResult{}, err
	}
	if _, err := record.Parse(value); err != nil {
		return tiered.PutResult{}, fmt.Errorf("sqlstore: put record: %w", err)
	}
	value = slices.Clone(value)
	seq := seqOf(value)
	var res tiered.PutResult
	st := &stmt{write: true, op: "put record"}
	st.run = func(d *DurableNode, now time.Time) error {
		v := d.next()
		r := d.rows[key]
		switch {
		case r == nil || !r.expires.After(now):
			d.rows[key] = &drow{value: value, version: v, expires: expiry(now, ttl), created: v}
		case !isRecord(r.value) || seqOf(r.value) < seq:
			r.overwritten = r.version
			r.value, r.version, r.expires = value, v, expiry(now, ttl)
		default:
			res = tiered.PutResult{KeptSeq: seqOf(r.value)}
			return nil
		}
		res = tiered.PutResult{Stored: true, CAS: v}
		st.put = true
		return nil
	}
	err := c.exec(ctx, st)
	if err != nil {
		return tiered.PutResult{}, err
	}
	return res, nil
}

// ClaimOf implements tiered.Durable: it reads the row even if it has
// expired.
func (c *DurableClient) ClaimOf(ctx context.Context, key string, cas uint64) (tiered.ClaimState, error) {
	state := tiered.ClaimUnknown
	err := c.exec(ctx, &stmt{op: "claim of", run: func(d *DurableNode, now time.Time) error {
		if r := d.rows[key]; r != nil {
			state = tiered.RowTokens{Version: r.version, Claimed: r.claimed, Overwritten: r.overwritten, Created: r.created}.ClaimOf(cas)
		}
		return nil
	}})
	if err != nil {
		return tiered.ClaimUnknown, err
	}
	return state, nil
}

// Close implements provider.Store.
func (c *DurableClient) Close() error {
	c.closed.Store(true)
	return nil
}

// Statements returns how many statements the client sent.
func (c *DurableClient) Statements() int64 { return c.statements.Load() }
