package memcached

import (
	"fmt"

	"github.com/sessionlock/sessionlock/provider"
)

// CAS tokens carry the node they came from in their top byte (index + 1),
// the node's epoch in the next byte and memcached's CAS value in the low
// 48 bits, so a token read from one node never matches on another, nor on
// the same node across a down-and-up (a restarted memcached counts CAS
// values from 1 again: without the epoch, a token kept from before, like
// the provider's written cache keeps them, could match a newer item).
const (
	tokenNodeShift  = 56
	tokenEpochShift = 48
)

func token(n *node, cas uint64) (uint64, error) {
	if cas >= 1<<tokenEpochShift {
		return 0, fmt.Errorf("memcached: node %s: %w: cas value %d exceeds 48 bits", n.addr, provider.ErrServer, cas)
	}
	return uint64(n.idx+1)<<tokenNodeShift | uint64(n.epoch.Load()&0xff)<<tokenEpochShift | cas, nil
}

// newToken is the token of a write that returned memcached CAS cas: 0
// (unknown) when the client could not report it (the text path).
func newToken(n *node, cas uint64) (uint64, error) {
	if cas == 0 {
		return 0, nil
	}
	return token(n, cas)
}

// parseToken splits a token; ok is false when it was not issued by n in
// its current epoch.
func parseToken(t uint64, n *node) (cas uint64, ok bool) {
	idx := int(t>>tokenNodeShift) - 1
	epoch := uint32(t>>tokenEpochShift) & 0xff
	return t & (1<<tokenEpochShift - 1), idx == n.idx && epoch == n.epoch.Load()&0xff
}
