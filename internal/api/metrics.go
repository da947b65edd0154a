package api

import (
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/pep"
)

// Label values of the decision metrics (pdp_decisions_total,
// pdp_decision_duration_seconds) that stand for more than one name.
const (
	// LabelOther is the resource label of a decision for a resource that
	// is not configured, and the pep label of a PEP beyond MaxPEPLabels.
	LabelOther = "other"
	// LabelNoPEP is the pep label of a decision on an open API (no PEP
	// authentication: no API keys, no mTLS).
	LabelNoPEP = "none"
)

// MaxPEPLabels bounds the distinct names of the pep label: the configured
// API key names and mTLS allowed subjects first (in that order), then,
// with mTLS accepting any verified certificate, the names of the first
// certificates seen; the decisions of any further PEP are labelled
// LabelOther.
const MaxPEPLabels = 64

type metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	apiErrors *prometheus.CounterVec
	refunds   *prometheus.CounterVec

	// resources maps a resource URI to its resource label; immutable.
	resources map[string]string
	peps      pepLabels

	// counters holds the resolved decision metrics by label values, so
	// that a decision costs a few map lookups, not label hashes and a
	// status formatted to text. Copy on write: a new map per new label
	// set. Its size is bounded by outcomes × statuses × resources ×
	// (MaxPEPLabels + 2).
	counters atomic.Pointer[map[decisionLabels]decisionMetrics]
	mu       sync.Mutex // serialises writers of counters
}

type decisionLabels struct {
	outcome  string
	status   int
	resource string // label value, not the URI
	pep      string // label value
}

// decisionMetrics are the resolved metrics of one label set.
type decisionMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// newMetrics registers the API's metrics. resources maps the URI of each
// configured resource to its resource label; peps are the PEP names known
// from the configuration.
func newMetrics(reg prometheus.Registerer, resources map[string]string, peps []string) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_decisions_total", Help: "Decisions answered, by outcome, HTTP status for the PEP, resource (its key) and PEP.",
		}, []string{"outcome", "http_status", "resource", "pep"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pdp_decision_duration_seconds", Help: "Time to answer /v1/decide, body read to answer, by resource (its key) and PEP.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"resource", "pep"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_api_errors_total", Help: "Requests answered with an API error, by error code.",
		}, []string{"error"}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_refunds_total", Help: "POST /v1/refund answers: refunded, already (applied before), invalid_refund, nothing_to_refund, unavailable.",
		}, []string{"result"}),
		resources: maps.Clone(resources),
	}
	m.peps.init(peps)
	m.counters.Store(&map[decisionLabels]decisionMetrics{})
	reg.MustRegister(m.decisions, m.latency, m.apiErrors, m.refunds)
	return m
}

// observe counts a decision of /v1/decide for resource (its URI) and the
// PEP pepName, and its latency.
func (m *metrics) observe(r *pep.Response, resource, pepName string, d time.Duration) {
	dm := m.decision(r.Outcome, r.HTTPStatus, resource, pepName)
	dm.count.Inc()
	dm.latency.Observe(d.Seconds())
}

// decision returns the metrics of one decision's labels, resolving them
// once. The outcome and status come from the decision core (a few
// outcomes, a few statuses), the resource and PEP labels are bounded
// (resourceLabel, pepLabels), so the map stays small. A lookup does not
// allocate.
func (m *metrics) decision(outcome string, status int, resource, pepName string) decisionMetrics {
	k := decisionLabels{outcome, status, m.resourceLabel(resource), m.peps.label(pepName)}
	if dm, ok := (*m.counters.Load())[k]; ok {
		return dm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.counters.Load()
	if dm, ok := old[k]; ok {
		return dm
	}
	dm := decisionMetrics{
		count:   m.decisions.WithLabelValues(outcome, strconv.Itoa(status), k.resource, k.pep),
		latency: m.latency.WithLabelValues(k.resource, k.pep),
	}
	next := maps.Clone(old)
	next[k] = dm
	m.counters.Store(&next)
	return dm
}

// resourceLabel is the resource label of a resource URI: its key, or
// LabelOther for a resource that is not configured.
func (m *metrics) resourceLabel(uri string) string {
	if l, ok := m.resources[uri]; ok {
		return l
	}
	return LabelOther
}

// pepLabels is the bounded set of pep label values.
type pepLabels struct {
	// names maps a PEP name to its label (the name, a stable copy). Copy
	// on write, at most MaxPEPLabels entries.
	names atomic.Pointer[map[string]string]
	// full is set once names holds MaxPEPLabels entries: an unknown name
	// is then LabelOther without taking mu.
	full atomic.Bool
	mu   sync.Mutex // serialises writers of names
}

// init seeds the set with the names known from the configuration.
func (p *pepLabels) init(known []string) {
	names := make(map[string]string, min(len(known), MaxPEPLabels))
	for _, n := range known {
		if len(names) == MaxPEPLabels {
			break
		}
		if n != "" {
			names[n] = n
		}
	}
	p.names.Store(&names)
	p.full.Store(len(names) >= MaxPEPLabels)
}

// label is the pep label of a PEP name: LabelNoPEP for the open API's
// empty name, the name itself while the bound has room, else LabelOther.
func (p *pepLabels) label(name string) string {
	if name == "" {
		return LabelNoPEP
	}
	if l, ok := (*p.names.Load())[name]; ok {
		return l
	}
	if p.full.Load() {
		return LabelOther
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.names.Load()
	if l, ok := old[name]; ok {
		return l
	}
	if len(old) >= MaxPEPLabels {
		p.full.Store(true)
		return LabelOther
	}
	l := strings.Clone(name) // not the request's memory
	next := maps.Clone(old)
	next[l] = l
	p.names.Store(&next)
	p.full.Store(len(next) >= MaxPEPLabels)
	return l
}
