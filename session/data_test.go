package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func TestNewData(t *testing.T) {
	d := session.NewData(nil, 20*time.Minute)
	require.NotNil(t, d.Values)
	require.Equal(t, session.JSONCodec{}, d.Values.Codec())
	require.Equal(t, 20*time.Minute, d.Timeout())
	require.False(t, d.TimeoutChanged())
	require.False(t, d.Dirty())

	v := session.NewValues(session.GobCodec{})
	d = session.NewData(v, time.Minute)
	require.Same(t, v, d.Values)
}

func TestDataSetTimeout(t *testing.T) {
	d := session.NewData(nil, 20*time.Minute)

	require.NoError(t, d.SetTimeout(20*time.Minute))
	require.False(t, d.TimeoutChanged(), "setting the same timeout is not a change")

	require.NoError(t, d.SetTimeout(2*time.Minute))
	require.Equal(t, 2*time.Minute, d.Timeout())
	require.True(t, d.TimeoutChanged())
	require.True(t, d.Dirty())
	require.False(t, d.Values.Dirty())

	d.MarkClean()
	require.False(t, d.TimeoutChanged())
	require.False(t, d.Dirty())
	require.Equal(t, 2*time.Minute, d.Timeout())

	require.NoError(t, d.SetTimeout(session.MinTimeout))
	require.NoError(t, d.SetTimeout(session.MaxTimeout))
	d.MarkClean()

	for _, bad := range []time.Duration{0, -time.Minute, session.MinTimeout - 1, session.MaxTimeout + 1, time.Millisecond} {
		err := d.SetTimeout(bad)
		require.ErrorIs(t, err, session.ErrInvalidTimeout, "timeout %v", bad)
		require.Equal(t, session.MaxTimeout, d.Timeout(), "a refused timeout changes nothing")
		require.False(t, d.TimeoutChanged())
	}
}

func TestDataDirtyFollowsValues(t *testing.T) {
	d := session.NewData(nil, time.Hour)
	require.NoError(t, d.Values.Set("a", 1))
	require.True(t, d.Dirty())
	require.False(t, d.TimeoutChanged())
	d.MarkClean()
	require.False(t, d.Dirty())
	require.False(t, d.Values.Dirty())

	var zero session.Data
	require.False(t, zero.Dirty(), "zero Data with nil Values")
	zero.MarkClean()
}

func TestActionFlagsString(t *testing.T) {
	require.Equal(t, "None", session.ActionFlags(0).String())
	require.Equal(t, "InitializeItem", session.InitializeItem.String())
	require.Equal(t, "InitializeItem|0x80", (session.InitializeItem | 0x80).String())
}
