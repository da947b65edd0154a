package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/quota"
	"github.com/mcp-pdp/pdp/internal/ratelimit"
)

// quotas is the core's Quotas: the JetStream counters of internal/quota
// over the audit's NATS connection.
type quotas struct {
	c    *quota.Counter
	zone sync.Map // time zone name -> *time.Location
}

// startQuotas returns the counters and, when the PDP manages its
// streams, makes sure the counter stream exists (replicated as the audit
// stream) in the background: with NATS away at the start the PDP starts
// all the same, and quota calls get on_counter_unavailable until the
// stream is there. A stream the configuration would weaken is kept as it
// is; one unfit for counting is logged as an error (every quota call is
// then unavailable).
func (s *Server) startQuotas() (*quotas, error) {
	log := s.log.With("component", "quota")
	cfg := quota.Config{Replicas: s.cfg.Audit.Replicas, Logger: log}
	c, err := quota.New(s.nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("quota counters: %w", err)
	}
	if s.cfg.Audit.ManagesStream() {
		js, err := jetstream.New(s.nc)
		if err != nil {
			return nil, fmt.Errorf("quota counters: %w", err)
		}
		s.goBackground(func(ctx context.Context) { ensureQuotaStream(ctx, js, cfg, log) })
	}
	s.goBackground(c.Run) // settles the takes that failed
	return &quotas{c: c}, nil
}

// ensureQuotaStream runs quota.EnsureStream until it succeeds, retrying
// while NATS cannot be reached.
func ensureQuotaStream(ctx context.Context, js jetstream.JetStream, cfg quota.Config, log *slog.Logger) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := quota.EnsureStream(sctx, js, cfg)
		cancel()
		switch {
		case err == nil:
			return
		case errors.Is(err, quota.ErrStreamKept):
			log.Warn("quota counter stream kept as it is", "err", err)
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
			errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected):
			log.Debug("quota counter stream: NATS not reachable yet, retrying", "err", err, "wait", wait)
		default:
			log.Error("quota counter stream unusable: calls with a quota get on_counter_unavailable", "err", err)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (q *quotas) location(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if l, ok := q.zone.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	q.zone.Store(name, l)
	return l, nil
}

// rule is the counters' rule for c.
func (q *quotas) rule(c core.Count) (quota.Rule, error) {
	if c.Every > 0 {
		return quota.Rule{Limit: c.Limit, Every: c.Every}, nil
	}
	p, err := quota.ParsePeriod(c.Per)
	if err != nil {
		return quota.Rule{}, err
	}
	loc, err := q.location(c.TimeZone)
	if err != nil {
		return quota.Rule{}, fmt.Errorf("quota time zone %q: %w", c.TimeZone, err)
	}
	return quota.Rule{Limit: c.Limit, Period: p, Location: loc}, nil
}

// Take counts one call of k (core.Quotas).
func (q *quotas) Take(ctx context.Context, c core.Count, k core.LimitKey) (bool, time.Duration, error) {
	rule, err := q.rule(c)
	if err != nil {
		return false, 0, err
	}
	key := quotaKey(k)
	now := time.Now()
	res, err := q.c.Take(ctx, rule, key, now)
	// An increment that was never sent (NATS disconnected while the
	// client fails over to another node, no stream leader yet) is tried
	// again until the decision's deadline, at most maxQuotaRetry: it
	// cannot have been counted. One that may have been (a lost ack) is
	// not, nor one held back by the breaker.
	for deadline := time.Now().Add(maxQuotaRetry); err != nil && retryable(err) && time.Now().Before(deadline); {
		t := time.NewTimer(quotaRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, 0, err
		case <-t.C:
		}
		now = time.Now()
		res, err = q.c.Take(ctx, rule, key, now)
	}
	if err != nil {
		return false, 0, err
	}
	if !res.Allowed {
		return false, res.Reset.Sub(now), nil
	}
	return true, 0, nil
}

// Settle hands a failed take to the counters' settling (core.Quotas).
func (q *quotas) Settle(err error, allowed bool) { q.c.Settle(err, allowed) }

// Refund gives back a call Take counted in the window holding at
// (core.Quotas); with an id, once (quota.RefundOnce).
func (q *quotas) Refund(ctx context.Context, c core.Count, k core.LimitKey, at time.Time, id string) error {
	rule, err := q.rule(c)
	if err != nil {
		return err
	}
	if id == "" {
		err = q.c.Refund(ctx, rule, quotaKey(k), at)
	} else {
		err = q.c.RefundOnce(ctx, rule, quotaKey(k), at, id)
	}
	switch {
	case errors.Is(err, quota.ErrAlreadyRefunded):
		return fmt.Errorf("%w: %w", core.ErrAlreadyRefunded, err)
	case errors.Is(err, quota.ErrOverRefund):
		return fmt.Errorf("%w: %w", core.ErrNothingToRefund, err)
	}
	return err
}

// Used is what k's window has used (core.Quotas): as this replica last
// saw it, or read from the counters (one round trip) when it has not.
func (q *quotas) Used(ctx context.Context, c core.Count, k core.LimitKey) (int64, time.Time, bool, error) {
	rule, err := q.rule(c)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	key, now := quotaKey(k), time.Now()
	_, resets := rule.Window(now)
	if used, ok := q.c.ObservedUsed(rule, key, now); ok {
		return used, resets, false, nil
	}
	used, err := q.c.Used(ctx, rule, key, now)
	return used, resets, err == nil, err
}

// How long a quota take that was never sent is tried again, and how
// often.
const (
	maxQuotaRetry  = time.Second
	quotaRetryWait = 25 * time.Millisecond
)

// retryable: err says the increment was never sent, and the breaker does
// not hold calls back.
func retryable(err error) bool {
	var ue *quota.UnavailableError
	return errors.As(err, &ue) && !ue.MaybeApplied && !errors.Is(err, quota.ErrCircuitOpen)
}

// quotaKey names k's counter (hashed by internal/quota into a subject).
func quotaKey(k core.LimitKey) string { return string(k.Append(nil)) }

// registerLimitedMetric exports the calls answered limited, by the kind
// of limit.
func registerLimitedMetric(reg prometheus.Registerer, c *core.Service) error {
	for kind, v := range map[string]func(core.LimitStats) int64{
		"rate":  func(s core.LimitStats) int64 { return s.Rate },
		"quota": func(s core.LimitStats) int64 { return s.Quota },
	} {
		m := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_limited_total",
			Help: "Calls allowed by the policy and answered limited (429): over a rate limit or over a quota.", ConstLabels: prometheus.Labels{"limit": kind}},
			func() float64 { return float64(v(c.LimitStats())) })
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("limit metrics: %w", err)
		}
	}
	return nil
}

// registerLimitMetrics exports the rate buckets' and the quota counters'
// tallies (q may be nil: no quotas without NATS).
func registerLimitMetrics(reg prometheus.Registerer, rates *ratelimit.Limiter, q *quotas) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_rate_buckets", Help: "Rate-limit token buckets this replica holds."},
			func() float64 { return float64(rates.Stats().Keys) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_rate_buckets_evicted_total",
			Help: "Rate-limit buckets dropped before they were full again, to stay within the bound (each may have let its caller up to a burst early)."},
			func() float64 { return float64(rates.Stats().Evicted) }),
	}
	if q != nil {
		take := func(result string, v func(quota.Stats) int64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_quota_takes_total",
				Help: "Quota counts by result: allowed, denied (over the quota), unavailable (the counters out of reach).", ConstLabels: prometheus.Labels{"result": result}},
				func() float64 { return float64(v(q.c.Stats())) })
		}
		cs = append(cs,
			take("allowed", func(s quota.Stats) int64 { return s.Allowed }),
			take("denied", func(s quota.Stats) int64 { return s.Denied }),
			take("unavailable", func(s quota.Stats) int64 { return s.Unavailable }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_quota_revert_failed_total",
				Help: "Quota denials whose revert failed: each may leave its window counting one call too many."},
				func() float64 { return float64(q.c.Stats().RevertFailed) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_quota_unsettled",
				Help: "Quota takes that failed (or denials whose revert failed) waiting for the counters to answer, to be made to count once or not at all."},
				func() float64 { return float64(q.c.Stats().Unsettled) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_quota_settle_lost_total",
				Help: "Failed quota takes that could not be settled (the queue full, or the counters away longer than the duplicate window): each may leave its window one call off."},
				func() float64 { return float64(q.c.Stats().SettleLost) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_quota_circuit_open", Help: "1 while the quota counters hold calls back after a timeout."},
				func() float64 {
					if q.c.Stats().CircuitOpen {
						return 1
					}
					return 0
				}),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("limit metrics: %w", err)
		}
	}
	return nil
}
