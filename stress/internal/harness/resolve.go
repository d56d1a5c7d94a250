package harness

import "github.com/sessionlock/sessionlock/provider"

// ReadsSettleOutcomes forwards provider.OutcomeReader through the stamp
// wrapper, so that the app servers' providers resolve writes of unknown
// outcome as they would on the store itself.
func (s stampStore) ReadsSettleOutcomes() bool {
	r, ok := s.Store.(provider.OutcomeReader)
	return ok && r.ReadsSettleOutcomes()
}
