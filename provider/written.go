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
type writtenCache struct {
	mu    sync.Mutex
	m     map[string]writtenEntry
	bytes int
}

type writtenEntry struct {
	rec record.Record // Values are never modified in place
	cas uint64
}

func newWrittenCache() *writtenCache {
	return &writtenCache{m: make(map[string]writtenEntry)}
}

// get returns the record last written under key and its token.
func (c *writtenCache) get(key string) (*record.Record, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, 0, false
	}
	r := e.rec
	return &r, e.cas, true
}

// put remembers rec as written under key with token cas; a zero token
// (the store cannot report it) or an oversized record forgets the key.
func (c *writtenCache) put(key string, rec *record.Record, cas uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	c.m[key] = writtenEntry{rec: *rec, cas: cas}
	c.bytes += len(rec.Values)
}

// saw forgets key when a read of it found another token than the one
// remembered (another process wrote since: a guess would be refused) or
// bytes that do not decode (the next change must see them).
func (c *writtenCache) saw(key string, cas uint64, decoded bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && (!decoded || e.cas != cas) {
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
