package memcached

import (
	"context"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// witHealth is one node's failure detection in the witness scheme (§9):
// the node is *failed* once it has left a command unanswered for
// FailoverAfter, counted from the first command still unanswered (a
// refused connection counts as no reply); any reply clears it. A failure
// is a suspicion: safety never rests on it (the copies decide), it only
// decides where requests go and when a failover may start.
type witHealth struct {
	after   time.Duration // Config.FailoverAfter
	addr    string
	onEvent provider.EventFunc

	mu     sync.Mutex
	since  time.Time // send time of the first unanswered command; zero when answered
	failed bool
	// back is closed by the next reply (answered): waitFailed waits on it.
	// nil when nobody waits.
	back chan struct{}
	// waiting, when set (tests), is called when waitFailed starts to wait.
	waiting func()
}

// sending returns the time a command is sent.
func (h *witHealth) sending() time.Time { return time.Now() }

// answered records a reply: the node is not failed.
func (h *witHealth) answered() {
	h.mu.Lock()
	was := h.failed
	h.since, h.failed = time.Time{}, false
	if h.back != nil {
		close(h.back)
		h.back = nil
	}
	h.mu.Unlock()
	if was {
		h.onEvent.Emit(provider.Event{Kind: provider.EventNodeUp, Node: h.addr, Detail: "answering again"})
	}
}

// unanswered records a command sent at start that got no reply, and marks
// the node failed once FailoverAfter has passed since the first such
// command.
func (h *witHealth) unanswered(start time.Time) {
	h.mu.Lock()
	if h.since.IsZero() || start.Before(h.since) {
		h.since = start
	}
	h.mu.Unlock()
	h.failIfDue()
}

// failIfDue marks the node failed when a command has been unanswered for
// FailoverAfter, and reports whether it is failed.
func (h *witHealth) failIfDue() bool {
	h.mu.Lock()
	became := !h.failed && !h.since.IsZero() && time.Since(h.since) >= h.after
	if became {
		h.failed = true
	}
	failed := h.failed
	h.mu.Unlock()
	if became {
		h.onEvent.Emit(provider.Event{Kind: provider.EventNodeDown, Node: h.addr, Detail: "no reply for the failover time; its sessions fail over"})
	}
	return failed
}

// lateAfter is how far past a command's own deadline this process may
// notice that it went unanswered and still count it (late).
const lateAfter = 250 * time.Millisecond

// late reports that a command sent at began (zero: none was sent) with
// the deadline timeout was noticed unanswered so late that this process
// cannot have been running around its deadline: more than lateAfter past
// the deadline, and at least FailoverAfter after the send (so late that it
// alone would fail the node). Its missing reply is then no evidence
// against the node (wdo): the reply may have come in time.
func (h *witHealth) late(began time.Time, timeout time.Duration) bool {
	return !began.IsZero() && time.Since(began) >= max(timeout+lateAfter, h.after)
}

// isFailed reports whether the node is failed now.
func (h *witHealth) isFailed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// waitFailed waits until FailoverAfter has passed since the node's first
// unanswered command (at most until ctx ends) and reports whether the node
// is failed then: no reply came meanwhile. It returns false as soon as the
// node answers (§9: an anomaly read's silent copy; the caller reads it
// again), and at once when it has answered since.
func (h *witHealth) waitFailed(ctx context.Context) bool {
	h.mu.Lock()
	since, failed := h.since, h.failed
	if failed || since.IsZero() {
		h.mu.Unlock()
		return failed
	}
	if h.back == nil {
		h.back = make(chan struct{})
	}
	back, waiting := h.back, h.waiting
	h.mu.Unlock()
	if d := time.Until(since.Add(h.after)); d > 0 {
		if waiting != nil {
			waiting()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-back:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return h.failIfDue()
}
