package harness

import (
	"fmt"
	"time"
)

// progressLine is the live progress line: how far the workload is towards
// whichever of its bounds (-requests, -duration) it will reach first, and
// the time left at the current rate. sent, ok and failed count the
// workload's requests.
func progressLine(cfg Config, elapsed time.Duration, sent, ok, failed int64) string {
	done := 0.0 // fraction, 0..1
	if cfg.Requests > 0 {
		done = float64(sent) / float64(cfg.Requests)
	}
	if cfg.Duration > 0 {
		done = max(done, float64(elapsed)/float64(cfg.Duration))
	}
	done = min(done, 1)
	eta := "ETA --"
	if done > 0 && elapsed > 0 {
		left := time.Duration(float64(elapsed) * (1 - done) / done)
		eta = "ETA " + left.Round(100*time.Millisecond).String()
	}
	el := elapsed.Seconds()
	target := ""
	if cfg.Requests > 0 {
		target = fmt.Sprintf(" of %d", cfg.Requests)
	}
	return fmt.Sprintf("%s: %3.0f%%  %d%s requests, %d ok, %d failed, %.0f req/s, %.1f s, %s",
		cfg.Backend, done*100, sent, target, ok, failed, float64(sent)/max(el, 0.001), el, eta)
}
