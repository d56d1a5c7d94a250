package harness

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTimelineSampling: a lane for every session up to MaxLanes, every
// k-th beyond; a lane over its share draws its first bursts and then every
// j-th, within the share; setup requests are not drawn.
func TestTimelineSampling(t *testing.T) {
	const sessions, bursts, burst = 450, 20, 4
	o := observations{start: 1000, end: 1_000_000_000, sids: make([]string, sessions), timings: map[uint64]timing{}}
	id := uint64(0)
	for b := range sessions {
		o.requests = append(o.requests, &request{ID: id, Browser: b, Burst: -1, Route: RouteInit, Sent: 10, Recv: 20})
		id++
		for k := range bursts {
			for range burst {
				sent := int64(1000 + k*1000 + b)
				o.requests = append(o.requests, &request{ID: id, Browser: b, Burst: b*bursts + k, Route: RouteIncr, Sent: sent, Recv: sent + 500})
				id++
			}
		}
	}
	tl := buildTimeline(o, 150*40) // 40 requests, 10 bursts, per lane
	require.Len(t, tl.Lanes, 150, "every 3rd of 450 sessions")
	for i, l := range tl.Lanes {
		require.Equal(t, 3*i, l.Browser)
		require.LessOrEqual(t, l.Drawn, 40)
		require.Equal(t, 0, l.Bars[0].Burst, "the first burst is drawn")
		require.Equal(t, 1, l.Bars[burst].Burst, "so is the second")
		for _, b := range l.Bars {
			require.NotEqual(t, RouteInit, b.Route, "setup requests are not drawn")
		}
	}
	require.Equal(t, sessions*bursts*burst, tl.Drawn+tl.Omitted)
	require.Contains(t, tl.Sampling, "a lane = every 3rd session")

	// Within its share, a lane draws every request of its session.
	tl = buildTimeline(o, 1<<30)
	require.Len(t, tl.Lanes, 150)
	require.Equal(t, 150*bursts*burst, tl.Drawn)
	require.Equal(t, 300*bursts*burst, tl.Omitted, "the sessions without a lane")
}
