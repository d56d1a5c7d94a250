package rendezvous

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func seeds(names ...string) []uint64 {
	s := make([]uint64, len(names))
	for i, n := range names {
		s[i] = Seed(n)
	}
	return s
}

func TestTop2AgreesWithRank(t *testing.T) {
	s := seeds("a:1", "b:2", "c:3", "d:4")
	for i := range 1000 {
		key := fmt.Sprintf("key%d", i)
		r := Rank(s, key)
		first, second := Top2(s, key)
		require.Equal(t, r[0], first)
		require.Equal(t, r[1], second)
	}
	first, second := Top2(seeds("only"), "k")
	require.Equal(t, 0, first)
	require.Equal(t, -1, second)
	first, second = Top2(nil, "k")
	require.Equal(t, -1, first)
	require.Equal(t, -1, second)
}

func TestOrderDoesNotMatter(t *testing.T) {
	names := []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"}
	rev := slices.Clone(names)
	slices.Reverse(rev)
	for i := range 1000 {
		key := fmt.Sprintf("key%d", i)
		a, _ := Top2(seeds(names...), key)
		b, _ := Top2(seeds(rev...), key)
		require.Equal(t, names[a], rev[b])
	}
}

// TestMovesAboutOneNth: adding a fourth node moves about a quarter of the
// keys, all of them to the new node; removing one of four moves only the
// keys it held.
func TestMovesAboutOneNth(t *testing.T) {
	three := seeds("n1", "n2", "n3")
	four := seeds("n1", "n2", "n3", "n4")
	const keys = 20000
	moved := 0
	for i := range keys {
		key := fmt.Sprintf("session-%d", i)
		a, _ := Top2(three, key)
		b, _ := Top2(four, key)
		if a != b {
			moved++
			require.Equal(t, 3, b, "a key that moves goes to the added node")
		}
	}
	frac := float64(moved) / keys
	require.InDelta(t, 0.25, frac, 0.02, "moved fraction")
}

func TestSpread(t *testing.T) {
	s := seeds("n1", "n2", "n3", "n4", "n5")
	counts := make([]int, len(s))
	for i := range 50000 {
		first, _ := Top2(s, fmt.Sprintf("k%d", i))
		counts[first]++
	}
	for _, c := range counts {
		require.InDelta(t, 10000, c, 600)
	}
}
