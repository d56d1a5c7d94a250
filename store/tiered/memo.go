package tiered

import (
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/record"
)

// memo remembers, per key, what this process last saw of the key's record
// in the cache (its CAS token and header) and until when the durable copy
// is known to live. It is bounded: two generations of at most max entries;
// when the current one fills up, the older one is dropped. Forgetting an
// entry costs at most one cache read or one refresh statement.
type memo struct {
	mu       sync.Mutex
	cur, old map[string]*memoEntry
	max      int
}

type memoEntry struct {
	// cas is the cache token of the record described by hdr; 0 when
	// unknown (the cache did not report it).
	cas uint64
	hdr record.Header
	// durableUntil is a time (by this process's monotonic clock) before
	// which the durable copy of the record with DataSeq durableDataSeq
	// surely lives; zero when unknown.
	durableUntil   time.Time
	durableDataSeq uint64
	// refusedCAS, refusedSeq and refusals count the durable writes in a
	// row from the record with token refusedCAS that the durable copy,
	// at Seq refusedSeq, refused.
	refusedCAS, refusedSeq uint64
	refusals               int
	refusedSince           time.Time // the first of them
}

func newMemo(max int) *memo {
	return &memo{cur: make(map[string]*memoEntry), old: make(map[string]*memoEntry), max: max}
}

// entry returns key's entry, creating it. m.mu must be held.
func (m *memo) entry(key string) *memoEntry {
	if e, ok := m.cur[key]; ok {
		return e
	}
	e, ok := m.old[key]
	if ok {
		delete(m.old, key)
	} else {
		e = &memoEntry{}
	}
	if len(m.cur) >= m.max {
		m.old, m.cur = m.cur, make(map[string]*memoEntry, len(m.cur))
	}
	m.cur[key] = e
	return e
}

// seen records that the cache holds the record hdr under token cas.
func (m *memo) seen(key string, cas uint64, hdr record.Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key)
	e.cas, e.hdr = cas, hdr
}

// header returns the header of the record with token cas, if known.
func (m *memo) header(key string, cas uint64) (record.Header, bool) {
	if cas == 0 {
		return record.Header{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cur[key]
	if !ok {
		e, ok = m.old[key]
	}
	if !ok || e.cas != cas {
		return record.Header{}, false
	}
	return e.hdr, true
}

// last returns the header of the record last seen under key.
func (m *memo) last(key string) (record.Header, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cur[key]
	if !ok {
		e, ok = m.old[key]
	}
	if !ok || e.hdr.Seq == 0 {
		return record.Header{}, false
	}
	return e.hdr, true
}

// durable records that the durable copy with DataSeq dataSeq lives at
// least until until.
func (m *memo) durable(key string, dataSeq uint64, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key)
	e.durableDataSeq, e.durableUntil = dataSeq, until
}

// durableUntil returns until when the durable copy of the record with
// DataSeq dataSeq surely lives. It is unknown (false) when this process did
// not write or refresh that copy itself: another process's write may have
// set another TTL.
func (m *memo) durableUntil(key string, dataSeq uint64) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cur[key]
	if !ok {
		e, ok = m.old[key]
	}
	if !ok || e.durableUntil.IsZero() || e.durableDataSeq != dataSeq {
		return time.Time{}, false
	}
	return e.durableUntil, true
}

// refused records that a durable write from the record with token cas was
// refused by a durable copy at Seq kept, at now, and returns how many
// times in a row that happened and how long ago the first of them was.
func (m *memo) refused(key string, cas, kept uint64, now time.Time) (int, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key)
	if e.refusedCAS != cas || e.refusedSeq != kept {
		e.refusedCAS, e.refusedSeq, e.refusals, e.refusedSince = cas, kept, 0, now
	}
	e.refusals++
	return e.refusals, now.Sub(e.refusedSince)
}

// forget drops key.
func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cur, key)
	delete(m.old, key)
}
