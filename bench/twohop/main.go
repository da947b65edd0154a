// Command twohop is the enforcement point of today in the load benchmark's
// gateway series (make loadbench, -what gateway): a minimal PEP, as a
// careful PEP author would write it with encoding/json and net/http, that
// for every POST asks the PDP's HTTP API (/v1/decide, over loopback with
// keep-alive) for the decision and then forwards the message to the
// upstream. A tools/list answer (JSON) is filtered with a second decision
// that carries the upstream's result, as the gateway's response phase does;
// the request phase is decided first, as for every message (a PEP must
// refuse a caller who may not list at all). It is the two-hop row of the
// in-process benchmarks (internal/gateway/bench_test.go) as its own
// process.
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/mcp-pdp/pdp/pep"
)

// twoHop is the PEP: decide over HTTP, then forward.
type twoHop struct {
	decideURL string
	upstream  *url.URL
	resource  string
	client    *http.Client
}

// decide asks the PDP for the decision on req.
func (p *twoHop) decide(ctx context.Context, req *pep.Request) (*pep.Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode decision request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.decideURL, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("decide: HTTP %d", resp.StatusCode)
	}
	var d pep.Response
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("decide: read the decision: %w", err)
	}
	return &d, nil
}

func (p *twoHop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	authz := r.Header.Get("Authorization")
	d, err := p.decide(r.Context(), &pep.Request{Resource: p.resource, Authorization: authz, Message: body})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !d.Allow {
		if d.WWWAuthenticate != "" {
			w.Header().Set("WWW-Authenticate", d.WWWAuthenticate)
		}
		w.WriteHeader(d.HTTPStatus)
		return
	}
	target := *p.upstream
	target.Path = r.URL.Path
	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target.String(), bytes.NewReader(body))
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
		http.Error(w, "the upstream's list is not JSON: "+err.Error(), http.StatusBadGateway)
		return
	}
	d, err = p.decide(r.Context(), &pep.Request{Resource: p.resource, Authorization: authz, Message: body, Result: answer.Result})
	if err != nil || !d.Allow {
		http.Error(w, "list refused", http.StatusForbidden)
		return
	}
	out, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": d.Result})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address (loopback)")
	decide := flag.String("decide", "", "the PDP's decision URL, e.g. http://127.0.0.1:8181/v1/decide")
	upstream := flag.String("upstream", "", "the upstream's base URL; the request path is kept")
	resource := flag.String("resource", "", "the protected resource's URI (the decision requests' resource)")
	flag.Parse()
	up, err := url.Parse(*upstream)
	if err != nil || up.Host == "" || *decide == "" || *resource == "" {
		log.Fatalf("twohop: --decide, --upstream (a URL) and --resource are required")
	}
	p := &twoHop{
		decideURL: *decide, upstream: up, resource: *resource,
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("twohop: %v", err)
	}
	fmt.Fprintf(os.Stderr, "twohop on %s -> %s, decisions from %s\n", ln.Addr(), up, *decide)
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.Serve(ln))
}
