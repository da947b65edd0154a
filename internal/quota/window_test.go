package quota

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below on any machine
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return v
}

// TestWindow: the windows around the clock changes, at fixed instants.
func TestWindow(t *testing.T) {
	tests := []struct {
		name       string
		zone       string
		p          Period
		now        string // RFC 3339, with the offset of the instant
		start, end string // UTC
		hours      float64
		id         string
	}{
		{"utc day", "UTC", Day, "2026-12-04T13:20:00Z", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z", 24, "2026-12-04"},
		{"utc day at its start", "UTC", Day, "2026-12-04T00:00:00Z", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z", 24, "2026-12-04"},
		{"utc day at its last ns", "UTC", Day, "2026-12-04T23:59:59.999999999Z", "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z", 24, "2026-12-04"},
		{"utc hour", "UTC", Hour, "2026-12-04T13:20:00Z", "2026-12-04T13:00:00Z", "2026-12-04T14:00:00Z", 1, "2026-12-04T13+0000"},
		{"utc month december", "UTC", Month, "2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 31 * 24, "2026-12"},

		// New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
		{"ny day spring forward (23 h)", "America/New_York", Day, "2026-03-08T12:00:00-04:00", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 23, "2026-03-08"},
		{"ny day spring forward, before the change", "America/New_York", Day, "2026-03-08T01:30:00-05:00", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 23, "2026-03-08"},
		{"ny day before spring forward", "America/New_York", Day, "2026-03-07T23:59:59-05:00", "2026-03-07T05:00:00Z", "2026-03-08T05:00:00Z", 24, "2026-03-07"},
		{"ny day fall back (25 h)", "America/New_York", Day, "2026-11-01T18:00:00-05:00", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 25, "2026-11-01"},
		{"ny day fall back, first 01:30", "America/New_York", Day, "2026-11-01T01:30:00-04:00", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 25, "2026-11-01"},
		{"ny hour before the skipped one", "America/New_York", Hour, "2026-03-08T01:59:59-05:00", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", 1, "2026-03-08T01-0500"},
		{"ny hour after the skipped one", "America/New_York", Hour, "2026-03-08T03:00:00-04:00", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z", 1, "2026-03-08T03-0400"},
		{"ny first 01:00 hour of fall back", "America/New_York", Hour, "2026-11-01T01:30:00-04:00", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", 1, "2026-11-01T01-0400"},
		{"ny second 01:00 hour of fall back", "America/New_York", Hour, "2026-11-01T01:30:00-05:00", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", 1, "2026-11-01T01-0500"},
		{"ny month of spring forward", "America/New_York", Month, "2026-03-20T00:00:00-04:00", "2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z", 31*24 - 1, "2026-03"},
		{"ny month of fall back", "America/New_York", Month, "2026-11-01T01:30:00-05:00", "2026-11-01T04:00:00Z", "2026-12-01T05:00:00Z", 30*24 + 1, "2026-11"},

		// Months of every length.
		{"february of a leap year", "UTC", Month, "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", 29 * 24, "2028-02"},
		{"february", "UTC", Month, "2026-02-28T23:59:59Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", 28 * 24, "2026-02"},
		{"april", "Europe/Berlin", Month, "2026-04-30T23:59:59+02:00", "2026-03-31T22:00:00Z", "2026-04-30T22:00:00Z", 30 * 24, "2026-04"},
		{"first instant of march, berlin", "Europe/Berlin", Month, "2026-03-01T00:00:00+01:00", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z", 31*24 - 1, "2026-03"},

		// Kolkata, +05:30 all year: hours begin at :30 UTC.
		{"kolkata hour", "Asia/Kolkata", Hour, "2026-12-04T13:45:00+05:30", "2026-12-04T07:30:00Z", "2026-12-04T08:30:00Z", 1, "2026-12-04T13+0530"},
		{"kolkata day", "Asia/Kolkata", Day, "2026-12-04T00:10:00+05:30", "2026-12-03T18:30:00Z", "2026-12-04T18:30:00Z", 24, "2026-12-04"},

		// Lord Howe Island: +11 -> +10:30 at 2026-04-05 02:00, +10:30 -> +11 at 2026-10-04 02:00.
		{"lord howe hour before falling back", "Australia/Lord_Howe", Hour, "2026-04-05T01:15:00+11:00", "2026-04-04T14:00:00Z", "2026-04-04T15:00:00Z", 1, "2026-04-05T01+1100"},
		{"lord howe half hour after falling back", "Australia/Lord_Howe", Hour, "2026-04-05T01:45:00+10:30", "2026-04-04T15:00:00Z", "2026-04-04T15:30:00Z", 0.5, "2026-04-05T01+1030"},
		{"lord howe hour after falling back", "Australia/Lord_Howe", Hour, "2026-04-05T02:00:00+10:30", "2026-04-04T15:30:00Z", "2026-04-04T16:30:00Z", 1, "2026-04-05T02+1030"},
		{"lord howe day falling back (24.5 h)", "Australia/Lord_Howe", Day, "2026-04-05T12:00:00+10:30", "2026-04-04T13:00:00Z", "2026-04-05T13:30:00Z", 24.5, "2026-04-05"},
		{"lord howe hour before springing forward", "Australia/Lord_Howe", Hour, "2026-10-04T01:45:00+10:30", "2026-10-03T14:30:00Z", "2026-10-03T15:30:00Z", 1, "2026-10-04T01+1030"},
		{"lord howe half hour after springing forward", "Australia/Lord_Howe", Hour, "2026-10-04T02:45:00+11:00", "2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z", 0.5, "2026-10-04T02+1100"},
		{"lord howe day springing forward (23.5 h)", "Australia/Lord_Howe", Day, "2026-10-04T12:00:00+11:00", "2026-10-03T13:30:00Z", "2026-10-04T13:00:00Z", 23.5, "2026-10-04"},

		// Santiago changes at midnight: 2026-04-05 00:00 -03 -> 04-04 23:00 -04; 2026-09-06 00:00 -04 -> 01:00 -03.
		{"santiago day repeating its last hour (25 h)", "America/Santiago", Day, "2026-04-04T23:30:00-04:00", "2026-04-04T03:00:00Z", "2026-04-05T04:00:00Z", 25, "2026-04-04"},
		{"santiago day without its midnight (23 h)", "America/Santiago", Day, "2026-09-06T01:00:00-03:00", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z", 23, "2026-09-06"},
		{"santiago day before it", "America/Santiago", Day, "2026-09-05T23:59:59-04:00", "2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z", 24, "2026-09-05"},

		// Samoa skipped 2011-12-30: -10 -> +14.
		{"apia day before the skipped one", "Pacific/Apia", Day, "2011-12-29T23:00:00-10:00", "2011-12-29T10:00:00Z", "2011-12-30T10:00:00Z", 24, "2011-12-29"},
		{"apia day after the skipped one", "Pacific/Apia", Day, "2011-12-31T00:00:00+14:00", "2011-12-30T10:00:00Z", "2011-12-31T10:00:00Z", 24, "2011-12-31"},
		{"apia december without its 30th", "Pacific/Apia", Month, "2011-12-15T00:00:00-10:00", "2011-12-01T10:00:00Z", "2011-12-31T10:00:00Z", 30 * 24, "2011-12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustLoad(t, tt.zone)
			now := mustTime(t, tt.now)
			start, end := Window(tt.p, loc, now)
			if want := mustTime(t, tt.start); !start.Equal(want) {
				t.Errorf("start %s, want %s", start.UTC().Format(time.RFC3339), tt.start)
			}
			if want := mustTime(t, tt.end); !end.Equal(want) {
				t.Errorf("end %s, want %s", end.UTC().Format(time.RFC3339), tt.end)
			}
			if got := end.Sub(start).Hours(); got != tt.hours {
				t.Errorf("length %v h, want %v h", got, tt.hours)
			}
			if id := WindowID(tt.p, loc, now); id != tt.id {
				t.Errorf("id %q, want %q", id, tt.id)
			}
			if id := WindowID(tt.p, loc, start); id != tt.id {
				t.Errorf("id at the start %q, want %q", id, tt.id)
			}
			if id := WindowID(tt.p, loc, end.Add(-time.Nanosecond)); id != tt.id {
				t.Errorf("id at the last nanosecond %q, want %q", id, tt.id)
			}
			if id := WindowID(tt.p, loc, end); id == tt.id {
				t.Errorf("id at the end %q is the window's", id)
			}
		})
	}
}

// TestWindowPartition sweeps years of several zones: every instant lies
// in its window, the windows tile time with no gap or overlap, and the
// ids of consecutive windows differ.
func TestWindowPartition(t *testing.T) {
	zones := []string{"UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe",
		"America/Santiago", "Pacific/Apia", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns"}
	periods := []struct {
		p    Period
		from time.Time
		n    int // windows walked
	}{
		{Hour, time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), 24 * 400},
		{Day, time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC), 366 * 3},
		{Month, time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC), 12 * 25},
	}
	for _, zone := range zones {
		loc := mustLoad(t, zone)
		for _, pp := range periods {
			t.Run(zone+"/"+pp.p.String(), func(t *testing.T) {
				_, end := Window(pp.p, loc, pp.from)
				prevID := WindowID(pp.p, loc, pp.from)
				for range pp.n {
					start, next := Window(pp.p, loc, end)
					if !start.Equal(end) {
						t.Fatalf("window after %s starts at %s", end, start)
					}
					if !next.After(start) {
						t.Fatalf("empty window %s..%s", start, next)
					}
					d := next.Sub(start)
					if minD, maxD := bounds(pp.p); d < minD || d > maxD {
						t.Fatalf("window %s..%s lasts %v", start.In(loc), next.In(loc), d)
					}
					id := WindowID(pp.p, loc, start)
					if id == prevID {
						t.Fatalf("windows before and from %s share the id %q", start.In(loc), id)
					}
					mid := start.Add(d / 3)
					if s, e := Window(pp.p, loc, mid); !s.Equal(start) || !e.Equal(next) {
						t.Fatalf("%s: window %s..%s, want %s..%s", mid, s, e, start, next)
					}
					if got := WindowID(pp.p, loc, next.Add(-time.Nanosecond)); got != id {
						t.Fatalf("id %q at the end of window %q", got, id)
					}
					prevID, end = id, next
				}
			})
		}
	}
}

func bounds(p Period) (time.Duration, time.Duration) {
	switch p {
	case Hour:
		// Chatham (+12:45/+13:45) falls back from 03:45 to 02:45: the
		// hour 02+1245 is 15 minutes.
		return 15 * time.Minute, time.Hour
	case Day:
		return 22 * time.Hour, 26 * time.Hour
	default:
		return 27 * 24 * time.Hour, 31*24*time.Hour + 2*time.Hour
	}
}

// TestWindowDateGoingBack: until 2011 St. John's fell back at 00:01 to
// 23:01 of the day before, so its wall clock showed 2010-11-06 again after
// a minute of 2010-11-07. A window is where the label stays the same, so
// 11-07 first lasts one minute, 11-06 comes back for 59 minutes, then
// 11-07 again: the windows still tile time, but their ids repeat, and such
// a repeated stretch counts on the budget of its date (a minute of 11-07
// on the day after, never an over-allow). No zone changes so today.
func TestWindowDateGoingBack(t *testing.T) {
	loc := mustLoad(t, "America/St_Johns")
	steps := []struct{ now, start, end, id string }{
		{"2010-11-07T00:00:30-02:30", "2010-11-07T02:30:00Z", "2010-11-07T02:31:00Z", "2010-11-07"},
		{"2010-11-06T23:30:00-03:30", "2010-11-07T02:31:00Z", "2010-11-07T03:30:00Z", "2010-11-06"},
		{"2010-11-07T12:00:00-03:30", "2010-11-07T03:30:00Z", "2010-11-08T03:30:00Z", "2010-11-07"},
	}
	for _, s := range steps {
		now := mustTime(t, s.now)
		start, end := Window(Day, loc, now)
		if !start.Equal(mustTime(t, s.start)) || !end.Equal(mustTime(t, s.end)) {
			t.Errorf("%s: window %s..%s, want %s..%s", s.now, start.UTC(), end.UTC(), s.start, s.end)
		}
		if id := WindowID(Day, loc, now); id != s.id {
			t.Errorf("%s: id %q, want %q", s.now, id, s.id)
		}
	}
}

func TestWindowInvalid(t *testing.T) {
	if s, e := Window(0, time.UTC, time.Now()); !s.IsZero() || !e.IsZero() {
		t.Errorf("invalid period: %v %v", s, e)
	}
	if id := WindowID(Period(9), time.UTC, time.Now()); id != "" {
		t.Errorf("invalid period id %q", id)
	}
	// nil is UTC.
	now := mustTime(t, "2026-12-04T13:20:00Z")
	if s, _ := Window(Day, nil, now); !s.Equal(mustTime(t, "2026-12-04T00:00:00Z")) {
		t.Errorf("nil location start %v", s)
	}
}

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in   string
		want Period
		ok   bool
	}{
		{"hour", Hour, true}, {"day", Day, true}, {"month", Month, true},
		{"", 0, false}, {"Day", 0, false}, {"week", 0, false}, {"1h", 0, false}, {" day", 0, false},
	}
	for _, tt := range tests {
		got, err := ParsePeriod(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePeriod(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok {
			if got.String() != tt.in {
				t.Errorf("String %q, want %q", got.String(), tt.in)
			}
			var p Period
			if err := p.UnmarshalText([]byte(tt.in)); err != nil || p != tt.want {
				t.Errorf("UnmarshalText(%q) = %v, %v", tt.in, p, err)
			}
			if b, err := tt.want.MarshalText(); err != nil || string(b) != tt.in {
				t.Errorf("MarshalText = %q, %v", b, err)
			}
		}
	}
	if _, err := Period(0).MarshalText(); err == nil {
		t.Error("MarshalText of the zero period")
	}
	if s := Period(7).String(); !strings.Contains(s, "7") {
		t.Errorf("String of an invalid period %q", s)
	}
}

func TestRuleValidate(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tests := []struct {
		name string
		r    Rule
		ok   bool
	}{
		{"day utc", Rule{Limit: 100, Period: Day}, true},
		{"month ny", Rule{Limit: 1, Period: Month, Location: ny}, true},
		{"max", Rule{Limit: MaxLimit, Period: Hour, Location: time.UTC}, true},
		{"zero limit", Rule{Limit: 0, Period: Day}, false},
		{"negative limit", Rule{Limit: -5, Period: Day}, false},
		{"absurd limit", Rule{Limit: MaxLimit + 1, Period: Day}, false},
		{"no period", Rule{Limit: 10}, false},
		{"unknown period", Rule{Limit: 10, Period: 4}, false},
		{"local zone", Rule{Limit: 10, Period: Day, Location: time.Local}, false},
		{"unnamed zone", Rule{Limit: 10, Period: Day, Location: time.FixedZone("", 3600)}, false},
		{"named fixed zone", Rule{Limit: 10, Period: Day, Location: time.FixedZone("UTC+1", 3600)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "invalid rule") {
				t.Errorf("error %q does not say invalid rule", err)
			}
		})
	}
}

func BenchmarkWindow(b *testing.B) {
	loc := mustLoad(b, "America/New_York")
	now := mustTime(b, "2026-11-01T01:30:00-05:00")
	for _, p := range []Period{Hour, Day, Month} {
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Window(p, loc, now)
			}
		})
	}
}
