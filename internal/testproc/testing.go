package testproc

import (
	"errors"
	"os"
	"testing"
)

// EnvRequire names the environment variable that makes a missing server
// binary fail the tests instead of skipping them (set in CI, where a
// skipped test would hide a missing install step).
const EnvRequire = "SESSIONLOCK_REQUIRE_SERVERS"

// SkipOrFail handles err, a failure to start servers for tb: when it wraps
// noBinary (the server is not installed) it skips tb with skipMessage, or
// fails tb when EnvRequire is set; any other error fails tb. A nil err
// does nothing.
func SkipOrFail(tb testing.TB, err, noBinary error, skipMessage string) {
	tb.Helper()
	switch {
	case err == nil:
	case errors.Is(err, noBinary) && os.Getenv(EnvRequire) == "":
		tb.Skip(skipMessage)
	case errors.Is(err, noBinary):
		tb.Fatalf("%s is set but %v", EnvRequire, err)
	default:
		tb.Fatalf("start servers: %v", err)
	}
}
