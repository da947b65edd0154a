package server

import (
	"context"
	"errors"
	"time"

	"github.com/mcp-pdp/pdp/internal/catalog"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/ratelimit"
)

// limiter is the core's Limiter: rate limits in this replica's token
// buckets (internal/ratelimit); quotas, exact across replicas, in the
// JetStream counters (internal/quota) once wired, refused until then.
type limiter struct {
	rates *ratelimit.Limiter
}

func newLimiter() *limiter {
	return &limiter{rates: ratelimit.New(ratelimit.Options{})}
}

func rule(r catalog.Rate) ratelimit.Rule {
	return ratelimit.Rule{Limit: r.Limit, Per: r.Per, Burst: r.Burst}
}

// bucketKey names k's bucket: the fields joined by NUL, which none of
// them holds where it matters (an id with a NUL only names another id's
// bucket if the rest matches too, and the id comes from a verified
// token or the PEP).
func bucketKey(k core.LimitKey) string {
	who := "t:" + k.ID // a token's subject or client
	if k.Anonymous {
		who = "a:" + k.ID // the PEP's rate key
	}
	return k.Resource + "\x00" + k.Method + "\x00" + k.Target + "\x00" + k.By + "\x00" + who
}

func (l *limiter) TakeRate(r catalog.Rate, k core.LimitKey) (bool, time.Duration) {
	res := l.rates.Take(rule(r), bucketKey(k))
	return res.Allowed, res.RetryAfter
}

func (l *limiter) RefundRate(r catalog.Rate, k core.LimitKey) {
	l.rates.Refund(rule(r), bucketKey(k))
}

// errNoQuotaCounters: this PDP counts no quotas yet.
var errNoQuotaCounters = errors.New("quota counters are not available on this PDP")

func (l *limiter) TakeQuota(context.Context, catalog.Quota, core.LimitKey) (bool, time.Duration, error) {
	return false, 0, errNoQuotaCounters
}
