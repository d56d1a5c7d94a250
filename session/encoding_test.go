package session_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("user", sampleProfile()))
	require.NoError(t, v.Set("visits", 12))
	require.NoError(t, v.Set("ключ", "значение"))
	require.NoError(t, v.Set(strings.Repeat("k", session.MaxKeyLen), strings.Repeat("v", 300)))

	data, err := v.Encode(0)
	require.NoError(t, err)
	require.Equal(t, byte(0x01), data[0], "version byte")

	d, err := session.DecodeValues(data, nil, 0)
	require.NoError(t, err)
	require.Equal(t, v.Keys(), d.Keys())
	p, ok, err := session.Get[profile](d, "user")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, sampleProfile(), p)
	requireInt(t, d, "visits", 12)

	again, err := d.Encode(0)
	require.NoError(t, err)
	require.Equal(t, data, again, "untouched values re-encode byte for byte")
}

func TestEncodeDecodeEmpty(t *testing.T) {
	v := session.NewValues(nil)
	data, err := v.Encode(0)
	require.NoError(t, err)
	require.Equal(t, []byte{0x01, 0x00}, data)
	d, err := session.DecodeValues(data, nil, 0)
	require.NoError(t, err)
	require.Zero(t, d.Len())

	for _, empty := range [][]byte{nil, {}} {
		d, err := session.DecodeValues(empty, nil, 0)
		require.NoError(t, err)
		require.NotNil(t, d)
		require.Zero(t, d.Len())
		require.False(t, d.Dirty())
		require.NoError(t, d.Set("a", 1), "decoded empty Values are usable")
	}
}

func TestEncodeLayout(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("b", "x"))
	require.NoError(t, v.Set("a", 1))
	data, err := v.Encode(0)
	require.NoError(t, err)
	want := []byte{0x01, 2, 1, 'a', 1, '1', 1, 'b', 3, '"', 'x', '"'}
	require.Equal(t, want, data)
}

func TestEncodeDeterministic(t *testing.T) {
	keys := []string{"zeta", "alpha", "mid", "beta", "gamma", "a", "zz", "omega"}
	var first []byte
	for i := range 20 {
		v := session.NewValues(nil)
		// Insert in a different order each time.
		for j := range keys {
			k := keys[(i+j*3)%len(keys)]
			require.NoError(t, v.Set(k, map[string]int{k: len(k), "x": 1, "y": 2}))
		}
		data, err := v.Encode(0)
		require.NoError(t, err)
		if first == nil {
			first = data
			continue
		}
		require.Equal(t, first, data, "iteration %d", i)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("big", strings.Repeat("x", 1000)))
	data, err := v.Encode(0)
	require.NoError(t, err)
	size := len(data)

	_, err = v.Encode(size - 1)
	require.ErrorIs(t, err, session.ErrTooLarge)
	require.Contains(t, err.Error(), fmt.Sprint(size))
	out, err := v.Encode(size)
	require.NoError(t, err)
	require.Equal(t, data, out)

	huge := session.NewValues(nil)
	require.NoError(t, huge.Set("big", strings.Repeat("x", session.MaxEncodedSize)))
	_, err = huge.Encode(0)
	require.ErrorIs(t, err, session.ErrTooLarge, "default limit")
	_, err = huge.Encode(-1)
	require.ErrorIs(t, err, session.ErrTooLarge, "negative limit means default")
	_, err = huge.Encode(2 * session.MaxEncodedSize)
	require.NoError(t, err, "a larger explicit limit")
}

func TestDecodeTooLarge(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("big", strings.Repeat("x", 1000)))
	data, err := v.Encode(0)
	require.NoError(t, err)

	_, err = session.DecodeValues(data, nil, len(data)-1)
	require.ErrorIs(t, err, session.ErrTooLarge)
	require.NotErrorIs(t, err, session.ErrCorrupt)
	_, err = session.DecodeValues(data, nil, len(data))
	require.NoError(t, err)

	big := make([]byte, session.MaxEncodedSize+1)
	big[0] = 0x01
	_, err = session.DecodeValues(big, nil, 0)
	require.ErrorIs(t, err, session.ErrTooLarge)
}

// appendEntry appends one v1 entry.
func appendEntry(b []byte, key, value string) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

func TestDecodeCorrupt(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("a", 1))
	require.NoError(t, v.Set("b", "two"))
	good, err := v.Encode(0)
	require.NoError(t, err)

	cases := map[string][]byte{
		"version 0":             {0x00, 0x00},
		"version 2":             append([]byte{0x02}, good[1:]...),
		"version 0xff":          {0xff},
		"JSON instead":          []byte(`{"a":1}`),
		"version only":          {0x01},
		"count truncated":       {0x01, 0x80},
		"count overflow":        {0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"huge count":            {0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 'a', 0},
		"count too big":         {0x01, 2, 1, 'a', 0},
		"count too small":       append([]byte{0x01, 1}, good[2:]...),
		"huge key length":       {0x01, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a', 0},
		"key length past end":   {0x01, 1, 5, 'a', 0},
		"key length truncated":  {0x01, 1, 0x80},
		"huge value length":     {0x01, 1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f},
		"value length past end": {0x01, 1, 1, 'a', 9, 'x'},
		"value len truncated":   {0x01, 1, 1, 'a'},
		"trailing bytes":        append(append([]byte{}, good...), 0),
		"empty key":             appendEntry([]byte{0x01, 1}, "", "1"),
		"bad utf8 key":          appendEntry([]byte{0x01, 1}, "\xff", "1"),
		"key too long":          appendEntry([]byte{0x01, 1}, strings.Repeat("k", session.MaxKeyLen+1), "1"),
		"duplicate key":         appendEntry(appendEntry([]byte{0x01, 2}, "a", "1"), "a", "2"),
		"unsorted keys":         appendEntry(appendEntry([]byte{0x01, 2}, "b", "1"), "a", "2"),
	}
	for n := 1; n < len(good); n++ {
		cases[fmt.Sprintf("truncated to %d", n)] = good[:n]
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			d, err := session.DecodeValues(data, nil, 0)
			require.ErrorIs(t, err, session.ErrCorrupt)
			require.Nil(t, d)
		})
	}
}

func TestDecodeCopiesInput(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("s", "hello"))
	data, err := v.Encode(0)
	require.NoError(t, err)
	buf := bytes.Clone(data)
	d, err := session.DecodeValues(buf, nil, 0)
	require.NoError(t, err)
	for i := range buf {
		buf[i] = 0
	}
	s, ok, err := session.Get[string](d, "s")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "hello", s)
}

func TestDecodedValuesAreIndependent(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("a", "aaa"))
	require.NoError(t, v.Set("b", "bbb"))
	data, err := v.Encode(0)
	require.NoError(t, err)
	d, err := session.DecodeValues(data, nil, 0)
	require.NoError(t, err)
	require.NoError(t, d.Set("a", strings.Repeat("z", 100)))
	s, _, err := session.Get[string](d, "b")
	require.NoError(t, err)
	require.Equal(t, "bbb", s)
}
