package redis

import "strings"

// UseCounterTokens makes s draw tokens as a counter (old + 1), the scheme
// the package documentation rejects: tests show that their check catches
// it.
func UseCounterTokens(s *Store) { s.token = func(old uint64) uint64 { return old + 1 } }

// CASScriptSource is the compare-and-swap script's source.
var CASScriptSource = casScript.src

// AppendScriptSource is the append script's source.
var AppendScriptSource = appendScript.src

// SetAppendWithoutTTL makes s append with a deliberately broken script
// that keeps the key's old TTL (no PEXPIRE): tests show that their check
// of I4 catches it.
func SetAppendWithoutTTL(s *Store) {
	s.appendScript = newScript("append-without-ttl", strings.Replace(appendScript.src, "  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n", "", 1))
	if s.appendScript.src == appendScript.src {
		panic("SetAppendWithoutTTL: no PEXPIRE in the append script")
	}
}

// SetAppendScript makes s append with a script of the given source: tests
// give it one that fails, to see how a script error is reported.
func SetAppendScript(s *Store, src string) { s.appendScript = newScript("append-test", src) }
