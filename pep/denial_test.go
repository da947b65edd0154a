package pep

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWriteDenialHeaders: each refusal carries the headers its decision
// names: WWW-Authenticate for a challenge, DPoP-Nonce, Retry-After for a
// limited call (429, with the JSON-RPC error body); none that it does not.
func TestWriteDenialHeaders(t *testing.T) {
	limitedErr := &JSONRPCError{Code: -32029, Message: "Rate limit exceeded for t: retry after 7 s", Data: json.RawMessage(`{"retryAfter":7,"limit":"rate"}`)}
	tests := []struct {
		name       string
		d          *Response
		status     int
		headers    map[string]string
		bodyCode   int
		bodyResult bool
	}{
		{"limited", &Response{Outcome: OutcomeLimited, HTTPStatus: http.StatusTooManyRequests, RetryAfter: 7, JSONRPCError: limitedErr,
			ToolResult: &ToolResult{IsError: true, Content: []Content{{Type: "text", Text: limitedErr.Message}}}},
			429, map[string]string{"Retry-After": "7", "WWW-Authenticate": ""}, -32029, false},
		{"challenge", &Response{Outcome: OutcomeChallenge, HTTPStatus: http.StatusUnauthorized, WWWAuthenticate: `Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`},
			401, map[string]string{"Retry-After": "", "WWW-Authenticate": `Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`}, codeForbidden, false},
		{"in band", &Response{Outcome: OutcomeDeny, HTTPStatus: http.StatusOK, ToolResult: &ToolResult{IsError: true, Content: []Content{{Type: "text", Text: "Denied by policy: no"}}}},
			200, map[string]string{"Retry-After": "", "WWW-Authenticate": ""}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeDenial(rec, json.RawMessage(`3`), tc.d)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			for k, v := range tc.headers {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			var body struct {
				ID     int             `json:"id"`
				Error  *JSONRPCError   `json:"error"`
				Result json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.ID != 3 {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if tc.bodyResult != (body.Result != nil) || (tc.bodyCode != 0 && (body.Error == nil || body.Error.Code != tc.bodyCode)) {
				t.Fatalf("body %s", rec.Body)
			}
		})
	}
}
