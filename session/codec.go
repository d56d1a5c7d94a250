package session

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// A Codec turns a session value into bytes and back.
//
// Marshal must return a slice the codec does not keep or reuse: Values keeps
// it as the stored form of the value. Unmarshal decodes into v, which is a
// non-nil pointer, and must neither modify nor keep data.
//
// Every Values reading a stored session must use the codec that wrote it; the
// stored form does not record which one that was.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// DefaultCodec returns the codec used when none is given: JSONCodec.
func DefaultCodec() Codec { return JSONCodec{} }

// JSONCodec encodes values with encoding/json. It is the default codec.
//
// Typed reads (Get, Values.Get into a pointer of the type that was set)
// round-trip structs (exported fields), all integer and float types, strings,
// bools, time.Time (the same instant; the monotonic reading is dropped and the
// location becomes a fixed offset), []byte, maps with string or integer keys,
// slices, arrays and pointers to any of these.
//
// NaN and ±Inf have no JSON form: Set refuses them with an error saying so.
// Channels, functions and complex numbers are refused the same way.
//
// Untyped reads (Values.Value) yield JSON's generic types: float64 for every
// number (integers above 2^53 lose precision), string (also for []byte,
// base64 and for time.Time, RFC 3339), bool, nil, []any and map[string]any.
type JSONCodec struct{}

// MaxJSONDepth is how deeply JSONCodec lets arrays and objects nest:
// encoding/json's decoder refuses deeper input, so a deeper value could be
// stored but never read back. Marshal refuses it.
const MaxJSONDepth = 10000

// Marshal encodes v as JSON. It refuses what JSON cannot hold (NaN, ±Inf,
// cycles, channels, functions) and what encoding/json could encode but
// never decode (nesting deeper than MaxJSONDepth).
func (JSONCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		var uv *json.UnsupportedValueError
		if errors.As(err, &uv) {
			if strings.HasPrefix(uv.Str, "encountered a cycle") {
				return nil, fmt.Errorf("session: JSON cannot encode a value that contains itself (%s): %w", uv.Str, err)
			}
			return nil, fmt.Errorf("session: JSON cannot encode %s (JSON has no NaN or Infinity): %w", uv.Str, err)
		}
		return nil, err
	}
	if d := jsonDepth(b); d > MaxJSONDepth {
		return nil, fmt.Errorf("session: JSON value nests %d levels deep; encoding/json reads at most %d, so it could never be read back", d, MaxJSONDepth)
	}
	return b, nil
}

// jsonDepth returns how deeply arrays and objects nest in the valid JSON b.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// Unmarshal decodes JSON data into v, a non-nil pointer.
func (JSONCodec) Unmarshal(data []byte, v any) error {
	return json.Unmarshal(data, v)
}

// GobCodec encodes values with encoding/gob, each value as its own gob
// stream. It round-trips every type gob supports, including structs
// (exported fields), NaN and ±Inf, and reads back exactly the Go types written.
//
// Reads must be typed (Get or Values.Get with a pointer to the type that was
// set): a gob value is written as its concrete type, so Values.Value, which
// decodes into an untyped interface, returns an error with GobCodec.
//
// Values of interface type inside what is set (a map[string]any, a struct
// field of type any or error, ...) need their concrete types registered with
// gob.Register in every process that writes or reads them, as gob requires;
// otherwise Set or the read fails with gob's "type not registered" error.
//
// gob is not hardened against hostile input; use it only with stores that
// only trusted code can write to.
type GobCodec struct{}

// Marshal encodes v as a gob stream.
func (GobCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// errGobUntyped explains why GobCodec cannot decode into an interface.
var errGobUntyped = errors.New("session: GobCodec cannot decode into an untyped interface; read with a typed destination")

// Unmarshal decodes the gob stream data into v, a non-nil pointer.
func (GobCodec) Unmarshal(data []byte, v any) (err error) {
	if _, ok := v.(*any); ok {
		return errGobUntyped
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("session: gob decoding panicked: %v", r)
		}
	}()
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}
