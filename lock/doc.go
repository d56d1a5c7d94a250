// Package lock is the waiting side of the session lock: what a request does
// when it finds its session locked by another request.
//
// The lock itself (a record in the store, taken and released with
// compare-and-swap) belongs to the provider. The provider hands Wait one
// attempt at taking the lock, try, and Wait decides when to call it again.
// A Waiter is shared by all requests of one process.
//
// # The FIFO queue
//
// Every request that calls Wait for a key joins that key's queue in this
// process, in arrival order. Only the request at the head of the queue calls
// try; the others sleep on a channel without touching the store. When the head
// leaves, for whatever reason (it got the lock, try failed, its context ended,
// it waited too long), the next request becomes the head at once and tries
// immediately. Readers (requests whose try succeeds when the session is
// unlocked, without taking the lock) share the queue with writers, so a
// writer is never overtaken by readers that came after it, and a run of
// readers queued behind a writer passes one after the other as soon as the
// writer is done, with one try each.
//
// A queue holds at most Config.QueueLimit requests (default 50, ASP.NET's
// RequestQueueLimitPerSession); one more fails at once with ErrQueueFull,
// without calling try. The limit is per key and per process.
//
// # Strategies
//
// Adaptive, the default, waits in the way that suits where the holder is:
//
//   - When a request in this process holds the key (the provider calls Hold
//     after it takes the lock and Release after it lets go), the head makes
//     no tries at all: it sleeps until Release wakes it, then tries at once.
//     A hand-over between two requests of the same process therefore costs
//     one try and no polling delay.
//   - Otherwise the holder is in another process, which cannot signal us, so
//     the head polls with exponential backoff and full jitter: the n-th pause
//     is uniformly random in [0, min(PollStart*2^n, PollCap)), from PollStart
//     (default 1 ms) to PollCap (default 50 ms). The backoff starts again from
//     PollStart whenever the lock's Stamp changes, so a waiter that sees the
//     lock change hands stays responsive.
//
// ASPNET reproduces ASP.NET's session-state module: a fixed 500 ms pause
// (ASPNETPoll) between tries and no in-process wake-up, even when the holder
// is in this process. It exists so that the stress harness can measure both
// behaviours over the same provider. Like Adaptive it queues requests per key.
//
// # Abandoned locks and clocks
//
// A holder that crashes leaves its lock behind. Deciding that a lock is
// abandoned must not depend on the web servers' clocks agreeing, so Wait
// never compares a time written by another server with its own. Instead each
// failed try reports a Stamp, an opaque number that changes whenever the lock
// changes hands or its holder renews its lease, and on nothing else: writes
// that leave the lock alone (the provider's lock-free writes) must leave the
// Stamp alone too, or a steady stream of them would keep an abandoned lock
// from ever being expired. Wait notes, on this process's
// monotonic clock, when it first saw the current Stamp (taking the time after
// the try returned, so the lock state it saw is at least that old). When the
// same Stamp has been seen for Config.StaleAfter or longer, the holder has
// neither released nor renewed for at least that long, and Wait calls
// expire(ctx, stamp) so that the provider can take the lock over (with a
// compare-and-swap on exactly that state), then tries again at once. A living
// holder that renews its lease more often than StaleAfter is never expired,
// whatever the clocks of the two servers say; clock rate differences matter
// only as a fraction of StaleAfter. If the same Stamp is seen again after
// expire, its clock starts again, so expire runs at most once per StaleAfter
// for a given state.
//
// # Errors
//
// Wait returns nil when try reported Acquired. Otherwise it returns:
//
//   - an error wrapping ErrQueueFull when the key's queue is full;
//   - an error wrapping ErrWaitTimeout when Config.MaxWait (default 60 s)
//     passed since Wait was called, time in the queue included;
//   - an error wrapping the context's error (context.Canceled or
//     context.DeadlineExceeded, and its cause if one was set) when the
//     context ended;
//   - the error of try, unchanged;
//   - the error of expire, unchanged, unless it matches ErrRetry, which means
//     that the lock changed while expire ran and Wait keeps waiting.
//
// Whatever the outcome, the request has left the queue when Wait returns,
// the next request has been woken, and Wait has left no goroutine behind: a
// Waiter starts no goroutines of its own and has nothing to close.
package lock
