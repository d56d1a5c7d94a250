package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned (wrapped) by Wait. Match them with errors.Is.
var (
	// ErrQueueFull: Config.QueueLimit requests already wait for this
	// session in this process.
	ErrQueueFull = errors.New("lock: too many requests waiting for this session")
	// ErrWaitTimeout: Config.MaxWait passed before the lock was acquired.
	ErrWaitTimeout = errors.New("lock: waited too long for this session")
	// ErrRetry is returned (possibly wrapped) by an expire function when the
	// lock changed while it ran, so the lock is not abandoned after all:
	// Wait keeps waiting instead of failing.
	ErrRetry = errors.New("lock: state changed, retry")
)

// Defaults used for the zero fields of a Config.
const (
	DefaultQueueLimit = 50
	DefaultMaxWait    = 60 * time.Second
	DefaultPollStart  = time.Millisecond
	DefaultPollCap    = 50 * time.Millisecond
	DefaultASPNETPoll = 500 * time.Millisecond
	DefaultStaleAfter = 10 * time.Second
)

// Strategy selects how a waiter waits.
type Strategy int

const (
	// Adaptive (the default): waiters in the same process are woken the
	// moment a holder in this process releases (no polling), FIFO per
	// session; waiters whose holder is in another process poll with
	// exponential backoff and full jitter, from PollStart (default 1 ms)
	// doubling to PollCap (default 50 ms).
	Adaptive Strategy = iota
	// ASPNET: ASP.NET's session module: fixed 500 ms polls (ASPNETPoll), no
	// in-process wake-up.
	ASPNET
)

// String returns "adaptive" or "aspnet", the names ParseStrategy accepts.
func (s Strategy) String() string {
	switch s {
	case Adaptive:
		return "adaptive"
	case ASPNET:
		return "aspnet"
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseStrategy returns the Strategy named name ("adaptive" or "aspnet").
func ParseStrategy(name string) (Strategy, error) {
	switch name {
	case "adaptive":
		return Adaptive, nil
	case "aspnet":
		return ASPNET, nil
	}
	return 0, fmt.Errorf("lock: unknown strategy %q (want adaptive or aspnet)", name)
}

// Config sets a Waiter up; the zero value means the documented defaults.
// Durations that are zero or negative mean their default, except MaxWait.
type Config struct {
	// Strategy selects how to wait; default Adaptive.
	Strategy Strategy
	// QueueLimit is the most requests that may wait for one session (key)
	// in this process, the one trying included. Default 50 (ASP.NET's
	// RequestQueueLimitPerSession); negative means unlimited.
	QueueLimit int
	// MaxWait bounds the whole wait, time in the queue included; default
	// 60 s; negative means no bound other than the context's. The context's
	// deadline also bounds the wait. A try already running is not
	// interrupted by MaxWait, only by its context.
	MaxWait time.Duration
	// PollStart is the first backoff (Adaptive); default 1 ms.
	PollStart time.Duration
	// PollCap is the largest backoff (Adaptive); default 50 ms. A PollCap
	// below PollStart is raised to PollStart.
	PollCap time.Duration
	// ASPNETPoll is the fixed pause between tries (ASPNET); default 500 ms.
	ASPNETPoll time.Duration
	// StaleAfter: a lock whose Stamp stays unchanged for this long, as
	// measured on THIS process's monotonic clock from the first attempt that
	// saw it, is considered abandoned and expire is called. The provider
	// sets it to its lease (default 10 s), or to its lock timeout (110 s)
	// when leases are off. Zero means 10 s.
	StaleAfter time.Duration
}

// withDefaults returns c with every zero (or invalid) field replaced by its
// default.
func (c Config) withDefaults() Config {
	if c.QueueLimit == 0 {
		c.QueueLimit = DefaultQueueLimit
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.PollStart <= 0 {
		c.PollStart = DefaultPollStart
	}
	if c.PollCap <= 0 {
		c.PollCap = DefaultPollCap
	}
	if c.PollCap < c.PollStart {
		c.PollCap = c.PollStart
	}
	if c.ASPNETPoll <= 0 {
		c.ASPNETPoll = DefaultASPNETPoll
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	return c
}

// Attempt is the outcome of one try.
type Attempt struct {
	// Acquired: the try succeeded: Wait returns nil.
	Acquired bool
	// Stamp, when not acquired, identifies the lock state the try saw; it
	// changes whenever the lock changes hands or its holder renews the
	// lease, and not when something else (data written next to the lock)
	// changes.
	Stamp uint64
}

// Stats is a snapshot of a Waiter's state and counters, for metrics.
type Stats struct {
	// Waiting is the number of requests inside Wait now, all keys.
	Waiting int
	// Holds is the number of Hold calls not yet matched by a Release.
	Holds int
	// Keys is the number of keys the Waiter keeps memory for (keys with a
	// waiter or a holder). It drops to 0 when nothing waits or holds.
	Keys int
	// Expirations counts the calls of expire functions.
	Expirations uint64
	// QueueFull counts the waits refused with ErrQueueFull.
	QueueFull uint64
	// WaitTimeouts counts the waits that ended with ErrWaitTimeout.
	WaitTimeouts uint64
}

// Waiter queues and paces attempts at taking session locks. It is safe for
// concurrent use. It holds no goroutines of its own (nothing to Close), so
// nothing leaks. Create one with NewWaiter.
type Waiter struct {
	cfg Config

	mu      sync.Mutex
	keys    map[string]*queue // keys with a waiter or a local holder
	waiting int               // tickets in all queues
	holds   int               // Hold calls not yet released

	expirations  atomic.Uint64
	queueFull    atomic.Uint64
	waitTimeouts atomic.Uint64

	// pauseHook, when set (by tests), is called with every pause Wait
	// chooses between two tries.
	pauseHook func(time.Duration)
}

// queue is the state of one key: its FIFO of waiting requests and its local
// holders. Guarded by Waiter.mu.
type queue struct {
	key        string
	head, tail *ticket
	n          int    // tickets in the queue
	held       int    // Hold calls not yet released
	releases   uint64 // Release calls so far: a change tells the head to try
}

// ticket is one request's place in a queue. Its links are guarded by
// Waiter.mu.
type ticket struct {
	q          *queue
	prev, next *ticket
	// ready is closed when the ticket becomes the head; nil for a ticket
	// that joined an empty queue.
	ready chan struct{}
	// wake (capacity 1) is nudged by Hold and Release while the ticket is
	// the head; it is created by the head the first time it pauses.
	wake chan struct{}
}

// NewWaiter returns a Waiter set up by cfg.
func NewWaiter(cfg Config) *Waiter {
	return &Waiter{cfg: cfg.withDefaults(), keys: make(map[string]*queue)}
}

// Config returns the Waiter's configuration, defaults filled in.
func (w *Waiter) Config() Config { return w.cfg }

// Waiting returns the number of requests waiting for key in this process,
// the one trying included.
func (w *Waiter) Waiting(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if q := w.keys[key]; q != nil {
		return q.n
	}
	return 0
}

// Stats returns a snapshot of the Waiter's state and counters.
func (w *Waiter) Stats() Stats {
	w.mu.Lock()
	s := Stats{Waiting: w.waiting, Holds: w.holds, Keys: len(w.keys)}
	w.mu.Unlock()
	s.Expirations = w.expirations.Load()
	s.QueueFull = w.queueFull.Load()
	s.WaitTimeouts = w.waitTimeouts.Load()
	return s
}

// Hold records that a request in this process now holds key's lock. Calls
// are counted: two Holds need two Releases.
func (w *Waiter) Hold(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queueLocked(key)
	q.held++
	w.holds++
	// A head that is pausing with backoff can now wait for Release instead.
	w.nudgeLocked(q)
}

// Release records that a request in this process let go of key's lock and,
// under Adaptive, wakes key's queue head at once. A Release with no Hold
// outstanding is a no-op.
func (w *Waiter) Release(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.keys[key]
	if q == nil || q.held == 0 {
		return
	}
	q.held--
	w.holds--
	q.releases++
	w.nudgeLocked(q)
	w.forgetLocked(q)
}

// queueLocked returns key's queue, creating it if need be.
func (w *Waiter) queueLocked(key string) *queue {
	q := w.keys[key]
	if q == nil {
		if w.keys == nil {
			w.keys = make(map[string]*queue)
		}
		q = &queue{key: key}
		w.keys[key] = q
	}
	return q
}

// forgetLocked frees q's memory when nothing waits for or holds its key.
func (w *Waiter) forgetLocked(q *queue) {
	if q.head == nil && q.held == 0 {
		delete(w.keys, q.key)
	}
}

// nudgeLocked tells q's head, if it is pausing, to look at the state again.
func (w *Waiter) nudgeLocked(q *queue) {
	if w.cfg.Strategy == ASPNET || q.head == nil || q.head.wake == nil {
		return
	}
	select {
	case q.head.wake <- struct{}{}:
	default: // a nudge is already pending
	}
}

// join puts a ticket for key at the end of its queue. It reports whether the
// ticket is the head, and the queue's release count.
func (w *Waiter) join(key string) (t *ticket, head bool, releases uint64, err error) {
	w.mu.Lock()
	q := w.queueLocked(key)
	if limit := w.cfg.QueueLimit; limit >= 0 && q.n >= limit {
		n := q.n
		w.forgetLocked(q)
		w.mu.Unlock()
		w.queueFull.Add(1)
		return nil, false, 0, fmt.Errorf("%w (%d waiting, limit %d)", ErrQueueFull, n, limit)
	}
	t = &ticket{q: q}
	if q.tail == nil {
		q.head = t
	} else {
		t.ready = make(chan struct{})
		t.prev = q.tail
		q.tail.next = t
	}
	q.tail = t
	q.n++
	w.waiting++
	head, releases = t.prev == nil, q.releases
	w.mu.Unlock()
	return t, head, releases, nil
}

// leave takes t out of its queue; if t was the head, the next ticket becomes
// the head and is woken.
func (w *Waiter) leave(t *ticket) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := t.q
	wasHead := q.head == t
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		q.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		q.tail = t.prev
	}
	t.prev, t.next = nil, nil
	q.n--
	w.waiting--
	if wasHead && q.head != nil {
		close(q.head.ready)
	}
	w.forgetLocked(q)
}

// releaseCount returns the number of Releases of t's key so far.
func (w *Waiter) releaseCount(t *ticket) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return t.q.releases
}

// observe reports whether t's key was released since releases was read and
// whether it is held in this process. It makes sure t can be nudged.
func (w *Waiter) observe(t *ticket, releases uint64) (released, held bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.wake == nil {
		t.wake = make(chan struct{}, 1)
	}
	return t.q.releases != releases, t.q.held > 0
}

var errNilTry = errors.New("lock: Wait called with a nil try function")

// Wait calls try until it reports Acquired, returns an error, the context
// ends, MaxWait passes or the queue is full.
//
//   - The request first joins key's FIFO queue; only the head of the queue
//     calls try (others wait their turn); when the head leaves (acquired,
//     error, cancelled) the next one is woken at once. A full queue returns
//     an error wrapping ErrQueueFull immediately, without calling try.
//   - Between attempts: if this process currently holds key (see Hold), wait
//     for its Release signal (bounded by StaleAfter and the other limits; no
//     polling); otherwise sleep with backoff and jitter (Adaptive) or the
//     fixed ASPNETPoll (ASPNET; ASPNET never uses the in-process wake-up).
//     Backoff restarts from PollStart when the observed Stamp changes.
//   - If the same Stamp has been seen for StaleAfter or more (monotonic
//     clock, measured from the first attempt that saw that stamp), Wait calls
//     expire(ctx, stamp) and then tries again at once. An error from expire
//     is returned unless errors.Is(err, ErrRetry) (the lock changed
//     meanwhile: keep waiting). A nil expire never expires a lock.
//   - MaxWait elapsed: error wrapping ErrWaitTimeout. Context ended: error
//     wrapping ctx.Err(). In every exit path the waiter leaves the queue and
//     wakes the next one; no goroutine is left behind.
//
// Errors from try and expire are returned unchanged. Wait never calls try or
// expire from another goroutine than its own.
func (w *Waiter) Wait(ctx context.Context, key string,
	try func(ctx context.Context) (Attempt, error),
	expire func(ctx context.Context, stamp uint64) error) error {
	if try == nil {
		return errNilTry
	}
	if s := w.cfg.Strategy; s != Adaptive && s != ASPNET {
		return fmt.Errorf("lock: unknown strategy %v", s)
	}
	if ctx.Err() != nil {
		return contextError(ctx)
	}
	s := wait{w: w, ctx: ctx}
	if w.cfg.MaxWait > 0 {
		s.deadline = time.Now().Add(w.cfg.MaxWait)
	}
	t, head, releases, err := w.join(key)
	if err != nil {
		return err
	}
	s.t = t
	defer s.end()
	if !head {
		if _, err := s.block(time.Time{}, t.ready); err != nil {
			return err
		}
		releases = w.releaseCount(t)
	}
	return s.run(releases, try, expire)
}

// wait is the state of one call of Wait.
type wait struct {
	w        *Waiter
	ctx      context.Context
	t        *ticket
	deadline time.Time   // MaxWait; zero when unbounded
	timer    *time.Timer // created on the first pause
}

// end leaves the queue (waking the next request) and stops the timer.
func (s *wait) end() {
	s.w.leave(s.t)
	if s.timer != nil {
		s.timer.Stop()
	}
}

// run is the head's loop: try, and pause between tries. releases is the
// key's release count read before the first try.
func (s *wait) run(releases uint64,
	try func(ctx context.Context) (Attempt, error),
	expire func(ctx context.Context, stamp uint64) error) error {
	cfg := &s.w.cfg
	backoff := cfg.PollStart
	var (
		stamp uint64
		seen  time.Time // when stamp was first seen; zero before the first failed try
	)
	for {
		a, err := try(s.ctx)
		if err != nil {
			return err
		}
		if a.Acquired {
			return nil
		}
		now := time.Now()
		switch {
		case seen.IsZero() || a.Stamp != stamp:
			stamp, seen, backoff = a.Stamp, now, cfg.PollStart
		case expire != nil && now.Sub(seen) >= cfg.StaleAfter:
			s.w.expirations.Add(1)
			if err := expire(s.ctx, stamp); err != nil && !errors.Is(err, ErrRetry) {
				return err
			}
			if err := s.check(time.Now()); err != nil {
				return err
			}
			// Should the same state be seen again, its clock starts again.
			seen = time.Now()
			releases = s.w.releaseCount(s.t)
			continue
		}
		var d time.Duration
		if cfg.Strategy == ASPNET {
			d = cfg.ASPNETPoll
		} else {
			d = rand.N(backoff) // full jitter: uniform in [0, backoff)
			backoff = min(2*backoff, cfg.PollCap)
		}
		if s.w.pauseHook != nil {
			s.w.pauseHook(d)
		}
		if err := s.pause(releases, now.Add(d), seen.Add(cfg.StaleAfter)); err != nil {
			return err
		}
		releases = s.w.releaseCount(s.t)
	}
}

// pause waits until the next try is due: at next when the holder is
// elsewhere (or always, under ASPNET); at a local Release, or at staleAt at
// the latest, when the holder is in this process.
func (s *wait) pause(releases uint64, next, staleAt time.Time) error {
	if s.w.cfg.Strategy == ASPNET {
		_, err := s.block(next, nil)
		return err
	}
	for {
		released, held := s.w.observe(s.t, releases)
		if released {
			return nil
		}
		due := next
		if held || staleAt.Before(due) {
			due = staleAt
		}
		nudged, err := s.block(due, s.t.wake)
		if err != nil || !nudged {
			return err
		}
		// Nudged by Hold or Release: look at the state again.
	}
}

// block waits until due (zero: no bound of its own), a signal on ch, the
// MaxWait deadline or the end of the context. It reports whether ch was
// signalled; it returns nil, false when due came.
func (s *wait) block(due time.Time, ch <-chan struct{}) (signalled bool, err error) {
	for {
		now := time.Now()
		if err := s.check(now); err != nil {
			return false, err
		}
		if !due.IsZero() && !now.Before(due) {
			return false, nil
		}
		end := due
		if end.IsZero() || (!s.deadline.IsZero() && s.deadline.Before(end)) {
			end = s.deadline
		}
		var timeC <-chan time.Time
		if !end.IsZero() {
			d := end.Sub(now)
			if s.timer == nil {
				s.timer = time.NewTimer(d)
			} else {
				s.timer.Reset(d)
			}
			timeC = s.timer.C
		}
		select {
		case <-ch:
			return true, nil
		case <-s.ctx.Done():
			return false, contextError(s.ctx)
		case <-timeC:
			// Loop: the deadline or due has come.
		}
	}
}

// check returns the error that ends the wait at now, if any: the context's
// end or MaxWait.
func (s *wait) check(now time.Time) error {
	if s.ctx.Err() != nil {
		return contextError(s.ctx)
	}
	if !s.deadline.IsZero() && !now.Before(s.deadline) {
		s.w.waitTimeouts.Add(1)
		return fmt.Errorf("%w (max wait %v)", ErrWaitTimeout, s.w.cfg.MaxWait)
	}
	return nil
}

// contextError wraps the context's error, and its cause when it has a
// different one.
func contextError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("lock: wait ended: %w: %w", err, cause)
	}
	return fmt.Errorf("lock: wait ended: %w", err)
}
