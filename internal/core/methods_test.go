package core_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// The JSON-RPC methods of the MCP schemas, written out from the published
// schema files (modelcontextprotocol/modelcontextprotocol, schema/<version>/
// schema.ts: the members of ClientRequest, ClientNotification,
// ServerRequest and ServerNotification). docs/api.md's method table is the
// same list.
const (
	clientRequest      = "client request"
	clientNotification = "client notification"
	serverRequest      = "server request"
	serverNotification = "server notification"
)

var schemaMethods = []struct {
	method   string
	versions string // of 2025-06-18, 2025-11-25, 2026-07-28
	dir      string
	op       decision.Operation
	// anonymous is the default policy's answer to an anonymous caller:
	// "allow", or the JSON-RPC error code of an in-band refusal.
	anonymous string
}{
	{"initialize", "2025-06-18 2025-11-25", clientRequest, decision.OpLifecycle, "allow"},
	{"server/discover", "2026-07-28", clientRequest, decision.OpLifecycle, "allow"},
	{"ping", "2025-06-18 2025-11-25", clientRequest, decision.OpLifecycle, "allow"},
	{"tools/list", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpList, "allow"},
	{"prompts/list", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpList, "allow"},
	{"resources/list", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpList, "allow"},
	{"resources/templates/list", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpList, "allow"},
	{"tools/call", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpCall, "allow"}, // lookup_product, public
	{"prompts/get", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpCall, "-32602"},
	{"resources/read", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpCall, "-32002"},
	{"resources/subscribe", "2025-06-18 2025-11-25", clientRequest, decision.OpCall, "-32002"},
	{"resources/unsubscribe", "2025-06-18 2025-11-25", clientRequest, decision.OpCall, "-32002"},
	{"completion/complete", "2025-06-18 2025-11-25 2026-07-28", clientRequest, decision.OpOther, "allow"},
	{"logging/setLevel", "2025-06-18 2025-11-25", clientRequest, decision.OpOther, "allow"},
	{"subscriptions/listen", "2026-07-28", clientRequest, decision.OpOther, "allow"},
	{"tasks/get", "2025-11-25", clientRequest, decision.OpOther, "allow"},
	{"tasks/result", "2025-11-25", clientRequest, decision.OpOther, "allow"},
	{"tasks/list", "2025-11-25", clientRequest, decision.OpOther, "allow"},
	{"tasks/cancel", "2025-11-25", clientRequest, decision.OpOther, "allow"},
	{"notifications/initialized", "2025-06-18 2025-11-25", clientNotification, decision.OpLifecycle, "allow"},
	{"notifications/cancelled", "2025-06-18 2025-11-25 2026-07-28", clientNotification, decision.OpLifecycle, "allow"},
	{"notifications/progress", "2025-06-18 2025-11-25 2026-07-28", clientNotification, decision.OpLifecycle, "allow"},
	{"notifications/roots/list_changed", "2025-06-18 2025-11-25", clientNotification, decision.OpLifecycle, "allow"},
	{"notifications/tasks/status", "2025-11-25", clientNotification, decision.OpLifecycle, "allow"},
	// Server to client: a client never sends these requests to a server;
	// one that does is answered "method not found". (The client's answers
	// to them are transport POSTs: http_method POST. In 2026-07-28 they are
	// the input requests of a multi-round-trip result, answered in the
	// retried request.)
	{"sampling/createMessage", "2025-06-18 2025-11-25 2026-07-28", serverRequest, decision.OpOther, "-32601"},
	{"roots/list", "2025-06-18 2025-11-25 2026-07-28", serverRequest, decision.OpOther, "-32601"},
	{"elicitation/create", "2025-06-18 2025-11-25 2026-07-28", serverRequest, decision.OpOther, "-32601"},
	{"notifications/message", "2025-06-18 2025-11-25 2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/resources/updated", "2025-06-18 2025-11-25 2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/resources/list_changed", "2025-06-18 2025-11-25 2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/tools/list_changed", "2025-06-18 2025-11-25 2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/prompts/list_changed", "2025-06-18 2025-11-25 2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/elicitation/complete", "2025-11-25", serverNotification, decision.OpLifecycle, "allow"},
	{"notifications/subscriptions/acknowledged", "2026-07-28", serverNotification, decision.OpLifecycle, "allow"},
}

// TestEveryMethodOfEverySchema: every method of the three supported
// revisions is classified as the table says, and the default policy answers
// an anonymous caller as the table says (2026-07-28's server/discover and
// subscriptions/listen included: a client speaking only the current
// revision is not locked out).
func TestEveryMethodOfEverySchema(t *testing.T) {
	e := coretest.New(t, coretest.Options{})
	perVersion := map[string]int{}
	for _, m := range schemaMethods {
		for _, v := range strings.Fields(m.versions) {
			perVersion[v]++
		}
		t.Run(m.method, func(t *testing.T) {
			if got := decision.ClassifyMethod(m.method).Operation; got != m.op {
				t.Fatalf("classified %q, want %q", got, m.op)
			}
			msg := map[string]any{"jsonrpc": "2.0", "method": m.method}
			if !strings.HasPrefix(m.method, "notifications/") {
				msg["id"] = 1
			}
			switch m.method {
			case "tools/call":
				msg["params"] = map[string]any{"name": "lookup_product", "arguments": map[string]any{}}
			case "prompts/get":
				msg["params"] = map[string]any{"name": "no_such_prompt"}
			case "resources/read", "resources/subscribe", "resources/unsubscribe":
				msg["params"] = map[string]any{"uri": "file:///no/such"}
			}
			raw, _ := json.Marshal(msg)
			r, err := e.Service.Decide(context.Background(), &pep.Request{Resource: coretest.Resource, Message: raw}, "")
			if err != nil {
				t.Fatal(err)
			}
			got := "allow"
			if !r.Allow {
				got = "deny"
				if r.JSONRPCError != nil {
					got = itoa(r.JSONRPCError.Code)
				}
			}
			if got != m.anonymous {
				t.Fatalf("anonymous: %s (%d %q), want %s", got, r.HTTPStatus, r.Reason, m.anonymous)
			}
		})
	}
	// The counts of the schema files: a method left out of the table fails here.
	for v, n := range map[string]int{"2025-06-18": 25, "2025-11-25": 31, "2026-07-28": 21} {
		if perVersion[v] != n {
			t.Errorf("%s: %d methods in the table, the schema has %d", v, perVersion[v], n)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
