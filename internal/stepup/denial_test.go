package stepup_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mcp-pdp/pdp/internal/stepup"
)

// TestStructuredDenials: on a resource with structured denials, every
// authorization refusal carries the SEP-2643 (draft) envelope, the same
// object in error.data.authorization and in the tool result's _meta;
// hidden targets, failed decisions and allowed requests carry none, and
// without the option nothing changes.
func TestStructuredDenials(t *testing.T) {
	on := &stepup.Resource{URI: "https://mcp.example.com/mcp", MetadataURL: prm, Strategy: stepup.Operation, StructuredDenials: true}
	off := &stepup.Resource{URI: "https://mcp.example.com/mcp", MetadataURL: prm, Strategy: stepup.Operation}
	scopesHint := func(errCode string, scopes ...string) []stepup.Hint {
		return []stepup.Hint{{Type: stepup.HintOAuthScopes, Error: errCode, Scopes: scopes, ResourceMetadata: prm}}
	}
	tests := []struct {
		name    string
		ref     stepup.Refusal
		want    *stepup.Envelope // nil: no envelope
		code    int              // the JSON-RPC error's code (0: none)
		message string
	}{
		{"no token, call", stepup.Refusal{Kind: stepup.NoToken, Method: "tools/call", Target: "generate_qr_url", Required: []string{"qr:generate"}, DecisionID: "D1"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D1", RemediationHints: scopesHint("", "qr:generate")},
			stepup.CodeForbidden, "Authorization required to call generate_qr_url (scopes needed: qr:generate)"},
		{"no token, prompt", stepup.Refusal{Kind: stepup.NoToken, Method: "prompts/get", Target: "report", Required: []string{"reports"}, DecisionID: "D2"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D2", RemediationHints: scopesHint("", "reports")},
			stepup.CodeForbidden, "Authorization required for prompts/get report (scopes needed: reports)"},
		{"no token, list", stepup.Refusal{Kind: stepup.NoToken, Method: "tools/list", DecisionID: "D3"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D3", RemediationHints: scopesHint("")},
			stepup.CodeForbidden, "Authorization required for tools/list"},
		{"invalid token", stepup.Refusal{Kind: stepup.InvalidToken, Method: "tools/call", Target: "x", Required: []string{"a"}, Description: "token expired", DecisionID: "D4"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D4", RemediationHints: scopesHint("invalid_token", "a")},
			stepup.CodeForbidden, "The access token was rejected: token expired (scopes needed: a)"},
		{"refused proof", stepup.Refusal{Kind: stepup.InvalidToken, Method: "tools/call", Target: "x", DPoPError: "use_dpop_nonce", Description: "nonce", DecisionID: "D5"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D5", RemediationHints: scopesHint("use_dpop_nonce")},
			stepup.CodeForbidden, "The access token was rejected: nonce"},
		{"insufficient scope", stepup.Refusal{Kind: stepup.InsufficientScope, Method: "tools/call", Target: "x", Required: []string{"qr:generate"}, Granted: []string{"a"}, Description: "missing scopes: qr:generate", DecisionID: "D6"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D6", RemediationHints: scopesHint("insufficient_scope", "qr:generate")},
			stepup.CodeForbidden, "Additional permission required to call x: missing scopes: qr:generate (scopes needed: qr:generate)"},
		{"forbidden call", stepup.Refusal{Kind: stepup.Forbidden, Method: "tools/call", Target: "x", Description: "client c is revoked", DecisionID: "D7"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "unavailable", AuthorizationContextID: "D7"}, 0, ""},
		{"forbidden prompt", stepup.Refusal{Kind: stepup.Forbidden, Method: "prompts/get", Target: "p", Description: "no", DecisionID: "D8"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "unavailable", AuthorizationContextID: "D8"}, stepup.CodeForbidden, "Forbidden: no"},
		{"forbidden, the policy says undisclosed", stepup.Refusal{Kind: stepup.Forbidden, Method: "prompts/get", Target: "p", Description: "no", Remediation: "undisclosed", DecisionID: "D9"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "undisclosed", AuthorizationContextID: "D9"}, stepup.CodeForbidden, "Forbidden: no"},
		{"forbidden, the policy says available", stepup.Refusal{Kind: stepup.Forbidden, Method: "tools/call", Target: "x", Description: "ask an admin", Remediation: "available", DecisionID: "D10"},
			&stepup.Envelope{Reason: "insufficient_authorization", Remediation: "available", AuthorizationContextID: "D10"}, 0, ""},
		{"hidden tool: answered as absent", stepup.Refusal{Kind: stepup.Hidden, Method: "tools/call", Target: "secret", DecisionID: "D11"}, nil, stepup.CodeInvalidParams, "Unknown tool: secret"},
		{"decision failed", stepup.Refusal{Kind: stepup.Unavailable, Method: "tools/call", Target: "x", DecisionID: "D12"}, nil, stepup.CodeInternalError, "Authorization unavailable"},
		{"allowed", stepup.Refusal{Kind: stepup.Allowed, Method: "tools/call", Target: "x"}, nil, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := on.Answer(tc.ref)
			plain := off.Answer(tc.ref)
			if a.HTTPStatus != plain.HTTPStatus || a.WWWAuthenticate != plain.WWWAuthenticate {
				t.Fatalf("structured denials changed the HTTP answer: %d %q, want %d %q", a.HTTPStatus, a.WWWAuthenticate, plain.HTTPStatus, plain.WWWAuthenticate)
			}
			if plain.JSONRPCError != nil && plain.JSONRPCError.Data != nil || plain.ToolResult != nil && plain.ToolResult.Meta[stepup.MetaAuthorization] != nil {
				t.Fatalf("an envelope without structured denials: %+v %+v", plain.JSONRPCError, plain.ToolResult)
			}
			if tc.code == 0 && a.JSONRPCError != nil || tc.code != 0 && (a.JSONRPCError == nil || a.JSONRPCError.Code != tc.code || a.JSONRPCError.Message != tc.message) {
				t.Fatalf("jsonrpc_error = %+v, want code %d %q", a.JSONRPCError, tc.code, tc.message)
			}
			var got *stepup.Envelope
			if a.JSONRPCError != nil && a.JSONRPCError.Data != nil {
				var data struct {
					Authorization *stepup.Envelope `json:"authorization"`
				}
				if err := json.Unmarshal(a.JSONRPCError.Data, &data); err != nil {
					t.Fatal(err)
				}
				got = data.Authorization
			}
			if a.ToolResult != nil {
				m, _ := a.ToolResult.Meta[stepup.MetaAuthorization].(*stepup.Envelope)
				if (m == nil) != (tc.want == nil) {
					t.Fatalf("tool result _meta envelope = %+v, want %+v", m, tc.want)
				}
				if got != nil && m != nil && !reflect.DeepEqual(got, m) {
					t.Fatalf("the two forms differ: error data %+v, _meta %+v", got, m)
				}
				if got == nil {
					got = m
				}
				if plain.ToolResult.Content[0].Text != a.ToolResult.Content[0].Text {
					t.Fatalf("text changed: %q, want %q", a.ToolResult.Content[0].Text, plain.ToolResult.Content[0].Text)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("envelope = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The envelope's JSON is the draft's member names.
func TestEnvelopeJSON(t *testing.T) {
	on := &stepup.Resource{URI: "https://mcp.example.com/mcp", MetadataURL: prm, Strategy: stepup.Operation, StructuredDenials: true}
	a := on.Answer(stepup.Refusal{Kind: stepup.InsufficientScope, Method: "tools/call", Target: "x", Required: []string{"qr:generate"}, DecisionID: "01JX"})
	want := `{"authorization":{"reason":"insufficient_authorization","remediation":"available","authorizationContextId":"01JX",` +
		`"remediationHints":[{"type":"oauth_scopes","error":"insufficient_scope","scopes":["qr:generate"],"resource_metadata":"` + prm + `"}]}}`
	if string(a.JSONRPCError.Data) != want {
		t.Fatalf("data = %s\nwant   %s", a.JSONRPCError.Data, want)
	}
	b, err := json.Marshal(a.ToolResult)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if got := `{"authorization":` + string(tr.Meta[stepup.MetaAuthorization]) + `}`; got != want {
		t.Fatalf("_meta envelope = %s\nwant %s", got, want)
	}
}
