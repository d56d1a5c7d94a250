package session_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func TestPopReadsAndDeletes(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("flash", "saved"))
	require.NoError(t, v.Set("n", 1))
	v.MarkClean()

	msg, ok, err := session.Pop[string](v, "flash")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "saved", msg)
	require.False(t, v.Has("flash"))
	require.True(t, v.Dirty(), "a pop is a change")

	// Merge replays the pop as a deletion.
	stored := session.NewValues(nil)
	require.NoError(t, stored.Set("flash", "saved"))
	require.NoError(t, stored.Set("n", 1))
	stored.Merge(v)
	require.Equal(t, []string{"n"}, stored.Keys())

	msg, ok, err = session.Pop[string](v, "flash")
	require.NoError(t, err)
	require.False(t, ok, "shown once")
	require.Empty(t, msg)
}

func TestPopAbsentChangesNothing(t *testing.T) {
	v := session.NewValues(nil)
	_, ok, err := session.Pop[int](v, "x")
	require.NoError(t, err)
	require.False(t, ok)
	require.False(t, v.Dirty())
}

func TestPopUndecodableKeepsTheValue(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("s", "text"))
	n, ok, err := session.Pop[int](v, "s")
	require.Error(t, err)
	require.True(t, ok)
	require.Zero(t, n)
	require.True(t, v.Has("s"), "a value that does not decode is not deleted")
}

// getter is a Getter other than *Values, as middleware's *Session is.
type getter struct{ v *session.Values }

func (g getter) Get(key string, dst any) (bool, error) {
	if g.v == nil {
		return false, errors.New("no session")
	}
	return g.v.Get(key, dst)
}

func TestGetTakesAnyGetter(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("n", 3))
	n, ok, err := session.Get[int](getter{v}, "n")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 3, n)
	_, _, err = session.Get[int](getter{}, "n")
	require.Error(t, err, "the Getter's error is returned")
}

func TestEncodedIsTheStoredBytes(t *testing.T) {
	v := session.NewValues(nil)
	require.NoError(t, v.Set("k", map[string]int{"a": 1}))
	b, ok := v.Encoded("k")
	require.True(t, ok)
	require.Equal(t, `{"a":1}`, string(b))
	_, ok = v.Encoded("absent")
	require.False(t, ok)
}
