package core_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// TestHeaderMismatch: Mcp-Method and Mcp-Name headers (MCP 2026-07-28) the
// PEP passes are compared with the body, plain or Base64; a contradiction
// is refused (400, -32020) and audited with the caller.
func TestHeaderMismatch(t *testing.T) {
	audit := &eventLog{}
	e := coretest.New(t, coretest.Options{Auditor: audit})
	b64 := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	alice := e.Bearer(t, devissuer.MintOptions{Subject: "alice", Scopes: []string{"qr:generate"}})
	call := json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}`)
	list := json.RawMessage(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	tests := []struct {
		name             string
		msg              json.RawMessage
		method, toolName string
		mismatch         string
	}{
		{"both match", call, "tools/call", "lookup_product", ""},
		{"both match, Base64", call, b64("tools/call"), b64("lookup_product"), ""},
		{"no headers", call, "", "", ""},
		{"method differs", call, "tools/list", "", `the Mcp-Method header does not match the method of the body ("tools/call")`},
		{"method differs, Base64", call, b64("prompts/get"), "", `the Mcp-Method header does not match the method of the body ("tools/call")`},
		{"method, bad Base64", call, "=?base64?***?=", "", `the Mcp-Method header does not match the method of the body ("tools/call")`},
		{"name differs", call, "tools/call", "generate_qr_url", "the Mcp-Name header does not match the name of the body's target"},
		{"name differs, Base64", call, "", b64("generate_qr_url"), "the Mcp-Name header does not match the name of the body's target"},
		{"a list has no target: Mcp-Name not compared", list, "tools/list", "anything", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.Service.Decide(context.Background(), &pep.Request{Resource: coretest.Resource, Authorization: alice, Message: tt.msg, MCPMethod: tt.method, MCPName: tt.toolName}, "")
			if err != nil {
				t.Fatal(err)
			}
			if tt.mismatch == "" {
				if !r.Allow {
					t.Fatalf("refused: %d %q", r.HTTPStatus, r.Reason)
				}
				return
			}
			if r.Allow || r.HTTPStatus != 400 || r.JSONRPCError == nil || r.JSONRPCError.Code != core.CodeHeaderMismatch || r.JSONRPCError.Message != tt.mismatch || r.Outcome != pep.OutcomeDeny {
				t.Fatalf("%+v %+v", r, r.JSONRPCError)
			}
			evs, _ := audit.take()
			last := evs[len(evs)-1]
			if last.ID != r.DecisionID || last.Outcome != pep.OutcomeDeny || last.Subject != "alice" || last.Reason != "header mismatch: "+tt.mismatch {
				t.Fatalf("audit event %+v", last)
			}
		})
	}
}
