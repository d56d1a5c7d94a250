package couchbase

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// testRecord builds a version 1 session record (provider/record.go) and
// checks that the provider accepts it.
func testRecord(t testing.TB, seq, lockID uint64, locked bool, values []byte) []byte {
	t.Helper()
	b := make([]byte, recordHeaderLen+len(values)+recordTrailerLen)
	b[0], b[1], b[2] = 'S', 'L', 1
	if locked {
		b[3] = 1
	}
	binary.BigEndian.PutUint64(b[5:13], seq)
	binary.BigEndian.PutUint64(b[13:21], seq)
	binary.BigEndian.PutUint64(b[21:29], lockID)
	binary.BigEndian.PutUint64(b[29:37], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(b[37:45], uint64(20*time.Minute))
	binary.BigEndian.PutUint32(b[45:49], uint32(len(values)))
	copy(b[recordHeaderLen:], values)
	sum := crc32.Checksum(b[:len(b)-recordTrailerLen], crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-recordTrailerLen:], sum)
	if _, err := provider.ParseRecordHeader(b); err != nil {
		t.Fatalf("test record rejected by the provider: %v", err)
	}
	return b
}

// waitUntil polls cond until it holds, failing the test after bound.
func waitUntil(t testing.TB, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", bound)
		}
		<-tick.C
	}
}
