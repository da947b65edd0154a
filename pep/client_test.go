package pep_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/pep"
)

// TestMiddlewareFailsClosed: when no decision can be had — the PDP is
// down, too slow, answers something that is not a decision, or refuses
// the PEP — the client gets a JSON-RPC error (503, never an empty body)
// and the MCP server's handler never runs.
func TestMiddlewareFailsClosed(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	pdpAnswering := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	tests := []struct {
		name, url string
		status    int
	}{
		{"PDP down", deadURL, http.StatusServiceUnavailable},
		{"PDP too slow", pdpAnswering(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client go
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}), http.StatusServiceUnavailable},
		{"PDP answers HTML", pdpAnswering(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "<html>proxy error</html>")
		}), http.StatusServiceUnavailable},
		{"PDP refuses the PEP", pdpAnswering(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized","error_description":"the API key is not valid"}`)
		}), http.StatusServiceUnavailable},
		{"PDP does not know the resource", pdpAnswering(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"unknown_resource","error_description":"resource is not configured"}`)
		}), http.StatusServiceUnavailable},
		{"PDP rate-limits", pdpAnswering(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"rate_limited","error_description":"slow down"}`)
		}), http.StatusTooManyRequests},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pep.NewClient(tc.url, pep.ClientOptions{Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var ran atomic.Bool
			h := pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Store(true) }),
				pep.Options{Decider: c, Resource: "https://mcp.example.com/mcp"})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp",
				strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`)))
			var body struct {
				ID    json.RawMessage `json:"id"`
				Error *pep.JSONRPCError
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == nil || string(body.ID) != "7" {
				t.Fatalf("HTTP %d %q: want a JSON-RPC error for id 7", w.Code, w.Body)
			}
			if w.Code != tc.status || body.Error.Code != -32603 {
				t.Fatalf("HTTP %d, error %+v: want %d and -32603", w.Code, body.Error, tc.status)
			}
			if strings.Contains(w.Body.String(), "API key") || strings.Contains(w.Body.String(), "not configured") {
				t.Fatalf("the PDP's reason reached the client: %q", w.Body)
			}
			if ran.Load() {
				t.Fatal("the handler ran without a decision")
			}
		})
	}
}
