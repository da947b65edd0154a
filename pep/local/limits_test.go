package local_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/local"
)

// TestRateLimitThroughTheMiddleware: an anonymous client over a tool's
// rate limit gets 429 with Retry-After and a JSON-RPC error body, and the
// handler does not run; each client address has its own budget, unless
// Options.RateKey makes them share one.
func TestRateLimitThroughTheMiddleware(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	dir := t.TempDir()
	pol := coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        generate_qr_url: {access: public, rate: {limit: 2, per: 1h, by: client}}
`)
	cfg := filepath.Join(dir, "pdp.yaml")
	testkit.WriteFile(t, cfg, "data_dir: "+strconv.Quote(filepath.Join(dir, "data"))+"\naudit: {enabled: false}\n"+
		"policy: {path: "+strconv.Quote(pol)+"}\nresources:\n  - uri: "+benchResource+"\n    issuer: "+iss.URL+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	p, err := local.Open(ctx, cfg, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	ran := 0
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran++; trivial.ServeHTTP(w, r) })
	call := func(h http.Handler, addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	h := pep.Middleware(handler, pep.Options{Decider: p, Resource: benchResource})
	for i := range 2 {
		if w := call(h, "192.0.2.1:4000"); w.Code != 200 {
			t.Fatalf("call %d: HTTP %d %s", i+1, w.Code, w.Body)
		}
	}
	w := call(h, "192.0.2.1:4001") // the same client, another port
	secs, _ := strconv.Atoi(w.Header().Get("Retry-After"))
	if w.Code != http.StatusTooManyRequests || secs < 1700 || secs > 1800 || !strings.Contains(w.Body.String(), `"code":-32029`) || ran != 2 {
		t.Fatalf("over the limit: HTTP %d, Retry-After %q, %s (handler ran %d times)", w.Code, w.Header().Get("Retry-After"), w.Body, ran)
	}
	if w := call(h, "198.51.100.7:4000"); w.Code != 200 {
		t.Fatalf("another client address: HTTP %d %s", w.Code, w.Body)
	}
	// One budget for every anonymous client: theirs is a new bucket
	// (no key), used up after two calls from anywhere.
	shared := pep.Middleware(handler, pep.Options{Decider: p, Resource: benchResource, RateKey: func(*http.Request) string { return "" }})
	codes := []int{call(shared, "203.0.113.1:1").Code, call(shared, "203.0.113.2:1").Code, call(shared, "203.0.113.3:1").Code}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("shared budget: %v, want 200 200 429", codes)
	}
}

// TestRefundCall: a handler whose call failed after a quota counted it
// gives the call back with pep.RefundCall (the in-process PDP is a
// pep.Refunder): the quota of 2 then allows two more calls; a second
// refund of the same call gives nothing more, and outside the middleware
// there is nothing to refund.
func TestRefundCall(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	nats := natstest.Start(t)
	dir := t.TempDir()
	pol := coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        generate_qr_url: {access: public, quota: {limit: 2, per: day, by: client}}
`)
	cfg := filepath.Join(dir, "pdp.yaml")
	testkit.WriteFile(t, cfg, "data_dir: "+strconv.Quote(filepath.Join(dir, "data"))+"\naudit: {nats: {url: "+strconv.Quote(nats.URL())+"}}\n"+
		"policy: {path: "+strconv.Quote(pol)+"}\nresources:\n  - uri: "+benchResource+"\n    issuer: "+iss.URL+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	p, err := local.Open(ctx, cfg, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	type refund struct {
		ok  bool
		err error
	}
	var refunds []refund
	fail := true // the first call fails and is refunded, twice
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail {
			fail = false
			for range 2 {
				ok, err := pep.RefundCall(r.Context(), "the QR service failed")
				refunds = append(refunds, refund{ok, err})
			}
		}
		trivial.ServeHTTP(w, r)
	})
	h := pep.Middleware(handler, pep.Options{Decider: p, Resource: benchResource})
	call := func() int {
		r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:4000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	testkit.WaitFor(t, "the counter stream", func() bool { return call() == 200 }) // made in the background
	if len(refunds) != 2 || !refunds[0].ok || refunds[0].err != nil || refunds[1].ok || refunds[1].err != nil {
		t.Fatalf("refunds %+v: want the first refunded, the second nothing more", refunds)
	}
	codes := []int{call(), call(), call()}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("after the refund: %v, want 200 200 429", codes)
	}
	if ok, err := pep.RefundCall(context.Background(), ""); ok || err != nil {
		t.Fatalf("outside the middleware: %v, %v", ok, err)
	}
}
