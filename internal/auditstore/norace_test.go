//go:build !race

package auditstore

const raceEnabled = false
