package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// MaxEncodedSize is the default size limit of a stored session, in bytes:
// Encode and DecodeValues refuse larger with an error wrapping ErrTooLarge.
const MaxEncodedSize = 1 << 20

// Format versions of the stored form. The first byte of every non-empty
// stored session is its version; DecodeValues keeps a decoder per version.
const (
	// formatV1: version byte, uvarint count, then per entry in strictly
	// increasing key order: uvarint key length, key, uvarint value length,
	// value (the codec's bytes).
	formatV1 byte = 0x01

	// formatCurrent is the version Encode writes.
	formatCurrent = formatV1
)

// minEntryV1 is the fewest bytes one v1 entry takes: a one-byte key length,
// a one-byte key and a one-byte value length (for an empty value).
const minEntryV1 = 3

// Encode returns the stored form of v: the current format version, then the
// values sorted by key, each as the codec's bytes (values are not re-encoded).
// The same values always give the same bytes. If the result would exceed
// limit bytes (MaxEncodedSize when limit <= 0), Encode returns an error
// wrapping ErrTooLarge that reports the size.
func (v *Values) Encode(limit int) ([]byte, error) {
	if limit <= 0 {
		limit = MaxEncodedSize
	}
	keys := v.Keys()
	size := 1 + uvarintLen(uint64(len(keys)))
	for _, k := range keys {
		n := len(v.items[k])
		size += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(n)) + n
	}
	if size > limit {
		return nil, fmt.Errorf("%w: encoded session is %d bytes, limit is %d", ErrTooLarge, size, limit)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, formatCurrent)
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		b := v.items[k]
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	return buf, nil
}

// uvarintLen returns how many bytes binary.AppendUvarint writes for x.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// DecodeValues decodes the stored form data into clean Values using codec
// (DefaultCodec if nil). Empty data decodes to empty Values: a new session has
// no values yet. The values themselves are not decoded until read.
//
// Data longer than limit bytes (MaxEncodedSize when limit <= 0) is refused
// with an error wrapping ErrTooLarge. Anything that is not a well-formed
// stored session (unknown version, truncated, trailing bytes, keys unsorted,
// repeated or invalid) is refused with an error wrapping ErrCorrupt.
// DecodeValues never panics, and it bounds every count and length by the
// input that remains, so no input makes it allocate more than a small
// multiple of len(data). data is copied; the caller may reuse it.
func DecodeValues(data []byte, codec Codec, limit int) (*Values, error) {
	if limit <= 0 {
		limit = MaxEncodedSize
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: stored session is %d bytes, limit is %d", ErrTooLarge, len(data), limit)
	}
	v := NewValues(codec)
	if len(data) == 0 {
		return v, nil
	}
	switch data[0] {
	case formatV1:
		if err := v.decodeV1(data[1:]); err != nil {
			return nil, err
		}
		return v, nil
	default:
		return nil, fmt.Errorf("%w: unknown format version 0x%02x", ErrCorrupt, data[0])
	}
}

// decodeV1 fills v, which is empty, from the body of a version 1 record.
func (v *Values) decodeV1(body []byte) error {
	count, n := binary.Uvarint(body)
	if n <= 0 {
		return fmt.Errorf("%w: v1: bad entry count", ErrCorrupt)
	}
	body = body[n:]
	if count > uint64(len(body)/minEntryV1) {
		return fmt.Errorf("%w: v1: %d entries cannot fit in %d bytes", ErrCorrupt, count, len(body))
	}
	// One copy holds every value, so the caller may reuse data and
	// decoding costs one allocation for all values plus one per key.
	buf := bytes.Clone(body)
	items := make(map[string][]byte, int(count))
	pos := 0
	var prev string
	for i := range int(count) {
		klen, err := readLen(buf, &pos)
		if err != nil {
			return fmt.Errorf("%w: v1: entry %d key: %w", ErrCorrupt, i, err)
		}
		key := string(buf[pos : pos+klen])
		pos += klen
		if err := checkKey(key); err != nil {
			return fmt.Errorf("%w: v1: entry %d: %w", ErrCorrupt, i, err)
		}
		if i > 0 && key <= prev {
			return fmt.Errorf("%w: v1: entry %d: keys not strictly increasing", ErrCorrupt, i)
		}
		prev = key
		vlen, err := readLen(buf, &pos)
		if err != nil {
			return fmt.Errorf("%w: v1: entry %d value: %w", ErrCorrupt, i, err)
		}
		items[key] = slices.Clip(buf[pos : pos+vlen])
		pos += vlen
	}
	if pos != len(buf) {
		return fmt.Errorf("%w: v1: %d trailing bytes", ErrCorrupt, len(buf)-pos)
	}
	v.items = items
	return nil
}

// errTruncated and errLength describe a bad length prefix.
var (
	errTruncated = errors.New("truncated")
	errLength    = errors.New("length exceeds remaining input")
)

// readLen reads a uvarint length at buf[*pos:] and advances *pos past it. It
// fails unless that many bytes remain after the prefix.
func readLen(buf []byte, pos *int) (int, error) {
	x, n := binary.Uvarint(buf[*pos:])
	if n <= 0 {
		return 0, errTruncated
	}
	*pos += n
	if x > uint64(len(buf)-*pos) {
		return 0, errLength
	}
	return int(x), nil
}
