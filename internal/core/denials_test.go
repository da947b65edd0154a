package core_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// TestStructuredDenials: on a resource with structured denials the
// envelope of a refusal names its own decision (authorizationContextId is
// the decision id), the JSON-RPC error of a challenge carries it for PEPs
// that answer with HTTP status or without HTTP (stdio), and a retry that
// echoes the id in _meta is audited with retry_of.
func TestStructuredDenials(t *testing.T) {
	audit := &eventLog{}
	e := coretest.New(t, coretest.Options{Policy: customPolicy(t), Auditor: audit, Core: func(o *core.Options) {
		for _, r := range o.Resources {
			r.Challenge.StructuredDenials = true
		}
	}})
	mint := func(scopes ...string) string {
		return e.Bearer(t, devissuer.MintOptions{Subject: "u", ClientID: "c", Scopes: scopes})
	}
	envelope := func(t *testing.T, r *pep.Response) *stepup.Envelope {
		t.Helper()
		if r.JSONRPCError == nil || r.JSONRPCError.Data == nil {
			return nil
		}
		var data struct {
			Authorization *stepup.Envelope `json:"authorization"`
		}
		if err := json.Unmarshal(r.JSONRPCError.Data, &data); err != nil {
			t.Fatal(err)
		}
		return data.Authorization
	}
	tests := []struct {
		name        string
		req         *pep.Request
		status      int
		remediation string
		hintError   string
	}{
		{"anonymous", transfer("", 50), 401, "available", ""},
		{"without the scope", transfer(mint(), 50), 403, "available", "insufficient_scope"},
		{"invalid token", transfer("Bearer not.a.jwt", 50), 401, "available", "invalid_token"},
		{"over the limit", transfer(mint("pay"), 500), 200, "unavailable", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := e.Service.Decide(context.Background(), tc.req, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Allow || r.HTTPStatus != tc.status {
				t.Fatalf("%d %q", r.HTTPStatus, r.Reason)
			}
			env := envelope(t, r)
			if tc.status == 200 {
				// A policy refusal of a call is a tool result: its _meta.
				if r.JSONRPCError != nil {
					t.Fatalf("jsonrpc_error %+v", r.JSONRPCError)
				}
				env, _ = r.ToolResult.Meta[stepup.MetaAuthorization].(*stepup.Envelope)
			} else if m, _ := r.ToolResult.Meta[stepup.MetaAuthorization].(*stepup.Envelope); m == nil || env == nil || m.AuthorizationContextID != env.AuthorizationContextID {
				t.Fatalf("envelopes: error data %+v, tool result %+v", env, m)
			}
			if env == nil || env.Reason != "insufficient_authorization" || env.Remediation != tc.remediation || env.AuthorizationContextID != r.DecisionID {
				t.Fatalf("envelope %+v (decision %s)", env, r.DecisionID)
			}
			if tc.status != 200 {
				h := env.RemediationHints
				if len(h) != 1 || h[0].Type != "oauth_scopes" || h[0].Error != tc.hintError || strings.Join(h[0].Scopes, " ") != "pay" || h[0].ResourceMetadata == "" {
					t.Fatalf("hints %+v", h)
				}
			}
		})
	}

	// The client steps up and retries, echoing the denial's id.
	first, err := e.Service.Decide(context.Background(), transfer(mint(), 50), "")
	if err != nil {
		t.Fatal(err)
	}
	retry := func(meta string) *pep.Request {
		return &pep.Request{Resource: coretest.Resource, Authorization: mint("pay"), Message: json.RawMessage(
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":50},"_meta":` + meta + `}}`)}
	}
	for _, tc := range []struct{ meta, want string }{
		{`{"io.modelcontextprotocol/authorization-context-id":"` + first.DecisionID + `","other":1}`, first.DecisionID},
		{`{"io.modelcontextprotocol/authorization-context-id":"not an id; DROP"}`, ""},
		{`{"io.modelcontextprotocol/authorization-context-id":"` + strings.Repeat("A", 65) + `"}`, ""},
		{`{"io.modelcontextprotocol/authorization-context-id":7}`, ""},
		{`{"progressToken":"p"}`, ""},
		{`null`, ""},
	} {
		r, err := e.Service.Decide(context.Background(), retry(tc.meta), "")
		if err != nil {
			t.Fatal(err)
		}
		if !r.Allow {
			t.Fatalf("retry with _meta %s refused: %q", tc.meta, r.Reason)
		}
		evs, _ := audit.take()
		if last := evs[len(evs)-1]; last.ID != r.DecisionID || last.RetryOf != tc.want {
			t.Fatalf("_meta %s: audit retry_of %q, want %q", tc.meta, last.RetryOf, tc.want)
		}
	}
}
