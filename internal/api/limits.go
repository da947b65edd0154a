package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Limits bound the load a caller can put on /v1/....
type Limits struct {
	// RatePerPEP is the sustained requests per second allowed for each
	// authenticated PEP (one shared bucket for unauthenticated callers when
	// no authentication is configured); 0 = unlimited. Over it: 429.
	RatePerPEP float64
	// RateBurst is the bucket size (0 = RatePerPEP rounded down, plus 1).
	RateBurst int
	// MaxConcurrent bounds the /v1/... requests in progress (0 =
	// DefaultMaxConcurrent; negative = unlimited). Over it: 503 overloaded,
	// at once (no queueing).
	MaxConcurrent int
}

// DefaultMaxConcurrent is Limits.MaxConcurrent's default
// (limits.max_concurrent).
const DefaultMaxConcurrent = 1024

// maxLimiters bounds the per-PEP buckets kept; PEP names come from the
// configuration (API keys) or from certificates of a trusted CA, so this is
// a safety net, not a working limit.
const maxLimiters = 4096

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// limiter holds the per-PEP token buckets and the concurrency semaphore.
type limiter struct {
	perSec float64
	burst  int

	mu      sync.Mutex
	buckets map[string]*bucket
	spare   *bucket // shared by new PEPs once maxLimiters is reached

	sem chan struct{}

	rateLimited prometheus.Counter
	overloaded  prometheus.Counter
	inFlight    prometheus.Gauge
	now         func() time.Time
}

func newLimiter(l Limits, reg prometheus.Registerer) *limiter {
	lm := &limiter{
		perSec:  l.RatePerPEP,
		burst:   l.RateBurst,
		buckets: map[string]*bucket{},
		now:     time.Now,
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pdp_rate_limited_total", Help: "Calls to /v1/... refused with 429 because the PEP exceeded its rate.",
		}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pdp_overloaded_total", Help: "Calls to /v1/... refused with 503 because max_concurrent requests were in progress.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pdp_api_in_flight", Help: "Calls to /v1/... in progress.",
		}),
	}
	if lm.perSec > 0 && lm.burst <= 0 {
		lm.burst = int(math.Floor(lm.perSec)) + 1
	}
	switch {
	case l.MaxConcurrent == 0:
		lm.sem = make(chan struct{}, DefaultMaxConcurrent)
	case l.MaxConcurrent > 0:
		lm.sem = make(chan struct{}, l.MaxConcurrent)
	}
	reg.MustRegister(lm.rateLimited, lm.overloaded, lm.inFlight)
	return lm
}

// rate takes one token from the PEP's bucket or answers 429 with the time
// until one is available in Retry-After.
func (l *limiter) rate(c *echo.Context, pep string) error {
	if l.perSec <= 0 {
		return nil
	}
	now := l.now()
	b := l.bucket(pep, now)
	r := b.lim.ReserveN(now, 1)
	if r.OK() {
		d := r.DelayFrom(now)
		if d == 0 {
			return nil
		}
		r.CancelAt(now)
		l.rateLimited.Inc()
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	} else {
		l.rateLimited.Inc()
		c.Response().Header().Set("Retry-After", "1")
	}
	return apiError(http.StatusTooManyRequests, "rate_limited",
		"this PEP exceeds its rate limit of "+strconv.FormatFloat(l.perSec, 'g', -1, 64)+" requests per second; retry after the time in Retry-After")
}

func (l *limiter) bucket(pep string, now time.Time) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[pep]; b != nil {
		b.last = now
		return b
	}
	if len(l.buckets) >= maxLimiters {
		// Forget buckets idle long enough to be full again.
		idle := time.Duration(float64(l.burst)/l.perSec*float64(time.Second)) + time.Second
		for k, b := range l.buckets {
			if now.Sub(b.last) > idle {
				delete(l.buckets, k)
			}
		}
		if len(l.buckets) >= maxLimiters {
			if l.spare == nil {
				l.spare = &bucket{lim: rate.NewLimiter(rate.Limit(l.perSec), l.burst)}
			}
			l.spare.last = now
			return l.spare
		}
	}
	b := &bucket{lim: rate.NewLimiter(rate.Limit(l.perSec), l.burst), last: now}
	l.buckets[pep] = b
	return b
}

// acquire takes a concurrency slot or answers 503 overloaded at once. On
// success the caller must call release.
func (l *limiter) acquire(c *echo.Context) error {
	if l.sem == nil {
		l.inFlight.Inc()
		return nil
	}
	select {
	case l.sem <- struct{}{}:
		l.inFlight.Inc()
		return nil
	default:
		l.overloaded.Inc()
		c.Response().Header().Set("Retry-After", "1")
		return apiError(http.StatusServiceUnavailable, "overloaded",
			"the PDP is answering as many requests as it is configured for (limits.max_concurrent); retry shortly")
	}
}

// release gives back the slot of a successful acquire.
func (l *limiter) release() {
	l.inFlight.Dec()
	if l.sem != nil {
		<-l.sem
	}
}
