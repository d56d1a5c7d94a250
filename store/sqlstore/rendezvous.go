package sqlstore

import "sort"

// Rendezvous (highest random weight) hashing: every node gets a score for a
// key, a hash of the node's name and the key, and the key lives on the node
// with the highest score. The ranking depends only on the key and the node
// names, not on their order or count, so every process agrees on it without
// coordination, and adding or removing a node moves only the keys that gain
// or lose that node as their best: 1/N of them.

// Rank returns the indexes of nodes ordered by preference for key, best
// first: Rank(key, nodes)[0] is where key lives. Equal scores (only possible
// for duplicate names) keep the order of nodes. Rank of no nodes is empty.
func Rank(key string, nodes []string) []int {
	scores := make([]uint64, len(nodes))
	order := make([]int, len(nodes))
	for i, n := range nodes {
		scores[i] = score(n, key)
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	return order
}

// best returns Rank(key, nodes)[0] without allocating, or -1 for no nodes.
func best(key string, nodes []string) int {
	top, topScore := -1, uint64(0)
	for i, n := range nodes {
		if s := score(n, key); top < 0 || s > topScore {
			top, topScore = i, s
		}
	}
	return top
}

// score hashes node and key with 64-bit FNV-1a (a zero byte between them, so
// ("ab","c") and ("a","bc") differ) and finishes with the MurmurHash3 fmix64
// mixer, because FNV alone spreads short similar inputs poorly in its high
// bits.
func score(node, key string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= prime64
	}
	h ^= 0
	h *= prime64
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
