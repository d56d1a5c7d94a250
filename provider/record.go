package provider

import "github.com/sessionlock/sessionlock/record"

// The record's bytes belong to package record. These names remain only
// until the memcached store uses package record directly.

// RecordHeader is record.Header.
//
// Deprecated: use record.Header.
type RecordHeader = record.Header

// ParseRecordHeader is record.Parse.
//
// Deprecated: use record.Parse.
func ParseRecordHeader(b []byte) (RecordHeader, error) { return record.Parse(b) }
