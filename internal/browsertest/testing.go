package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/internal/testproc"
)

// ForTest starts headless Chromium for tb and closes it in tb.Cleanup. It
// skips tb when SkipEnv is set (make test runs the browser tests in their
// own stage), and when no Chromium is found, unless testproc.EnvRequire is
// set, which makes a missing browser a failure.
func ForTest(tb testing.TB) *Browser {
	tb.Helper()
	if os.Getenv(SkipEnv) != "" {
		tb.Skip("browser tests run in their own stage")
	}
	bin := Find()
	if bin == "" {
		if os.Getenv(testproc.EnvRequire) != "" {
			tb.Fatalf("%s is set but no Chromium was found", testproc.EnvRequire)
		}
		tb.Skip("no Chromium found (apt-get install -y chromium, or set CHROMIUM); skipping the browser test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Start(ctx, bin, tb.TempDir())
	if err != nil {
		tb.Fatalf("start Chromium: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}
