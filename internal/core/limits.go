package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/catalog"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/stepup"
)

// Limiter applies the rate limits and quotas the policy returned for an
// allowed call (decision.Result.Rate and Quota). internal/server wires
// the per-replica token buckets (internal/ratelimit) and the quota
// counters in JetStream (internal/quota) behind it.
type Limiter interface {
	// TakeRate takes one call from k's bucket of r: ok, or how long until
	// the bucket has a token again.
	TakeRate(r catalog.Rate, k LimitKey) (ok bool, retryAfter time.Duration)
	// RefundRate gives back a call TakeRate took (the call was then
	// refused by its quota, and only allowed calls count).
	RefundRate(r catalog.Rate, k LimitKey)
	// TakeQuota counts one call of k in its window of q: ok, or how long
	// until the window ends. An error says the counters could not be
	// reached (the resource's OnCounterUnavailable decides).
	TakeQuota(ctx context.Context, q catalog.Quota, k LimitKey) (ok bool, retryAfter time.Duration, err error)
}

// LimitKey is whose budget a call is counted against: one per resource,
// method and target (each tool has its own), and the limit's "by": ID is
// the subject, the client id, both (sub+client: "sub\x00client") or ""
// (resource: everyone shares it). An anonymous caller is counted by the
// PEP's rate key (pep.Request.RateKey, e.g. the client's address) with
// Anonymous set, or, without one, in one budget shared by all anonymous
// callers.
type LimitKey struct {
	Resource, Method, Target string
	By                       string
	ID                       string
	Anonymous                bool
}

// OnCounterUnavailable values: what a call with a quota gets when the
// counters cannot be reached.
const (
	// CounterDeny refuses the call (the default): 503.
	CounterDeny = "deny"
	// CounterAllow allows it, uncounted, and says so in its audit event.
	CounterAllow = "allow"
)

// limitKey is k for by, for this call.
func (d *pending) limitKey(by string) LimitKey {
	k := LimitKey{Resource: d.res.URI, Method: d.in.Method, Target: d.in.Target, By: by}
	c := d.claims
	if c == nil {
		k.Anonymous, k.ID = true, d.rateKey
		if by == catalog.ByResource {
			k.Anonymous, k.ID = false, ""
		}
		return k
	}
	switch by {
	case catalog.BySubject:
		k.ID = c.Subject
	case catalog.ByClient:
		k.ID = c.ClientID
	case catalog.BySubjectClient:
		k.ID = c.Subject + "\x00" + c.ClientID
	}
	return k
}

// errNoLimiter: the policy returned limits this PDP cannot apply.
var errNoLimiter = errors.New("the policy returned limits, but this PDP has no limiter")

// applyLimits takes the allowed call's rate and quota. It returns the
// refusal when one is over (stepup.Limited), or, with err, when the
// limits cannot be applied (Unavailable); the event limit to record
// (limited, or uncounted); zero Refusal.Kind (Allowed) otherwise.
func (d *pending) applyLimits(ctx context.Context, res *decision.Result) (stepup.Kind, *stepup.Refusal, *auditsink.Limit, error) {
	if res.Rate == nil && res.Quota == nil {
		return stepup.Allowed, nil, nil, nil
	}
	lim := d.svc.limiter
	if lim == nil {
		return stepup.Unavailable, nil, nil, errNoLimiter
	}
	var rk LimitKey
	if r := res.Rate; r != nil {
		rk = d.limitKey(r.By)
		if ok, wait := lim.TakeRate(*r, rk); !ok {
			return stepup.Limited, &stepup.Refusal{RetryAfter: wait, Limit: rateText(r)}, rateEvent(r), nil
		}
	}
	if q := res.Quota; q != nil {
		ok, wait, err := lim.TakeQuota(ctx, *q, d.limitKey(q.By))
		switch {
		case err != nil && d.res.OnCounterUnavailable == CounterAllow:
			ev := quotaEvent(q)
			ev.Uncounted = true
			d.svc.log.Warn("quota counters unavailable: call allowed uncounted", "resource", d.res.URI, "target", d.in.Target, "err", err)
			return stepup.Allowed, nil, ev, nil
		case err != nil:
			if res.Rate != nil {
				lim.RefundRate(*res.Rate, rk)
			}
			return stepup.Unavailable, nil, nil, fmt.Errorf("quota counters unavailable: %w", err)
		case !ok:
			if res.Rate != nil {
				lim.RefundRate(*res.Rate, rk)
			}
			return stepup.Limited, &stepup.Refusal{RetryAfter: wait, Limit: quotaText(q), Quota: true}, quotaEvent(q), nil
		}
	}
	return stepup.Allowed, nil, nil, nil
}

func rateText(r *catalog.Rate) string {
	s := strconv.Itoa(r.Limit) + " calls per " + r.Per.String() + " per " + r.By
	if r.Burst != r.Limit {
		s += ", bursts of " + strconv.Itoa(r.Burst)
	}
	return s
}

func quotaText(q *catalog.Quota) string {
	return strconv.Itoa(q.Limit) + " calls per " + q.Per + " per " + q.By
}

func rateEvent(r *catalog.Rate) *auditsink.Limit {
	return &auditsink.Limit{Kind: "rate", Limit: r.Limit, Per: r.Per.String(), By: r.By}
}

func quotaEvent(q *catalog.Quota) *auditsink.Limit {
	return &auditsink.Limit{Kind: "quota", Limit: q.Limit, Per: q.Per, By: q.By}
}
