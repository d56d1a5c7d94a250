package mcserver

import (
	"context"
	"testing"

	"github.com/sessionlock/sessionlock/internal/testproc"
)

// SkipMessage is the reason tests are skipped when memcached is missing.
const SkipMessage = "memcached not installed: run `make test`, which installs it"

// EnvRequire, when set to a non-empty value, turns the skip for a missing
// memcached into a failure (`make test` sets it: in CI a skipped suite is a
// bug). It is the variable pgserver reads too.
const EnvRequire = testproc.EnvRequire

// StartForTest starts n servers for a test or benchmark and stops them in
// tb.Cleanup. When memcached is not installed it skips tb with SkipMessage,
// or fails it when EnvRequire is set; any other failure to start fails tb.
func StartForTest(tb testing.TB, n int, cfg Config) []*Server {
	tb.Helper()
	servers, err := StartN(context.Background(), n, cfg)
	testproc.SkipOrFail(tb, err, ErrNoBinary, SkipMessage)
	tb.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	return servers
}
