// Package envelope is the codec of the small header that the memcached
// store's witness replication (docs/replication.md §2.1) puts in front of
// every record it keeps: the configuration (epoch, primary, secondary), the
// version, the pending and nowit marks, a nonce, the node-list digest,
// the session's timeout and the session's lifetime, closed by a CRC-32C of
// the envelope. A data record
// is an envelope followed by the provider's record bytes (the base), which
// this package never looks at, and zero or more trailers, each a delta of
// the provider's (a lock change, appended to the record in place) with the
// nonce and timeout of the version it makes; a witness is an envelope alone.
//
// The layout of a data item:
//
//	envelope (Size bytes, its Len field = n) | base (n bytes) | trailer*
//	trailer = TrailerTag | u16 len | delta (len bytes) | u64 nonce | u32 timeout | u32 CRC-32C
//
// The record's envelope is the last one: each trailer makes the next
// version of the one before it (Next: version + 1, the parent's nonce
// first among the ancestors, same configuration, marks and digest, the
// trailer's nonce and timeout, not pending), so an item with trailers
// decodes to exactly the envelope a whole write of the same change would
// carry. Its payload is the base followed by the deltas, the bytes the
// provider wrote: record.Decode reads a record followed by its deltas.
//
// An item may carry a promise (R11, ballots): the epoch a decision
// promised on it before its fence. The promise belongs to the item, not to
// its record: it is not part of Envelope (so no record derived from a
// decoded envelope carries it), it is written only by Promised (the item's
// head rewritten as version 3, base and trailers byte-exact) and read by
// PromiseOf, and a rewrite of the same bytes (a re-stamp, an append) keeps
// it. Items without a promise are written as version 2, which processes
// of the releases before promises decode too.
//
// A data record may carry a lifetime (docs/replication.md §16 item 5): a
// random nonce drawn when the session is created (R8's Add) and copied by
// every record derived from it, so that two records of one id's
// configuration can be told apart across a deletion or expiry and a new
// creation. An envelope with a lifetime is written as version 4
// (SizeLifetime bytes: version 2's fields, the lifetime, the base length,
// the promise, 0 for none, and the checksum); Promised keeps it version 4.
// A witness (Append) never carries one. Records of versions 1 to 3 decode
// to lifetime 0, unknown.
//
// A data record names the client write whose value it carries
// (docs/replication.md §17): Carries, the nonce of that write: its own
// nonce for a client write, its base's Carried for a decision's new record
// (a failover, a re-ballot), which keeps its base's value at its base's
// version under a new nonce. An envelope with Carries set is written as
// version 5 (SizeCarries bytes: version 4's fields, then Carries, the
// base length, the promise and the checksum), its lifetime 0 allowed (a
// session created before lifetimes); Promised keeps it version 5. A
// process of this release writes version 5 for every data record it
// derives (Next, a decision), so its records lock out processes of
// earlier releases (ErrCorrupt): every app server is upgraded together.
// Records of versions 1 to 4 decode to Carries 0: Carried is then their
// nonce, what they meant before. A witness never carries one (Append
// writes version 2).
package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the first byte of every envelope this package writes
// without a promise. Version 2 added Len, the length of the base, so that
// trailers can follow it; Decode still reads version 1 (Size1 bytes, no
// Len: the payload is everything after it, no trailers).
const Version = 2

// VersionPromised is the first byte of an envelope that carries a promise
// (Promised): version 2's fields, then the promise, then the checksum
// (SizePromised bytes).
const VersionPromised = 3

// Size is the length of an encoded envelope.
const Size = 1 + 1 + 4 + 1 + 1 + 8 + 8 + 8*Lineage + 4 + 4 + 4 + 4

// Size1 is the length of a version 1 envelope.
const Size1 = Size - 4

// SizePromised is the length of a version 3 envelope (one with a promise).
const SizePromised = Size + 4

// VersionLifetime is the first byte of an envelope that carries a
// lifetime (Envelope.Lifetime not 0): version 2's fields, the lifetime,
// the base length, the promise (0 for none) and the checksum
// (SizeLifetime bytes).
const VersionLifetime = 4

// SizeLifetime is the length of a version 4 envelope (one with a
// lifetime).
const SizeLifetime = Size + 12

// VersionCarries is the first byte of an envelope that names the write
// it carries (Envelope.Carries not 0): version 4's fields (its lifetime
// may be 0 here), then Carries, the base length, the promise (0 for none)
// and the checksum (SizeCarries bytes).
const VersionCarries = 5

// SizeCarries is the length of a version 5 envelope.
const SizeCarries = SizeLifetime + 8

// Offsets in an envelope's head: fields is where version 2's fields end
// (the lifetime of versions 4 and 5, the base length of versions 2 and
// 3); Carries of version 5 follows its lifetime.
const (
	fields    = 32 + 8*Lineage
	lenAt4    = fields + 8
	promAt3   = fields + 4
	promAt4   = lenAt4 + 4
	carriesAt = fields + 8
	lenAt5    = carriesAt + 8
	promAt5   = lenAt5 + 4
)

// TrailerTag is the first byte of every trailer.
const TrailerTag = 0xE2

// TrailerOverhead is what a trailer adds to its delta: tag, length, nonce,
// timeout and CRC.
const TrailerOverhead = 1 + 2 + 8 + 4 + 4

// MaxDelta is the longest delta a trailer can carry.
const MaxDelta = 1<<16 - 1

// Lineage is how many ancestors an envelope names (Ancestors).
const Lineage = 8

// Bits of the mark byte.
const (
	markPending = 1 << iota
	markNoWit
	markAll = markPending | markNoWit
)

// ErrCorrupt: the bytes are not an envelope of a known version (too short,
// an unknown version or mark, a candidate index out of range, or a
// checksum mismatch), or a trailer after it is malformed (truncated, an
// unknown tag, a checksum mismatch, a base length past the end, a trailer
// after a pending record).
var ErrCorrupt = errors.New("envelope: corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Envelope is the replication state of one record.
type Envelope struct {
	// E is the configuration's epoch.
	E uint32
	// P and Q are the candidate indexes (0-2) of the primary and the
	// secondary data copy; the third candidate holds the witness.
	P, Q uint8
	// V is the version, bumped by every client write.
	V uint64
	// Pending marks a failover's fence (R5): never returned to a caller.
	Pending bool
	// NoWit marks a configuration established with nothing present on
	// its third node (R4.1, R8).
	NoWit bool
	// Nonce is random, new for every client write and every decision's
	// new record: equal identities mean one write.
	Nonce uint64
	// Carries is the nonce of the client write whose value (at this
	// version) the record carries: Nonce for a client write, the base's
	// Carried for a decision's new record (never inherited by a client
	// write: Child clears it, Next sets it). 0 is not set (a record of
	// versions 1 to 4, written before it): see Carried. Not part of the
	// identity.
	Carries uint64
	// Ancestors are the nonces of the records before this one in its
	// chain of client writes, the parent first (0 where there is none).
	// Not part of the identity: a writer in doubt can tell whether a
	// version up to Lineage later was built on its write.
	Ancestors [Lineage]uint64
	// Digest is the node-list digest of the process that wrote it.
	Digest uint32
	// Timeout is the session's timeout in seconds as the last client
	// write gave it (R10).
	Timeout uint32
	// Lifetime is random, drawn when the session was created (R8's Add)
	// and copied by every record derived from it: records of different
	// lifetimes belong to different sessions of one id (deleted or
	// expired and created again). 0 is unknown: a record written before
	// lifetimes (versions 1 to 3) or a witness. Not part of the identity.
	Lifetime uint64
}

// Identity is what tells two records apart (docs/replication.md §2.1):
// configuration, version, nonce and the pending mark (not nowit: review
// 4's D4, not the parent, timeout or digest).
type Identity struct {
	E       uint32
	P, Q    uint8
	V       uint64
	Nonce   uint64
	Pending bool
}

// ID returns the record's identity.
func (e Envelope) ID() Identity {
	return Identity{E: e.E, P: e.P, Q: e.Q, V: e.V, Nonce: e.Nonce, Pending: e.Pending}
}

// Carried returns the nonce of the client write whose value the record
// carries: Carries, or Nonce for a record that does not name one (versions
// 1 to 4: a client write, or a decision of an earlier release, which named
// only itself).
func (e Envelope) Carried() uint64 {
	if e.Carries != 0 {
		return e.Carries
	}
	return e.Nonce
}

// Child returns the envelope fields of a client write replacing e: a new
// version whose parent is the write e carries (Carried: through a
// decision, its base's write). Carries is cleared, never inherited (the
// caller sets it with the nonce, as Next does; left 0 the record is
// written without it, Carried then its nonce). The caller sets the nonce
// and the rest.
func (e Envelope) Child() Envelope {
	c := e
	c.V++
	copy(c.Ancestors[1:], e.Ancestors[:Lineage-1])
	c.Ancestors[0] = e.Carried()
	c.Carries = 0
	return c
}

// Next returns the envelope of the client write that a trailer with nonce
// and timeout makes of a record whose envelope is e: Child, with that
// nonce (its Carries too: a client write carries itself, after any head,
// an older one included) and timeout, not pending. A whole write of the
// same change carries the same envelope.
func (e Envelope) Next(nonce uint64, timeout uint32) Envelope {
	c := e.Child()
	c.Nonce, c.Carries, c.Timeout, c.Pending = nonce, nonce, timeout, false
	return c
}

// Decision returns the envelope of a decision's new record (a failover's
// fence and copy, a re-ballot) made of e: e with Carries set to the write
// e carries (taken before the caller draws the new nonce, which must not
// change it) and its nonce replaced by nonce. The caller sets the
// configuration and marks.
func (e Envelope) Decision(nonce uint64) Envelope {
	d := e
	d.Carries = e.Carried()
	d.Nonce = nonce
	return d
}

// Descent says whether a record was built on another.
type Descent int

// The answers of Descends.
const (
	NotDescendant Descent = iota // certainly not built on it
	Descendant                   // built on it
	Unknown                      // more than Lineage versions apart
)

// Descends reports whether e was built on anc, a record of the same
// configuration: exact up to Lineage versions later. An ancestor slot
// names the write its record carried (Child), so it is compared with
// anc's Carried.
func (e Envelope) Descends(anc Envelope) Descent {
	d := int64(e.V) - int64(anc.V)
	switch {
	case d <= 0:
		return NotDescendant
	case d > Lineage:
		return Unknown
	case e.Ancestors[d-1] == anc.Carried():
		return Descendant
	}
	return NotDescendant
}

// SameLifetime reports whether a and b are records of one known lifetime:
// both lifetimes known (not 0) and equal.
func SameLifetime(a, b Envelope) bool {
	return a.Lifetime != 0 && a.Lifetime == b.Lifetime
}

// OtherLifetime reports whether a and b are certainly records of
// different lifetimes (of different creations of the id): both lifetimes
// known (not 0) and different.
func OtherLifetime(a, b Envelope) bool {
	return a.Lifetime != 0 && b.Lifetime != 0 && a.Lifetime != b.Lifetime
}

// SameConfig reports whether e and o name the same configuration (E, P, Q).
func (e Envelope) SameConfig(o Envelope) bool {
	return e.E == o.E && e.P == o.P && e.Q == o.Q
}

// Append appends the encoded envelope to dst, with no payload after it
// (a witness): version 2, with no lifetime and no Carries (witnesses
// carry neither: no check reads a witness's chain).
func (e Envelope) Append(dst []byte) []byte {
	e.Lifetime, e.Carries = 0, 0
	return e.appendLen(dst, 0)
}

// appendLen appends the encoded envelope with Len n (no promise): version
// 5 when e names the write it carries, else version 4 when it carries a
// lifetime, else version 2.
func (e Envelope) appendLen(dst []byte, n uint32) []byte {
	start := len(dst)
	version := byte(Version)
	switch {
	case e.Carries != 0:
		version = VersionCarries
	case e.Lifetime != 0:
		version = VersionLifetime
	}
	var mark byte
	if e.Pending {
		mark |= markPending
	}
	if e.NoWit {
		mark |= markNoWit
	}
	dst = append(dst, version, mark)
	dst = binary.BigEndian.AppendUint32(dst, e.E)
	dst = append(dst, e.P, e.Q)
	dst = binary.BigEndian.AppendUint64(dst, e.V)
	dst = binary.BigEndian.AppendUint64(dst, e.Nonce)
	for _, a := range e.Ancestors {
		dst = binary.BigEndian.AppendUint64(dst, a)
	}
	dst = binary.BigEndian.AppendUint32(dst, e.Digest)
	dst = binary.BigEndian.AppendUint32(dst, e.Timeout)
	if version >= VersionLifetime {
		dst = binary.BigEndian.AppendUint64(dst, e.Lifetime)
		if version == VersionCarries {
			dst = binary.BigEndian.AppendUint64(dst, e.Carries)
		}
		dst = binary.BigEndian.AppendUint32(dst, n)
		dst = binary.BigEndian.AppendUint32(dst, 0) // no promise
	} else {
		dst = binary.BigEndian.AppendUint32(dst, n)
	}
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// Wrap returns the envelope followed by payload (a data record with no
// trailers: a whole write), in one new slice: version 5 when e names the
// write it carries, else version 4 when it carries a lifetime, else
// version 2, byte for byte as before lifetimes.
func (e Envelope) Wrap(payload []byte) []byte {
	return append(e.appendLen(make([]byte, 0, SizeCarries+len(payload)), uint32(len(payload))), payload...)
}

// AppendTrailer appends to dst the trailer that makes e of the record it
// is appended to: e must be parent.Next(e.Nonce, e.Timeout), parent the
// envelope the record decodes to (only the nonce and timeout are written).
// delta is at most MaxDelta bytes (longer panics: callers check).
func (e Envelope) AppendTrailer(dst, delta []byte) []byte {
	if len(delta) > MaxDelta {
		panic("envelope: delta too long")
	}
	start := len(dst)
	dst = append(dst, TrailerTag)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(delta)))
	dst = append(dst, delta...)
	dst = binary.BigEndian.AppendUint64(dst, e.Nonce)
	dst = binary.BigEndian.AppendUint32(dst, e.Timeout)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// Decode reads the record in b: its envelope (the last one, after every
// trailer) and its payload (the base followed by the trailers' deltas;
// with no trailers it shares b's memory). Any defect is an error wrapping
// ErrCorrupt.
func Decode(b []byte) (Envelope, []byte, error) {
	e, payload, _, err := decode(b, true)
	return e, payload, err
}

// Trailers reports how many trailers the record in b carries, and whether
// a trailer may be appended to it (ok: a well-formed record of version 2
// to 5; a version 1 envelope has no base length to append after; a
// process of this release appends only to version 5 heads: CarriesHead).
func Trailers(b []byte) (n int, ok bool) {
	_, _, n, err := decode(b, false)
	return n, err == nil && len(b) > 0 && b[0] != 1
}

// headSize is the length of the head of version v (0: unknown version).
func headSize(v byte) int {
	switch v {
	case 1:
		return Size1
	case Version:
		return Size
	case VersionPromised:
		return SizePromised
	case VersionLifetime:
		return SizeLifetime
	case VersionCarries:
		return SizeCarries
	}
	return 0
}

// CarriesHead reports whether the item b's head is of version 5 (it names
// the write it carries). A process of this release appends a trailer only
// to such an item (docs/replication.md §17, rvcarry M4): a trailer after an
// older head decodes, for processes of earlier releases, to a record
// whose ancestors they name by decision nonces, which the negative rules
// of descent would misread.
func CarriesHead(b []byte) bool {
	return len(b) > 0 && b[0] == VersionCarries
}

// PromiseOf returns the epoch promised on the item b (R11), 0 when it
// carries none: the promise field of a version 3, 4 or 5 head. It reads
// only the head and checks its checksum; Decode checks the rest.
func PromiseOf(b []byte) uint32 {
	at := promAt3
	switch {
	case len(b) == 0:
		return 0
	case b[0] == VersionLifetime:
		at = promAt4
	case b[0] == VersionCarries:
		at = promAt5
	case b[0] != VersionPromised:
		return 0
	}
	size := headSize(b[0])
	if len(b) < size || binary.BigEndian.Uint32(b[size-4:]) != crc32.Checksum(b[:size-4], castagnoli) {
		return 0
	}
	return binary.BigEndian.Uint32(b[at:])
}

// Promised returns a copy of the item b (a data record or a witness,
// well-formed) with the promise e in its head, its base and trailers
// byte-exact, so that the item decodes to the same envelope and payload
// (R11's promise step: the same record, promised). A version 4 head (one
// with a lifetime) stays version 4, of the same length, its lifetime kept,
// and a version 5 head version 5, its lifetime and Carries kept; any
// other is rewritten as version 3 (a version 1 item's payload becomes its
// base).
func Promised(b []byte, e uint32) ([]byte, error) {
	if _, _, _, err := decode(b, false); err != nil {
		return nil, err
	}
	if at, size := promAt4, SizeLifetime; b[0] == VersionLifetime || b[0] == VersionCarries {
		if b[0] == VersionCarries {
			at, size = promAt5, SizeCarries
		}
		out := bytes.Clone(b)
		binary.BigEndian.PutUint32(out[at:], e)
		binary.BigEndian.PutUint32(out[size-4:], crc32.Checksum(out[:size-4], castagnoli))
		return out, nil
	}
	var n uint32
	rest := b[headSize(b[0]):]
	if b[0] == 1 {
		n = uint32(len(rest))
	} else {
		n = binary.BigEndian.Uint32(b[fields:])
	}
	out := make([]byte, 0, SizePromised+len(rest))
	out = append(out, VersionPromised)
	out = append(out, b[1:fields]...)
	out = binary.BigEndian.AppendUint32(out, n)
	out = binary.BigEndian.AppendUint32(out, e)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	return append(out, rest...), nil
}

// decode reads the record in b; without withPayload, the payload of a
// record with trailers is not put together (nil).
func decode(b []byte, withPayload bool) (e Envelope, payload []byte, trailers int, err error) {
	if len(b) == 0 {
		return Envelope{}, nil, 0, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	size := headSize(b[0])
	if size == 0 {
		return Envelope{}, nil, 0, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	if len(b) < size {
		return Envelope{}, nil, 0, fmt.Errorf("%w: %d bytes, want at least %d", ErrCorrupt, len(b), size)
	}
	if sum := binary.BigEndian.Uint32(b[size-4:]); sum != crc32.Checksum(b[:size-4], castagnoli) {
		return Envelope{}, nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	mark := b[1]
	if mark&^markAll != 0 {
		return Envelope{}, nil, 0, fmt.Errorf("%w: unknown marks %#x", ErrCorrupt, mark)
	}
	e = Envelope{
		E:       binary.BigEndian.Uint32(b[2:6]),
		P:       b[6],
		Q:       b[7],
		V:       binary.BigEndian.Uint64(b[8:16]),
		Nonce:   binary.BigEndian.Uint64(b[16:24]),
		Digest:  binary.BigEndian.Uint32(b[24+8*Lineage:]),
		Timeout: binary.BigEndian.Uint32(b[28+8*Lineage:]),
		Pending: mark&markPending != 0,
		NoWit:   mark&markNoWit != 0,
	}
	for i := range e.Ancestors {
		e.Ancestors[i] = binary.BigEndian.Uint64(b[24+8*i:])
	}
	if e.P > 2 || e.Q > 2 || e.P == e.Q {
		return Envelope{}, nil, 0, fmt.Errorf("%w: candidates %d and %d", ErrCorrupt, e.P, e.Q)
	}
	if b[0] == 1 {
		return e, b[Size1:], 0, nil
	}
	lenAt := fields
	switch b[0] {
	case VersionLifetime:
		lenAt = lenAt4
		if e.Lifetime = binary.BigEndian.Uint64(b[fields:]); e.Lifetime == 0 {
			return Envelope{}, nil, 0, fmt.Errorf("%w: version 4 with no lifetime", ErrCorrupt)
		}
	case VersionCarries:
		// Lifetime 0 is allowed here (a session created before
		// lifetimes); Carries 0 is not: "set" is told by the version.
		lenAt = lenAt5
		e.Lifetime = binary.BigEndian.Uint64(b[fields:])
		if e.Carries = binary.BigEndian.Uint64(b[carriesAt:]); e.Carries == 0 {
			return Envelope{}, nil, 0, fmt.Errorf("%w: version 5 with no Carries", ErrCorrupt)
		}
	}
	n := int64(binary.BigEndian.Uint32(b[lenAt:]))
	if n > int64(len(b)-size) {
		return Envelope{}, nil, 0, fmt.Errorf("%w: a base of %d bytes in %d", ErrCorrupt, n, len(b)-size)
	}
	payload = b[size : size+int(n)]
	rest := b[size+int(n):]
	if len(rest) == 0 {
		return e, payload, 0, nil
	}
	if withPayload {
		payload = append(make([]byte, 0, len(payload)+len(rest)), payload...)
	} else {
		payload = nil
	}
	for len(rest) > 0 {
		if e.Pending {
			return Envelope{}, nil, 0, fmt.Errorf("%w: a trailer after a pending record", ErrCorrupt)
		}
		if len(rest) < TrailerOverhead || rest[0] != TrailerTag {
			return Envelope{}, nil, 0, fmt.Errorf("%w: trailer %d malformed", ErrCorrupt, trailers+1)
		}
		d := int(binary.BigEndian.Uint16(rest[1:3]))
		end := 3 + d + 8 + 4
		if len(rest) < end+4 {
			return Envelope{}, nil, 0, fmt.Errorf("%w: trailer %d truncated", ErrCorrupt, trailers+1)
		}
		if sum := binary.BigEndian.Uint32(rest[end:]); sum != crc32.Checksum(rest[:end], castagnoli) {
			return Envelope{}, nil, 0, fmt.Errorf("%w: trailer %d checksum mismatch", ErrCorrupt, trailers+1)
		}
		if withPayload {
			payload = append(payload, rest[3:3+d]...)
		}
		e = e.Next(binary.BigEndian.Uint64(rest[3+d:]), binary.BigEndian.Uint32(rest[3+d+8:]))
		rest = rest[end+4:]
		trailers++
	}
	return e, payload, trailers, nil
}

// Digest is the node-list digest: CRC-32C of the replication mode and the
// node addresses in the order given (callers sort them), each closed by a
// zero byte.
func Digest(mode string, addrs []string) uint32 {
	h := crc32.New(castagnoli)
	h.Write([]byte(mode))
	h.Write([]byte{0})
	for _, a := range addrs {
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	return h.Sum32()
}
