package session

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
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

// Marshal encodes v as JSON.
func (JSONCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		var uv *json.UnsupportedValueError
		if errors.As(err, &uv) {
			return nil, fmt.Errorf("session: JSON cannot encode %s (JSON has no NaN or Infinity): %w", uv.Str, err)
		}
		return nil, err
	}
	return b, nil
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
