// Package session holds what sessionlock stores for a session: its id, its
// named values and their stored form, and the per-session data a handler
// works with (values and timeout).
//
// # Session ids
//
// NewID returns 32 characters of lowercase RFC 4648 base32 (a-z, 2-7), no
// padding, encoding 160 bits from crypto/rand. Ids are safe in URLs, cookies
// and store keys (memcached included). ValidID is the one strict check (exact
// length, exact alphabet) that every id passes before it becomes part of a
// store key; CheckID reports why an id fails, wrapping ErrInvalidID, and
// quotes no more than its first 8 bytes.
//
// # Values and codecs
//
// Values keeps every value as the bytes its Codec produced and decodes it only
// when it is read, so a request that touches one value of a large session
// decodes only that one, and untouched values are written back byte for byte.
// Set encodes at once: codec errors surface at Set, and later changes to the
// caller's object do not leak into the session. Read typed values with the
// generic Get, which takes a *Values or a request's *middleware.Session
// (any Getter); Pop reads and deletes (a flash message):
//
//	n, ok, err := session.Get[int](values, "visits")
//	msg, ok, err := session.Pop[string](middleware.FromContext(ctx), "flash")
//
// The default codec is JSONCodec. Typed reads round-trip structs (exported
// fields, nested), integers of every size, floats, strings, bools, time.Time
// (same instant; monotonic reading dropped, location becomes a fixed offset),
// []byte, maps with string or integer keys, slices and pointers. NaN and ±Inf
// are refused at Set with an error saying JSON cannot hold them. Untyped reads
// (Values.Value) return JSON's generic types: float64, string, bool, nil,
// []any, map[string]any. GobCodec is the alternative: it reads back the exact
// Go types, including NaN, but needs typed reads and gob.Register for
// concrete types stored in interface-typed places.
//
// Values records per key what was set or deleted, and whether it was cleared,
// so that Merge can replay one request's changes onto a freshly read session
// (lock-free mode: concurrent requests that change different keys both keep
// their change).
//
// # Stored form
//
// Encode writes, and DecodeValues reads, a versioned layout. The first byte
// is the format version; every later format gets a new version byte and
// DecodeValues keeps a decoder for each, so old sessions stay readable.
// Zero bytes (an empty record) decode to empty Values.
//
// Version 1 (first byte 0x01), all integers unsigned LEB128 varints as
// written by encoding/binary.AppendUvarint:
//
//	+------+-------+----------------------------------------------+
//	| 0x01 | count | count x entry, keys in strictly increasing   |
//	|      |       | byte order (so the encoding is deterministic)|
//	+------+-------+----------------------------------------------+
//	entry: | klen | key (klen bytes, valid UTF-8, 1..256) | vlen | value (vlen bytes) |
//
// The value bytes are exactly the codec's output; the codec itself is not
// recorded, so a session must be read with the codec that wrote it. Nothing
// may follow the last entry. The timeout and lock state are not part of this
// form: the provider keeps them in its own record around it.
//
// Encode and DecodeValues refuse records over a limit (MaxEncodedSize, 1 MiB,
// by default) with ErrTooLarge. DecodeValues never panics on arbitrary bytes:
// anything malformed returns an error wrapping ErrCorrupt, and every count and
// length is checked against the bytes that remain before anything is
// allocated. FuzzDecodeValues checks this; its seed corpus in
// testdata/fuzz/FuzzDecodeValues runs with every go test.
//
// # Concurrency
//
// Values and Data are not safe for concurrent use; the middleware serialises
// a request's access. Reading calls may run concurrently with each other.
package session
