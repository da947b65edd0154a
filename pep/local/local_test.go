package local_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcp-pdp/pdp/pep"
)

// TestSeveralAuthorizationHeaders: a request with two Authorization headers
// is refused (401 invalid_token, as every malformed Authorization, with a
// JSON-RPC error body), even when each holds a valid token, and never
// reaches the handler; one header is decided as usual.
func TestSeveralAuthorizationHeaders(t *testing.T) {
	p, authz := openBench(t, false)
	var ran atomic.Int32
	h := pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		trivial.ServeHTTP(w, r)
	}), pep.Options{Decider: p, Resource: benchResource})
	for _, tt := range []struct {
		name    string
		headers []string
		status  int
		www     string
	}{
		{"one", []string{authz}, http.StatusOK, ""},
		{"the same token twice", []string{authz, authz}, http.StatusUnauthorized, `error_description="several credentials or Authorization headers; send one"`},
		{"a token and an empty header", []string{authz, ""}, http.StatusUnauthorized, `error_description="several credentials or Authorization headers; send one"`},
		{"anonymous and a token", []string{"", authz}, http.StatusUnauthorized, `error_description="several credentials or Authorization headers; send one"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := ran.Load()
			r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
			r.Header.Set("Content-Type", "application/json")
			r.Header["Authorization"] = tt.headers
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status || !strings.Contains(w.Header().Get("WWW-Authenticate"), tt.www) {
				t.Fatalf("HTTP %d, WWW-Authenticate %q; want %d with %q: %s", w.Code, w.Header().Get("WWW-Authenticate"), tt.status, tt.www, w.Body)
			}
			if tt.status != http.StatusOK {
				if ran.Load() != before {
					t.Fatal("the handler ran")
				}
				if !strings.Contains(w.Body.String(), `"error":{"code":-32001`) {
					t.Fatalf("body %s", w.Body)
				}
			}
		})
	}
}

// TestHeaderMismatchAskedOfThePDP: a message whose Mcp-Method or Mcp-Name
// header contradicts its body is refused with HeaderMismatch (400, -32020)
// and never reaches the handler, whether the PDP answers (it then refuses
// and audits it: its reason comes back in the decision) or cannot be
// reached (refused locally all the same).
func TestHeaderMismatchAskedOfThePDP(t *testing.T) {
	p, authz := openBench(t, false)
	down, err := pep.NewClient("http://127.0.0.1:1", pep.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		decider pep.Decider
		headers map[string]string
		status  int
	}{
		{"method", p, map[string]string{"Mcp-Method": "tools/list"}, http.StatusBadRequest},
		{"name", p, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "lookup_product"}, http.StatusBadRequest},
		{"name in Base64", p, map[string]string{"Mcp-Name": "=?base64?bG9va3VwX3Byb2R1Y3Q=?="}, http.StatusBadRequest},
		{"PDP unreachable", down, map[string]string{"Mcp-Method": "tools/list"}, http.StatusBadRequest},
		{"matching", p, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?Z2VuZXJhdGVfcXJfdXJs?="}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ran atomic.Int32
			var reason string
			h := pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran.Add(1)
				trivial.ServeHTTP(w, r)
			}), pep.Options{Decider: deciderFunc(func(ctx context.Context, req *pep.Request) (*pep.Response, error) {
				resp, err := tt.decider.Decide(ctx, req)
				if err == nil {
					reason = resp.Reason
				}
				return resp, err
			}), Resource: benchResource})
			r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", authz)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("HTTP %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == http.StatusOK {
				return
			}
			if ran.Load() != 0 || !strings.Contains(w.Body.String(), `"code":-32020`) {
				t.Fatalf("handler ran %d times; body %s", ran.Load(), w.Body)
			}
			if tt.decider == p && !strings.HasPrefix(reason, "header mismatch: ") {
				t.Fatalf("the PDP decided %q, not the mismatch", reason)
			}
		})
	}
}

// deciderFunc is a pep.Decider from a function.
type deciderFunc func(context.Context, *pep.Request) (*pep.Response, error)

func (f deciderFunc) Decide(ctx context.Context, r *pep.Request) (*pep.Response, error) {
	return f(ctx, r)
}
