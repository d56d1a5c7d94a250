package sqlstore

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRankIsPermutationAndDeterministic(t *testing.T) {
	nodes := []string{"a", "b", "c", "d", "e"}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("key-%d", i)
		r := Rank(key, nodes)
		require.Len(t, r, len(nodes))
		sorted := slices.Clone(r)
		slices.Sort(sorted)
		require.Equal(t, []int{0, 1, 2, 3, 4}, sorted, "a permutation of the indexes")
		require.Equal(t, r, Rank(key, nodes), "same answer every time")
		require.Equal(t, r[0], best(key, nodes))
	}
	require.Empty(t, Rank("k", nil))
	require.Equal(t, -1, best("k", nil))
	require.Equal(t, []int{0}, Rank("k", []string{"only"}))
}

func TestRankIgnoresNodeOrder(t *testing.T) {
	nodes := []string{"db1", "db2", "db3"}
	reversed := []string{"db3", "db2", "db1"}
	for i := 0; i < 500; i++ {
		key := fmt.Sprintf("sl:%d", i)
		require.Equal(t, nodes[Rank(key, nodes)[0]], reversed[Rank(key, reversed)[0]])
	}
}

func TestRankSpreadsKeys(t *testing.T) {
	nodes := []string{"127.0.0.1:5432/a", "127.0.0.1:5432/b", "127.0.0.1:5432/c", "127.0.0.1:5432/d"}
	const keys = 20000
	counts := make([]int, len(nodes))
	for i := 0; i < keys; i++ {
		counts[best(fmt.Sprintf("sl:%024d", i), nodes)]++
	}
	mean := keys / len(nodes)
	for i, c := range counts {
		require.InDelta(t, mean, c, float64(mean)/10, "node %d holds %d of %d keys", i, c, keys)
	}
}

func TestRankMovesOnlyNecessaryKeys(t *testing.T) {
	three := []string{"a", "b", "c"}
	four := []string{"a", "b", "c", "d"}
	moved := 0
	const keys = 10000
	for i := 0; i < keys; i++ {
		key := fmt.Sprintf("session-%d", i)
		before, after := three[best(key, three)], four[best(key, four)]
		if before != after {
			require.Equal(t, "d", after, "a key only moves to the added node")
			moved++
		}
		// Removing a node moves only the keys it held.
		two := []string{"a", "c"}
		if before != "b" {
			require.Equal(t, before, two[best(key, two)])
		}
		// The second choice is where a key goes when its node is removed.
		r := Rank(key, three)
		rest := slices.Delete(slices.Clone(three), r[0], r[0]+1)
		require.Equal(t, three[r[1]], rest[best(key, rest)])
	}
	require.InDelta(t, keys/4, moved, keys/40, "about 1/4 of the keys move to the 4th node")
}

func TestScoreSeparatesNodeAndKey(t *testing.T) {
	require.NotEqual(t, score("ab", "c"), score("a", "bc"))
}
