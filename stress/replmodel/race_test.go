//go:build race

package replmodel

// raceEnabled: the model is single-threaded, so the race detector adds
// nothing but time; the exhaustive runs go in make test's model stage
// without it.
const raceEnabled = true
