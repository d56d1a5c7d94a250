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
// Format (all integers big-endian). Version 2 is version 1 with the
// session's creation time after the timeout; a record without a creation
// time is written as version 1, byte for byte as before, and both versions
// are read:
//
//	offset size field
//	0      2    magic "SL"
//	2      1    format version (1 or 2)
//	3      1    state flags: bit 0 locked, bit 1 removed (tombstone)
//	4      1    action flags (session.ActionFlags)
//	5      8    Seq: bumped by every change of the record
//	13     8    DataSeq: bumped by every change of the values or timeout
//	21     8    LockID: id of the latest lock taken
//	29     8    LockedAt: holder's wall clock at acquisition, Unix ns (informational only)
//	37     8    Timeout: the session's own timeout, ns
//	version 1:
//	45     4    n: length of the values
//	49     n    values in session's stored form
//	49+n   4    CRC-32C of bytes [0, 49+n)
//	version 2:
//	45     8    Created: the creating server's wall clock, Unix ns (> 0)
//	53     4    n: length of the values
//	57     n    values in session's stored form
//	57+n   4    CRC-32C of bytes [0, 57+n)
//
// Deltas. A stored record (the base, either version) may be followed by
// deltas: small frames that each change only the lock state of the record
// before them, written by a store that can append to a stored value under
// the same compare-and-swap that guards every write (memcached's meta
// append, `ms <key> <len> MA C<cas>`). Taking, releasing, renewing or
// breaking the lock and handing over the action flags then move DeltaLen
// bytes instead of the whole record. A delta can change nothing else: not
// the values, the timeout, DataSeq, the creation time or removal; such a
// change is written as a whole record again, which drops the deltas (the
// compaction). Decode applies the deltas in order and reports how many
// there were (Record.Deltas); Encode always writes a whole record.
//
//	offset size field
//	0      1    tag DeltaTag (0xD1: delta format 1)
//	1      1    state flags: bit 0 locked (no other bit may be set)
//	2      1    action flags (session.ActionFlags)
//	3      8    Seq: the Seq of the record before it + 1
//	11     8    LockID: at least the LockID of the record before it
//	19     8    LockedAt: Unix ns (informational only)
//	27     4    CRC-32C of bytes [0, 27)
//
// The base's framing is unchanged, so no version number changes; readers
// before deltas existed check that a record's length is exactly its
// header, values and checksum, and so reject a record followed by deltas
// as corrupt (session.ErrCorrupt), never misread it. A pool of servers
// that still runs such readers must not have deltas written to it (the
// memcached store's Config.WholeWrites).
package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/sessionlock/sessionlock/session"
)

// Layout constants. Stores that must find a field without decoding (SQL
// comparing two records' Seq in a statement) build their offsets from
// these; Seq and everything before it are at the same offsets in every
// version.
const (
	// Magic is the first two bytes of every record; the format version
	// follows it.
	Magic = "SL"
	// Prefix is the first bytes of a version 1 record: Magic and the
	// format version 1.
	Prefix = "SL\x01"
	// PrefixV2 is the first bytes of a version 2 record.
	PrefixV2 = "SL\x02"
	// MinVersion and Version are the oldest and newest format versions
	// this package reads; it writes version 2 when the record has a
	// creation time, else version 1.
	MinVersion = 1
	Version    = 2
	// HeaderLen is the length of a version 1 header, which precedes the
	// values; HeaderLenV2 of a version 2 header.
	HeaderLen   = 49
	HeaderLenV2 = HeaderLen + 8
	// TrailerLen is the length of the CRC-32C that follows the values.
	TrailerLen = 4
	// MinLen is the length of the shortest record: version 1, no values.
	MinLen = HeaderLen + TrailerLen
	// SeqOffset and SeqLen locate Seq, a big-endian uint64: comparing the
	// bytes of two records' Seq orders them as comparing the numbers does.
	SeqOffset = 5
	SeqLen    = 8

	offVersion  = 2
	offActions  = 4
	offState    = 3
	offDataSeq  = 13
	offLockID   = 21
	offLockedAt = 29
	offTimeout  = 37
	offCreated  = 45 // version 2; the values' length in version 1

	flagLocked  = 1 << 0
	flagRemoved = 1 << 1

	// Offsets in a delta.
	dOffState    = 1
	dOffActions  = 2
	dOffSeq      = 3
	dOffLockID   = 11
	dOffLockedAt = 19
	dOffCRC      = 27
)

// Delta constants: see the package documentation.
const (
	// DeltaTag is the first byte of every delta.
	DeltaTag = 0xD1
	// DeltaLen is the length of one delta.
	DeltaLen = 31
	// MaxDeltas bounds the deltas a record may carry: Delta refuses a
	// change of a record that already carries MaxDeltas, so that change is
	// written whole (compacting the record). An exclusive request that
	// changes nothing appends two (lock and release): one in every
	// MaxDeltas/2 + 1 such requests in a row rewrites the record. Decode
	// reads any number.
	MaxDeltas = 16
)

// headerLen returns the header length of format version v, or 0 for a
// version this package does not know.
func headerLen(v byte) int {
	switch v {
	case 1:
		return HeaderLen
	case 2:
		return HeaderLenV2
	}
	return 0
}

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
	// LockedAt is the holder's wall clock when it took the lock: the lock
	// age for logs, and, with LockID, the identity by which the provider
	// recognises an acquisition whose outcome was unknown. No decision
	// depends on it as a time.
	LockedAt time.Time
	// Timeout is the session's own timeout, the TTL of the record.
	Timeout time.Duration
	// Created is the creating server's wall clock when the session was
	// created, from which its absolute lifetime counts (provider
	// Config.Lifetime); zero when unknown (a version 1 record). Only the
	// time from 1970 to 2262 can be stored: Encode writes any other as
	// unknown.
	Created time.Time
}

// Record is a decoded session record.
type Record struct {
	Header
	// Values are the session's values in package session's stored form,
	// not decoded. A decoded Record shares them with the bytes it was
	// decoded from.
	Values []byte
	// Deltas is how many deltas followed the whole record in the stored
	// form it was decoded from (0 for a whole record). Encode ignores it;
	// a writer that appends a delta (Delta) counts it up, one that writes
	// the record whole sets it to 0.
	Deltas int
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

// Decode decodes a stored record: a whole record, followed by any number
// of deltas, which it applies in order. A record that fails any check
// (magic, version, lengths, checksums, flags, timeout range, a delta's
// Seq or lock id out of order, a delta on a tombstone) is an error
// wrapping session.ErrCorrupt. The returned Values share b.
func Decode(b []byte) (Record, error) {
	if len(b) < MinLen {
		return Record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", session.ErrCorrupt, len(b))
	}
	hl := headerLen(b[offVersion])
	if hl == 0 || len(b) < hl+TrailerLen {
		return decodeWhole(b) // reports what is wrong
	}
	base := uint64(hl+TrailerLen) + uint64(binary.BigEndian.Uint32(b[hl-4:hl]))
	if base >= uint64(len(b)) {
		return decodeWhole(b)
	}
	r, err := decodeWhole(b[:base])
	if err != nil {
		return Record{}, err
	}
	tail := b[base:]
	if len(tail)%DeltaLen != 0 {
		return Record{}, fmt.Errorf("%w: record of %d bytes: %d bytes after the whole record are not a number of deltas", session.ErrCorrupt, len(b), len(tail))
	}
	if r.Removed {
		return Record{}, fmt.Errorf("%w: deltas after a removed record", session.ErrCorrupt)
	}
	for ; len(tail) > 0; tail = tail[DeltaLen:] {
		if err := r.apply(tail[:DeltaLen]); err != nil {
			return Record{}, err
		}
	}
	return r, nil
}

// apply applies delta d to r.
func (r *Record) apply(d []byte) error {
	if d[0] != DeltaTag {
		return fmt.Errorf("%w: delta %d: unknown delta tag %#x", session.ErrCorrupt, r.Deltas+1, d[0])
	}
	if crc32.Checksum(d[:dOffCRC], castagnoli) != binary.BigEndian.Uint32(d[dOffCRC:]) {
		return fmt.Errorf("%w: delta %d: checksum mismatch", session.ErrCorrupt, r.Deltas+1)
	}
	if d[dOffState]&^flagLocked != 0 {
		return fmt.Errorf("%w: delta %d: state flags %#x", session.ErrCorrupt, r.Deltas+1, d[dOffState])
	}
	seq := binary.BigEndian.Uint64(d[dOffSeq:])
	lockID := binary.BigEndian.Uint64(d[dOffLockID:])
	if seq != r.Seq+1 || lockID < r.LockID {
		return fmt.Errorf("%w: delta %d: Seq %d and lock id %d do not follow Seq %d and lock id %d", session.ErrCorrupt, r.Deltas+1, seq, lockID, r.Seq, r.LockID)
	}
	r.Locked = d[dOffState]&flagLocked != 0
	r.Actions = session.ActionFlags(d[dOffActions])
	r.Seq = seq
	r.LockID = lockID
	r.LockedAt = time.Unix(0, int64(binary.BigEndian.Uint64(d[dOffLockedAt:])))
	r.Deltas++
	return nil
}

// Delta returns the delta that, appended to the stored form of cur,
// makes it decode as next. ok is false when a delta cannot carry the
// change, and next must be written whole: next changes more than the lock
// state, lock id, LockedAt and action flags (values, timeout, DataSeq,
// creation time, removal), its Seq is not cur's + 1, its lock id is lower,
// or cur already carries MaxDeltas deltas. cur must be the record as
// stored (decoded, or as last written), not a modified copy.
func Delta(cur, next *Record) (delta []byte, ok bool) {
	if cur == nil || next == nil || cur.Deltas >= MaxDeltas || cur.Removed || next.Removed ||
		next.Seq != cur.Seq+1 || next.LockID < cur.LockID || next.DataSeq != cur.DataSeq ||
		next.Timeout != cur.Timeout || next.createdNanos() != cur.createdNanos() ||
		!bytes.Equal(cur.Values, next.Values) {
		return nil, false
	}
	d := make([]byte, DeltaLen)
	d[0] = DeltaTag
	if next.Locked {
		d[dOffState] = flagLocked
	}
	d[dOffActions] = byte(next.Actions)
	binary.BigEndian.PutUint64(d[dOffSeq:], next.Seq)
	binary.BigEndian.PutUint64(d[dOffLockID:], next.LockID)
	var lockedAt int64
	if !next.LockedAt.IsZero() {
		lockedAt = next.LockedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(d[dOffLockedAt:], uint64(lockedAt))
	binary.BigEndian.PutUint32(d[dOffCRC:], crc32.Checksum(d[:dOffCRC], castagnoli))
	return d, true
}

// decodeWhole decodes a whole record, without deltas.
func decodeWhole(b []byte) (Record, error) {
	if len(b) < MinLen {
		return Record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", session.ErrCorrupt, len(b))
	}
	if b[0] != Magic[0] || b[1] != Magic[1] {
		return Record{}, fmt.Errorf("%w: bad record magic", session.ErrCorrupt)
	}
	hl := headerLen(b[offVersion])
	if hl == 0 {
		return Record{}, fmt.Errorf("%w: unknown record format version %d", session.ErrCorrupt, b[offVersion])
	}
	if len(b) < hl+TrailerLen {
		return Record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", session.ErrCorrupt, len(b))
	}
	n := binary.BigEndian.Uint32(b[hl-4 : hl])
	if uint64(n) != uint64(len(b)-hl-TrailerLen) {
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
	timeout := time.Duration(binary.BigEndian.Uint64(b[offTimeout : offTimeout+8]))
	if timeout < session.MinTimeout || timeout > session.MaxTimeout {
		return Record{}, fmt.Errorf("%w: record timeout %v out of range", session.ErrCorrupt, timeout)
	}
	var created time.Time
	if hl == HeaderLenV2 {
		ns := int64(binary.BigEndian.Uint64(b[offCreated : offCreated+8]))
		if ns <= 0 {
			return Record{}, fmt.Errorf("%w: record creation time %d out of range", session.ErrCorrupt, ns)
		}
		created = time.Unix(0, ns)
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
			Created:  created,
		},
		Values: b[hl : hl+int(n) : hl+int(n)],
	}, nil
}

// createdNanos is the stored form of the creation time: Unix ns, or 0
// (version 1) when unknown or not representable.
func (h *Header) createdNanos() int64 {
	if h.Created.IsZero() || h.Created.Before(time.Unix(0, 1)) || h.Created.After(time.Unix(0, math.MaxInt64)) {
		return 0
	}
	return h.Created.UnixNano()
}

// Encode returns the record's stored form.
func (r Record) Encode() []byte {
	created := r.createdNanos()
	hl, prefix := HeaderLen, Prefix
	if created != 0 {
		hl, prefix = HeaderLenV2, PrefixV2
	}
	b := make([]byte, hl+len(r.Values)+TrailerLen)
	copy(b, prefix)
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
	if created != 0 {
		binary.BigEndian.PutUint64(b[offCreated:], uint64(created))
	}
	binary.BigEndian.PutUint32(b[hl-4:], uint32(len(r.Values)))
	copy(b[hl:], r.Values)
	binary.BigEndian.PutUint32(b[len(b)-TrailerLen:], crc32.Checksum(b[:len(b)-TrailerLen], castagnoli))
	return b
}

// Split cuts a well-framed record into its frame (the header followed by
// the checksum) and its values, for a store that keeps the two apart
// (Couchbase's sub-document layout). ok is false when b is not a record of
// a known version and consistent length; the checksum is not checked. The
// frame is FrameLen bytes for a version 1 record, FrameLenV2 for version
// 2. The values share b.
func Split(b []byte) (frame, values []byte, ok bool) {
	if len(b) < MinLen || string(b[:len(Magic)]) != Magic {
		return nil, nil, false
	}
	hl := headerLen(b[offVersion])
	if hl == 0 || len(b) < hl+TrailerLen {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b[hl-4 : hl])
	if uint64(len(b)) != uint64(hl+TrailerLen)+uint64(n) {
		return nil, nil, false
	}
	frame = make([]byte, 0, hl+TrailerLen)
	frame = append(frame, b[:hl]...)
	frame = append(frame, b[len(b)-TrailerLen:]...)
	return frame, b[hl : len(b)-TrailerLen], true
}

// FrameLen is the length of a version 1 record's frame (Split): header and
// checksum. FrameLenV2 is a version 2 record's.
const (
	FrameLen   = HeaderLen + TrailerLen
	FrameLenV2 = HeaderLenV2 + TrailerLen
)

// Join is the inverse of Split: the record whose frame and values these
// are. It checks only the frame's version and length; Decode checks the
// rest.
func Join(frame, values []byte) ([]byte, error) {
	if len(frame) < 3 || headerLen(frame[offVersion])+TrailerLen != len(frame) {
		return nil, fmt.Errorf("%w: record frame of %d bytes does not match its version", session.ErrCorrupt, len(frame))
	}
	hl := len(frame) - TrailerLen
	b := make([]byte, 0, len(frame)+len(values))
	b = append(b, frame[:hl]...)
	b = append(b, values...)
	return append(b, frame[hl:]...), nil
}

// DataChanged reports whether next changes what a durable copy of prev
// must hold: the values or timeout (DataSeq), the action flags, removal,
// the creation time. Taking, renewing or releasing the lock changes none
// of them.
func DataChanged(prev, next Header) bool {
	return next.DataSeq != prev.DataSeq || next.Actions != prev.Actions ||
		next.Removed != prev.Removed || next.Timeout != prev.Timeout ||
		next.createdNanos() != prev.createdNanos()
}

// SameData reports whether a and b are records holding the same data:
// values, DataSeq, timeout, creation time, action flags and removal state,
// whatever their lock state and Seq.
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

// ReviveGap is how far Revive advances a record's Seq: a cache can have
// made at most this many changes since the durable copy was written.
const ReviveGap = 1 << 32

// LockReviveGap is how far Revive advances a record's lock id. A lock
// advances the id by at most 2^20 (the provider's random steps, which
// make an acquisition recognisable), so a cache can have granted 2^28
// locks since the durable copy was written before a revived id could fall
// below one it granted; from an incarnation base below 2^62 there is room
// for about 49,000 revivals below 2^64.
const LockReviveGap = 1 << 48

// Epoch is the lineage of a record with this Seq: Revive adds ReviveGap to
// Seq, so every revival starts a new epoch (as long as one lineage makes
// fewer than 2^32 changes). Of two copies of different epochs, the higher
// epoch's is the live one.
func Epoch(seq uint64) uint64 { return seq / ReviveGap }

// Revive returns a durable copy of a record as it must be served after
// the cache in front of the durable tier lost the live record (LRU
// eviction, flush, restart). Any lock the cache had granted is gone, so the
// copy comes back unlocked, and its lock id is advanced by LockReviveGap
// past any id the lost cache could have handed out: a holder of a lost lock is
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
	r.LockID += LockReviveGap
	r.Seq += ReviveGap
	return r.Encode(), nil
}
