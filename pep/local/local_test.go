package local_test

import (
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
