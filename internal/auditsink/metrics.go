package auditsink

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are derived from the sink's atomic counters at scrape time; only
// the publish latency is observed on the way.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	latency    prometheus.Histogram
}

func newMetrics(s *Sink, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg}
	counter := func(name, help string, f func() float64) {
		m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mcp_pdp", Subsystem: "audit", Name: name, Help: help,
		}, f))
	}
	gauge := func(name, help string, f func() float64) {
		m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mcp_pdp", Subsystem: "audit", Name: name, Help: help,
		}, f))
	}
	counter("events_published_total", "Audit events acked by JetStream on the direct path.",
		func() float64 { return float64(s.published.Load()) })
	counter("events_spooled_total", "Audit events written to the local spool (NATS unavailable or queue full).",
		func() float64 { return float64(s.spooled.Load()) })
	counter("events_replayed_total", "Audit events replayed from the spool and acked by JetStream.",
		func() float64 { return float64(s.replayed.Load()) })
	counter("events_duplicate_total", "Acks that JetStream marked duplicate (a replay it already had).",
		func() float64 { return float64(s.duplicates.Load()) })
	counter("events_failed_total", "Audit events LOST: neither acked nor spooled. Alert on any increase.",
		func() float64 { return float64(s.failed.Load()) })
	counter("batches_total", "Batches of audit events published (async mode, on a stream that allows batch publishing); events_published_total / batches_total is their mean size.",
		func() float64 { return float64(s.batches.Load()) })
	counter("spool_corrupt_records_total", "Spool records or torn tails skipped on replay.",
		func() float64 { return float64(s.sp.Stats().Corrupt) })
	gauge("events_pending", "Audit events not yet acked: queued + in flight + on the spool.",
		func() float64 { return float64(s.Stats().Pending) })
	gauge("queue_length", "Audit events in the in-memory queue.",
		func() float64 { return float64(len(s.queue)) })
	gauge("inflight", "Audit events published and awaiting the JetStream ack.",
		func() float64 { return float64(s.Stats().InFlight) })
	gauge("spool_pending_events", "Audit events on the spool not yet replayed.",
		func() float64 { return float64(s.sp.Stats().Pending) })
	gauge("spool_bytes", "Bytes on the spool not yet replayed.",
		func() float64 { return float64(s.sp.Stats().Bytes) })
	gauge("spooling", "1 while new audit events go to the spool instead of NATS.",
		func() float64 { return b2f(s.spooling.Load()) })
	gauge("healthy", "1 while audit events can be made durable (the spool can write).",
		func() float64 { return b2f(s.sp.Healthy() == nil) })
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "mcp_pdp", Subsystem: "audit", Name: "publish_latency_seconds",
		Help:    "From Record to the JetStream ack, direct path (async and sync).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	})
	m.collectors = append(m.collectors, m.latency)
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				reg.Unregister(r)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("audit metrics already registered (one Sink per registry): %w", err)
			}
			return nil, fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
