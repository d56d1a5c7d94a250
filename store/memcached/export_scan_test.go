package memcached

import (
	"context"
	"time"
)

// Hooks of the repair scan (witness_scan.go) for the package's tests.

// ScanRuns returns how many repair scans s has finished.
func ScanRuns(s *Store) int64 { return s.wit.repair.scan.runs.Load() }

// ScanVisits returns how many keys s's repair scans have visited.
func ScanVisits(s *Store) int64 { return s.wit.repair.scan.visits.Load() }

// ScanListed returns how many dump lines s's repair scans have kept (keys
// listed on one of their candidates).
func ScanListed(s *Store) int64 { return s.wit.repair.scan.listed.Load() }

// SetScanRates sets the scan's keys read per second per node and visits
// per second (0: unbounded). Only on a Store whose scan is off
// (RepairEvery < 0), before RunScan.
func SetScanRates(s *Store, keys, visits int) {
	s.wit.repair.scan.rate, s.wit.repair.scan.visitRate = keys, visits
}

// RunScan runs one repair scan on s now, on the caller's goroutine.
func RunScan(s *Store) { s.wit.repair.scan.run(context.Background()) }

// RepairEvery returns s's Config.RepairEvery after defaulting.
func RepairEvery(s *Store) time.Duration { return s.cfg.RepairEvery }
