package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRecovery: the recovery time runs from the kill to the answer of the
// last request that failed after it, and the run recovered only when a
// request sent a second or more after that succeeded.
func TestRecovery(t *testing.T) {
	const start = int64(1_000_000_000)
	msAt := func(m int) int64 { return start + int64(m)*int64(time.Millisecond) }
	req := func(sent, recv int, failed bool) *request {
		r := &request{Sent: msAt(sent), Recv: msAt(recv)}
		if failed {
			r.Reason = "status_503"
		}
		return r
	}
	kill := []Event{{Kind: FaultKillMaster, AtMs: 1000}}
	for _, tc := range []struct {
		name      string
		events    []Event
		reqs      []*request
		wantMs    float64
		recovered bool
	}{
		{"no kill", nil, []*request{req(0, 10, true)}, 0, false},
		{"missed kill", []Event{{Kind: FaultKillMaster, Missed: true}}, []*request{req(0, 10, true)}, 0, false},
		{"nothing failed", kill, []*request{req(1100, 1200, false)}, 0, true},
		{"failure before the kill only", kill, []*request{req(100, 200, true), req(1100, 1200, false)}, 0, true},
		{"recovered", kill, []*request{req(1100, 1300, true), req(3000, 4000, true), req(4000, 4500, false), req(5100, 5200, false)}, 3000, true},
		{"failing until the end", kill, []*request{req(1100, 1300, true), req(3000, 4000, true), req(4500, 4600, false)}, 3000, false},
		{"kill_node counts too", []Event{{Kind: FaultKillNode, AtMs: 1000}}, []*request{req(1100, 1500, true), req(2600, 2700, false)}, 500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotMs, recovered := recovery(observations{events: tc.events, requests: tc.reqs, start: start})
			require.InDelta(t, tc.wantMs, gotMs, 0.001)
			require.Equal(t, tc.recovered, recovered)
		})
	}
}
