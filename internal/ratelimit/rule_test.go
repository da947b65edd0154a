package ratelimit

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestRuleValidate: each refused rule names its field; every accepted one
// is accepted by the hot path too (derive), and every refused one denies.
func TestRuleValidate(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		name string
		rule Rule
		want string // a fragment of the error; "" = valid
	}{
		{"typical", Rule{Limit: 10, Per: time.Minute, Burst: 20}, ""},
		{"burst defaults to limit", Rule{Limit: 10, Per: time.Minute}, ""},
		{"burst below limit", Rule{Limit: 10, Per: time.Second, Burst: 1}, ""},
		{"one per nanosecond", Rule{Limit: 1, Per: time.Nanosecond}, ""},
		{"a billion per second", Rule{Limit: MaxLimit, Per: time.Second, Burst: MaxLimit}, ""},
		{"per a leap year", Rule{Limit: 1, Per: MaxPer}, ""},
		{"fill of exactly MaxFill", Rule{Limit: 1, Per: MaxPer, Burst: int(MaxFill / MaxPer)}, ""},
		{"zero rule", Rule{}, "limit is 0"},
		{"negative limit", Rule{Limit: -1, Per: time.Second}, "limit is -1"},
		{"limit too large", Rule{Limit: MaxLimit + 1, Per: time.Hour}, "limit is 1000000001"},
		{"zero per", Rule{Limit: 1}, "per is 0s"},
		{"negative per", Rule{Limit: 1, Per: -time.Second}, "per is -1s"},
		{"per too long", Rule{Limit: 1, Per: MaxPer + time.Nanosecond}, "per is"},
		{"per of two years", Rule{Limit: 1, Per: 2 * 365 * day}, "at most 366 days"},
		{"negative burst", Rule{Limit: 1, Per: time.Second, Burst: -1}, "burst is -1"},
		{"burst too large", Rule{Limit: 1, Per: time.Second, Burst: MaxLimit + 1}, "burst is 1000000001"},
		{"finer than a nanosecond", Rule{Limit: 2, Per: time.Nanosecond}, "more than one token per nanosecond"},
		{"a billion per 999ms", Rule{Limit: MaxLimit, Per: 999 * time.Millisecond}, "limit 1000000000 per 999ms"},
		{"fill just over MaxFill", Rule{Limit: 1, Per: MaxPer, Burst: int(MaxFill/MaxPer) + 1}, "burst 101"},
		{"fill of a billion years", Rule{Limit: 1, Per: MaxPer, Burst: MaxLimit}, "to refill from empty"},
		// 2153 × 2937519739897817ns / 2 = MaxFill + ½ns.
		{"fill over MaxFill by half a nanosecond", Rule{Limit: 2, Per: 2937519739897817, Burst: 2153}, "burst 2153"},
		{"fill under MaxFill by a fraction", Rule{Limit: 2, Per: 2937519739897817 - 1, Burst: 2153}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.rule.Validate()
			_, ok := c.rule.derive()
			if ok != (err == nil) {
				t.Fatalf("Validate() = %v but derive() ok = %v: the hot path must accept exactly what Validate does", err, ok)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", c.want)
			}
			if !errors.Is(err, ErrInvalidRule) {
				t.Errorf("Validate() = %v: does not wrap ErrInvalidRule", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, c.want)
			}
			l := New(Options{})
			if r := l.Take(c.rule, "k"); r.Allowed || r.RetryAfter != 0 {
				t.Errorf("Take with an invalid rule = %+v, want denied with RetryAfter 0", r)
			}
			l.Refund(c.rule, "k") // must not panic
			if n := l.Stats().Keys; n != 0 {
				t.Errorf("an invalid rule made %d buckets", n)
			}
		})
	}
}

// TestRetryAfterSeconds: rounded up, at least 1.
func TestRetryAfterSeconds(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 1},
		{0, 1},
		{time.Nanosecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{1500 * time.Millisecond, 2},
		{2 * time.Second, 2},
		{time.Minute - time.Nanosecond, 60},
		{MaxPer + 1, int(MaxPer/time.Second) + 1},
		{MaxFill, math.MaxInt32},
		{math.MaxInt64, math.MaxInt32},
	}
	for _, c := range cases {
		if got := RetryAfterSeconds(c.d); got != c.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}
