package mcserver

import (
	"context"
	"errors"
	"testing"
)

// SkipMessage is the reason tests are skipped when memcached is missing.
const SkipMessage = "memcached not installed: run `make test`, which installs it"

// StartForTest starts n servers for a test or benchmark and stops them in
// tb.Cleanup. When memcached is not installed it skips tb with SkipMessage;
// any other failure to start fails tb.
func StartForTest(tb testing.TB, n int, cfg Config) []*Server {
	tb.Helper()
	servers, err := StartN(context.Background(), n, cfg)
	if errors.Is(err, ErrNoBinary) {
		tb.Skip(SkipMessage)
	}
	if err != nil {
		tb.Fatalf("start memcached: %v", err)
	}
	tb.Cleanup(func() {
		for _, s := range servers {
			s.Stop()
		}
	})
	return servers
}
