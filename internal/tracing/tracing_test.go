package tracing_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-pdp/pdp/internal/tracing"
)

func TestTracesURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"},
		{"http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"},
		{"https://otel.example.com/v1/traces", "https://otel.example.com/v1/traces"},
		{"https://otel.example.com/tenant-7", "https://otel.example.com/tenant-7/v1/traces"},
		{"127.0.0.1:4318", ""},
		{"grpc://collector:4317", ""},
		{"http://collector:4318/?x=1", ""},
	} {
		got, err := tracing.TracesURL(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%s: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNewAndNil(t *testing.T) {
	bad := 1.5
	if _, err := tracing.New(context.Background(), tracing.Options{Endpoint: "http://127.0.0.1:4318", SampleRatio: &bad}); err == nil {
		t.Fatal("a sample ratio of 1.5 was accepted")
	}
	var off *tracing.Tracing
	if off.Tracer() != nil || off.Shutdown(context.Background()) != nil {
		t.Fatal("a nil Tracing is not tracing off")
	}
	tr, err := tracing.New(context.Background(), tracing.Options{Endpoint: "http://127.0.0.1:1"})
	if err != nil || tr.Tracer() == nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_ = tr.Shutdown(ctx) // nothing buffered; a collector away never blocks
}

// TestPropagation: a traceparent read by Extract is what Inject writes
// for the same span context; a malformed one is ignored.
func TestPropagation(t *testing.T) {
	in := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"vendor=1"}}
	ctx := tracing.Extract(context.Background(), in)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || !sc.IsSampled() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("extracted %+v", sc)
	}
	out := http.Header{}
	tracing.Inject(ctx, out)
	if out.Get("Traceparent") != in.Get("Traceparent") || out.Get("Tracestate") != "vendor=1" {
		t.Fatalf("injected %v", out)
	}
	if sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), http.Header{"Traceparent": {"00-zz-yy-01"}})); sc.IsValid() {
		t.Fatalf("a malformed traceparent gave %+v", sc)
	}
}
