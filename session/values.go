package session

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"
)

// MaxKeyLen is the longest key, in bytes, that Values accepts.
const MaxKeyLen = 256

// ErrInvalidKey is wrapped when a key is empty, longer than MaxKeyLen bytes
// or not valid UTF-8.
var ErrInvalidKey = errors.New("session: invalid key")

// Values are a session's named values, with per-key dirty tracking and lazy
// decoding.
//
// Each value is kept as the bytes its codec produced and decoded only when a
// handler reads it, on every read: the session never shares an object with the
// caller. Set encodes at once, so codec errors surface at Set, and changing
// the caller's object afterwards does not change the session; to change a
// value read from the session, Set it again.
//
// Values records which keys were set or deleted, and whether it was cleared,
// since it was created, decoded or marked clean; Dirty reports it and Merge
// replays it onto another Values.
//
// Values is not safe for concurrent use: a change must not run at the same
// time as any other call. Calls that only read (Get, Value, Has, Keys, Len,
// Dirty, Encode, Codec) may run concurrently with each other.
type Values struct {
	codec   Codec
	items   map[string][]byte   // key -> encoded value; the slices are never modified
	dirty   bool                // any Set, Delete or Clear since load
	cleared bool                // Clear was called since load
	touched map[string]struct{} // keys set or deleted since load (after the last Clear)
}

// NewValues returns empty Values using codec, or DefaultCodec if codec is nil.
func NewValues(codec Codec) *Values {
	if codec == nil {
		codec = DefaultCodec()
	}
	return &Values{codec: codec, items: make(map[string][]byte)}
}

// Codec returns the codec v encodes and decodes values with.
func (v *Values) Codec() Codec { return v.codec }

// checkKey returns nil or an error wrapping ErrInvalidKey.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, longest allowed is %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidKey)
	}
	return nil
}

// Set encodes value with the codec and stores it under key, replacing any
// previous value. It returns an error wrapping ErrInvalidKey for a bad key, or
// the codec's error (wrapped) when value cannot be encoded; either way v is
// unchanged.
func (v *Values) Set(key string, value any) error {
	if err := checkKey(key); err != nil {
		return err
	}
	b, err := v.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("session: encoding value for key %q: %w", key, err)
	}
	v.put(key, b)
	return nil
}

// put stores already encoded bytes and records the change.
func (v *Values) put(key string, b []byte) {
	v.items[key] = b
	v.touch(key)
}

// touch records that key was set or deleted.
func (v *Values) touch(key string) {
	v.dirty = true
	if v.touched == nil {
		v.touched = make(map[string]struct{})
	}
	v.touched[key] = struct{}{}
}

// Get decodes the value stored under key into dst, which must be a non-nil
// pointer, and reports whether key was present. An absent key returns false
// and a nil error and leaves dst alone. As with the codec's own Unmarshal, dst
// should point to a zero value: with JSONCodec, fields missing from the stored
// value keep what dst held.
func (v *Values) Get(key string, dst any) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	b, ok := v.items[key]
	if !ok {
		return false, nil
	}
	if err := v.codec.Unmarshal(b, dst); err != nil {
		return true, fmt.Errorf("session: decoding value for key %q: %w", key, err)
	}
	return true, nil
}

// Value returns the value stored under key decoded into an untyped
// interface, and whether key was present. What type it has depends on the
// codec (see JSONCodec); use Get for a typed read.
func (v *Values) Value(key string) (any, bool, error) {
	var x any
	ok, err := v.Get(key, &x)
	if err != nil || !ok {
		return nil, ok, err
	}
	return x, true, nil
}

// Has reports whether key has a value.
func (v *Values) Has(key string) bool {
	_, ok := v.items[key]
	return ok
}

// Delete removes key's value. Deleting an absent key still counts as a change
// (Dirty reports true, Merge deletes the key), so a request's "make sure this
// is gone" survives a concurrent write. An invalid key cannot be present;
// deleting it does nothing.
func (v *Values) Delete(key string) {
	if checkKey(key) != nil {
		return
	}
	delete(v.items, key)
	v.touch(key)
}

// Clear removes every value. Merge replays it as a Clear, so keys another
// request added meanwhile are removed too.
func (v *Values) Clear() {
	clear(v.items)
	v.dirty = true
	v.cleared = true
	v.touched = nil
}

// Keys returns the keys that have values, sorted.
func (v *Values) Keys() []string {
	return slices.Sorted(maps.Keys(v.items))
}

// Len returns the number of values.
func (v *Values) Len() int { return len(v.items) }

// Dirty reports whether Set, Delete, Clear or Merge was called since v was
// created by NewValues or DecodeValues, or since the last MarkClean.
func (v *Values) Dirty() bool { return v.dirty }

// MarkClean forgets the recorded changes: Dirty reports false and Merge with
// v as the changes applies nothing, until the next change.
func (v *Values) MarkClean() {
	v.dirty = false
	v.cleared = false
	v.touched = nil
}

// Clone returns an independent copy of v with the same codec, values and
// recorded changes.
func (v *Values) Clone() *Values {
	c := &Values{
		codec:   v.codec,
		items:   maps.Clone(v.items),
		dirty:   v.dirty,
		cleared: v.cleared,
		touched: maps.Clone(v.touched),
	}
	if c.items == nil {
		c.items = make(map[string][]byte)
	}
	return c
}

// Merge applies the changes recorded in changes onto v: first its Clear, if
// it was cleared, then for every key it set or deleted, that key's final
// state in changes. Keys that changes did not touch keep v's value.
//
// It serves lock-free writes: v is the session freshly read from the store,
// changes is the request's copy. Two concurrent requests that change
// different keys both keep their change; on the same key the last one merged
// wins. The merged changes are recorded in v as if made by Set, Delete and
// Clear. Both must use the same codec; values are copied as encoded bytes,
// never decoded. Merge with a nil changes, or with v itself, does nothing.
func (v *Values) Merge(changes *Values) {
	if changes == nil || changes == v {
		return
	}
	if changes.cleared {
		v.Clear()
	}
	for key := range changes.touched {
		if b, ok := changes.items[key]; ok {
			v.put(key, b)
		} else {
			delete(v.items, key)
			v.touch(key)
		}
	}
}
