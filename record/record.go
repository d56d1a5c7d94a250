// Package record owns the bytes of a stored session record: its layout,
// its encoding and decoding, and the few header rules that stores may apply
// without knowing the layout (ordering copies by Seq, reading the timeout,
// telling a lock-only change from a data change, reviving a durable copy).
//
// It is the one place that knows the record's bytes. The provider
// (package provider) encodes and decodes records through it; every store
// uses its accessors and constants, never offsets of its own. The package
// has no dependencies beyond package session and the standard library, so
// a backend in another module (or another repository) can import it.
//
// A session is one record under one key: the lock state, the session's
// own timeout, its action flags and its encoded values, written together by
// one compare-and-swap. Lock state and data can therefore never disagree,
// and neither can outlive the other (invariant I5 of docs/protocol.md).
//
// Format, version 1 (all integers big-endian):
//
//	offset size field
//	0      2    magic "SL"
//	2      1    format version (1)
//	3      1    state flags: bit 0 locked, bit 1 removed (tombstone)
//	4      1    action flags (session.ActionFlags)
//	5      8    Seq: bumped by every change of the record
//	13     8    DataSeq: bumped by every change of the values or timeout
//	21     8    LockID: id of the latest lock taken
//	29     8    LockedAt: holder's wall clock at acquisition, Unix ns (informational only)
//	37     8    Timeout: the session's own timeout, ns
//	45     4    n: length of the values
//	49     n    values in session's stored form
//	49+n   4    CRC-32C of bytes [0, 49+n)
package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/sessionlock/sessionlock/session"
)

// Layout constants of format version 1. Stores that must find a field
// without decoding (SQL comparing two records' Seq in a statement) build
// their offsets from these.
const (
	// Prefix is the first bytes of every version 1 record: the magic "SL"
	// and the format version.
	Prefix = "SL\x01"
	// Version is the format version this package writes.
	Version = 1
	// HeaderLen is the length of the header that precedes the values.
	HeaderLen = 49
	// TrailerLen is the length of the CRC-32C that follows the values.
	TrailerLen = 4
	// MinLen is the length of a record with no values.
	MinLen = HeaderLen + TrailerLen
	// SeqOffset and SeqLen locate Seq, a big-endian uint64: comparing the
	// bytes of two records' Seq orders them as comparing the numbers does.
	SeqOffset = 5
	SeqLen    = 8

	offActions  = 4
	offState    = 3
	offDataSeq  = 13
	offLockID   = 21
	offLockedAt = 29
	offTimeout  = 37
	offLen      = 45

	flagLocked  = 1 << 0
	flagRemoved = 1 << 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is what a store may read of a record without decoding its values:
// the memcached backend compares Seq to decide which of two copies is
// newer, the tiered store asks DataChanged whether a change must reach the
// durable tier.
type Header struct {
	// Seq is bumped by every change of the record (lock, renewal,
	// release, commit, removal). Of two copies, the higher Seq is newer.
	Seq uint64
	// DataSeq is bumped by every change of the values or the timeout.
	DataSeq uint64
	// LockID is the id of the latest lock taken on the session. Lock ids
	// increase within an incarnation of the session and are never equal
	// across incarnations (docs/protocol.md, I7).
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

// Record is a decoded session record.
type Record struct {
	Header
	// Values are the session's values in package session's stored form,
	// not decoded. A decoded Record shares them with the bytes it was
	// decoded from.
	Values []byte
}

// Parse decodes the header of a stored record, checking its framing and
// checksum. Errors wrap session.ErrCorrupt (provider.ErrCorrupt).
func Parse(b []byte) (Header, error) {
	r, err := Decode(b)
	if err != nil {
		return Header{}, err
	}
	return r.Header, nil
}

// Decode decodes a stored record. A record that fails any check (magic,
// version, lengths, checksum, flags, timeout range) is an error wrapping
// session.ErrCorrupt. The returned Values share b.
func Decode(b []byte) (Record, error) {
	if len(b) < MinLen {
		return Record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", session.ErrCorrupt, len(b))
	}
	if b[0] != Prefix[0] || b[1] != Prefix[1] {
		return Record{}, fmt.Errorf("%w: bad record magic", session.ErrCorrupt)
	}
	if b[2] != Version {
		return Record{}, fmt.Errorf("%w: unknown record format version %d", session.ErrCorrupt, b[2])
	}
	n := binary.BigEndian.Uint32(b[offLen:HeaderLen])
	if uint64(n) != uint64(len(b)-MinLen) {
		return Record{}, fmt.Errorf("%w: record length %d does not match its values length %d", session.ErrCorrupt, len(b), n)
	}
	body := b[:len(b)-TrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-TrailerLen:]) {
		return Record{}, fmt.Errorf("%w: record checksum mismatch", session.ErrCorrupt)
	}
	flags := b[offState]
	if flags&^(flagLocked|flagRemoved) != 0 {
		return Record{}, fmt.Errorf("%w: unknown record state flags %#x", session.ErrCorrupt, flags)
	}
	timeout := time.Duration(binary.BigEndian.Uint64(b[offTimeout:offLen]))
	if timeout < session.MinTimeout || timeout > session.MaxTimeout {
		return Record{}, fmt.Errorf("%w: record timeout %v out of range", session.ErrCorrupt, timeout)
	}
	return Record{
		Header: Header{
			Locked:   flags&flagLocked != 0,
			Removed:  flags&flagRemoved != 0,
			Actions:  session.ActionFlags(b[offActions]),
			Seq:      binary.BigEndian.Uint64(b[SeqOffset : SeqOffset+SeqLen]),
			DataSeq:  binary.BigEndian.Uint64(b[offDataSeq:offLockID]),
			LockID:   binary.BigEndian.Uint64(b[offLockID:offLockedAt]),
			LockedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[offLockedAt:offTimeout]))),
			Timeout:  timeout,
		},
		Values: b[HeaderLen : HeaderLen+int(n) : HeaderLen+int(n)],
	}, nil
}

// Encode returns the record's stored form.
func (r Record) Encode() []byte {
	b := make([]byte, HeaderLen+len(r.Values)+TrailerLen)
	copy(b, Prefix)
	var flags byte
	if r.Locked {
		flags |= flagLocked
	}
	if r.Removed {
		flags |= flagRemoved
	}
	b[offState] = flags
	b[offActions] = byte(r.Actions)
	binary.BigEndian.PutUint64(b[SeqOffset:], r.Seq)
	binary.BigEndian.PutUint64(b[offDataSeq:], r.DataSeq)
	binary.BigEndian.PutUint64(b[offLockID:], r.LockID)
	var lockedAt int64
	if !r.LockedAt.IsZero() {
		lockedAt = r.LockedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(b[offLockedAt:], uint64(lockedAt))
	binary.BigEndian.PutUint64(b[offTimeout:], uint64(r.Timeout))
	binary.BigEndian.PutUint32(b[offLen:], uint32(len(r.Values)))
	copy(b[HeaderLen:], r.Values)
	binary.BigEndian.PutUint32(b[len(b)-TrailerLen:], crc32.Checksum(b[:len(b)-TrailerLen], castagnoli))
	return b
}

// Split cuts a well-framed record into its frame (the header followed by
// the checksum, FrameLen bytes) and its values, for a store that keeps the
// two apart (Couchbase's sub-document layout). ok is false when b is not
// a version 1 record of consistent length; the checksum is not checked.
// Both slices share b.
func Split(b []byte) (frame, values []byte, ok bool) {
	if len(b) < MinLen || string(b[:len(Prefix)]) != Prefix {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b[offLen:HeaderLen])
	if uint64(len(b)) != uint64(MinLen)+uint64(n) {
		return nil, nil, false
	}
	frame = make([]byte, 0, FrameLen)
	frame = append(frame, b[:HeaderLen]...)
	frame = append(frame, b[len(b)-TrailerLen:]...)
	return frame, b[HeaderLen : len(b)-TrailerLen], true
}

// FrameLen is the length of the frame Split returns: header and checksum.
const FrameLen = HeaderLen + TrailerLen

// Join is the inverse of Split: the record whose frame and values these
// are. It checks only the frame's length; Decode checks the rest.
func Join(frame, values []byte) ([]byte, error) {
	if len(frame) != FrameLen {
		return nil, fmt.Errorf("%w: record frame of %d bytes, want %d", session.ErrCorrupt, len(frame), FrameLen)
	}
	b := make([]byte, 0, len(frame)+len(values))
	b = append(b, frame[:HeaderLen]...)
	b = append(b, values...)
	return append(b, frame[HeaderLen:]...), nil
}

// DataChanged reports whether next changes what a durable copy of prev
// must hold: the values or timeout (DataSeq), the action flags, removal.
// Taking, renewing or releasing the lock changes none of them.
func DataChanged(prev, next Header) bool {
	return next.DataSeq != prev.DataSeq || next.Actions != prev.Actions ||
		next.Removed != prev.Removed || next.Timeout != prev.Timeout
}

// SameData reports whether a and b are records holding the same data:
// values, DataSeq, timeout, action flags and removal state, whatever their
// lock state and Seq.
func SameData(a, b []byte) bool {
	ra, err := Decode(a)
	if err != nil {
		return false
	}
	rb, err := Decode(b)
	if err != nil || DataChanged(ra.Header, rb.Header) {
		return false
	}
	return bytes.Equal(ra.Values, rb.Values)
}

// ReviveGap is how far Revive advances a record's lock id and Seq. A
// cache can have granted at most this many locks, and made at most this
// many changes, since the durable copy was written.
const ReviveGap = 1 << 32

// Epoch is the lineage of a record with this Seq: Revive adds ReviveGap to
// Seq, so every revival starts a new epoch (as long as one lineage makes
// fewer than 2^32 changes). Of two copies of different epochs, the higher
// epoch's is the live one.
func Epoch(seq uint64) uint64 { return seq / ReviveGap }

// Revive returns a durable copy of a record as it must be served after
// the cache in front of the durable tier lost the live record (LRU
// eviction, flush, restart). Any lock the cache had granted is gone, so the
// copy comes back unlocked, and its lock id is advanced by ReviveGap past
// any id the lost cache could have handed out: a holder of a lost lock is
// fenced (its write, release or removal fails with ErrLockLost) and lock
// ids still increase within the incarnation. Seq advances by the same gap
// (Epoch + 1), so the revived copy is newer than any copy the lost cache
// held. Errors wrap session.ErrCorrupt.
func Revive(b []byte) ([]byte, error) {
	r, err := Decode(b)
	if err != nil {
		return nil, err
	}
	r.Locked = false
	r.LockID += ReviveGap
	r.Seq += ReviveGap
	return r.Encode(), nil
}
