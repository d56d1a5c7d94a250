package redis

// UseCounterTokens makes s draw tokens as a counter (old + 1), the scheme
// the package documentation rejects: tests show that their check catches
// it.
func UseCounterTokens(s *Store) { s.token = func(old uint64) uint64 { return old + 1 } }

// CASScriptSource is the compare-and-swap script's source.
var CASScriptSource = casScript.src
