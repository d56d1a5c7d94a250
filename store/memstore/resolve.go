package memstore

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader: a read returns
// the one copy's current state, and a write, once applied, stands. (This
// store never reports an unknown outcome itself; wrappers that do rely on
// it.)
func (s *Store) ReadsSettleOutcomes() bool { return true }
