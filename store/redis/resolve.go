package redis

import "github.com/sessionlock/sessionlock/provider"

var _ provider.OutcomeReader = (*Store)(nil)

// ReadsSettleOutcomes implements provider.OutcomeReader: every read goes
// to the key's master, which holds every write it applied. Without
// WaitReplicas an unknown outcome is a lost reply, which the master's
// state settles. With WaitReplicas a write is also reported unknown when
// it was applied on the master but not on enough replicas: reading it
// back proves nothing a failover cannot drop, so then false.
func (s *Store) ReadsSettleOutcomes() bool { return s.cfg.WaitReplicas <= 0 }
