package session_test

import (
	"encoding/gob"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

// countingCodec counts the calls to an underlying codec.
type countingCodec struct {
	session.Codec
	mu         sync.Mutex
	marshals   int
	unmarshals int
}

func (c *countingCodec) Marshal(v any) ([]byte, error) {
	c.mu.Lock()
	c.marshals++
	c.mu.Unlock()
	return c.Codec.Marshal(v)
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.mu.Lock()
	c.unmarshals++
	c.mu.Unlock()
	return c.Codec.Unmarshal(data, v)
}

func (c *countingCodec) counts() (marshals, unmarshals int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.marshals, c.unmarshals
}

func TestNewValuesDefaultCodec(t *testing.T) {
	v := session.NewValues(nil)
	require.Equal(t, session.JSONCodec{}, v.Codec())
	require.Equal(t, session.JSONCodec{}, session.DefaultCodec())
	require.Zero(t, v.Len())
	require.Empty(t, v.Keys())
	require.False(t, v.Dirty())
}

func TestDirtyTracking(t *testing.T) {
	v := session.NewValues(nil)
	require.False(t, v.Dirty())

	require.NoError(t, v.Set("a", 1))
	require.True(t, v.Dirty(), "after Set")
	v.MarkClean()
	require.False(t, v.Dirty(), "after MarkClean")

	// Reads never dirty.
	_, _, err := session.Get[int](v, "a")
	require.NoError(t, err)
	_, _, err = v.Value("a")
	require.NoError(t, err)
	require.True(t, v.Has("a"))
	require.Equal(t, []string{"a"}, v.Keys())
	require.Equal(t, 1, v.Len())
	_, err = v.Encode(0)
	require.NoError(t, err)
	require.False(t, v.Dirty(), "after reads")

	v.Delete("a")
	require.True(t, v.Dirty(), "after Delete")
	v.MarkClean()

	v.Delete("absent")
	require.True(t, v.Dirty(), "after Delete of an absent key")
	v.MarkClean()

	v.Clear()
	require.True(t, v.Dirty(), "after Clear")
	v.MarkClean()

	// A failed Set changes nothing.
	require.Error(t, v.Set("", 1))
	require.Error(t, v.Set("nan", math.NaN()))
	v.Delete("")
	require.False(t, v.Dirty(), "after failed operations")

	// Decoded values start clean.
	require.NoError(t, v.Set("b", "x"))
	data, err := v.Encode(0)
	require.NoError(t, err)
	d, err := session.DecodeValues(data, nil, 0)
	require.NoError(t, err)
	require.False(t, d.Dirty(), "after DecodeValues")
}

func TestInvalidKeys(t *testing.T) {
	v := session.NewValues(nil)
	for name, key := range map[string]string{
		"empty":    "",
		"too long": strings.Repeat("k", session.MaxKeyLen+1),
		"bad utf8": "a\xffb",
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, v.Set(key, 1), session.ErrInvalidKey)
			_, err := v.Get(key, new(int))
			require.ErrorIs(t, err, session.ErrInvalidKey)
			require.False(t, v.Has(key))
			require.Zero(t, v.Len())
		})
	}
	require.NoError(t, v.Set(strings.Repeat("k", session.MaxKeyLen), 1))
	require.NoError(t, v.Set("ключ", 1))
}

func TestLazyDecoding(t *testing.T) {
	codec := &countingCodec{Codec: session.JSONCodec{}}
	v := session.NewValues(codec)
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, v.Set(k, map[string]int{k: 1}))
	}
	m, u := codec.counts()
	require.Equal(t, 3, m, "Set encodes at once")
	require.Equal(t, 0, u, "Set does not decode")

	data, err := v.Encode(0)
	require.NoError(t, err)
	d, err := session.DecodeValues(data, codec, 0)
	require.NoError(t, err)
	require.Equal(t, 3, d.Len())
	require.True(t, d.Has("b"))
	require.Equal(t, []string{"a", "b", "c"}, d.Keys())
	_, err = d.Encode(0)
	require.NoError(t, err)
	m, u = codec.counts()
	require.Equal(t, 3, m, "Encode/Decode/Has/Keys do not re-encode")
	require.Equal(t, 0, u, "nothing is decoded before a read")

	got, ok, err := session.Get[map[string]int](d, "b")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, map[string]int{"b": 1}, got)
	_, u = codec.counts()
	require.Equal(t, 1, u, "only the value read is decoded")
}

func TestSetCopiesValue(t *testing.T) {
	v := session.NewValues(nil)
	s := []int{1, 2, 3}
	require.NoError(t, v.Set("s", s))
	s[0] = 99
	got, _, err := session.Get[[]int](v, "s")
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, got, "later mutation of the caller's object leaked")
	got[1] = 42
	again, _, err := session.Get[[]int](v, "s")
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, again, "mutation of a read result leaked")
}

type address struct {
	Street string
	Zip    int
}

type profile struct {
	Name    string
	Age     int
	Tags    []string
	Home    address
	Extra   map[string]float64
	Friends []address
	Manager *address
	Since   time.Time
}

func sampleProfile() profile {
	return profile{
		Name:    "Ada",
		Age:     36,
		Tags:    []string{"math", "engines"},
		Home:    address{Street: "St James's Sq", Zip: 1},
		Extra:   map[string]float64{"pi": 3.14159},
		Friends: []address{{"A", 2}, {"B", 3}},
		Manager: &address{"Boss", 4},
		Since:   time.Date(1843, 9, 1, 12, 30, 0, 123456789, time.UTC),
	}
}

// roundTrip sets value under key, encodes and decodes the session, and reads
// the value back as T, through both the in-memory and the stored form.
func roundTrip[T any](t *testing.T, codec session.Codec, value T) T {
	t.Helper()
	v := session.NewValues(codec)
	require.NoError(t, v.Set("k", value))
	got, ok, err := session.Get[T](v, "k")
	require.NoError(t, err)
	require.True(t, ok)
	data, err := v.Encode(0)
	require.NoError(t, err)
	d, err := session.DecodeValues(data, codec, 0)
	require.NoError(t, err)
	got2, ok, err := session.Get[T](d, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, got, got2)
	return got2
}

func testTypedRoundTrips(t *testing.T, codec session.Codec) {
	t.Run("int", func(t *testing.T) { require.Equal(t, -42, roundTrip(t, codec, -42)) })
	t.Run("int64 max", func(t *testing.T) {
		require.Equal(t, int64(math.MaxInt64), roundTrip(t, codec, int64(math.MaxInt64)))
	})
	t.Run("int64 min", func(t *testing.T) {
		require.Equal(t, int64(math.MinInt64), roundTrip(t, codec, int64(math.MinInt64)))
	})
	t.Run("uint64 max", func(t *testing.T) {
		require.Equal(t, uint64(math.MaxUint64), roundTrip(t, codec, uint64(math.MaxUint64)))
	})
	t.Run("float", func(t *testing.T) { require.Equal(t, 0.1, roundTrip(t, codec, 0.1)) })
	t.Run("string", func(t *testing.T) {
		require.Equal(t, "héllo <&> \"\x00", roundTrip(t, codec, "héllo <&> \"\x00"))
	})
	t.Run("bool", func(t *testing.T) { require.Equal(t, true, roundTrip(t, codec, true)) })
	t.Run("struct", func(t *testing.T) {
		p := sampleProfile()
		require.Equal(t, p, roundTrip(t, codec, p))
	})
	t.Run("pointer to struct", func(t *testing.T) {
		p := sampleProfile()
		require.Equal(t, p, *roundTrip(t, codec, &p))
	})
	t.Run("time.Time", func(t *testing.T) {
		loc := time.FixedZone("X", 5*3600+30*60)
		now := time.Now().In(loc)
		got := roundTrip(t, codec, now)
		require.True(t, got.Equal(now), "got %v want %v", got, now)
		_, off := got.Zone()
		require.Equal(t, 5*3600+30*60, off)
	})
	t.Run("[]byte", func(t *testing.T) {
		b := []byte{0, 1, 2, 0xff, 'a'}
		require.Equal(t, b, roundTrip(t, codec, b))
	})
	t.Run("map", func(t *testing.T) {
		m := map[string]int{"a": 1, "b": -2}
		require.Equal(t, m, roundTrip(t, codec, m))
		mi := map[int]string{1: "a", -7: "b"}
		require.Equal(t, mi, roundTrip(t, codec, mi))
	})
	t.Run("slice", func(t *testing.T) {
		s := []string{"x", "", "z"}
		require.Equal(t, s, roundTrip(t, codec, s))
		as := []address{{"A", 1}, {"B", 2}}
		require.Equal(t, as, roundTrip(t, codec, as))
	})
}

func TestJSONTypedRoundTrips(t *testing.T) { testTypedRoundTrips(t, session.JSONCodec{}) }
func TestGobTypedRoundTrips(t *testing.T)  { testTypedRoundTrips(t, session.GobCodec{}) }

func TestGetAbsent(t *testing.T) {
	v := session.NewValues(nil)
	n, ok, err := session.Get[int](v, "missing")
	require.NoError(t, err)
	require.False(t, ok)
	require.Zero(t, n)

	dst := 7
	ok, err = v.Get("missing", &dst)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, 7, dst, "dst must be left alone")

	x, ok, err := v.Value("missing")
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, x)
}

func TestGetTypeMismatch(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("s", "text"))
	n, ok, err := session.Get[int](v, "s")
	require.Error(t, err)
	require.True(t, ok)
	require.Zero(t, n)
	require.Contains(t, err.Error(), `"s"`)

	_, err = v.Get("s", 5) // not a pointer
	require.Error(t, err)
}

func TestJSONUntypedValue(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("n", 3))
	require.NoError(t, v.Set("p", sampleProfile()))
	require.NoError(t, v.Set("b", []byte("hi")))

	x, ok, err := v.Value("n")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, float64(3), x)

	x, _, err = v.Value("p")
	require.NoError(t, err)
	m, isMap := x.(map[string]any)
	require.True(t, isMap, "got %T", x)
	require.Equal(t, "Ada", m["Name"])
	require.Equal(t, map[string]any{"Street": "St James's Sq", "Zip": float64(1)}, m["Home"])

	x, _, err = v.Value("b")
	require.NoError(t, err)
	require.Equal(t, "aGk=", x)
}

func TestJSONRefusesNaNAndInf(t *testing.T) {
	v := session.NewValues(nil)
	for name, f := range map[string]float64{"NaN": math.NaN(), "+Inf": math.Inf(1), "-Inf": math.Inf(-1)} {
		t.Run(name, func(t *testing.T) {
			err := v.Set("f", f)
			require.Error(t, err)
			require.Contains(t, err.Error(), "NaN or Infinity")
			require.Contains(t, err.Error(), `"f"`)
			// Nested too.
			require.Error(t, v.Set("g", struct{ X []float64 }{[]float64{1, f}}))
			require.False(t, v.Has("f"))
			require.False(t, v.Has("g"))
		})
	}
	require.Error(t, v.Set("ch", make(chan int)))
	require.Error(t, v.Set("fn", func() {}))
	require.Zero(t, v.Len())
}

func TestSetFailureKeepsOldValue(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("f", 1.5))
	v.MarkClean()
	require.Error(t, v.Set("f", math.NaN()))
	got, ok, err := session.Get[float64](v, "f")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1.5, got)
	require.False(t, v.Dirty())
}

type gobShape interface{ Area() float64 }

type gobSquare struct{ Side float64 }

func (s gobSquare) Area() float64 { return s.Side * s.Side }

// gobCircle is never registered with gob.
type gobCircle struct{ R float64 }

func (c gobCircle) Area() float64 { return math.Pi * c.R * c.R }

func TestGobCodec(t *testing.T) {
	codec := session.GobCodec{}
	// gob keeps NaN, which JSON cannot.
	v := session.NewValues(codec)
	require.NoError(t, v.Set("nan", math.NaN()))
	d := load(t, v)
	f, ok, err := session.Get[float64](d, "nan")
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, math.IsNaN(f))

	// Untyped reads are refused clearly.
	require.NoError(t, v.Set("n", 1))
	_, ok, err = v.Value("n")
	require.True(t, ok)
	require.ErrorContains(t, err, "untyped")

	// Interface values need gob.Register.
	type holder struct{ S gobShape }
	err = v.Set("h", holder{gobCircle{1}})
	require.ErrorContains(t, err, "not registered", "unregistered concrete type in an interface field")
	gob.Register(gobSquare{})
	h := roundTrip(t, codec, holder{gobSquare{2}})
	require.Equal(t, 4.0, h.S.Area())

	// Garbage does not panic.
	var x profile
	err = codec.Unmarshal([]byte{0xff, 0xff, 0xff, 0xff, 0x01}, &x)
	require.Error(t, err)
}

func TestDeleteClearKeys(t *testing.T) {
	v := session.NewValues(nil)
	for _, k := range []string{"c", "a", "b"} {
		require.NoError(t, v.Set(k, k))
	}
	require.Equal(t, []string{"a", "b", "c"}, v.Keys())
	require.Equal(t, 3, v.Len())
	v.Delete("b")
	require.False(t, v.Has("b"))
	require.Equal(t, []string{"a", "c"}, v.Keys())
	v.Clear()
	require.Zero(t, v.Len())
	require.Empty(t, v.Keys())
	require.NoError(t, v.Set("d", 1))
	require.Equal(t, []string{"d"}, v.Keys())
}

// load returns stored as a freshly decoded (clean) Values, the way a request
// sees the session it loaded.
func load(t *testing.T, stored *session.Values) *session.Values {
	t.Helper()
	data, err := stored.Encode(0)
	require.NoError(t, err)
	v, err := session.DecodeValues(data, stored.Codec(), 0)
	require.NoError(t, err)
	return v
}

func requireInt(t *testing.T, v *session.Values, key string, want int) {
	t.Helper()
	got, ok, err := session.Get[int](v, key)
	require.NoError(t, err)
	require.Truef(t, ok, "key %q missing", key)
	require.Equalf(t, want, got, "key %q", key)
}

func TestMergeDifferentKeysBothKept(t *testing.T) {
	base := session.NewValues(nil)
	require.NoError(t, base.Set("shared", 0))

	reqA, reqB := load(t, base), load(t, base)
	require.NoError(t, reqA.Set("a", 1))
	require.NoError(t, reqB.Set("b", 2))

	// A commits first.
	store := load(t, base)
	store.Merge(reqA)
	require.True(t, store.Dirty())
	// B commits onto what A left.
	store = load(t, store)
	store.Merge(reqB)

	requireInt(t, store, "a", 1)
	requireInt(t, store, "b", 2)
	requireInt(t, store, "shared", 0)
	require.Equal(t, []string{"a", "b", "shared"}, store.Keys())
}

func TestMergeSameKeyLastWriterWins(t *testing.T) {
	base := session.NewValues(nil)
	require.NoError(t, base.Set("k", 0))
	reqA, reqB := load(t, base), load(t, base)
	require.NoError(t, reqA.Set("k", 1))
	require.NoError(t, reqB.Set("k", 2))

	store := load(t, base)
	store.Merge(reqA)
	store = load(t, store)
	store.Merge(reqB)
	requireInt(t, store, "k", 2)

	store = load(t, base)
	store.Merge(reqB)
	store = load(t, store)
	store.Merge(reqA)
	requireInt(t, store, "k", 1)
}

func TestMergeDeletePropagates(t *testing.T) {
	base := session.NewValues(nil)
	require.NoError(t, base.Set("gone", 1))
	require.NoError(t, base.Set("kept", 2))
	req := load(t, base)
	req.Delete("gone")

	store := load(t, base)
	require.NoError(t, store.Set("other", 3)) // a concurrent request's change
	store.Merge(req)
	require.False(t, store.Has("gone"))
	requireInt(t, store, "kept", 2)
	requireInt(t, store, "other", 3)

	// Set then Delete: the final state (absent) wins.
	req = load(t, base)
	require.NoError(t, req.Set("kept", 9))
	req.Delete("kept")
	store = load(t, base)
	store.Merge(req)
	require.False(t, store.Has("kept"))

	// Delete then Set: the final state (present) wins.
	req = load(t, base)
	req.Delete("gone")
	require.NoError(t, req.Set("gone", 5))
	store = load(t, base)
	store.Merge(req)
	requireInt(t, store, "gone", 5)

	// Deleting a key the request never saw removes a concurrent write of it.
	req = load(t, base)
	req.Delete("flash")
	store = load(t, base)
	require.NoError(t, store.Set("flash", 1))
	store.Merge(req)
	require.False(t, store.Has("flash"))
}

func TestMergeClearPropagates(t *testing.T) {
	base := session.NewValues(nil)
	require.NoError(t, base.Set("a", 1))
	require.NoError(t, base.Set("b", 2))
	req := load(t, base)
	req.Clear()
	require.NoError(t, req.Set("after", 3))

	store := load(t, base)
	require.NoError(t, store.Set("concurrent", 4))
	store.Merge(req)
	require.Equal(t, []string{"after"}, store.Keys())
	requireInt(t, store, "after", 3)

	// Sets before the Clear are not replayed.
	req = load(t, base)
	require.NoError(t, req.Set("before", 1))
	req.Clear()
	store = load(t, base)
	store.Merge(req)
	require.Zero(t, store.Len())
	require.True(t, store.Dirty())
}

func TestMergeUntouchedAndNoop(t *testing.T) {
	base := session.NewValues(nil)
	require.NoError(t, base.Set("a", 1))
	req := load(t, base) // reads only
	_, _, err := session.Get[int](req, "a")
	require.NoError(t, err)

	store := load(t, base)
	require.NoError(t, store.Set("a", 7)) // concurrent write
	store.MarkClean()
	store.Merge(req)
	requireInt(t, store, "a", 7)
	require.False(t, store.Dirty(), "merging no changes is not a change")

	store.Merge(nil)
	store.Merge(store)
	require.False(t, store.Dirty())

	// MarkClean forgets what Merge would replay.
	require.NoError(t, req.Set("a", 100))
	req.MarkClean()
	store.Merge(req)
	requireInt(t, store, "a", 7)
}

// TestMergeManyWriters has many goroutines, each holding its own loaded copy,
// change a distinct key and commit with a compare-and-swap loop over one
// stored record, the way the lock-free provider does. No change may be lost.
func TestMergeManyWriters(t *testing.T) {
	var (
		mu      sync.Mutex
		stored  []byte
		version int
	)
	initial := session.NewValues(nil)
	require.NoError(t, initial.Set("base", -1))
	stored, err := initial.Encode(0)
	require.NoError(t, err)

	read := func() ([]byte, int) {
		mu.Lock()
		defer mu.Unlock()
		return stored, version
	}
	cas := func(data []byte, ver int) bool {
		mu.Lock()
		defer mu.Unlock()
		if ver != version {
			return false
		}
		stored, version = data, version+1
		return true
	}

	const writers = 32
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			data, _ := read()
			req, err := session.DecodeValues(data, nil, 0)
			if err != nil {
				errs <- err
				return
			}
			if err := req.Set(string(rune('A'+i)), i); err != nil {
				errs <- err
				return
			}
			for {
				data, ver := read()
				cur, err := session.DecodeValues(data, nil, 0)
				if err != nil {
					errs <- err
					return
				}
				cur.Merge(req)
				out, err := cur.Encode(0)
				if err != nil {
					errs <- err
					return
				}
				if cas(out, ver) {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	final, _ := read()
	v, err := session.DecodeValues(final, nil, 0)
	require.NoError(t, err)
	require.Equal(t, writers+1, v.Len())
	for i := range writers {
		requireInt(t, v, string(rune('A'+i)), i)
	}
	requireInt(t, v, "base", -1)
}

func TestConcurrentReads(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("p", sampleProfile()))
	require.NoError(t, v.Set("n", 5))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 200 {
				p, ok, err := session.Get[profile](v, "p")
				if err != nil || !ok || p.Name != "Ada" {
					errs <- errors.Join(err, errors.New("bad read of p"))
					return
				}
				if _, _, err := v.Value("n"); err != nil {
					errs <- err
					return
				}
				if _, err := v.Encode(0); err != nil {
					errs <- err
					return
				}
				_ = v.Keys()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestClone(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("a", 1))
	c := v.Clone()
	require.NoError(t, c.Set("b", 2))
	c.Delete("a")
	require.True(t, v.Has("a"))
	require.False(t, v.Has("b"))
	require.True(t, c.Dirty())
	v.MarkClean()
	require.True(t, c.Dirty(), "clone has its own change log")
}

// TestSetRefusesWhatCannotBeReadBack: a value nested deeper than the JSON
// decoder reads is refused at Set (it used to be stored and then be
// unreadable forever); one level less is stored and reads back.
func TestSetRefusesWhatCannotBeReadBack(t *testing.T) {
	nest := func(n int) any {
		var v any = "leaf"
		for range n {
			v = []any{v}
		}
		return v
	}
	v := session.NewValues(nil)
	err := v.Set("deep", nest(session.MaxJSONDepth+1))
	require.Error(t, err)
	require.Contains(t, err.Error(), "could never be read back")
	require.False(t, v.Has("deep"))
	require.NoError(t, v.Set("ok", nest(session.MaxJSONDepth)))
	var back any
	ok, err := v.Get("ok", &back)
	require.NoError(t, err)
	require.True(t, ok)
	// Strings full of brackets are not nesting.
	require.NoError(t, v.Set("brackets", strings.Repeat(`[{"\"`, 3*session.MaxJSONDepth)))
}

// TestSetCycleMessage: a value that contains itself is refused with a
// message about the cycle, not about NaN.
func TestSetCycleMessage(t *testing.T) {
	type node struct{ Next *node }
	n := &node{}
	n.Next = n
	m := map[string]any{}
	m["self"] = m
	for _, x := range []any{n, m} {
		err := session.NewValues(nil).Set("k", x)
		require.Error(t, err)
		require.Contains(t, err.Error(), "contains itself")
		require.NotContains(t, err.Error(), "NaN")
	}
}
