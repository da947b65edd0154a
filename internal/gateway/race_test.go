//go:build race

package gateway_test

// raceEnabled: the race detector multiplies memory and time; tests that
// measure memory skip under it.
const raceEnabled = true
