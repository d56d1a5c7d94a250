// Package envelope is the codec of the small header that the memcached
// store's witness replication (docs/replication.md §2.1) puts in front of
// every record it keeps: the configuration (epoch, primary, secondary), the
// version, the pending and nowit marks, a nonce, the node-list digest and
// the session's timeout, closed by a CRC-32C of the envelope. A data record
// is an envelope followed by the provider's record bytes, which this
// package never looks at; a witness is an envelope alone.
package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the first byte of every envelope this package writes.
const Version = 1

// Size is the length of an encoded envelope.
const Size = 1 + 1 + 4 + 1 + 1 + 8 + 8 + 8*Lineage + 4 + 4 + 4

// Lineage is how many ancestors an envelope names (Ancestors).
const Lineage = 8

// Bits of the mark byte.
const (
	markPending = 1 << iota
	markNoWit
	markAll = markPending | markNoWit
)

// ErrCorrupt: the bytes are not an envelope of this version (too short, an
// unknown version or mark, a candidate index out of range, or a checksum
// mismatch).
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

// Child returns the envelope fields of a client write replacing e: a new
// version with e as its parent. The caller sets the nonce and the rest.
func (e Envelope) Child() Envelope {
	c := e
	c.V++
	copy(c.Ancestors[1:], e.Ancestors[:Lineage-1])
	c.Ancestors[0] = e.Nonce
	return c
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
// configuration: exact up to Lineage versions later.
func (e Envelope) Descends(anc Envelope) Descent {
	d := int64(e.V) - int64(anc.V)
	switch {
	case d <= 0:
		return NotDescendant
	case d > Lineage:
		return Unknown
	case e.Ancestors[d-1] == anc.Nonce:
		return Descendant
	}
	return NotDescendant
}

// SameConfig reports whether e and o name the same configuration (E, P, Q).
func (e Envelope) SameConfig(o Envelope) bool {
	return e.E == o.E && e.P == o.P && e.Q == o.Q
}

// Append appends the encoded envelope to dst.
func (e Envelope) Append(dst []byte) []byte {
	start := len(dst)
	var mark byte
	if e.Pending {
		mark |= markPending
	}
	if e.NoWit {
		mark |= markNoWit
	}
	dst = append(dst, Version, mark)
	dst = binary.BigEndian.AppendUint32(dst, e.E)
	dst = append(dst, e.P, e.Q)
	dst = binary.BigEndian.AppendUint64(dst, e.V)
	dst = binary.BigEndian.AppendUint64(dst, e.Nonce)
	for _, a := range e.Ancestors {
		dst = binary.BigEndian.AppendUint64(dst, a)
	}
	dst = binary.BigEndian.AppendUint32(dst, e.Digest)
	dst = binary.BigEndian.AppendUint32(dst, e.Timeout)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// Wrap returns the envelope followed by payload (a data record), in one
// new slice.
func (e Envelope) Wrap(payload []byte) []byte {
	return append(e.Append(make([]byte, 0, Size+len(payload))), payload...)
}

// Decode reads the envelope at the start of b and returns it and the bytes
// after it (the payload, which shares b's memory). Any defect is an error
// wrapping ErrCorrupt.
func Decode(b []byte) (Envelope, []byte, error) {
	if len(b) < Size {
		return Envelope{}, nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrCorrupt, len(b), Size)
	}
	if b[0] != Version {
		return Envelope{}, nil, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	if sum := binary.BigEndian.Uint32(b[Size-4:]); sum != crc32.Checksum(b[:Size-4], castagnoli) {
		return Envelope{}, nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	mark := b[1]
	if mark&^markAll != 0 {
		return Envelope{}, nil, fmt.Errorf("%w: unknown marks %#x", ErrCorrupt, mark)
	}
	e := Envelope{
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
		return Envelope{}, nil, fmt.Errorf("%w: candidates %d and %d", ErrCorrupt, e.P, e.Q)
	}
	return e, b[Size:], nil
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
