package session

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// FuzzDecodeValues checks that DecodeValues never panics, refuses bad input
// only with ErrCorrupt or ErrTooLarge, and that whatever it accepts encodes
// and decodes again to the same keys and value bytes. The seed corpus in
// testdata/fuzz/FuzzDecodeValues runs with every go test.
func FuzzDecodeValues(f *testing.F) {
	v := NewValues(nil)
	if err := v.Set("user", map[string]any{"name": "Ada", "age": 36}); err != nil {
		f.Fatal(err)
	}
	if err := v.Set("n", 1); err != nil {
		f.Fatal(err)
	}
	good, err := v.Encode(0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{formatV1, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		d, err := DecodeValues(data, nil, limit)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrTooLarge", err)
			}
			if d != nil {
				t.Fatal("non-nil Values with an error")
			}
			return
		}
		if d.Dirty() {
			t.Fatal("decoded Values are dirty")
		}
		enc, err := d.Encode(limit)
		if err != nil {
			t.Fatalf("re-encoding accepted input: %v", err)
		}
		if len(enc) > max(len(data), 2) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(data), len(enc))
		}
		d2, err := DecodeValues(enc, nil, limit)
		if err != nil {
			t.Fatalf("decoding own encoding: %v", err)
		}
		if !slices.Equal(d.Keys(), d2.Keys()) {
			t.Fatalf("keys %q became %q", d.Keys(), d2.Keys())
		}
		for _, k := range d.Keys() {
			if err := checkKey(k); err != nil {
				t.Fatalf("decoded invalid key: %v", err)
			}
			if !bytes.Equal(d.items[k], d2.items[k]) {
				t.Fatalf("value of %q changed: %q -> %q", k, d.items[k], d2.items[k])
			}
		}
		enc2, err := d2.Encode(limit)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v", err)
		}
		// Reading any value must not panic either (errors are fine).
		for _, k := range d.Keys() {
			_, _, _ = d.Value(k)
		}
	})
}
