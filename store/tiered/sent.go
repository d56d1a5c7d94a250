package tiered

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxSent and keepSent bound sentBefore: at most maxSent changes, each
// kept keepSent, far longer than a provider call takes to send a change
// again (it does so at its next attempt, within the call's context: with
// the default timeouts about 15 s at most, a cache failover and a
// durable statement or two; a durable tier whose statement timeout is
// above about 25 s could take longer, and its send again would be
// refused as another request's).
const (
	maxSent  = 16_384
	keepSent = time.Minute
)

// sentBefore remembers this process's data changes whose durable write
// may be done but whose outcome was reported unknown (ErrOutcomeUnknown).
// Only the provider sends such a change again, the same bytes under the
// same token (provider's update), and only such a send may be taken for
// done when the durable copy already holds its exact bytes (sentAgain).
// Another request's change of the same bytes decided on the same record
// (two pops of one flash message from a record that a third request holds
// locked: the provider's stampOwn cannot give them bytes of their own)
// is refused as the conflict it is, not acknowledged to both.
//
// Past its bound nothing more is remembered and, until keepSent after the
// last change not remembered, every change whose exact bytes the durable
// copy holds is taken for sent again, as before sentBefore: a send again
// that was forgotten would be refused on a cache record that does not
// change, again and again, until the durable copy is revived over the
// cache, fencing the sender's own lock while its lease runs
// (TestUnknownCommitSentAgainLands).
type sentBefore struct {
	mu        sync.Mutex
	byKey     map[string][]sentChange
	n         int
	fullUntil time.Time
}

type sentChange struct {
	sum [sha256.Size]byte
	at  time.Time
}

// remember records that the change value of key may be durable although
// its outcome was reported unknown, at now.
func (m *sentBefore) remember(key string, value []byte, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Before(m.fullUntil) {
		m.fullUntil = now.Add(keepSent) // not remembered: any copy taken, keepSent from it
		return
	}
	if m.n >= maxSent {
		m.sweep(now)
		if m.n >= maxSent {
			m.fullUntil = now.Add(keepSent)
			return
		}
	}
	if m.byKey == nil {
		m.byKey = make(map[string][]sentChange)
	}
	m.byKey[key] = append(m.byKey[key], sentChange{sum: sha256.Sum256(value), at: now})
	m.n++
}

// take reports whether value, a change of key, may be this process's
// change sent again: one remembered and not yet taken, or any while the
// memory is past its bound. A change remembered is taken once.
func (m *sentBefore) take(key string, value []byte, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Before(m.fullUntil) {
		return true
	}
	sum := sha256.Sum256(value)
	list := m.byKey[key]
	for i, c := range list {
		if c.sum == sum && now.Sub(c.at) < keepSent {
			m.drop(key, list, i)
			return true
		}
	}
	return false
}

// sweep drops the changes kept longer than keepSent. m.mu must be held.
func (m *sentBefore) sweep(now time.Time) {
	for key, list := range m.byKey {
		for i := len(list) - 1; i >= 0; i-- {
			if now.Sub(list[i].at) >= keepSent {
				list = m.drop(key, list, i)
			}
		}
	}
}

// drop removes list[i], key's list, and returns what is left. m.mu must
// be held.
func (m *sentBefore) drop(key string, list []sentChange, i int) []sentChange {
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(m.byKey, key)
	} else {
		m.byKey[key] = list
	}
	m.n--
	return list
}
