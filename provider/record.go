package provider

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/sessionlock/sessionlock/session"
)

// A session is stored as one record under one key: the lock state, the
// session's own timeout, its action flags and its encoded values, written
// together by one compare-and-swap. Lock state and data can therefore never
// disagree, and neither can outlive the other (invariant I5).
//
// Record format, version 1 (all integers big-endian):
//
//	offset size field
//	0      2    magic "SL"
//	2      1    format version (1)
//	3      1    state flags: bit 0 locked, bit 1 removed (tombstone)
//	4      1    action flags (session.ActionFlags)
//	5      8    Seq: bumped by every change of the record
//	13     8    DataSeq: bumped by every change of the values or timeout
//	21     8    LockID: id of the latest lock taken (strictly increasing)
//	29     8    LockedAt: holder's wall clock at acquisition, Unix ns (informational only)
//	37     8    Timeout: the session's own timeout, ns
//	45     4    n: length of the values
//	49     n    values in session's stored form
//	49+n   4    CRC-32C of bytes [0, 49+n)
const (
	recordMagic0    = 'S'
	recordMagic1    = 'L'
	recordVersion1  = 1
	recordHeaderLen = 49
	recordTrailer   = 4

	flagLocked  = 1 << 0
	flagRemoved = 1 << 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordHeader is what a backend may read of a stored session record
// without decoding its values: the memcached backend compares Seq to decide
// which of two copies is newer, the tiered store compares DataSeq to decide
// whether a change must reach the durable tier.
type RecordHeader struct {
	// Seq is bumped by every change of the record (lock, renewal,
	// release, commit, removal). Of two copies, the higher Seq is newer.
	Seq uint64
	// DataSeq is bumped by every change of the values or the timeout.
	DataSeq uint64
	// LockID is the id of the latest lock taken on the session.
	LockID uint64
	// Locked reports whether a request holds the session's lock.
	Locked bool
	// Removed reports a tombstone left by RemoveItem.
	Removed bool
	// Actions are the session's pending action flags.
	Actions session.ActionFlags
	// LockedAt is the holder's wall clock when it took the lock. It is
	// informational (lock age for logs); no decision depends on it.
	LockedAt time.Time
	// Timeout is the session's own timeout, the TTL of the record.
	Timeout time.Duration
}

// record is a decoded session record.
type record struct {
	RecordHeader
	values []byte // session stored form, not decoded
}

// ParseRecordHeader decodes the header of a stored record, checking its
// framing and checksum. Errors wrap ErrCorrupt.
func ParseRecordHeader(b []byte) (RecordHeader, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return RecordHeader{}, err
	}
	return r.RecordHeader, nil
}

func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeaderLen+recordTrailer {
		return record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", ErrCorrupt, len(b))
	}
	if b[0] != recordMagic0 || b[1] != recordMagic1 {
		return record{}, fmt.Errorf("%w: bad record magic", ErrCorrupt)
	}
	if b[2] != recordVersion1 {
		return record{}, fmt.Errorf("%w: unknown record format version %d", ErrCorrupt, b[2])
	}
	n := binary.BigEndian.Uint32(b[45:49])
	if uint64(n) != uint64(len(b)-recordHeaderLen-recordTrailer) {
		return record{}, fmt.Errorf("%w: record length %d does not match its values length %d", ErrCorrupt, len(b), n)
	}
	body := b[:len(b)-recordTrailer]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-recordTrailer:]) {
		return record{}, fmt.Errorf("%w: record checksum mismatch", ErrCorrupt)
	}
	flags := b[3]
	if flags&^(flagLocked|flagRemoved) != 0 {
		return record{}, fmt.Errorf("%w: unknown record state flags %#x", ErrCorrupt, flags)
	}
	timeout := time.Duration(binary.BigEndian.Uint64(b[37:45]))
	if timeout < session.MinTimeout || timeout > session.MaxTimeout {
		return record{}, fmt.Errorf("%w: record timeout %v out of range", ErrCorrupt, timeout)
	}
	r := record{
		RecordHeader: RecordHeader{
			Locked:   flags&flagLocked != 0,
			Removed:  flags&flagRemoved != 0,
			Actions:  session.ActionFlags(b[4]),
			Seq:      binary.BigEndian.Uint64(b[5:13]),
			DataSeq:  binary.BigEndian.Uint64(b[13:21]),
			LockID:   binary.BigEndian.Uint64(b[21:29]),
			LockedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[29:37]))),
			Timeout:  timeout,
		},
	}
	r.values = b[recordHeaderLen : recordHeaderLen+int(n) : recordHeaderLen+int(n)] // shares b: callers own what Store.Get returned
	return r, nil
}

func (r record) encode() []byte {
	b := make([]byte, recordHeaderLen+len(r.values)+recordTrailer)
	b[0], b[1], b[2] = recordMagic0, recordMagic1, recordVersion1
	var flags byte
	if r.Locked {
		flags |= flagLocked
	}
	if r.Removed {
		flags |= flagRemoved
	}
	b[3] = flags
	b[4] = byte(r.Actions)
	binary.BigEndian.PutUint64(b[5:13], r.Seq)
	binary.BigEndian.PutUint64(b[13:21], r.DataSeq)
	binary.BigEndian.PutUint64(b[21:29], r.LockID)
	var lockedAt int64
	if !r.LockedAt.IsZero() {
		lockedAt = r.LockedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(b[29:37], uint64(lockedAt))
	binary.BigEndian.PutUint64(b[37:45], uint64(r.Timeout))
	binary.BigEndian.PutUint32(b[45:49], uint32(len(r.values)))
	copy(b[recordHeaderLen:], r.values)
	binary.BigEndian.PutUint32(b[len(b)-recordTrailer:], crc32.Checksum(b[:len(b)-recordTrailer], castagnoli))
	return b
}

// ReviveLockIDGap is how far ReviveRecord advances a record's lock id.
// A cache can have granted at most this many locks since the durable copy
// was written; every lock id it granted is below the revived one.
const ReviveLockIDGap = 1 << 32

// ReviveRecord returns a durable copy of a record as it must be served after
// the cache in front of the durable tier lost the live record (LRU
// eviction, flush, restart). Any lock the cache had granted is gone, so the
// copy comes back unlocked, and its lock id is advanced by ReviveLockIDGap
// past any id the lost cache could have handed out: a holder of a lost lock
// is fenced (its write, release or removal fails with ErrLockLost) and lock
// ids still strictly increase. Seq advances by the same gap, so the revived
// copy is newer than any copy the lost cache held. Errors wrap ErrCorrupt.
func ReviveRecord(b []byte) ([]byte, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return nil, err
	}
	r.Locked = false
	r.LockID += ReviveLockIDGap
	r.Seq += ReviveLockIDGap
	return r.encode(), nil
}
