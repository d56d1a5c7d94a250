package provider

// The per-process cache of the last record this process wrote for each
// session, with the CAS token its write returned: the next change to that
// session starts from it instead of reading the store first. An exclusive
// request then costs read, lock and commit (3 operations), and 2 (lock and
// commit) when this process also served the session's previous request.

import (
	"sync"

	"github.com/sessionlock/sessionlock/record"
)

// Bounds of the written cache: at most maxWrittenEntries sessions and
// maxWrittenBytes of values in all; a record whose values exceed
// maxWrittenRecord is not kept. Past a bound arbitrary entries are
// forgotten, which only costs their next change one read.
const (
	maxWrittenEntries = 4096
	maxWrittenBytes   = 16 << 20
	maxWrittenRecord  = 256 << 10
)

// writtenCache remembers, per key, the last record this process wrote and
// the token the store returned for it. An entry is only a guess: update
// trusts it only when the compare-and-swap based on it succeeds, which
// proves the stored record was that one; a stale entry costs one refused
// write and a read (TestWrittenCacheStaleEntry).
//
// A key whose guesses of an unlocked record were refused contestedAfter
// times in a row is contested: other servers write it too (a load
// balancer without session affinity sends its requests round). Its
// released record is no longer guessed from (the record of a lock this
// process took still is: that request commits or releases from it), so
// that servers taking turns pay read, lock, commit (3 operations) instead
// of a refused guess first (4). The contest ends when a read finds this
// process's own last token again: nobody else wrote since
// (TestWrittenCacheContested). A single refusal (another server served one
// request) costs no more than before: the next guess is tried.
type writtenCache struct {
	mu    sync.Mutex
	m     map[string]writtenEntry
	bytes int
}

type writtenEntry struct {
	rec record.Record // Values are never modified in place
	cas uint64
	// refused counts the guesses of an unlocked rec refused in a row.
	refused int
	// stale: a guess from rec was refused; only refused is still of use.
	stale bool
}

// contestedAfter is how many refused guesses in a row make a key
// contested.
const contestedAfter = 2

func (e writtenEntry) contested() bool { return e.refused >= contestedAfter }

func newWrittenCache() *writtenCache {
	return &writtenCache{m: make(map[string]writtenEntry)}
}

// get returns the record last written under key and its token.
func (c *writtenCache) get(key string) (*record.Record, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.stale || e.contested() && !e.rec.Locked {
		return nil, 0, false
	}
	r := e.rec
	return &r, e.cas, true
}

// put remembers rec as written under key with token cas; a zero token
// (the store cannot report it) or an oversized record forgets the key.
// trusted says the write was a guess of an unlocked record that
// succeeded, which ends a run of refusals; otherwise the run is kept.
func (c *writtenCache) put(key string, rec *record.Record, cas uint64, trusted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	refused := c.m[key].refused
	if trusted {
		refused = 0
	}
	c.dropLocked(key)
	if cas == 0 || len(rec.Values) > maxWrittenRecord {
		return
	}
	for len(c.m) >= maxWrittenEntries || (len(c.m) > 0 && c.bytes+len(rec.Values) > maxWrittenBytes) {
		for k := range c.m { // evict an arbitrary entry
			c.dropLocked(k)
			break
		}
	}
	c.m[key] = writtenEntry{rec: *rec, cas: cas, refused: refused}
	c.bytes += len(rec.Values)
}

// saw is told what a read-path read of key found. It forgets key when the
// read found another token than the one remembered (another process
// wrote since: a guess would be refused) or bytes that do not decode (the
// next change must see them); a contested key is kept with its other
// token, to be compared with the next read (found).
func (c *writtenCache) saw(key string, cas uint64, decoded bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && (!decoded || e.cas != cas && !e.contested()) {
		c.dropLocked(key)
		return
	}
	c.foundLocked(key, cas)
}

// found is told the token a read of key found before a write: this
// process's own last token ends a contest.
func (c *writtenCache) found(key string, cas uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.foundLocked(key, cas)
}

func (c *writtenCache) foundLocked(key string, cas uint64) {
	if e, ok := c.m[key]; ok && e.cas == cas && e.refused > 0 {
		e.refused = 0
		c.m[key] = e
	}
}

// refused is told that a guess from key's entry was refused: the entry
// is stale, never guessed from again. A refused guess of an unlocked
// record adds to the run that makes the key contested (the entry is kept
// for its count until the next write replaces it); any other entry is
// forgotten.
func (c *writtenCache) refused(key string, unlocked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	switch {
	case !ok:
	case unlocked:
		e.refused++
		e.stale = true
		c.m[key] = e
	default:
		c.dropLocked(key)
	}
}

// drop forgets key.
func (c *writtenCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(key)
}

func (c *writtenCache) dropLocked(key string) {
	if e, ok := c.m[key]; ok {
		c.bytes -= len(e.rec.Values)
		delete(c.m, key)
	}
}
