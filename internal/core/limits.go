package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/catalog"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/ratelimit"
	"github.com/mcp-pdp/pdp/internal/stepup"
)

// Quotas counts the quotas the policy returns for allowed calls
// (decision.Result.Quota) and its shared rates, exact across replicas:
// internal/server wires the JetStream counters of internal/quota behind
// it.
type Quotas interface {
	// Take counts one call of k in its window of c: ok, or how long until
	// the window ends. An error says the counters could not be reached
	// (the resource's OnCounterUnavailable decides a quota; a shared
	// rate falls back to this replica's bucket).
	Take(ctx context.Context, c Count, k LimitKey) (ok bool, retryAfter time.Duration, err error)
	// Settle says what became of a call whose Take failed with err:
	// allowed (it must count once) or refused (it must not count), for
	// the counters to be made so once they answer again.
	Settle(err error, allowed bool)
	// Refund gives back a call Take counted at the time at: an allowed
	// answer turned into a refusal afterwards, or a call the PEP reports
	// failed (POST /v1/refund). With an id, the same refund asked again
	// is applied once (ErrAlreadyRefunded).
	Refund(ctx context.Context, c Count, k LimitKey, at time.Time, id string) error
	// Used is what k's window of c has used: as this replica last saw
	// it (exact false), or, when it has not seen it, read from the
	// counters (exact).
	Used(ctx context.Context, c Count, k LimitKey) (used int64, resets time.Time, exact bool, err error)
}

// Count is what a counter counts: Limit calls in each calendar window
// Per ("hour", "day", "month") in TimeZone ("" = UTC), a quota; or, with
// Every, in fixed windows of that length from the Unix epoch, a shared
// rate.
type Count struct {
	Limit    int
	Per      string
	TimeZone string
	Every    time.Duration
}

func quotaCount(q *catalog.Quota) Count {
	return Count{Limit: q.Limit, Per: q.Per, TimeZone: q.TimeZone}
}

func sharedCount(r *catalog.Rate) Count { return Count{Limit: r.Limit, Every: r.Per} }

// LimitKey is whose budget a call is counted against: one per resource,
// method and target (each tool has its own), and the limit's "by": ID is
// the subject, the client id, the subject with ID2 the client id
// (sub+client; named "sub\x00client"), or ""
// (resource: everyone shares it). An anonymous caller, and a token
// without the claim the limit is by, is counted by the PEP's rate key
// (pep.Request.RateKey, e.g. the client's address) with Anonymous set,
// or, without one, in one budget shared by all such callers.
type LimitKey struct {
	Resource, Method, Target string
	By                       string
	ID                       string
	// ID2 is the client id of a sub+client key (ID is the subject): kept
	// apart, not joined, so that building a key allocates nothing.
	ID2       string
	Anonymous bool
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
	if by == catalog.ByResource {
		return k
	}
	if c := d.claims; c != nil {
		switch {
		case by == catalog.BySubject && c.Subject != "":
			k.ID = c.Subject
			return k
		case by == catalog.ByClient && c.ClientID != "":
			k.ID = c.ClientID
			return k
		case by == catalog.BySubjectClient && (c.Subject != "" || c.ClientID != ""):
			k.ID, k.ID2 = c.Subject, c.ClientID
			return k
		}
	}
	// Anonymous, or a token without the claim the limit is by (no sub,
	// no client id): counted by the PEP's rate key, as anonymous callers
	// are, rather than in one budget with every other such token.
	k.Anonymous, k.ID = true, d.pepRateKey
	return k
}

// errNoQuotas: the policy returned a quota this PDP cannot count.
var errNoQuotas = errors.New("quota counters are not available on this PDP")

// Append appends k's name to b: the fields joined by NUL (an id with a
// NUL names another key only if every other field matches too; ids come
// from a verified token or the PEP), the id marked as the token's or the
// PEP's. It names a rate bucket here and a quota counter in
// internal/server.
func (k LimitKey) Append(b []byte) []byte {
	for _, f := range [...]string{k.Resource, k.Method, k.Target, k.By} {
		b = append(b, f...)
		b = append(b, 0)
	}
	if k.Anonymous {
		b = append(b, 'a', ':') // the PEP's rate key
	} else {
		b = append(b, 't', ':') // from the token
	}
	b = append(b, k.ID...)
	if k.By == catalog.BySubjectClient && !k.Anonymous {
		b = append(b, 0)
		b = append(b, k.ID2...)
	}
	return b
}

func rule(r *catalog.Rate) ratelimit.Rule {
	return ratelimit.Rule{Limit: r.Limit, Per: r.Per, Burst: r.Burst}
}

// applyLimits takes the allowed call's rate and quota. It returns
// stepup.Allowed, or stepup.Limited with the refusal's retry and limit,
// or stepup.Unavailable with the error (a quota that cannot be counted);
// and the limit for the audit event (the one over, or a quota allowed
// uncounted).
func (d *pending) applyLimits(ctx context.Context, res *decision.Result) (stepup.Kind, *stepup.Refusal, *auditsink.Limit, error) {
	if res.Rate == nil && res.Quota == nil {
		return stepup.Allowed, nil, nil, nil
	}
	// The bucket's name, on the stack for common sizes: ratelimit does
	// not keep the string (it copies a key it stores).
	var buf [192]byte
	var rk string
	shared := false // the rate was counted by the shared counters
	if r := res.Rate; r != nil {
		b := d.limitKey(r.By).Append(buf[:0])
		rk = unsafe.String(unsafe.SliceData(b), len(b))
		if r.Shared {
			ok, wait, err := d.takeShared(ctx, r)
			if err == nil && !ok {
				return stepup.Limited, &stepup.Refusal{RetryAfter: wait, Limit: rateText(r)}, rateEvent(r), nil
			}
			shared = err == nil
		}
		if !shared {
			if t := d.svc.rates.Take(rule(r), rk); !t.Allowed {
				return stepup.Limited, &stepup.Refusal{RetryAfter: t.RetryAfter, Limit: rateText(r)}, rateEvent(r), nil
			}
		}
	}
	d.tookShared = shared
	refund := func() {
		if res.Rate != nil {
			d.refundRate(ctx, res.Rate, rk)
		}
	}
	q := res.Quota
	if q == nil {
		return stepup.Allowed, nil, nil, nil
	}
	var (
		ok   bool
		wait time.Duration
		err  = errNoQuotas
	)
	if d.svc.quotas != nil {
		d.tookAt = time.Now()
		ok, wait, err = d.svc.quotas.Take(ctx, quotaCount(q), d.limitKey(q.By))
	}
	switch {
	case err != nil && d.res.OnCounterUnavailable == CounterAllow:
		if d.svc.quotas != nil {
			d.svc.quotas.Settle(err, true)
		}
		ev := quotaEvent(q)
		ev.Uncounted = true
		d.svc.log.Warn("quota counters unavailable: call allowed, counted once they answer", "resource", d.res.URI, "target", d.in.Target, "err", err)
		return stepup.Allowed, nil, ev, nil
	case err != nil:
		if d.svc.quotas != nil {
			d.svc.quotas.Settle(err, false)
		}
		refund()
		return stepup.Unavailable, nil, nil, fmt.Errorf("quota %s: %w", quotaText(q), err)
	case !ok:
		refund()
		return stepup.Limited, &stepup.Refusal{RetryAfter: wait, Limit: quotaText(q), Quota: true}, quotaEvent(q), nil
	}
	d.tookQuota = true
	return stepup.Allowed, nil, nil, nil
}

// withBudget decides the call again with what is left of its quota in
// input.budget, for a policy that reads it; without a quota, or when the
// counters cannot say, the first result stands (the policy sees no
// input.budget).
func (d *pending) withBudget(ctx context.Context, result *decision.Result) (*decision.Result, error) {
	q := result.Quota
	if q == nil || d.svc.quotas == nil || d.in.Class.Operation != decision.OpCall {
		return result, nil
	}
	if p := d.svc.engine.Policy(); p == nil || !p.ReadsBudget() {
		return result, nil
	}
	used, resets, exact, err := d.svc.quotas.Used(ctx, quotaCount(q), d.limitKey(q.By))
	if err != nil {
		d.svc.log.Debug("quota budget unknown: the policy decides without input.budget", "resource", d.res.URI, "target", d.in.Target, "err", err)
		return result, nil
	}
	d.in.Budget = &decision.Budget{Quota: &decision.QuotaBudget{Limit: q.Limit, Used: used, Per: q.Per, By: q.By, Resets: resets, Exact: exact}}
	return d.svc.engine.Decide(ctx, d.in)
}

// giveBack returns what applyLimits took for an allowed answer turned
// into a refusal afterwards (its audit event could not be recorded).
func (d *pending) giveBack(ctx context.Context, res *decision.Result) {
	if res == nil {
		return
	}
	if r := res.Rate; r != nil {
		d.refundRate(ctx, r, string(d.limitKey(r.By).Append(nil)))
	}
	if q := res.Quota; q != nil && d.tookQuota {
		// Bounded by the counters' own timeout, past the decision's.
		if err := d.svc.quotas.Refund(context.WithoutCancel(ctx), quotaCount(q), d.limitKey(q.By), d.tookAt, ""); err != nil {
			d.svc.log.Warn("quota: a refused call's count could not be given back", "resource", d.res.URI, "target", d.in.Target, "err", err)
		}
	}
}

// takeShared counts a shared rate (r.Shared) in the counters. When they
// cannot be reached (err), the caller falls back to this replica's
// bucket, and the failed take is settled as counted once the counters
// answer (for a call the bucket then refuses, one count too many: on the
// side of the limit).
func (d *pending) takeShared(ctx context.Context, r *catalog.Rate) (bool, time.Duration, error) {
	if d.svc.quotas == nil {
		return false, 0, errNoQuotas
	}
	k := d.limitKey(r.By)
	d.sharedAt = time.Now()
	ok, wait, err := d.svc.quotas.Take(ctx, sharedCount(r), k)
	if err != nil {
		d.svc.quotas.Settle(err, true)
		d.svc.log.Debug("shared rate counters unavailable: this replica's bucket applies", "resource", d.res.URI, "target", d.in.Target, "err", err)
	}
	return ok, wait, err
}

// refundRate gives back the rate token (or the shared rate's count) of
// a call refused after it was taken.
func (d *pending) refundRate(ctx context.Context, r *catalog.Rate, key string) {
	if !d.tookShared {
		d.svc.rates.Refund(rule(r), key)
		return
	}
	if err := d.svc.quotas.Refund(context.WithoutCancel(ctx), sharedCount(r), d.limitKey(r.By), d.sharedAt, ""); err != nil {
		d.svc.log.Warn("shared rate: a refused call's count could not be given back", "resource", d.res.URI, "target", d.in.Target, "err", err)
	}
}

func rateText(r *catalog.Rate) string {
	s := strconv.Itoa(r.Limit) + " calls per " + r.Per.String() + " per " + r.By
	if r.Burst != r.Limit {
		s += ", bursts of " + strconv.Itoa(r.Burst)
	}
	if r.Shared {
		s += ", shared by the replicas"
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
