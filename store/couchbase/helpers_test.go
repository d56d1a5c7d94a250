package couchbase

import (
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testwait"

	"github.com/sessionlock/sessionlock/record"
)

// testRecord builds a session record (package record).
func testRecord(t testing.TB, seq, lockID uint64, locked bool, values []byte) []byte {
	t.Helper()
	return record.Record{Header: record.Header{
		Seq: seq, DataSeq: seq, LockID: lockID, Locked: locked,
		LockedAt: time.Now(), Timeout: 20 * time.Minute,
	}, Values: values}.Encode()
}

// waitUntil polls cond until it holds, failing the test after bound.
func waitUntil(t testing.TB, bound time.Duration, cond func() bool) {
	t.Helper()
	testwait.Until(t, bound, "the condition", cond)
}
