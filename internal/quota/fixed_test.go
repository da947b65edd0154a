package quota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestFixedWindows: a rule with Every counts in fixed windows from the
// Unix epoch (a shared rate limit): Limit calls a window, the denial's
// reset at the window's end, a fresh budget in the next window; and its
// invalid forms are refused.
func TestFixedWindows(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	rule := Rule{Limit: 3, Every: time.Minute}
	now := mustTime(t, "2026-12-06T21:30:59.5Z")
	for i := range 3 {
		if res, err := c.Take(ctx, rule, "shared", now); err != nil || !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("take %d: %+v, %v", i+1, res, err)
		}
	}
	res, err := c.Take(ctx, rule, "shared", now)
	if err != nil || res.Allowed || !res.Reset.Equal(mustTime(t, "2026-12-06T21:31:00Z")) {
		t.Fatalf("over the limit: %+v, %v; want denied until 21:31:00", res, err)
	}
	if s := c.Subject(rule, "shared", now); !strings.HasPrefix(s, "pdp.quota.60s-29943210.") {
		t.Fatalf("subject %s", s)
	}
	if res, err := c.Take(ctx, rule, "shared", now.Add(time.Second)); err != nil || !res.Allowed || res.Remaining != 2 {
		t.Fatalf("the next window: %+v, %v", res, err)
	}
	if start, end := rule.Window(mustTime(t, "1969-12-31T23:59:30Z")); !start.Equal(mustTime(t, "1969-12-31T23:59:00Z")) || !end.Equal(time.Unix(0, 0)) {
		t.Fatalf("a window before the epoch: %v to %v", start, end)
	}
	for _, bad := range []Rule{
		{Limit: 1, Every: 500 * time.Millisecond},
		{Limit: 1, Every: 1500 * time.Millisecond},
		{Limit: 1, Every: MaxEvery + time.Second},
		{Limit: 1, Every: time.Minute, Period: Day},
		{Limit: 1, Every: time.Minute, Location: mustLoad(t, "Europe/Berlin")},
		{Limit: 0, Every: time.Minute},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
}
