package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// TestSessionOwner: a request on an MCP session whose owner the PEP names
// is decided for that owner only: another caller, or none, is refused with
// 403 and a JSON-RPC error, and the refusal is one audit event naming the
// caller who presented it.
func TestSessionOwner(t *testing.T) {
	audit := &eventLog{}
	e := coretest.New(t, coretest.Options{Auditor: audit})
	iss := e.Issuer.URL
	alice := e.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo"})
	bob := e.Bearer(t, devissuer.MintOptions{Subject: "bob", ClientID: "demo"})
	aliceOther := e.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "other-client"})
	clientA := e.Bearer(t, devissuer.MintOptions{ClientID: "svc-a", Extra: map[string]any{"sub": nil}})
	clientB := e.Bearer(t, devissuer.MintOptions{ClientID: "svc-b", Extra: map[string]any{"sub": nil}})
	clientOwner := &pep.Caller{Issuer: iss, ClientID: "svc-a"}
	owner := &pep.Caller{Issuer: iss, Subject: "alice", ClientID: "demo", Scopes: []string{"ignored"}}
	list := json.RawMessage(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)

	tests := []struct {
		name       string
		authz      string
		owner      *pep.Caller
		httpMethod string
		allow      bool
		sub        string // the audited subject
	}{
		{"no owner, anonymous", "", nil, "", true, ""},
		{"no owner, bob", bob, nil, "", true, "bob"},
		{"the owner", alice, owner, "", true, "alice"},
		{"another subject", bob, owner, "", false, "bob"},
		{"the owner's subject with another client (re-registered)", aliceOther, owner, "", true, "alice"},
		{"a client-only owner, another client", clientB, clientOwner, "", false, ""},
		{"a client-only owner, the same client", clientA, clientOwner, "", true, ""},
		{"no token on an owned session", "", owner, "", false, ""},
		{"another subject's GET", bob, owner, pep.HTTPMethodGet, false, "bob"},
		{"the owner's DELETE", alice, owner, pep.HTTPMethodDelete, true, "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &pep.Request{Resource: coretest.Resource, Authorization: tc.authz, SessionOwner: tc.owner, Message: list}
			if tc.httpMethod != "" {
				req.Message, req.HTTPMethod = nil, tc.httpMethod
			}
			_, _ = audit.take()
			resp, err := e.Service.Decide(context.Background(), req, "test")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Allow != tc.allow {
				t.Fatalf("allow %v (%s), want %v", resp.Allow, resp.Reason, tc.allow)
			}
			evs, _ := audit.take()
			if len(evs) != 1 || evs[0].ID != resp.DecisionID || evs[0].Subject != tc.sub {
				t.Fatalf("audit events %+v, want one for %q with the decision's id", evs, tc.sub)
			}
			if tc.allow {
				return
			}
			if resp.HTTPStatus != http.StatusForbidden || resp.JSONRPCError == nil || resp.Outcome != pep.OutcomeDeny || resp.Caller != nil {
				t.Fatalf("refusal %+v, want 403 deny with a JSON-RPC error and no caller", resp)
			}
			if evs[0].Outcome != pep.OutcomeDeny || evs[0].HTTPStatus != http.StatusForbidden || evs[0].Reason != resp.Reason {
				t.Fatalf("audit event %+v, want the 403 deny", evs[0])
			}
		})
	}
}
