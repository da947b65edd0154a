package quota

import (
	"errors"
	"fmt"
	"time"
)

// MaxLimit is the largest Rule.Limit: a billion calls a window, beyond
// anything one counter subject is meant to take (an hour of it is ~280,000
// calls a second).
const MaxLimit = 1_000_000_000

// ErrInvalidRule is wrapped by the errors of Rule.Validate (and of Take,
// Refund, Used and Observed given such a rule).
var ErrInvalidRule = errors.New("quota: invalid rule")

// Rule is a catalog entry's `quota: {limit: 100, per: day}`: at most Limit
// allowed calls in each calendar window of Period in Location. What the
// quota is counted by (`by: sub`) is the key the caller passes to Take.
type Rule struct {
	// Limit is the number of calls a window allows, 1 to MaxLimit.
	Limit int
	// Period is the window: Hour, Day or Month.
	Period Period
	// Location is the time zone of the windows' wall clock; nil is UTC.
	// It must be a named zone (time.LoadLocation("Europe/Berlin"),
	// time.UTC), not time.Local, whose meaning differs between machines:
	// replicas in different zones would count different windows.
	Location *time.Location
}

// Validate refuses a limit below 1 or above MaxLimit, an unknown period,
// and time.Local or an unnamed zone. Its errors wrap ErrInvalidRule.
func (r Rule) Validate() error {
	switch {
	case r.Limit <= 0:
		return fmt.Errorf("%w: limit %d: a quota allows at least 1 call", ErrInvalidRule, r.Limit)
	case r.Limit > MaxLimit:
		return fmt.Errorf("%w: limit %d is above the maximum %d", ErrInvalidRule, r.Limit, MaxLimit)
	case !r.Period.valid():
		return fmt.Errorf("%w: unknown period %s (use hour, day or month)", ErrInvalidRule, r.Period)
	}
	if r.Location != nil {
		switch r.Location.String() {
		case "Local":
			return fmt.Errorf("%w: time zone Local differs between machines; name the zone (e.g. Europe/Berlin, UTC)", ErrInvalidRule)
		case "":
			return fmt.Errorf("%w: the time zone has no name; use time.LoadLocation or time.UTC", ErrInvalidRule)
		}
	}
	return nil
}

// location is Location, UTC for nil.
func (r Rule) location() *time.Location {
	if r.Location == nil {
		return time.UTC
	}
	return r.Location
}

// Window is the rule's window holding now (see the package function
// Window).
func (r Rule) Window(now time.Time) (start, end time.Time) {
	return Window(r.Period, r.location(), now)
}
