//go:build !race

package replmodel

const raceEnabled = false
