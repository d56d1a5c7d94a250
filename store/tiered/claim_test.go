package tiered

import "testing"

// TestRowTokensClaimOf checks ClaimOf's decision, which sqlstore and the
// simulated durable tier share, on each of its cases.
func TestRowTokensClaimOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  RowTokens
		cas  uint64
		want ClaimState
	}{
		{"token 0", RowTokens{Version: 5, Created: 1}, 0, ClaimUnknown},
		{"row created after cas", RowTokens{Version: 9, Created: 7}, 5, ClaimUnknown},
		{"claimed", RowTokens{Version: 9, Claimed: 5, Created: 1}, 5, Claimed},
		{"still the row's", RowTokens{Version: 5, Created: 1}, 5, NotClaimed},
		{"overwritten unserved", RowTokens{Version: 9, Overwritten: 5, Created: 1}, 5, NotClaimed},
		{"no claim since", RowTokens{Version: 9, Claimed: 3, Overwritten: 7, Created: 1}, 5, NotClaimed},
		{"a later claim replaced the record of cas", RowTokens{Version: 9, Claimed: 8, Overwritten: 7, Created: 1}, 5, ClaimUnknown},
	} {
		if got := tc.row.ClaimOf(tc.cas); got != tc.want {
			t.Errorf("%s: %+v.ClaimOf(%d) = %v, want %v", tc.name, tc.row, tc.cas, got, tc.want)
		}
	}
}
