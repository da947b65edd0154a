package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/core"
)

type metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	apiErrors *prometheus.CounterVec
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
	}
	reg.MustRegister(m.decisions, m.latency, m.apiErrors)
	return m
}

func (m *metrics) observe(r *core.Response, d time.Duration) {
	m.decisions.WithLabelValues(r.Outcome, strconv.Itoa(r.HTTPStatus)).Inc()
	m.latency.Observe(d.Seconds())
}
