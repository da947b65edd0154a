package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// TestGatewayOrigin: browser requests (with Origin) are served only for
// the resource's own origin and the allowed ones, with CORS headers that
// let the page read the session id and the challenge; a preflight from an
// allowed origin is answered; another origin is refused with 403 before
// anything is decided or forwarded (DNS rebinding); requests without
// Origin are untouched.
func TestGatewayOrigin(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	up := newUpstream(t, true)
	u, _ := url.Parse(up.URL)
	g, err := gateway.New(gateway.Options{
		Decider: env.Service, Resource: coretest.Resource, Upstream: u,
		AllowedOrigins: []string{"http://localhost:6274"},
	})
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	t.Cleanup(gs.Close)
	endpoint := gs.URL + "/mcp"

	tests := []struct {
		name, method, origin string
		status               int
		cors                 bool
	}{
		{"no Origin", http.MethodPost, "", http.StatusOK, false},
		{"an allowed origin", http.MethodPost, "http://localhost:6274", http.StatusOK, true},
		{"the resource's own origin", http.MethodPost, "https://mcp.example.com", http.StatusOK, true},
		{"another origin", http.MethodPost, "http://evil.example", http.StatusForbidden, false},
		{"the origin null", http.MethodPost, "null", http.StatusForbidden, false},
		{"a preflight from an allowed origin", http.MethodOptions, "http://localhost:6274", http.StatusNoContent, true},
		{"a preflight from another origin", http.MethodOptions, "http://evil.example", http.StatusForbidden, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			body := initialize
			if tc.method == http.MethodOptions {
				body = ""
				h.Set("Access-Control-Request-Method", "POST")
			}
			up.mu.Lock()
			before := len(up.headers)
			up.mu.Unlock()
			a := exchange(t, tc.method, endpoint, h, body)
			if a.status != tc.status {
				t.Fatalf("HTTP %d %q, want %d", a.status, a.raw, tc.status)
			}
			acao := a.header.Get("Access-Control-Allow-Origin")
			if tc.cors != (acao == tc.origin && acao != "") {
				t.Fatalf("Access-Control-Allow-Origin %q for origin %q (want CORS: %v)", acao, tc.origin, tc.cors)
			}
			if tc.cors && tc.method == http.MethodPost && !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
				t.Fatalf("Access-Control-Expose-Headers %q: the page cannot read the session id", a.header.Get("Access-Control-Expose-Headers"))
			}
			if tc.cors && tc.method == http.MethodOptions && !strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Fatalf("Access-Control-Allow-Headers %q: the page cannot send its token", a.header.Get("Access-Control-Allow-Headers"))
			}
			if tc.status == http.StatusForbidden {
				if a.rpcError() == nil {
					t.Fatalf("refusal %q: want a JSON-RPC error", a.raw)
				}
				up.mu.Lock()
				n := len(up.headers)
				up.mu.Unlock()
				if n != before {
					t.Fatal("a request from a refused origin reached the upstream")
				}
			}
		})
	}
}
