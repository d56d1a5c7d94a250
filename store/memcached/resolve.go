package memcached

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader. With one copy
// of each session (one node, or BackupOff) a read returns that copy's
// current state. With BackupWitness a read returns a record only once
// both data copies hold it, or decides a split before it answers
// (docs/replication.md, R2/R4), so a write it shows stands and one it does
// not show was not taken up. With BackupOn a read may come from a backup
// copy that a later repair overwrites, or miss a primary-only write a
// later read finds: its unknown outcomes are left to the caller.
func (s *Store) ReadsSettleOutcomes() bool { return s.wit != nil || !s.backup }
