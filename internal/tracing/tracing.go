// Package tracing is the PDP's OpenTelemetry tracing: spans of each
// decision (and, in gateway mode, of the upstream call) exported over
// OTLP/HTTP to a collector, sampled, with the W3C trace context
// (traceparent, tracestate) taken from the caller's request and passed
// on to the upstream.
//
// A nil *Tracing is tracing off: its Tracer is nil, and the PDP's code
// starts no span at all (no cost on the decision path).
package tracing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Options.
const (
	// DefaultSampleRatio samples every trace that does not arrive
	// sampled or not already (ParentBased: a caller's decision wins).
	DefaultSampleRatio = 1.0
	// DefaultServiceName is the service.name of the spans.
	DefaultServiceName = "mcp-pdp"
	// DefaultTimeout bounds one export to the collector.
	DefaultTimeout = 10 * time.Second
	// TracesPath is the OTLP/HTTP path of traces, added to an endpoint
	// that does not end in it.
	TracesPath = "/v1/traces"
)

// Options configure New.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP URL, e.g.
	// http://127.0.0.1:4318 (TracesPath is added) or a URL ending in
	// /v1/traces. Required.
	Endpoint string
	// SampleRatio of the traces that start here, 0 to 1 (nil:
	// DefaultSampleRatio); a traceparent's sampled flag decides for
	// traces that arrive with one.
	SampleRatio *float64
	// Headers sent with every export (e.g. an API key of the collector).
	Headers map[string]string
	// ServiceName (DefaultServiceName), ServiceInstance (the PDP's
	// instance) and Version are the spans' resource.
	ServiceName, ServiceInstance, Version string
	// Timeout of an export (DefaultTimeout).
	Timeout time.Duration
}

// Tracing is the tracer provider and its exporter.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New builds the exporter and the provider. It does no I/O: spans are
// exported in batches in the background, and a collector that cannot be
// reached costs dropped spans, never a decision.
func New(ctx context.Context, o Options) (*Tracing, error) {
	u, err := TracesURL(o.Endpoint)
	if err != nil {
		return nil, err
	}
	ratio := DefaultSampleRatio
	if o.SampleRatio != nil {
		ratio = *o.SampleRatio
	}
	if ratio < 0 || ratio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v is not between 0 and 1", ratio)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u), otlptracehttp.WithTimeout(cmp.Or(o.Timeout, DefaultTimeout))}
	if len(o.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", u, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cmp.Or(o.ServiceName, DefaultServiceName))}
	if o.ServiceInstance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", o.ServiceInstance))
	}
	if o.Version != "" {
		attrs = append(attrs, attribute.String("service.version", o.Version))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
	)
	return &Tracing{tp: tp, tracer: tp.Tracer("github.com/mcp-pdp/pdp")}, nil
}

// TracesURL is the OTLP/HTTP traces URL of an endpoint: an absolute
// http(s) URL, TracesPath added unless it ends in it.
func TracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: endpoint %q is not an http(s) URL such as http://127.0.0.1:4318", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("tracing: endpoint %q: no query or fragment", endpoint)
	}
	if !strings.HasSuffix(u.Path, TracesPath) {
		u.Path = strings.TrimSuffix(u.Path, "/") + TracesPath
	}
	return u.String(), nil
}

// Tracer is the PDP's tracer; nil when t is nil (tracing off).
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Shutdown exports the spans still buffered, within ctx, and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// Extract returns ctx with the remote span context of h's traceparent
// (and tracestate); ctx itself when h has none or a malformed one.
func Extract(ctx context.Context, h http.Header) context.Context {
	if h.Get("Traceparent") == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes ctx's span context into h as traceparent and tracestate.
func Inject(ctx context.Context, h http.Header) {
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}
