//go:build !race

package examples

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = false
