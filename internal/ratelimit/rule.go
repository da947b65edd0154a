package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Bounds of a Rule beyond which Validate refuses it: no real rate needs
// them, and within them the bucket arithmetic cannot overflow.
const (
	// MaxLimit bounds Rule.Limit and Rule.Burst.
	MaxLimit = 1_000_000_000
	// MaxPer bounds Rule.Per: a leap year.
	MaxPer = 366 * 24 * time.Hour
	// MaxFill bounds the time an empty bucket takes to fill up again,
	// Burst × Per / Limit: a hundred leap years.
	MaxFill = 100 * MaxPer
)

// ErrInvalidRule is wrapped by every error of Rule.Validate.
var ErrInvalidRule = errors.New("invalid rate rule")

// Rule is a token bucket: Limit tokens are added every Per (evenly: one
// every Per/Limit), up to a capacity of Burst tokens (0 means Limit).
// A bucket starts full; a call takes one token. So a caller may make Burst
// calls at once, then Limit calls per Per.
//
// The zero Rule is invalid; Validate says why a rule is.
type Rule struct {
	Limit int           // tokens added every Per; at least 1
	Per   time.Duration // the refill period; positive
	Burst int           // the capacity; 0 = Limit
}

// Validate reports why r cannot be used, naming the field (by its
// catalog name: limit, per, burst), or nil. Take and Refund treat a rule
// Validate refuses as denying everything; validate rules when loading them.
func (r Rule) Validate() error {
	switch {
	case r.Limit <= 0:
		return fmt.Errorf("%w: limit is %d: it must be at least 1 (the tokens added every per)", ErrInvalidRule, r.Limit)
	case r.Limit > MaxLimit:
		return fmt.Errorf("%w: limit is %d: it must be at most %d", ErrInvalidRule, r.Limit, MaxLimit)
	case r.Per <= 0:
		return fmt.Errorf("%w: per is %s: it must be positive (the period over which limit tokens are added)", ErrInvalidRule, r.Per)
	case r.Per > MaxPer:
		return fmt.Errorf("%w: per is %s: it must be at most 366 days (%s)", ErrInvalidRule, r.Per, MaxPer)
	case r.Burst < 0:
		return fmt.Errorf("%w: burst is %d: it must not be negative (0 means limit)", ErrInvalidRule, r.Burst)
	case r.Burst > MaxLimit:
		return fmt.Errorf("%w: burst is %d: it must be at most %d", ErrInvalidRule, r.Burst, MaxLimit)
	case int64(r.Limit) > int64(r.Per):
		return fmt.Errorf("%w: limit %d per %s is more than one token per nanosecond: lower limit or lengthen per", ErrInvalidRule, r.Limit, r.Per)
	}
	if _, ok := r.derive(); !ok {
		burst := r.Burst
		if burst == 0 {
			burst = r.Limit
		}
		years := float64(burst) * float64(r.Per) / float64(r.Limit) / float64(MaxPer)
		return fmt.Errorf("%w: burst %d at limit %d per %s takes about %.0f years to refill from empty: at most 100 (lower burst or raise limit)",
			ErrInvalidRule, burst, r.Limit, r.Per, years)
	}
	return nil
}

// rate is a valid Rule's constants, all exact integers. Times are
// nanoseconds plus a fraction in units of 1/limit ns: one token's
// interval is Per/Limit = tq + tr/limit, an empty bucket fills up in
// burst × Per/Limit = bq + br/limit.
type rate struct {
	limit, per, burst int64
	tq, tr            int64
	bq, br            int64
}

// derive is Validate without the messages, for the hot path: the rule's
// constants and whether it is valid (Validate refuses exactly the rules
// derive does).
func (r Rule) derive() (rate, bool) {
	limit, per, burst := int64(r.Limit), int64(r.Per), int64(r.Burst)
	if burst == 0 {
		burst = limit
	}
	if limit <= 0 || limit > MaxLimit || per <= 0 || per > int64(MaxPer) ||
		burst < 0 || burst > MaxLimit || limit > per {
		return rate{}, false
	}
	rt := rate{limit: limit, per: per, burst: burst, tq: per / limit, tr: per % limit}
	// burst × tq must not overflow: tq <= MaxPer, burst <= MaxLimit.
	if rt.tq > int64(MaxFill)/burst {
		return rate{}, false
	}
	fill := burst * rt.tr // < MaxLimit², fits
	rt.bq = burst*rt.tq + fill/limit
	rt.br = fill % limit
	if rt.bq > int64(MaxFill) || (rt.bq == int64(MaxFill) && rt.br > 0) {
		return rate{}, false
	}
	return rt, true
}

// RetryAfterSeconds is d rounded up to whole seconds, at least 1 (and at
// most math.MaxInt32, for 32-bit ints): the value of an HTTP Retry-After
// header for a denied Take (Result.RetryAfter).
func RetryAfterSeconds(d time.Duration) int {
	if d <= time.Second {
		return 1
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return int(min(s, math.MaxInt32))
}
