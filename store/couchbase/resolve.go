package couchbase

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader: a Get reads the
// active copy, and a durable write is invisible to reads until it is
// durable. With ReadFromReplica a Get may read a lagging replica, which
// can show a record a write already replaced on the active: then false.
func (s *Store) ReadsSettleOutcomes() bool { return !s.cfg.ReadFromReplica }
