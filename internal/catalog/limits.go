package catalog

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Limits of a catalog entry (docs/policy.md, "Rate limits and quotas"):
//
//	rate:  {limit: 10, per: 1m, burst: 20, by: client}
//	quota: {limit: 100, per: day, by: sub, time_zone: Europe/Berlin}
//
// A rate is a token bucket kept by each PDP replica; a quota is a count per
// calendar window, exact across replicas. The default policy returns the
// target entry's limits in its decision ("rate", "quota"), where a custom
// policy may compute its own; ParseRate and ParseQuota read both.

// Limit keys: who shares one budget.
const (
	BySubject       = "sub"
	ByClient        = "client"
	BySubjectClient = "sub+client"
	ByResource      = "resource"
)

// byKeys are the values of "by", in the order the docs list them.
var byKeys = []string{BySubject, ByClient, BySubjectClient, ByResource}

// Quota periods: calendar windows.
var quotaPeriods = []string{"hour", "day", "month"}

var (
	rateKeys  = []string{"limit", "per", "burst", "by", "shared"}
	quotaKeys = []string{"limit", "per", "by", "time_zone"}
)

// Bounds of a limit: beyond them a value is a mistake, not a budget.
const (
	maxLimit   = 1_000_000_000
	minRatePer = time.Millisecond
	maxRatePer = 366 * 24 * time.Hour
	maxRefill  = 100 * 366 * 24 * time.Hour
)

// Rate is a token bucket: Limit calls per Per, up to Burst at once (0 in
// the data: Burst = Limit), counted per By key, on each replica. Shared
// (`shared: true`) counts it across the replicas instead, in fixed
// windows of Per (whole seconds, up to 31 days; no burst): at most Limit
// calls in each.
type Rate struct {
	Limit  int
	Per    time.Duration
	Burst  int
	By     string
	Shared bool
}

// maxSharedPer is the longest window of a shared rate (the quota
// counters keep a window that long).
const maxSharedPer = 31 * 24 * time.Hour

// Quota is Limit calls per calendar window Per ("hour", "day", "month"),
// in the time zone TimeZone (an IANA name; "" = UTC), counted per By key.
type Quota struct {
	Limit    int
	Per      string
	By       string
	TimeZone string
}

// LimitError is a problem of a rate or quota: Field names the key ("" =
// the limit as a whole), Message says what is wrong.
type LimitError struct {
	Field   string
	Message string
}

func (e *LimitError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ParseRate reads a rate from policy data or a decision (an object as
// JSON decodes it: numbers as float64, json.Number or int).
func ParseRate(raw any) (Rate, error) {
	m, err := limitObject(raw, "{limit: 10, per: 1m, burst: 20, by: client}", rateKeys)
	if err != nil {
		return Rate{}, err
	}
	var r Rate
	if r.Limit, err = limitInt(m, "limit", true); err != nil {
		return Rate{}, err
	}
	if r.Burst, err = limitInt(m, "burst", false); err != nil {
		return Rate{}, err
	}
	if r.Burst == 0 {
		r.Burst = r.Limit
	}
	per, ok := m["per"].(string)
	if !ok {
		return Rate{}, &LimitError{"per", fmt.Sprintf("is required: a duration such as 1s, 1m or 1h, not %s", kindOrMissing(m, "per"))}
	}
	if r.Per, err = time.ParseDuration(per); err != nil {
		return Rate{}, &LimitError{"per", fmt.Sprintf("%q is not a duration such as 1s, 1m or 1h", per)}
	}
	if r.Per < minRatePer || r.Per > maxRatePer {
		return Rate{}, &LimitError{"per", fmt.Sprintf("%s is out of range: from %s to %s (for longer windows use a quota)", per, minRatePer, maxRatePer)}
	}
	if int64(r.Limit) > r.Per.Nanoseconds() {
		return Rate{}, &LimitError{"limit", fmt.Sprintf("%d per %s is more than one call per nanosecond", r.Limit, per)}
	}
	// An empty bucket refills within maxRefill (and the buckets' integer
	// arithmetic stays in range).
	if refill := float64(r.Burst) * float64(r.Per) / float64(r.Limit); refill > float64(maxRefill) {
		return Rate{}, &LimitError{"burst", fmt.Sprintf("%d at %d per %s takes longer than 100 years to refill", r.Burst, r.Limit, per)}
	}
	if r.By, err = limitBy(m); err != nil {
		return Rate{}, err
	}
	if raw, ok := m["shared"]; ok {
		if r.Shared, ok = raw.(bool); !ok {
			return Rate{}, &LimitError{"shared", fmt.Sprintf("must be true or false, not %s", kindOf(raw))}
		}
	}
	if r.Shared {
		switch {
		case r.Burst != r.Limit:
			return Rate{}, &LimitError{"burst", fmt.Sprintf("a shared rate counts fixed windows of per, with no burst: use limit %d or leave out the burst", r.Burst)}
		case r.Per < time.Second || r.Per > maxSharedPer || r.Per%time.Second != 0:
			return Rate{}, &LimitError{"per", fmt.Sprintf("%s: a shared rate's window is whole seconds from 1s to %s", per, maxSharedPer)}
		}
	}
	return r, nil
}

// ParseQuota reads a quota, as ParseRate a rate. The time zone is loaded to
// be checked (the binary embeds the time zone database).
func ParseQuota(raw any) (Quota, error) {
	m, err := limitObject(raw, "{limit: 100, per: day, by: sub}", quotaKeys)
	if err != nil {
		return Quota{}, err
	}
	var q Quota
	if q.Limit, err = limitInt(m, "limit", true); err != nil {
		return Quota{}, err
	}
	per, ok := m["per"].(string)
	switch {
	case !ok:
		return Quota{}, &LimitError{"per", fmt.Sprintf("is required: one of %s, not %s", strings.Join(quotaPeriods, ", "), kindOrMissing(m, "per"))}
	case !contains(quotaPeriods, per):
		return Quota{}, &LimitError{"per", fmt.Sprintf("%q is not a calendar window; use one of %s%s (a rate limit takes durations)", per, strings.Join(quotaPeriods, ", "), didYouMean(per, quotaPeriods))}
	}
	q.Per = per
	if q.By, err = limitBy(m); err != nil {
		return Quota{}, err
	}
	if tz, ok := m["time_zone"]; ok {
		s, isStr := tz.(string)
		if !isStr || s == "" {
			return Quota{}, &LimitError{"time_zone", fmt.Sprintf("must be an IANA time zone name such as Europe/Berlin, not %s", kindOf(tz))}
		}
		if _, err := time.LoadLocation(s); err != nil {
			return Quota{}, &LimitError{"time_zone", fmt.Sprintf("%q is not a known time zone (an IANA name such as Europe/Berlin or UTC)", s)}
		}
		q.TimeZone = s
	}
	return q, nil
}

func limitObject(raw any, example string, keys []string) (map[string]any, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, &LimitError{"", fmt.Sprintf("must be an object such as %s, not %s", example, kindOf(raw))}
	}
	for _, k := range sortedKeys(m) {
		if !contains(keys, k) {
			return nil, &LimitError{k, fmt.Sprintf("unknown key%s; the keys are %s", didYouMean(k, keys), strings.Join(keys, ", "))}
		}
	}
	return m, nil
}

// limitInt reads a whole number in 1..maxLimit (0 too when not required:
// absent).
func limitInt(m map[string]any, key string, required bool) (int, error) {
	raw, ok := m[key]
	if !ok {
		if required {
			return 0, &LimitError{key, "is required: a whole number of calls, at least 1"}
		}
		return 0, nil
	}
	var f float64
	switch x := raw.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, &LimitError{key, fmt.Sprintf("%s is not a number", x)}
		}
	default:
		return 0, &LimitError{key, fmt.Sprintf("must be a whole number of calls, not %s", kindOf(raw))}
	}
	switch {
	case f != math.Trunc(f):
		return 0, &LimitError{key, fmt.Sprintf("%v is not a whole number", f)}
	case f < 1:
		return 0, &LimitError{key, fmt.Sprintf("%v is not allowed: at least 1 (to refuse every call use access: deny)", f)}
	case f > maxLimit:
		return 0, &LimitError{key, fmt.Sprintf("%v is too large: at most %d", f, maxLimit)}
	}
	return int(f), nil
}

func limitBy(m map[string]any) (string, error) {
	raw, ok := m["by"]
	if !ok {
		return "", &LimitError{"by", fmt.Sprintf("is required: who shares the budget, one of %s", strings.Join(byKeys, ", "))}
	}
	s, isStr := raw.(string)
	if !isStr || !contains(byKeys, s) {
		return "", &LimitError{"by", fmt.Sprintf("must be one of %s, not %v%s", strings.Join(byKeys, ", "), raw, didYouMean(fmt.Sprint(raw), byKeys))}
	}
	return s, nil
}

func kindOrMissing(m map[string]any, key string) string {
	x, ok := m[key]
	if !ok {
		return "missing"
	}
	return kindOf(x)
}
