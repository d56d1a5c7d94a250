package tiered

// SentAnyBytes makes s take any change whose exact bytes the durable copy
// holds for this process's change sent again, another request's
// identical change included (the code before sentBefore).
func SentAnyBytes(s *Store) { s.hooks.sentAnyBytes = true }
