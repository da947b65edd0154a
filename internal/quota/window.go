package quota

import (
	"fmt"
	"time"
)

// Period is the length of a quota's calendar window: an hour, a day or a
// month of the wall clock in the rule's time zone. The zero Period is
// invalid.
type Period uint8

const (
	// Hour is a window from one full hour of the wall clock to the next
	// (13:00 to 14:00); see Window for daylight-saving changes.
	Hour Period = iota + 1
	// Day is a window from one local midnight to the next: 23 or 25
	// hours on the days the clocks change.
	Day
	// Month is a window from local midnight of the first of a month to
	// that of the next month: 28 to 31 days, an hour more or less across
	// a daylight-saving change.
	Month
)

// ParsePeriod reads a catalog's `per:` ("hour", "day" or "month").
func ParsePeriod(s string) (Period, error) {
	switch s {
	case "hour":
		return Hour, nil
	case "day":
		return Day, nil
	case "month":
		return Month, nil
	}
	return 0, fmt.Errorf("quota: unknown period %q (use hour, day or month)", s)
}

// String is the period's catalog name ("hour", "day", "month"), or
// "Period(n)" for an invalid one.
func (p Period) String() string {
	switch p {
	case Hour:
		return "hour"
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return fmt.Sprintf("Period(%d)", uint8(p))
}

// MarshalText writes the catalog name; an invalid period is an error.
func (p Period) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("quota: invalid period %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads a catalog name, as ParsePeriod.
func (p *Period) UnmarshalText(b []byte) error {
	v, err := ParsePeriod(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

func (p Period) valid() bool { return p >= Hour && p <= Month }

// Computing a bound walks the wall clock back (or forward) to the label's
// start (or the next label's) assuming the UTC offset of the instant, then
// checks with Time.ZoneBounds that no offset change lies in between; if
// one does, it continues from the change. A window holds at most a few
// changes, so the walk ends within a few steps.

// maxZoneSteps bounds the walk over offset changes within one window (a
// window of real zones holds at most two).
const maxZoneSteps = 16

// label is what stays the same within a window.
type label struct {
	year   int
	month  time.Month
	day    int // 0 for Month
	hour   int // 0 for Day and Month
	offset int // seconds east of UTC; 0 for Day and Month
}

func labelOf(p Period, lt time.Time) label {
	y, m, d := lt.Date()
	switch p {
	case Hour:
		_, off := lt.Zone()
		return label{y, m, d, lt.Hour(), off}
	case Day:
		return label{year: y, month: m, day: d}
	default:
		return label{year: y, month: m}
	}
}

// sinceStart is how long the wall clock at lt has run since its label
// began, were the offset constant.
func sinceStart(p Period, lt time.Time) time.Duration {
	h, m, s := lt.Clock()
	d := time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(lt.Nanosecond())
	switch p {
	case Hour:
		return d
	case Day:
		return d + time.Duration(h)*time.Hour
	default:
		return d + time.Duration(h)*time.Hour + time.Duration(lt.Day()-1)*24*time.Hour
	}
}

// untilNext is how long the wall clock at lt runs until the next label
// begins, were the offset constant.
func untilNext(p Period, lt time.Time) time.Duration {
	switch p {
	case Hour:
		return time.Hour - sinceStart(p, lt)
	case Day:
		return 24*time.Hour - sinceStart(p, lt)
	default:
		y, m, _ := lt.Date()
		days := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
		return time.Duration(days)*24*time.Hour - sinceStart(p, lt)
	}
}

// Window returns the calendar window of period p in loc (nil: UTC) that
// holds now: start <= now < end. An invalid period gives the zero times.
//
// A window is the maximal stretch of time over which a label of the wall
// clock in loc stays the same: the local date for Day, the local year and
// month for Month, and the local date, hour and UTC offset for Hour. So a
// day is 23 or 25 hours when the clocks change, and the hour the clocks
// fall back over (01:00-02:00 twice in New York) is two windows of an hour
// each, "01-0400" and "01-0500", not one of two hours. With a change of
// half an hour (Australia/Lord_Howe) the hour before or after it is cut to
// 30 minutes, and in a zone 45 minutes off the hour falling back an hour
// (Pacific/Chatham, 03:45 to 02:45) one hour is 15 minutes. The windows
// partition time: every instant is in exactly one, every instant of a
// window computes the same start, end and id, and the end of one window is
// the start of the next. A label can come back only where the clock fell
// back across midnight to the day before (St. John's until 2011, at
// 00:01): that stretch is a window of its own with the id of its date, so
// it counts on that date's budget.
func Window(p Period, loc *time.Location, now time.Time) (start, end time.Time) {
	if !p.valid() {
		return time.Time{}, time.Time{}
	}
	if loc == nil {
		loc = time.UTC
	}
	return windowStart(p, loc, now), windowEnd(p, loc, now)
}

func windowStart(p Period, loc *time.Location, now time.Time) time.Time {
	want := labelOf(p, now.In(loc))
	t := now
	var c time.Time
	for range maxZoneSteps {
		lt := t.In(loc)
		c = t.Add(-sinceStart(p, lt))
		zs, _ := lt.ZoneBounds()
		if zs.IsZero() || !c.Before(zs) {
			return c // the offset held from c to t
		}
		// The offset changed at zs, after the label would have begun:
		// the window began at zs unless the label was already the same
		// just before.
		prev := zs.Add(-time.Nanosecond)
		if labelOf(p, prev.In(loc)) != want {
			return zs
		}
		t = prev
	}
	return c
}

func windowEnd(p Period, loc *time.Location, now time.Time) time.Time {
	want := labelOf(p, now.In(loc))
	t := now
	var c time.Time
	for range maxZoneSteps {
		lt := t.In(loc)
		c = t.Add(untilNext(p, lt))
		_, ze := lt.ZoneBounds()
		if ze.IsZero() || c.Before(ze) {
			return c // the offset holds from t to c
		}
		// The offset changes at ze, no later than the next label would
		// begin: the window ends there if the label changes with it.
		if labelOf(p, ze.In(loc)) != want {
			return ze
		}
		t = ze
	}
	return c
}

// WindowID names the window of period p in loc (nil: UTC) holding now, as
// used in the counter subjects: "2026-12-04" for a day, "2026-12" for a
// month, "2026-12-04T13+0530" for an hour (the local date and hour with
// the UTC offset, so that the two 01:00 hours of a night the clocks fall
// back differ). Every instant of a window gives the same id, and the
// windows of one period and zone have distinct ids. An invalid period
// gives "".
func WindowID(p Period, loc *time.Location, now time.Time) string {
	var b [32]byte
	return string(appendWindowID(b[:0], p, loc, now))
}

func appendWindowID(b []byte, p Period, loc *time.Location, now time.Time) []byte {
	if !p.valid() {
		return b
	}
	if loc == nil {
		loc = time.UTC
	}
	l := labelOf(p, now.In(loc))
	b = appendInt(b, l.year, 4)
	b = append(b, '-')
	b = appendInt(b, int(l.month), 2)
	if p == Month {
		return b
	}
	b = append(b, '-')
	b = appendInt(b, l.day, 2)
	if p == Day {
		return b
	}
	b = append(b, 'T')
	b = appendInt(b, l.hour, 2)
	off := l.offset
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b = append(b, sign)
	b = appendInt(b, off/3600, 2)
	b = appendInt(b, off/60%60, 2)
	if off%60 != 0 { // historical local mean times
		b = appendInt(b, off%60, 2)
	}
	return b
}

// appendInt appends a non-negative v with at least width digits; a
// negative year (before 1 BC) gets a leading '-'.
func appendInt(b []byte, v, width int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var d [20]byte
	i := len(d)
	for v >= 10 || width > 1 {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	d[i] = byte('0' + v)
	return append(b, d[i:]...)
}
