package memcached_test

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/memcached"
)

// placements returns the (primary, backup) of keys over nodes. New does not
// contact the nodes, so the addresses need no servers.
func placements(t *testing.T, nodes []string, keys []string) (primary, backup []string) {
	t.Helper()
	s, err := memcached.New(memcached.Config{Nodes: nodes})
	require.NoError(t, err)
	defer s.Close()
	for _, k := range keys {
		p, b := s.Placement(k)
		primary = append(primary, p)
		backup = append(backup, b)
	}
	return primary, backup
}

func nodeAddrs(n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = "10.0.0." + strconv.Itoa(i+1) + ":11211"
	}
	return addrs
}

func sessionKeys(n int) []string {
	keys := make([]string, n)
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyz012345"
	for i := range keys {
		id := make([]byte, 24)
		for j := range id {
			id[j] = alphabet[r.IntN(len(alphabet))]
		}
		keys[i] = "sl:app:" + string(id)
	}
	return keys
}

func TestPlacementIgnoresNodeOrder(t *testing.T) {
	keys := sessionKeys(2000)
	nodes := nodeAddrs(5)
	p1, b1 := placements(t, nodes, keys)
	r := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		shuffled := append([]string(nil), nodes...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		p2, b2 := placements(t, shuffled, keys)
		require.Equal(t, p1, p2, "primaries depend on the node order %v", shuffled)
		require.Equal(t, b1, b2, "backups depend on the node order %v", shuffled)
	}
}

func TestPlacementBalancedAndBackupDiffers(t *testing.T) {
	const n = 5
	keys := sessionKeys(10000)
	p, b := placements(t, nodeAddrs(n), keys)
	count := map[string]int{}
	for i := range keys {
		require.NotEqual(t, p[i], b[i], "backup on the primary node")
		require.NotEmpty(t, b[i])
		count[p[i]]++
	}
	require.Len(t, count, n)
	for addr, c := range count {
		require.InDelta(t, len(keys)/n, c, float64(len(keys)/n)*0.1, "node %s holds %d primaries", addr, c)
	}

	// One node: no backup.
	_, b1 := placements(t, nodeAddrs(1), keys[:10])
	for _, x := range b1 {
		require.Empty(t, x)
	}
	// Backup off: no backup.
	s, err := memcached.New(memcached.Config{Nodes: nodeAddrs(3), Backup: memcached.BackupOff})
	require.NoError(t, err)
	defer s.Close()
	_, bk := s.Placement(keys[0])
	require.Empty(t, bk)
}

// TestPlacementMovesOneNth: adding or removing one of N nodes changes the
// primary of about 1/N of the keys, and only keys the change concerns move.
func TestPlacementMovesOneNth(t *testing.T) {
	keys := sessionKeys(10000)
	for _, n := range []int{3, 5, 10} {
		nodes := nodeAddrs(n + 1)
		before, beforeB := placements(t, nodes[:n], keys)

		// Add node n+1.
		after, _ := placements(t, nodes, keys)
		moved := 0
		for i := range keys {
			if before[i] != after[i] {
				moved++
				require.Equal(t, nodes[n], after[i], "a key moved between old nodes")
			}
		}
		want := float64(len(keys)) / float64(n+1)
		require.InDelta(t, want, moved, want*0.15, "adding one node to %d moved %d of %d keys", n, moved, len(keys))

		// Remove node 1 (not the last one listed).
		removed := nodes[0]
		after, _ = placements(t, nodes[1:n], keys)
		moved = 0
		for i := range keys {
			if before[i] != after[i] {
				moved++
				require.Equal(t, removed, before[i], "a key moved whose primary stayed")
				require.Equal(t, beforeB[i], after[i], "the backup node takes over the primary role")
			}
		}
		want = float64(len(keys)) / float64(n)
		require.InDelta(t, want, moved, want*0.15, "removing one of %d nodes moved %d of %d keys", n, moved, len(keys))
	}
}
