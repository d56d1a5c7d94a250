package provider

import "github.com/sessionlock/sessionlock/record"

// The record's bytes belong to package record. These names remain for the
// code written against them before it existed.

// RecordHeader is record.Header.
//
// Deprecated: use record.Header.
type RecordHeader = record.Header

// ParseRecordHeader is record.Parse.
//
// Deprecated: use record.Parse.
func ParseRecordHeader(b []byte) (RecordHeader, error) { return record.Parse(b) }

// ReviveLockIDGap is record.ReviveGap.
//
// Deprecated: use record.ReviveGap.
const ReviveLockIDGap = record.ReviveGap

// ReviveRecord is record.Revive.
//
// Deprecated: use record.Revive.
func ReviveRecord(b []byte) ([]byte, error) { return record.Revive(b) }
