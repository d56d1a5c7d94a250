package memcached

import (
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// handle is what the witness scheme returns as a CAS token (§2.4): a
// uint64 of a slot index (low 32 bits) and the slot's generation (high 32
// bits) into the Store's handleTable. It is local to one Store value.
type handle struct {
	key string
	env envelope.Envelope // the record read or written
	// copies are the two data copies: candidate index, memcached token
	// and incarnation of each, P first.
	copies [2]copyToken
	// base is the secondary's bytes as read, with their remaining TTL
	// and when it was read: R3's undo puts them back.
	base    []byte
	baseTTL int64
	baseAt  time.Time
	// trailers is the larger number of trailers the two copies carry
	// when both hold the record with envelopes equal in every field
	// (not only the identity) in version 2, so that one trailer appended
	// to each makes the same record of both; -1 when that is not known:
	// the next write is then whole (witness_append.go).
	trailers int
	// read: the handle was made by a read (R2, R4), not by a write of
	// this process (a later read of the same tokens returns the write's
	// handle, read false: it may be the provider's guess from its own
	// last write, which another process's write since would refuse). An
	// append with a read's handle soon after the read is expected to land
	// (witness_append.go, pipelined touch).
	read bool
	// latest: no other handle of the key was put since this one (set by
	// handleTable.get).
	latest bool
	// confirm: put by a plain Get (see witness.entry); not kept.
	confirm bool
}

// copyToken is one data copy's token.
type copyToken struct {
	cand     uint8
	cas, inc uint64
}

// handleOverhead is what one slot costs besides its key and base bytes.
const handleOverhead = 128

func (h *handle) size() int { return handleOverhead + len(h.key) + len(h.base) }

// handleTable is a ring of slots reused oldest first, bounded by a number
// of slots and of bytes. A handle whose slot was reused (or evicted for
// bytes) is no longer found: CompareAndSwap then fails with
// ErrCASConflict without sending anything. The ring grows as handles are
// put, up to its bound: a Store that keeps few sessions costs little
// (the default bound's slots, made at once, would be about 13 MB). A ring
// held by its bytes before it reaches its slot bound grows no further
// while the bytes hold it, and a put costs the same at any size.
type handleTable struct {
	mu    sync.Mutex
	n     int      // the bound of slots
	slots []handle // grown up to n
	gens  []uint32
	used  []bool
	// ids finds the handle of the same copies read again, so that one
	// record read twice gets one token (callers such as store/tiered
	// compare tokens across reads).
	ids map[handleKey]uint64
	// latest is, per key, the handle put last (by a read or a write of
	// this Store): an older handle of the key is one this Store has seen
	// the copies move on from (witness_append.go's pipelined touch).
	latest map[string]uint64
	// The handles in use are live slots from head on, oldest first
	// (wrapping at len(slots)); the slots after them are free.
	head, live int
	bytes      int
	maxBytes   int
}

func newHandleTable(n, maxBytes int) *handleTable {
	return &handleTable{n: max(n, 1), ids: make(map[handleKey]uint64), latest: make(map[string]uint64), maxBytes: maxBytes}
}

// handleKey identifies a handle's copies: the key and both tokens.
type handleKey struct {
	key    string
	copies [2]copyToken
}

// put stores h and returns its handle number.
func (t *handleTable) put(h handle) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	hk := handleKey{h.key, h.copies}
	if id, ok := t.ids[hk]; ok {
		i := int(uint32(id))
		t.slots[i].baseTTL, t.slots[i].baseAt = h.baseTTL, h.baseAt
		// A plain Get (the read before a write) that finds the tokens a
		// write of this Store left makes the handle a read's: those are
		// the copies' tokens now, and a write follows. A GetAndTouch
		// (read-only) does not: the provider's guess from its own write
		// may come much later, after other processes wrote.
		t.slots[i].read = t.slots[i].read || h.confirm
		t.latest[h.key] = id
		return id
	}
	// Evict the oldest handles until h fits, and one more when every
	// slot is in use at the bound. The ring grows only while it is full
	// and its oldest handle is in slot 0, so that the free slots always
	// follow the live ones: a table held by its bytes stops growing and
	// reuses the slots it freed (not a scan from slot 0 on every put).
	need := h.size()
	for t.live > 0 && t.bytes+need > t.maxBytes {
		t.evictOldest()
	}
	if t.live == len(t.slots) {
		if len(t.slots) < t.n && t.head == 0 {
			t.slots, t.gens, t.used = append(t.slots, handle{}), append(t.gens, 0), append(t.used, false)
		} else {
			t.evictOldest()
		}
	}
	i := (t.head + t.live) % len(t.slots)
	t.live++
	t.gens[i]++
	if t.gens[i] == 0 {
		t.gens[i] = 1
	}
	t.slots[i], t.used[i] = h, true
	t.slots[i].confirm = false
	t.bytes += need
	id := uint64(t.gens[i])<<32 | uint64(i)
	t.ids[hk] = id
	t.latest[h.key] = id
	return id
}

// evictOldest frees the oldest slot in use.
func (t *handleTable) evictOldest() {
	i := t.head
	t.bytes -= t.slots[i].size()
	delete(t.ids, handleKey{t.slots[i].key, t.slots[i].copies})
	if t.latest[t.slots[i].key] == uint64(t.gens[i])<<32|uint64(i) {
		delete(t.latest, t.slots[i].key)
	}
	t.slots[i], t.used[i] = handle{}, false
	t.head = (t.head + 1) % len(t.slots)
	t.live--
}

// get returns the handle numbered id, if it is still in the table.
func (t *handleTable) get(id uint64) (handle, bool) {
	i, gen := int(uint32(id)), uint32(id>>32)
	t.mu.Lock()
	defer t.mu.Unlock()
	if i >= len(t.slots) || gen == 0 || !t.used[i] || t.gens[i] != gen {
		return handle{}, false
	}
	h := t.slots[i]
	h.latest = t.latest[h.key] == id
	return h, true
}
