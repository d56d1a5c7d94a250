package session

import "errors"

// Errors shared with package provider, which re-exports them: a caller can
// match either name with errors.Is.
var (
	// ErrCorrupt is wrapped when stored bytes do not decode.
	ErrCorrupt = errors.New("sessionlock: corrupt record")
	// ErrTooLarge is wrapped when a value is over a size limit. Nothing was
	// written.
	ErrTooLarge = errors.New("sessionlock: value too large")
)
