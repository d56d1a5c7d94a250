// Package rendezvous is rendezvous (highest random weight) hashing, the one
// placement rule of the project: memcached nodes and SQL partitions both
// use it. Every node scores every key with a hash of (node name, key); the
// key lives on the best-scoring node, and its backup on the second best.
// The score depends on the name and the key only, so the order in which
// nodes are listed does not matter and every process agrees without
// coordination, and adding or removing one of N nodes moves only the keys
// that node wins or held: about 1/N of them.
package rendezvous

import "sort"

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Seed returns the hashing state of a node name: FNV-1a of the name and a
// zero byte (so ("ab","c") and ("a","bc") differ). Compute it once per
// node and pass it to Score.
func Seed(name string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime64
	}
	return h * fnvPrime64 // h ^= 0 is a no-op
}

// Score is the weight of key on the node with seed: FNV-1a continued with
// the key's bytes, then MurmurHash3's 64-bit finalizer, which spreads
// FNV's weakly mixed last bytes over all bits so that one key's scores on
// different nodes are independent. A key as bytes scores as the same
// string does.
func Score[K string | []byte](seed uint64, key K) uint64 {
	h := seed
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Top2 returns the indexes (into seeds) of the best and second-best node
// for key, without allocating; second is -1 with one node and both are -1
// with none. Equal scores, which a 64-bit hash makes practically
// impossible, go to the lower index.
func Top2(seeds []uint64, key string) (first, second int) {
	first, second = -1, -1
	var s1, s2 uint64
	for i, seed := range seeds {
		sc := Score(seed, key)
		switch {
		case first < 0 || sc > s1:
			first, second, s1, s2 = i, first, sc, s1
		case second < 0 || sc > s2:
			second, s2 = i, sc
		}
	}
	return first, second
}

// Rank returns the indexes of seeds ordered by preference for key, best
// first. Equal scores keep the order of seeds.
func Rank(seeds []uint64, key string) []int {
	scores := make([]uint64, len(seeds))
	order := make([]int, len(seeds))
	for i, seed := range seeds {
		scores[i] = Score(seed, key)
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	return order
}
