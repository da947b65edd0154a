package pep_test

import (
	"encoding/json"
	"testing"

	"github.com/mcp-pdp/pdp/pep"
)

// TestEncoding pins the JSON of every wire type, field names and order
// included: PEPs in any language read these bodies (docs/api.md).
func TestEncoding(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"empty request", pep.Request{}, `{"resource":"","message":null}`},
		{"full request", pep.Request{
			Resource: "r", Authorization: "Bearer t",
			Message: json.RawMessage(`{"method":"tools/list"}`), Result: json.RawMessage(`{"tools":[]}`),
		}, `{"resource":"r","authorization":"Bearer t","message":{"method":"tools/list"},"result":{"tools":[]}}`},
		{"list request phase", pep.Request{Resource: "r", Message: json.RawMessage(`{"method":"tools/list"}`)},
			`{"resource":"r","message":{"method":"tools/list"}}`},
		{"transport request", pep.Request{Resource: "r", Authorization: "Bearer t", HTTPMethod: pep.HTTPMethodGet},
			`{"resource":"r","authorization":"Bearer t","message":null,"http_method":"GET"}`},
		{"minimal response", pep.Response{DecisionID: "d", Outcome: pep.OutcomeAllow, Allow: true, HTTPStatus: 200,
			RequiredScopes: []string{}, MissingScopes: []string{}},
			`{"decision_id":"d","allow":true,"outcome":"allow","http_status":200,"required_scopes":[],"missing_scopes":[],"reason":""}`},
		{"full response", pep.Response{
			DecisionID: "d", Outcome: pep.OutcomeChallenge, HTTPStatus: 401, WWWAuthenticate: "Bearer",
			RequiredScopes: []string{"a"}, MissingScopes: []string{"a"}, Reason: "why",
			JSONRPCError: &pep.JSONRPCError{Code: -32602, Message: "m"},
			ToolResult: &pep.ToolResult{IsError: true, Content: []pep.Content{{Type: "text", Text: "x"}},
				Meta: map[string]any{"mcp/www_authenticate": []string{"Bearer"}}},
			Result: json.RawMessage(`{"tools":[]}`), PolicyRevision: "rev",
			Caller: &pep.Caller{Subject: "alice", ClientID: "app", Scopes: []string{"a", "b"},
				Act: []pep.Actor{{Subject: "agent", ClientID: "bot"}}, Grant: "user", Issuer: "https://as"},
		}, `{"decision_id":"d","allow":false,"outcome":"challenge","http_status":401,"www_authenticate":"Bearer",` +
			`"required_scopes":["a"],"missing_scopes":["a"],"reason":"why","jsonrpc_error":{"code":-32602,"message":"m"},` +
			`"tool_result":{"isError":true,"content":[{"type":"text","text":"x"}],"_meta":{"mcp/www_authenticate":["Bearer"]}},` +
			`"result":{"tools":[]},"policy_revision":"rev",` +
			`"caller":{"sub":"alice","client_id":"app","scopes":["a","b"],"act":[{"sub":"agent","client_id":"bot"}],"grant":"user","issuer":"https://as"}}`},
		{"minimal caller", pep.Caller{Scopes: []string{}, Issuer: "https://as"}, `{"scopes":[],"issuer":"https://as"}`},
		{"tool result without meta", pep.ToolResult{IsError: true, Content: []pep.Content{}},
			`{"isError":true,"content":[]}`},
		{"request error", &pep.RequestError{Status: 400, Code: "invalid_request", Description: "resource is required"},
			`{"error":"invalid_request","error_description":"resource is required"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRequestErrorError(t *testing.T) {
	e := &pep.RequestError{Status: 429, Code: "rate_limited", Description: "slow down"}
	if got := e.Error(); got != "rate_limited: slow down" {
		t.Fatalf("Error() = %q", got)
	}
}
