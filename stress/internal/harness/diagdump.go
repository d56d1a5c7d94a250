package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// dumpObservations writes what a run observed (every request as the
// browsers and the app servers saw it, the faults, the sessions as read
// back) to observations.json in LogDirEnv's directory, when it is set: with
// the app servers' logs there, a failed fault run can be traced request by
// request.
func dumpObservations(o observations) error {
	dir := os.Getenv(LogDirEnv)
	if dir == "" {
		return nil
	}
	type state struct {
		SID string
		sessionState
	}
	var states []state
	for sid, s := range o.states {
		states = append(states, state{sid, s})
	}
	b, err := json.Marshal(map[string]any{
		"start": o.start, "end": o.end, "events": o.events, "requests": o.requests,
		"timings": o.timings, "sids": o.sids, "states": states,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "observations.json"), b, 0o644); err != nil {
		return fmt.Errorf("harness: %s: %w", LogDirEnv, err)
	}
	return nil
}
