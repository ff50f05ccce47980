//go:build race

package systest

// raceEnabled builds the brick binary with -race too.
const raceEnabled = true
