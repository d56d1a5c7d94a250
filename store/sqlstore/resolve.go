package sqlstore

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader: a session's row
// lives in one PostgreSQL database, a read sees the committed row, and a
// committed write stands. A write still running on the server after its
// connection dropped is not yet visible: the provider then sends the same
// write again under the same version, and at most one of the two commits.
func (s *Store) ReadsSettleOutcomes() bool { return true }
