package memcached

// Placement is rendezvous (highest random weight) hashing: every node
// scores every key with a hash of (node address, key); the best score is the
// key's primary node, the second best its backup node. The score depends on
// the address and the key only, so the order in which nodes are listed does
// not matter, and adding or removing one of N nodes changes the primary of
// only the keys that node wins or held: about 1/N of them.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// nodeSeed is the FNV-1a state after hashing a node's address and a zero
// byte; scores continue it with the key's bytes.
func nodeSeed(addr string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(addr); i++ {
		h ^= uint64(addr[i])
		h *= fnvPrime64
	}
	h *= fnvPrime64 // a zero byte (h ^= 0) separates address and key
	return h
}

// score is FNV-1a of (address, 0, key) followed by the 64-bit finalizer of
// MurmurHash3, which spreads FNV's weakly mixed last bytes over all bits so
// that scores of one key on different nodes are independent.
func score(seed uint64, key string) uint64 {
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

// rank returns the indexes (into nodes) of the best and second-best node
// for key; second is -1 with a single node. Equal scores, which a 64-bit
// hash makes practically impossible, go to the lower index: nodes are kept
// sorted by address, so that too is independent of the configured order.
func rank(nodes []*node, key string) (first, second int) {
	first, second = -1, -1
	var s1, s2 uint64
	for i, n := range nodes {
		sc := score(n.seed, key)
		switch {
		case first < 0 || sc > s1:
			first, second, s1, s2 = i, first, sc, s1
		case second < 0 || sc > s2:
			second, s2 = i, sc
		}
	}
	return first, second
}
