package api

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/pep"
)

type metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	apiErrors *prometheus.CounterVec
	refunds   *prometheus.CounterVec

	// counters holds the resolved decisions counters by label values, so
	// that a decision costs a map lookup, not a label hash and a status
	// formatted to text. Copy on write: a new map per new pair of labels.
	counters atomic.Pointer[map[decisionLabels]prometheus.Counter]
	mu       sync.Mutex // serialises writers of counters
}

type decisionLabels struct {
	outcome string
	status  int
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_decisions_total", Help: "Decisions answered, by outcome and HTTP status for the PEP.",
		}, []string{"outcome", "http_status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pdp_decision_duration_seconds", Help: "Time to answer /v1/decide, body read to answer.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_api_errors_total", Help: "Requests answered with an API error, by error code.",
		}, []string{"error"}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_refunds_total", Help: "POST /v1/refund answers: refunded, already (applied before), invalid_refund, nothing_to_refund, unavailable.",
		}, []string{"result"}),
	}
	m.counters.Store(&map[decisionLabels]prometheus.Counter{})
	reg.MustRegister(m.decisions, m.latency, m.apiErrors, m.refunds)
	return m
}

func (m *metrics) observe(r *pep.Response, d time.Duration) {
	m.decisionCounter(r.Outcome, r.HTTPStatus).Inc()
	m.latency.Observe(d.Seconds())
}

// decisionCounter returns the decisions counter of one outcome and status,
// resolving it once. The label values come from the decision core (a few
// outcomes, a few statuses), so the map stays small.
func (m *metrics) decisionCounter(outcome string, status int) prometheus.Counter {
	k := decisionLabels{outcome, status}
	if c, ok := (*m.counters.Load())[k]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.counters.Load()
	if c, ok := old[k]; ok {
		return c
	}
	c := m.decisions.WithLabelValues(outcome, strconv.Itoa(status))
	next := maps.Clone(old)
	next[k] = c
	m.counters.Store(&next)
	return c
}
