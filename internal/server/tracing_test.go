package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/pep"
)

// otlpReceiver is an OTLP/HTTP trace receiver, as a collector answers:
// it decodes each export (protobuf, gzip or not) and keeps the spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	posts int
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.posts++
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (o *otlpReceiver) trace(id string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if hex.EncodeToString(s.GetTraceId()) == id {
			out = append(out, s)
		}
	}
	return out
}

func spanNamed(spans []*tracepb.Span, name string) *tracepb.Span {
	for _, s := range spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			v := kv.GetValue()
			switch {
			case v.GetStringValue() != "":
				return v.GetStringValue()
			case v.GetIntValue() != 0:
				return strconv.FormatInt(v.GetIntValue(), 10)
			default:
				b, _ := json.Marshal(v.GetBoolValue())
				return string(b)
			}
		}
	}
	return ""
}

// TestTracing: with tracing.endpoint, each decision is a pdp.decide span
// (its pdp.token, pdp.policy and pdp.audit children) in the trace of the
// PEP's traceparent, exported over OTLP/HTTP to a real receiver; in
// gateway mode the client's traceparent starts a pdp.gateway span, the
// upstream call is a pdp.upstream span, and the upstream receives a
// traceparent naming it. A traceparent whose sampled flag is off is not
// recorded. A PEP built on pep.Middleware and pep.Client passes its
// client's traceparent with /v1/decide. No span carries the token.
func TestTracing(t *testing.T) {
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)

	var mu sync.Mutex
	var upstreamParents []string
	s := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamParents = append(upstreamParents, r.Header.Get("Traceparent"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)

	iss := devissuertest.New(t, "ES256")
	cfg := hConfig(t, iss)
	cfg.Tracing = config.Tracing{Endpoint: collector.URL, ServiceName: "pdp-under-test"}
	cfg.Resources[0].Upstream = &config.Upstream{URL: up.URL + "/mcp"}
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.ApplyDefaults()
	srv, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	c := &http.Client{Timeout: 10 * time.Second}

	const (
		decideTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		pepSpan     = "00f067aa0ba902b7"
		gwTrace     = "0af7651916cd43dd8448eb211c80319c"
		clientSpan  = "b7ad6b7169203331"
		offTrace    = "11111111111111111111111111111111"
		mwTrace     = "22222222222222222222222222222222"
	)
	tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "agent", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	for _, tc := range []struct{ trace, flags string }{{decideTrace, "01"}, {offTrace, "00"}} {
		status, out, err := hPost(t, c, srv.URL()+"/v1/decide", map[string]string{"Traceparent": "00-" + tc.trace + "-" + pepSpan + "-" + tc.flags},
			hCallBody(tok, "generate_qr_url"))
		if err != nil || status != 200 || out["allow"] != true {
			t.Fatalf("decide: %d %v %v", status, out, err)
		}
	}
	// The gateway: an initialize through it, with the client's traceparent.
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, srv.GatewayURL()+"/mcp", bytes.NewReader([]byte(init)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Traceparent", "00-"+gwTrace+"-"+clientSpan+"-01")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("initialize through the gateway: HTTP %d", resp.StatusCode)
	}

	// A Go MCP server behind pep.Middleware and pep.Client: the client's
	// traceparent goes with /v1/decide.
	client, err := pep.NewClient(srv.URL(), pep.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mw := httptest.NewServer(pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`))
	}), pep.Options{Decider: client, Resource: hResource}))
	t.Cleanup(mw.Close)
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"lookup_product"}}`
	mreq, _ := http.NewRequest(http.MethodPost, mw.URL+"/mcp", bytes.NewReader([]byte(call)))
	mreq.Header.Set("Content-Type", "application/json")
	mreq.Header.Set("Accept", "application/json, text/event-stream")
	mreq.Header.Set("Traceparent", "00-"+mwTrace+"-"+clientSpan+"-01")
	mresp, err := c.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, mresp.Body)
	mresp.Body.Close()
	if mresp.StatusCode != 200 {
		t.Fatalf("a call through pep.Middleware: HTTP %d", mresp.StatusCode)
	}

	stop() // flushes the spans
	if d := spanNamed(recv.trace(mwTrace), "pdp.decide"); d == nil || hex.EncodeToString(d.GetParentSpanId()) != clientSpan {
		t.Errorf("pep.Middleware's decision: %v, want pdp.decide under the client's span", d)
	}
	spans := recv.trace(decideTrace)
	decide := spanNamed(spans, "pdp.decide")
	if decide == nil {
		t.Fatalf("no pdp.decide span in the PEP's trace (%d exports, spans %v)", recv.posts, spans)
	}
	if got := hex.EncodeToString(decide.GetParentSpanId()); got != pepSpan {
		t.Errorf("pdp.decide's parent %s, want the PEP's span %s", got, pepSpan)
	}
	for k, v := range map[string]string{"pdp.outcome": "allow", "mcp.method": "tools/call", "mcp.target": "generate_qr_url", "mcp.resource": hResource, "pdp.http_status": "200"} {
		if got := spanAttr(decide, k); got != v {
			t.Errorf("pdp.decide %s = %q, want %q", k, got, v)
		}
	}
	for _, name := range []string{"pdp.token", "pdp.policy"} {
		sp := spanNamed(spans, name)
		if sp == nil || !bytes.Equal(sp.GetParentSpanId(), decide.GetSpanId()) {
			t.Errorf("%s: %v, want a child of pdp.decide", name, sp)
		}
	}
	for _, sp := range recv.trace(decideTrace) {
		for _, kv := range sp.GetAttributes() {
			if strings.Contains(kv.GetValue().GetStringValue(), strings.TrimPrefix(tok, "Bearer ")) {
				t.Fatalf("span %s carries the token in %s", sp.GetName(), kv.GetKey())
			}
		}
	}
	if n := len(recv.trace(offTrace)); n != 0 {
		t.Errorf("%d spans recorded of a trace whose traceparent says not sampled", n)
	}

	gw := recv.trace(gwTrace)
	front, upstream, gwDecide := spanNamed(gw, "pdp.gateway POST"), spanNamed(gw, "pdp.upstream POST"), spanNamed(gw, "pdp.decide")
	if front == nil || upstream == nil || gwDecide == nil {
		t.Fatalf("gateway trace spans: %v", gw)
	}
	if hex.EncodeToString(front.GetParentSpanId()) != clientSpan || !bytes.Equal(upstream.GetParentSpanId(), front.GetSpanId()) || !bytes.Equal(gwDecide.GetParentSpanId(), front.GetSpanId()) {
		t.Errorf("gateway span tree: front's parent %x, upstream's %x, decide's %x (front %x)", front.GetParentSpanId(), upstream.GetParentSpanId(), gwDecide.GetParentSpanId(), front.GetSpanId())
	}
	mu.Lock()
	defer mu.Unlock()
	want := "00-" + gwTrace + "-" + hex.EncodeToString(upstream.GetSpanId()) + "-01"
	found := false
	for _, p := range upstreamParents {
		found = found || p == want
	}
	if !found {
		t.Errorf("the upstream received traceparents %q, want %s (the pdp.upstream span)", upstreamParents, want)
	}
}
