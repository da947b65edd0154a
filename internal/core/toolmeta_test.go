package core_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// annotationsPolicy allows a tool call only when the tool says it is read
// only (input.target.annotations), and lists everything.
const annotationsPolicy = `package mcp.authz

decision := {"allow": true, "visible": true, "reason": "list", "required_scopes": [], "missing_scopes": []} if input.operation == "list"

decision := {"allow": true, "visible": true, "reason": "read only", "required_scopes": [], "missing_scopes": []} if {
	input.operation == "call"
	input.target.annotations.readOnlyHint == true
}

decision := {"allow": false, "visible": true, "reason": "not read only", "required_scopes": [], "missing_scopes": [], "forbidden": true} if {
	input.operation == "call"
	not input.target.annotations.readOnlyHint == true
}

decision := {"allow": true, "visible": true, "reason": "lifecycle", "required_scopes": [], "missing_scopes": []} if input.operation in {"lifecycle", "other"}
`

// TestToolAnnotationsFromTheList: on tools/call the policy sees the tool's
// annotations as the server's last filtered tools/list said; a later list
// that changes them changes the decision (the call cache keys on them).
func TestToolAnnotationsFromTheList(t *testing.T) {
	e := coretest.New(t, coretest.Options{Policy: coretest.PolicyFiles(t, map[string]string{"authz.rego": annotationsPolicy})})
	list := func(ann string) {
		t.Helper()
		listTools(t, e, `{"tools":[{"name":"report","inputSchema":{"type":"object"}`+ann+`},{"name":"plain","inputSchema":{"type":"object"}}]}`)
	}
	call := func(tool string) bool {
		t.Helper()
		return callTool(t, e, tool).Allow
	}
	if call("report") {
		t.Fatal("allowed before any list: annotations unknown")
	}
	list(`,"annotations":{"readOnlyHint":true}`)
	if !call("report") || call("plain") {
		t.Fatal("after the list: report (read only) allowed, plain (no annotations) refused")
	}
	list(`,"annotations":{"readOnlyHint":false}`)
	if call("report") {
		t.Fatal("the list changed the annotations, the call was still allowed (stale cache)")
	}
	list(``)
	if call("report") {
		t.Fatal("a list without annotations forgets them")
	}
}

// metaPolicy allows a tool call only when the tool's _meta classifies it
// as public (input.target._meta), and lists everything.
const metaPolicy = `package mcp.authz

decision := {"allow": true, "visible": true, "reason": "list", "required_scopes": [], "missing_scopes": []} if input.operation == "list"

default classification := "unknown"

classification := input.target._meta["com.example/classification"]

decision := {"allow": true, "visible": true, "reason": "public", "required_scopes": [], "missing_scopes": []} if {
	input.operation == "call"
	classification == "public"
}

decision := {"allow": false, "visible": true, "reason": sprintf("classified %s", [classification]), "required_scopes": [], "missing_scopes": [], "forbidden": true} if {
	input.operation == "call"
	classification != "public"
}

decision := {"allow": true, "visible": true, "reason": "lifecycle", "required_scopes": [], "missing_scopes": []} if input.operation in {"lifecycle", "other"}
`

// TestToolMetaFromTheList: on tools/call the policy sees the tool's _meta
// as the server's last filtered tools/list said, next to its annotations;
// a list that changes or drops it changes the decision.
func TestToolMetaFromTheList(t *testing.T) {
	e := coretest.New(t, coretest.Options{Policy: coretest.PolicyFiles(t, map[string]string{"authz.rego": metaPolicy})})
	tests := []struct {
		name   string
		meta   string
		allow  bool
		reason string
	}{
		{"public", `,"_meta":{"com.example/classification":"public"}`, true, "public"},
		{"changed by the next list", `,"_meta":{"com.example/classification":"secret"}`, false, "classified secret"},
		{"not an object", `,"_meta":"public"`, false, "classified unknown"},
		{"dropped", ``, false, "classified unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listTools(t, e, `{"tools":[{"name":"report","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}`+tt.meta+`}]}`)
			r := callTool(t, e, "report")
			if r.Allow != tt.allow || r.Reason != tt.reason {
				t.Fatalf("allow=%v reason=%q, want %v %q", r.Allow, r.Reason, tt.allow, tt.reason)
			}
		})
	}
}

// listTools has the core filter a tools/list answer (result) for the
// resource: how it learns what the server says of its tools.
func listTools(t *testing.T, e *coretest.Env, result string) {
	t.Helper()
	r, err := e.Service.Decide(context.Background(), &pep.Request{Resource: coretest.Resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), Result: json.RawMessage(result)}, "")
	if err != nil || !r.Allow {
		t.Fatalf("list: %+v %v", r, err)
	}
}

// callTool decides an anonymous tools/call of tool.
func callTool(t *testing.T, e *coretest.Env, tool string) *pep.Response {
	t.Helper()
	r, err := e.Service.Decide(context.Background(), callRequest("", tool), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}
