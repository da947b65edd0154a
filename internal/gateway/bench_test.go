package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// The gateway benchmarks, side by side with their floors, all over real
// loopback HTTP so that they compare like with like: a client (32
// goroutines, keep-alive) → the thing under test → the same minimal
// upstream. The rows:
//
//	Gateway*       the gateway, deciding in-process
//	ReverseProxy*  net/http/httputil.ReverseProxy, no decision (the floor of any proxy)
//	TwoHop*        a minimal PEP that asks the PDP's HTTP API (/v1/decide) over
//	               loopback, then the upstream (the set-up of today)
//
// Every row runs the same decision core (default policy rules, a
// 100-tool catalog, no audit) and the same token (verified once, then
// from the cache). ns/op is wall time per request across all goroutines
// (its inverse is the throughput); allocs/op counts the whole process:
// client, proxy, core and upstream.
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/gateway/

// benchTools is the size of the upstream's tool list.
const benchTools = 100

// benchParallelism makes b.RunParallel run 32 client goroutines (it
// multiplies GOMAXPROCS): 32 connections, as issue #12's load series.
func benchParallelism() int { return max(1, 32/runtime.GOMAXPROCS(0)) }

// benchCatalog makes the first 90 tools public, the next 5 step-up
// (bench:admin), and leaves the last 5 out (hidden: unknown tools are
// denied), so that the filter has work of every kind.
func benchCatalog() string {
	var b strings.Builder
	b.WriteString(`mcp:
  default_catalog: bench
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    bench:
      unknown: {access: deny}
      tools:
`)
	for i := range benchTools - 5 {
		if i < benchTools-10 {
			fmt.Fprintf(&b, "        tool_%03d: {access: public}\n", i)
		} else {
			fmt.Fprintf(&b, "        tool_%03d: {access: step_up, scopes: [\"bench:admin\"]}\n", i)
		}
	}
	b.WriteString("      prompts: {}\n      resources: {}\n      resource_templates: {}\n")
	return b.String()
}

// benchResults are the upstream's answers, split around the id.
type benchResults struct{ listPre, listPost, callPre, callPost []byte }

func newBenchResults() benchResults {
	var tools []map[string]any
	for i := range benchTools {
		tools = append(tools, map[string]any{
			"name":        fmt.Sprintf("tool_%03d", i),
			"description": fmt.Sprintf("Tool number %d of the benchmark upstream, which does nothing useful.", i),
			"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
		})
	}
	list, _ := json.Marshal(map[string]any{"tools": tools})
	return benchResults{
		listPre:  []byte(`{"jsonrpc":"2.0","id":`),
		listPost: append(append([]byte(`,"result":`), list...), '}'),
		callPre:  []byte(`{"jsonrpc":"2.0","id":`),
		callPost: []byte(`,"result":{"content":[{"type":"text","text":"done"}]}}`),
	}
}

// newBenchUpstream is the minimal MCP upstream: a plain handler that reads
// the message, answers tools/list with the 100 tools and tools/call with a
// short text, as JSON or as one SSE event.
func newBenchUpstream(b *testing.B, sse bool) *url.URL {
	b.Helper()
	res := newBenchResults()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.ID == nil {
			http.Error(w, "not a request", http.StatusBadRequest)
			return
		}
		pre, post := res.callPre, res.callPost
		if m.Method == "tools/list" {
			pre, post = res.listPre, res.listPost
		}
		var out bytes.Buffer
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			out.WriteString("event: message\ndata: ")
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		out.Write(pre)
		out.Write(m.ID)
		out.Write(post)
		if sse {
			out.WriteString("\n\n")
		}
		_, _ = w.Write(out.Bytes())
	}))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// benchEnv is the decision core of every row and the caller's token.
type benchEnv struct {
	core  *coretest.Env
	authz string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	env := coretest.New(b, coretest.Options{Policy: policyWithData(b, benchCatalog())})
	return &benchEnv{core: env, authz: env.Bearer(b, devissuer.MintOptions{Subject: "alice", ClientID: "bench", Scopes: []string{"bench:admin"}})}
}

// benchTransport reaches the upstream from every proxy row alike.
func benchTransport() *http.Transport {
	return &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
}

const (
	benchCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"tool_090","arguments":{"q":"x"}}}`
	benchList = `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`
)

// checkCall and checkList tell a right answer at warm-up.
func checkCall(body []byte) error {
	if !bytes.Contains(body, []byte(`"done"`)) || !bytes.Contains(body, []byte(`"id":7`)) {
		return fmt.Errorf("not the call's result: %.200s", body)
	}
	return nil
}

// checkList wants the list filtered when filtered is set: 95 tools, the
// hidden ones gone.
func checkList(filtered bool) func([]byte) error {
	return func(body []byte) error {
		n := bytes.Count(body, []byte(`"name":"tool_`))
		want := benchTools
		if filtered {
			want = benchTools - 5
		}
		if n != want || (filtered && bytes.Contains(body, []byte("tool_099"))) {
			return fmt.Errorf("%d tools, want %d: %.200s", n, want, body)
		}
		return nil
	}
}

// runBench posts body to endpoint from 32 goroutines sharing one
// keep-alive client, checking the first answer with check.
func runBench(b *testing.B, endpoint, authz, body string, check func([]byte) error) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256}, Timeout: time.Minute}
	b.Cleanup(client.CloseIdleConnections)
	do := func() ([]byte, error) {
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", authz)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, out)
		}
		return out, err
	}
	out, err := do()
	if err == nil {
		err = check(out)
	}
	if err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.ReportAllocs()
	b.SetParallelism(benchParallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// gatewayEndpoint serves the gateway in front of up.
func gatewayEndpoint(b *testing.B, e *benchEnv, up *url.URL) string {
	b.Helper()
	g, err := gateway.New(gateway.Options{Decider: e.core.Service, Resource: coretest.Resource, Upstream: up})
	if err != nil {
		b.Fatal(err)
	}
	gs := httptest.NewServer(g)
	b.Cleanup(gs.Close)
	return gs.URL + "/mcp"
}

// proxyEndpoint serves httputil.ReverseProxy in front of up.
func proxyEndpoint(b *testing.B, up *url.URL) string {
	b.Helper()
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(up) },
		Transport: benchTransport(),
	}
	ps := httptest.NewServer(rp)
	b.Cleanup(ps.Close)
	return ps.URL
}

// BenchmarkGatewayCall: tools/call of a step-up tool, allowed, through the
// gateway; JSON answer.
func BenchmarkGatewayCall(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, gatewayEndpoint(b, e, newBenchUpstream(b, false)), e.authz, benchCall, checkCall)
}

// BenchmarkGatewayList100JSON: tools/list of 100 tools, filtered to 95,
// JSON answer.
func BenchmarkGatewayList100JSON(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, gatewayEndpoint(b, e, newBenchUpstream(b, false)), e.authz, benchList, checkList(true))
}

// BenchmarkGatewayList100SSE: the same list answered as one SSE event.
func BenchmarkGatewayList100SSE(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, gatewayEndpoint(b, e, newBenchUpstream(b, true)), e.authz, benchList, checkList(true))
}

// BenchmarkReverseProxyCall is the floor of BenchmarkGatewayCall.
func BenchmarkReverseProxyCall(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, proxyEndpoint(b, newBenchUpstream(b, false)), e.authz, benchCall, checkCall)
}

// BenchmarkReverseProxyList100 is the floor of BenchmarkGatewayList100JSON
// (the list relayed unfiltered).
func BenchmarkReverseProxyList100(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, proxyEndpoint(b, newBenchUpstream(b, false)), e.authz, benchList, checkList(false))
}

// BenchmarkReverseProxyList100SSE is the floor of
// BenchmarkGatewayList100SSE.
func BenchmarkReverseProxyList100SSE(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, proxyEndpoint(b, newBenchUpstream(b, true)), e.authz, benchList, checkList(false))
}

// twoHopPEP is the enforcement point of today: it asks the PDP's HTTP API
// for the decision, then forwards to the upstream; a list is filtered
// with a second decision carrying the upstream's result. Minimal, as a
// careful PEP author would write it with encoding/json.
type twoHopPEP struct {
	decideURL, upstream string
	client              *http.Client
}

func (p *twoHopPEP) decide(r *http.Request, req *pep.Request) (*pep.Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.decideURL, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("decide: HTTP %d", resp.StatusCode)
	}
	var d pep.Response
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (p *twoHopPEP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	authz := r.Header.Get("Authorization")
	d, err := p.decide(r, &pep.Request{Resource: coretest.Resource, Authorization: authz, Message: body})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !d.Allow {
		w.WriteHeader(d.HTTPStatus)
		return
	}
	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept", r.Header.Get("Accept"))
	resp, err := p.client.Do(up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Method != "tools/list" {
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	d, err = p.decide(r, &pep.Request{Resource: coretest.Resource, Authorization: authz, Message: body, Result: answer.Result})
	if err != nil || !d.Allow {
		http.Error(w, "list refused", http.StatusForbidden)
		return
	}
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": d.Result})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// twoHopEndpoint serves the PDP's HTTP API over e's core and the two-hop
// PEP in front of up.
func twoHopEndpoint(b *testing.B, e *benchEnv, up *url.URL) string {
	b.Helper()
	pdp := httptest.NewServer(api.New(api.Options{Core: e.core.Service}))
	b.Cleanup(pdp.Close)
	ps := httptest.NewServer(&twoHopPEP{
		decideURL: pdp.URL + "/v1/decide", upstream: up.String(),
		client: &http.Client{Transport: benchTransport()},
	})
	b.Cleanup(ps.Close)
	return ps.URL
}

// BenchmarkTwoHop: BenchmarkGatewayCall's request through a PEP that
// calls /v1/decide over loopback.
func BenchmarkTwoHop(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, twoHopEndpoint(b, e, newBenchUpstream(b, false)), e.authz, benchCall, checkCall)
}

// BenchmarkTwoHopList100: BenchmarkGatewayList100JSON's list through the
// two-hop PEP (two decisions: the request, then the result).
func BenchmarkTwoHopList100(b *testing.B) {
	e := newBenchEnv(b)
	runBench(b, twoHopEndpoint(b, e, newBenchUpstream(b, false)), e.authz, benchList, checkList(true))
}
