package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/mcp-pdp/pdp/internal/ratelimit"
)

// A catalog entry's `rate: {limit: 2, per: 1s, burst: 3, by: client}`:
// three calls at once, then two a second. The clock is a fake one, so that
// the output is the same on every run.
func Example() {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	l := ratelimit.New(ratelimit.Options{Now: func() time.Time { return now }})
	rule := ratelimit.Rule{Limit: 2, Per: time.Second, Burst: 3}
	if err := rule.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	key := "tool:generate_qr|client:abc"
	for range 4 {
		r := l.Take(rule, key)
		fmt.Printf("allowed %v, remaining %d, retry after %v (Retry-After: %d)\n",
			r.Allowed, r.Remaining, r.RetryAfter, ratelimit.RetryAfterSeconds(r.RetryAfter))
	}
	now = now.Add(500 * time.Millisecond)
	fmt.Println("500ms later, allowed:", l.Take(rule, key).Allowed)

	// A second rule refuses the call after all: give the token back.
	l.Refund(rule, key)
	fmt.Println("after a refund, allowed:", l.Take(rule, key).Allowed)

	fmt.Println(ratelimit.Rule{Limit: 10, Per: 0}.Validate())
	// Output:
	// allowed true, remaining 2, retry after 0s (Retry-After: 1)
	// allowed true, remaining 1, retry after 0s (Retry-After: 1)
	// allowed true, remaining 0, retry after 0s (Retry-After: 1)
	// allowed false, remaining 0, retry after 500ms (Retry-After: 1)
	// 500ms later, allowed: true
	// after a refund, allowed: true
	// invalid rate rule: per is 0s: it must be positive (the period over which limit tokens are added)
}
