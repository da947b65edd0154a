package quota

import (
	"errors"
	"fmt"
	"strconv"
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
	// Every, when set, replaces Period and Location: fixed windows of
	// this length, whole seconds from 1 s to MaxEvery, counted from the
	// Unix epoch (a rate limit shared by the replicas, `rate: {limit:
	// 10, per: 1m, shared: true}`: at most Limit calls in each such
	// window, as a fixed-window rate limiter does).
	Every time.Duration
}

// MaxEvery is the longest Rule.Every: a window the counters keep (see
// MinMaxAge).
const MaxEvery = 31 * 24 * time.Hour

// Validate refuses a limit below 1 or above MaxLimit, an unknown period,
// and time.Local or an unnamed zone. Its errors wrap ErrInvalidRule.
func (r Rule) Validate() error {
	switch {
	case r.Limit <= 0:
		return fmt.Errorf("%w: limit %d: a quota allows at least 1 call", ErrInvalidRule, r.Limit)
	case r.Limit > MaxLimit:
		return fmt.Errorf("%w: limit %d is above the maximum %d", ErrInvalidRule, r.Limit, MaxLimit)
	case r.Every != 0:
		switch {
		case r.Every < time.Second || r.Every > MaxEvery || r.Every%time.Second != 0:
			return fmt.Errorf("%w: window %v: whole seconds from 1s to %v", ErrInvalidRule, r.Every, MaxEvery)
		case r.Period != 0:
			return fmt.Errorf("%w: both a period (%s) and a fixed window (%v)", ErrInvalidRule, r.Period, r.Every)
		case r.Location != nil && r.Location != time.UTC:
			return fmt.Errorf("%w: a fixed window of %v has no time zone (%s)", ErrInvalidRule, r.Every, r.Location)
		}
		return nil
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
// Window; with Every, [n×Every, (n+1)×Every) from the Unix epoch).
func (r Rule) Window(now time.Time) (start, end time.Time) {
	if r.Every > 0 {
		n := r.fixedIndex(now)
		secs := int64(r.Every / time.Second)
		return time.Unix(n*secs, 0).UTC(), time.Unix((n+1)*secs, 0).UTC()
	}
	return Window(r.Period, r.location(), now)
}

// fixedIndex is the number of the Every window holding now.
func (r Rule) fixedIndex(now time.Time) int64 {
	secs := int64(r.Every / time.Second)
	u := now.Unix()
	n := u / secs
	if u < 0 && u%secs != 0 {
		n-- // floor
	}
	return n
}

// end is the end of the rule's window holding now.
func (r Rule) end(now time.Time) time.Time {
	if r.Every > 0 {
		_, e := r.Window(now)
		return e
	}
	return windowEnd(r.Period, r.location(), now)
}

// appendID appends the id of the rule's window holding now: WindowID's,
// or for Every "<seconds>s-<n>" (e.g. "60s-29442113").
func (r Rule) appendID(b []byte, now time.Time) []byte {
	if r.Every > 0 {
		b = strconv.AppendInt(b, int64(r.Every/time.Second), 10)
		b = append(b, 's', '-')
		return strconv.AppendInt(b, r.fixedIndex(now), 10)
	}
	return appendWindowID(b, r.Period, r.location(), now)
}
