//go:build race

package auditstore

// raceEnabled: the race detector slows SQLite (pure Go) about tenfold;
// the longest tests do less under it.
const raceEnabled = true
