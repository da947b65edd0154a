package authzen_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-pdp/pdp/internal/authzen"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

const resource = coretest.Resource

// call is one request the core received.
type call struct {
	req    *pep.Request
	caller *token.Claims
	pep    string
}

// recording is the real core, recording what it was asked.
type recording struct {
	svc   *core.Service
	mu    sync.Mutex
	calls []call
}

func (r *recording) DecideVerified(ctx context.Context, req *pep.Request, caller *token.Claims, pepName string) (*pep.Response, error) {
	r.mu.Lock()
	r.calls = append(r.calls, call{req, caller, pepName})
	r.mu.Unlock()
	return r.svc.DecideVerified(ctx, req, caller, pepName)
}

func (r *recording) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// newService is the AuthZEN service over the real core (default policy,
// the demo catalog) for coretest.Resource, plus extra configured servers.
func newService(t *testing.T, o coretest.Options, extra ...string) (*authzen.Service, *recording) {
	t.Helper()
	rec := &recording{svc: coretest.New(t, o).Service}
	s, err := authzen.New(authzen.Options{Core: rec, Resources: append([]string{resource}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// ctxOf is the decision context of a decided Decision.
func ctxOf(t *testing.T, d authzen.Decision) *authzen.DecisionContext {
	t.Helper()
	c, ok := d.Context.(*authzen.DecisionContext)
	if !ok {
		t.Fatalf("context %#v is not a decision context", d.Context)
	}
	return c
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// The default mappings of COAZ-MCP (openid/authzen
// profiles/authzen-coaz-mcp-binding-1_0.md, Draft 1, §"Default Mappings",
// which supersedes profiles/authzen-mcp-profile-1_0.md), written out for
// the binding's example token of §"Expressions and Literals"
// (sub alice@example.com, client_id http://agentprovider.com/agent-app-id,
// aud the server): each AuthZEN request a COAZ PEP sends, the JSON-RPC
// message the core must be asked to decide, and the default policy's
// answer with the demo catalog for a caller without scopes.
func TestDefaultMappings(t *testing.T) {
	const (
		sub   = `{"type":"identity","id":"alice@example.com"}`
		agent = `"agent":"http://agentprovider.com/agent-app-id"`
		srv   = `{"type":"mcp_server","id":"` + resource + `"}`
	)
	cases := []struct {
		name    string
		request string
		message string
		allow   bool
	}{
		// §Lifecycle: initialize, with context.protocol_version.
		{"initialize", `{"subject":` + sub + `,"context":{` + agent + `,"protocol_version":"2025-11-25"},"action":{"name":"initialize"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`, true},
		// §Lifecycle: ping is pass-through; a PEP that asks anyway is allowed.
		{"ping", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"ping"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping"}`, true},
		// §Tools: tools/list on the server.
		{"tools/list", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tools/list"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, true},
		// §Tools: tools/call on the tool $params.name (a public tool of the demo catalog).
		{"tools/call public", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}`, true},
		// §Tools with the binding's example tool get_customer (§"Expressions
		// and Literals"): not in the demo catalog, so hidden and denied.
		{"tools/call unknown tool", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"get_customer","properties":{"arguments":{"id":"cust-12345","case":"case-67890"}}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":"cust-12345","case":"case-67890"}}}`, false},
		// §Resources: resources/list on the server; resources/read and
		// resources/subscribe on the resource $params.uri (none in the demo catalog).
		{"resources/list", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"resources/list"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/list"}`, true},
		{"resources/read", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"resources/read"},"resource":{"type":"resource","id":"file:///reports/q1.pdf"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///reports/q1.pdf"}}`, false},
		{"resources/subscribe", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"resources/subscribe"},"resource":{"type":"resource","id":"file:///reports/q1.pdf"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///reports/q1.pdf"}}`, false},
		// §Prompts: prompts/list on the server, prompts/get on the prompt $params.name.
		{"prompts/list", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"prompts/list"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`, true},
		{"prompts/get", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"prompts/get"},"resource":{"type":"prompt","id":"summarize"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summarize","arguments":{}}}`, false},
		// §Completion: the prompt or resource of params.ref (public in the demo catalog).
		{"completion/complete prompt", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"completion/complete"},"resource":{"type":"prompt","id":"summarize"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"}}}`, true},
		{"completion/complete resource", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"completion/complete"},"resource":{"type":"resource","id":"file:///{path}"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"}}}`, true},
		// §Logging: logging/setLevel on the server, context.level.
		{"logging/setLevel", `{"subject":` + sub + `,"context":{` + agent + `,"level":"info"},"action":{"name":"logging/setLevel"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}`, true},
		// §Tasks: tasks/get (result, cancel) on the task $params.taskId; tasks/list on the server.
		{"tasks/get", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tasks/get"},"resource":{"type":"task","id":"task-1"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"task-1"}}`, true},
		{"tasks/cancel", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tasks/cancel"},"resource":{"type":"task","id":"task-1"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"taskId":"task-1"}}`, true},
		{"tasks/list", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"tasks/list"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"tasks/list"}`, true},
		// §Unknown Methods: denied.
		{"unknown method", `{"subject":` + sub + `,"context":{` + agent + `},"action":{"name":"x-vendor/frobnicate"},"resource":` + srv + `}`,
			`{"jsonrpc":"2.0","id":1,"method":"x-vendor/frobnicate"}`, false},
	}
	s, rec := newService(t, coretest.Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Evaluate(context.Background(), []byte(tc.request), "gateway")
			if err != nil {
				t.Fatal(err)
			}
			calls := rec.take()
			if len(calls) != 1 {
				t.Fatalf("%d core calls", len(calls))
			}
			c := calls[0]
			if c.req.Resource != resource || c.req.Authorization != "" || !sameJSON(t, c.req.Message, []byte(tc.message)) {
				t.Errorf("core asked %s for %s, want %s", c.req.Message, c.req.Resource, tc.message)
			}
			if c.caller == nil || c.caller.Subject != "alice@example.com" || c.caller.ClientID != "http://agentprovider.com/agent-app-id" ||
				c.caller.Validation != core.ValidationPEP || c.pep != "gateway" || c.caller.Raw["sub"] != "alice@example.com" {
				t.Errorf("caller %+v pep %q", c.caller, c.pep)
			}
			dc := ctxOf(t, *d)
			if d.Decision != tc.allow || dc.DecisionID == "" || dc.Reason == "" {
				t.Errorf("decision %v %+v, want %v", d.Decision, dc, tc.allow)
			}
		})
	}
}

// TestScopesAndCaller: scopes come from subject.properties.scopes (array or
// space-delimited string); without them a step-up tool is refused with the
// fact that scopes are missing and were not sent; other subject properties
// are claims the policy reads; an anonymous subject is decided as
// /v1/decide's anonymous caller.
func TestScopesAndCaller(t *testing.T) {
	s, rec := newService(t, coretest.Options{})
	qr := func(subject string) string {
		return `{"subject":` + subject + `,"context":{"agent":"agent-7"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"generate_qr_url","properties":{"arguments":{"gtin":"4006381333931"}}}}`
	}
	no, yes := false, true
	cases := []struct {
		name, subject string
		allow         bool
		outcome       string
		missing       []string
		scopesSent    *bool
		status        int
	}{
		{"scope as array", `{"type":"identity","id":"alice","properties":{"scopes":["openid","qr:generate"]}}`, true, pep.OutcomeAllow, nil, nil, 200},
		{"scope as string", `{"type":"identity","id":"alice","properties":{"scopes":"openid qr:generate"}}`, true, pep.OutcomeAllow, nil, nil, 200},
		{"implied scope", `{"type":"identity","id":"alice","properties":{"scopes":["qr:admin"]}}`, true, pep.OutcomeAllow, nil, nil, 200},
		{"other scope", `{"type":"identity","id":"alice","properties":{"scopes":["openid"]}}`, false, pep.OutcomeChallenge, []string{"qr:generate"}, &yes, 403},
		{"no scopes sent", `{"type":"identity","id":"alice"}`, false, pep.OutcomeChallenge, []string{"qr:generate"}, &no, 403},
		{"anonymous", `{"type":"anonymous","id":"-"}`, false, pep.OutcomeChallenge, []string{"qr:generate"}, &no, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Evaluate(context.Background(), []byte(qr(tc.subject)), "")
			if err != nil {
				t.Fatal(err)
			}
			dc := ctxOf(t, *d)
			if d.Decision != tc.allow || dc.Outcome != tc.outcome || dc.HTTPStatus != tc.status || strings.Join(dc.MissingScopes, " ") != strings.Join(tc.missing, " ") {
				t.Errorf("got %v %+v", d.Decision, dc)
			}
			if !tc.allow && (strings.Join(dc.RequiredScopes, " ") != "qr:generate" || !dc.InsufficientScope || dc.ScopesSent == nil || *dc.ScopesSent != *tc.scopesSent || dc.WWWAuthenticate == "") {
				t.Errorf("refusal context %+v", dc)
			}
			if tc.allow && (dc.InsufficientScope || dc.ScopesSent != nil) {
				t.Errorf("allow context %+v", dc)
			}
			c := rec.take()[0]
			if tc.subject == `{"type":"anonymous","id":"-"}` {
				if c.caller != nil {
					t.Errorf("anonymous decided for %+v", c.caller)
				}
				return
			}
			if c.caller.Grant != token.GrantUser || c.caller.Raw["client_id"] != "agent-7" || !sameJSON(t, c.req.Message,
				[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"4006381333931"}}}`)) {
				t.Errorf("caller %+v message %s", c.caller, c.req.Message)
			}
		})
	}

	// context.arguments when the resource carries none; issuer and grant
	// from the subject's properties; properties are claims.
	body := `{"subject":{"type":"identity","id":"svc","properties":{"issuer":"https://as.example.com","grant":"client_credentials","roles":["ops"]}},` +
		`"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"},"context":{"arguments":{"q":"milk"}}}`
	if _, err := s.Evaluate(context.Background(), []byte(body), ""); err != nil {
		t.Fatal(err)
	}
	c := rec.take()[0]
	roles, _ := c.caller.Raw["roles"].([]any)
	if c.caller.Issuer != "https://as.example.com" || c.caller.Raw["iss"] != "https://as.example.com" || c.caller.Grant != token.GrantClientCredentials ||
		len(roles) != 1 || roles[0] != "ops" || !strings.Contains(string(c.req.Message), `"arguments":{"q":"milk"}`) {
		t.Errorf("caller %+v message %s", c.caller, c.req.Message)
	}
}

// The batch example of Authorization API 1.0 §"Evaluations semantics"
// ("Evaluate read action for three documents using all three semantics"),
// on the demo catalog: the subject and action are top-level defaults, the
// three resources a public tool, a step-up tool the subject lacks the
// scope of, and another public tool.
func TestEvaluationsSemantics(t *testing.T) {
	s, rec := newService(t, coretest.Options{})
	body := func(semantic string) string {
		opts := ""
		if semantic != "" {
			opts = `"options":{"evaluations_semantic":"` + semantic + `"},`
		}
		return `{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},` + opts + `"evaluations":[` +
			`{"resource":{"type":"tool","id":"lookup_product"}},` +
			`{"resource":{"type":"tool","id":"generate_qr_url"}},` +
			`{"resource":{"type":"tool","id":"search_products"}}]}`
	}
	cases := []struct {
		semantic string
		want     []bool
	}{
		{"", []bool{true, false, true}}, // execute_all is the default
		{authzen.ExecuteAll, []bool{true, false, true}},
		{authzen.DenyOnFirstDeny, []bool{true, false}},
		{authzen.PermitOnFirstPermit, []bool{true}},
	}
	for _, tc := range cases {
		t.Run(tc.semantic, func(t *testing.T) {
			r, err := s.Evaluations(context.Background(), []byte(body(tc.semantic)), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Evaluations) != len(tc.want) || r.Single != nil {
				t.Fatalf("%d answers, want %d", len(r.Evaluations), len(tc.want))
			}
			for i, d := range r.Evaluations {
				if d.Decision != tc.want[i] {
					t.Errorf("evaluation %d: %v", i, d.Decision)
				}
			}
			if n := len(rec.take()); n != len(tc.want) {
				t.Errorf("%d decisions made, want %d (short-circuit)", n, len(tc.want))
			}
			raw, _ := json.Marshal(r)
			if !strings.HasPrefix(string(raw), `{"evaluations":[{"decision":true,"context":{`) {
				t.Errorf("encoded %s", raw)
			}
		})
	}
	// deny_on_first_deny stops at an evaluation that could not be decided
	// too; it is answered in place (§"Errors").
	r, err := s.Evaluations(context.Background(), []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},`+
		`"options":{"evaluations_semantic":"deny_on_first_deny"},"evaluations":[`+
		`{"resource":{"type":"tool","id":"lookup_product"}},`+
		`{"resource":{"type":"tool","id":"lookup_product"},"context":{"mcp_server":"https://other.example.com/mcp"}},`+
		`{"resource":{"type":"tool","id":"search_products"}}]}`), "")
	if err != nil || len(r.Evaluations) != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	ec, ok := r.Evaluations[1].Context.(*authzen.ErrorContext)
	if !ok || r.Evaluations[1].Decision || ec.Error.Status != http.StatusBadRequest || ec.Error.Code != "unknown_resource" {
		t.Errorf("in-place error %+v", r.Evaluations[1])
	}
}

// TestEvaluationsDefaults: top-level subject, action, resource and context
// are defaults; a member of an evaluation replaces its default as a whole
// (Authorization API 1.0 §"Default values"); without evaluations the
// request is one evaluation.
func TestEvaluationsDefaults(t *testing.T) {
	s, rec := newService(t, coretest.Options{})
	body := `{"subject":{"type":"identity","id":"alice","properties":{"scopes":["qr:generate"]}},` +
		`"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"},"context":{"agent":"agent-7"},` +
		`"evaluations":[` +
		`{},` + // everything inherited
		`{"resource":{"type":"tool","id":"generate_qr_url"}},` + // subject (with its scopes) inherited
		`{"subject":{"type":"identity","id":"bob"},"resource":{"type":"tool","id":"generate_qr_url"}},` + // subject replaced: no scopes
		`{"action":{"name":"tools/list"},"resource":{"type":"mcp_server","id":"` + resource + `"}},` + // action and resource replaced
		`{"context":{"agent":"agent-9"}}]}` // context replaced as a whole
	r, err := s.Evaluations(context.Background(), []byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, true, true}
	calls := rec.take()
	if len(r.Evaluations) != len(want) || len(calls) != len(want) {
		t.Fatalf("%d answers, %d calls", len(r.Evaluations), len(calls))
	}
	for i, d := range r.Evaluations {
		if d.Decision != want[i] {
			t.Errorf("evaluation %d: %v %+v", i, d.Decision, d.Context)
		}
	}
	type seen struct{ sub, client, method string }
	wantSeen := []seen{{"alice", "agent-7", "tools/call"}, {"alice", "agent-7", "tools/call"}, {"bob", "agent-7", "tools/call"}, {"alice", "agent-7", "tools/list"}, {"alice", "agent-9", "tools/call"}}
	for i, c := range calls {
		var m struct{ Method string }
		_ = json.Unmarshal(c.req.Message, &m)
		if got := (seen{c.caller.Subject, c.caller.ClientID, m.Method}); got != wantSeen[i] {
			t.Errorf("evaluation %d decided %+v, want %+v", i, got, wantSeen[i])
		}
	}

	// No evaluations (absent or empty): one Access Evaluation, one Decision.
	for _, b := range []string{
		`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}}`,
		`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"},"evaluations":[]}`,
	} {
		r, err := s.Evaluations(context.Background(), []byte(b), "")
		if err != nil || r.Single == nil || !r.Single.Decision {
			t.Fatalf("%s: %+v %v", b, r, err)
		}
		raw, _ := json.Marshal(r)
		if !strings.HasPrefix(string(raw), `{"decision":true,"context":{`) {
			t.Errorf("encoded %s", raw)
		}
	}
}

// TestMalformed: requests that cannot be decided are refused whole with
// 400 ("Bad Request", Authorization API 1.0 §"Error Responses") and are
// not decided; unknown members are ignored (§"JSON Serialization").
func TestMalformed(t *testing.T) {
	const (
		sub  = `"subject":{"type":"identity","id":"alice"}`
		act  = `"action":{"name":"tools/call"}`
		tool = `"resource":{"type":"tool","id":"lookup_product"}`
	)
	cases := []struct {
		name  string
		body  string
		batch bool
		code  string
		in    string // part of the description
	}{
		{"empty", ``, false, "invalid_request", "empty"},
		{"not an object", `[1]`, false, "invalid_request", "JSON object"},
		{"syntax", `{"subject":`, false, "invalid_json", "malformed"},
		{"trailing data", `{` + sub + `,` + act + `,` + tool + `} {}`, false, "invalid_json", "after the JSON object"},
		{"duplicate member", `{` + sub + `,` + act + `,` + tool + `,"action":{"name":"tools/list"}}`, false, "invalid_json", `duplicate member name "action"`},
		{"duplicate nested", `{"subject":{"type":"identity","id":"alice","id":"root"},` + act + `,` + tool + `}`, false, "invalid_json", `duplicate member name "id"`},
		{"invalid UTF-8", "{\"subject\":{\"type\":\"identity\",\"id\":\"al\xffice\"}," + act + "," + tool + "}", false, "invalid_json", "UTF-8"},
		{"too deep", `{` + sub + `,` + act + `,` + tool + `,"context":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, false, "invalid_json", "deeper"},
		{"no subject", `{` + act + `,` + tool + `}`, false, "invalid_request", "subject is required"},
		{"null subject", `{"subject":null,` + act + `,` + tool + `}`, false, "invalid_request", "subject is required"},
		{"no action", `{` + sub + `,` + tool + `}`, false, "invalid_request", "action is required"},
		{"no resource", `{` + sub + `,` + act + `}`, false, "invalid_request", "resource is required"},
		{"subject without id", `{"subject":{"type":"identity"},` + act + `,` + tool + `}`, false, "invalid_request", "subject.id is required"},
		{"subject id a number", `{"subject":{"type":"identity","id":7},` + act + `,` + tool + `}`, false, "invalid_request", "subject.id must be a string"},
		{"empty type", `{"subject":{"type":"","id":"alice"},` + act + `,` + tool + `}`, false, "invalid_request", "subject.type must not be empty"},
		{"properties not an object", `{"subject":{"type":"identity","id":"alice","properties":[]},` + act + `,` + tool + `}`, false, "invalid_request", "subject.properties must be a JSON object"},
		{"context not an object", `{` + sub + `,` + act + `,` + tool + `,"context":"x"}`, false, "invalid_request", "context must be a JSON object"},
		{"action without name", `{` + sub + `,"action":{},` + tool + `}`, false, "invalid_request", "action.name is required"},
		{"wrong resource type", `{` + sub + `,` + act + `,"resource":{"type":"mcp_server","id":"` + resource + `"}}`, false, "invalid_request", "resource.type tool"},
		{"list on a tool", `{` + sub + `,"action":{"name":"tools/list"},` + tool + `}`, false, "invalid_request", "resource.type mcp_server"},
		{"scopes not strings", `{"subject":{"type":"identity","id":"alice","properties":{"scopes":[1]}},` + act + `,` + tool + `}`, false, "invalid_request", "scopes"},
		{"bad grant", `{"subject":{"type":"identity","id":"alice","properties":{"grant":"magic"}},` + act + `,` + tool + `}`, false, "invalid_request", "grant"},
		{"agent not a string", `{` + sub + `,` + act + `,` + tool + `,"context":{"agent":1}}`, false, "invalid_request", "context.agent must be a string"},
		{"server contradiction", `{` + sub + `,"action":{"name":"tools/list"},"resource":{"type":"mcp_server","id":"` + resource + `"},"context":{"mcp_server":"https://other.example.com/mcp"}}`, false, "invalid_request", "contradicts"},
		{"unknown server", `{` + sub + `,"action":{"name":"tools/list"},"resource":{"type":"mcp_server","id":"https://other.example.com/mcp"}}`, false, "unknown_resource", "not configured"},
		{"bad semantic", `{` + sub + `,` + act + `,"options":{"evaluations_semantic":"any"},"evaluations":[{` + tool + `}]}`, true, "invalid_request", "evaluations_semantic"},
		{"options not an object", `{` + sub + `,` + act + `,"options":1,"evaluations":[{` + tool + `}]}`, true, "invalid_request", "options must be a JSON object"},
		{"evaluations not an array", `{` + sub + `,` + act + `,` + tool + `,"evaluations":{}}`, true, "invalid_request", "evaluations must be an array"},
		{"entry not an object", `{` + sub + `,` + act + `,"evaluations":[1]}`, true, "invalid_request", "evaluations[0] must be a JSON object"},
		{"entry without resource", `{` + sub + `,` + act + `,"evaluations":[{` + tool + `},{}]}`, true, "invalid_request", "evaluations[1].resource is required (in the evaluation or as a top-level default)"},
		{"bad default", `{"subject":{"type":"identity"},` + act + `,"evaluations":[{` + tool + `}]}`, true, "invalid_request", "subject.id is required"},
		{"too many", `{` + sub + `,` + act + `,` + tool + `,"evaluations":[` + strings.Repeat(`{},`, authzen.DefaultMaxEvaluations) + `{}]}`, true, "too_many_evaluations", "at most"},
	}
	s, rec := newService(t, coretest.Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.batch {
				_, err = s.Evaluations(context.Background(), []byte(tc.body), "")
			} else {
				_, err = s.Evaluate(context.Background(), []byte(tc.body), "")
			}
			var re *pep.RequestError
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest || re.Code != tc.code || !strings.Contains(re.Description, tc.in) {
				t.Fatalf("got %v (%+v), want 400 %s containing %q", err, re, tc.code, tc.in)
			}
			if tc.code != "unknown_resource" && len(rec.take()) != 0 {
				t.Error("a malformed request was decided")
			}
			rec.take()
		})
	}

	// Unknown members, also in another case, are ignored.
	d, err := s.Evaluate(context.Background(), []byte(`{`+sub+`,`+act+`,`+tool+`,"Subject":{"type":"identity","id":"root"},"x-extension":[1,2],"options":{}}`), "")
	if err != nil || !d.Decision || rec.take()[0].caller.Subject != "alice" {
		t.Fatalf("%+v %v", d, err)
	}
}

// TestServerSelection: resource.id names the server for mcp_server
// resources, context.mcp_server for the others; with one configured server
// it may be left out, with several it is required.
func TestServerSelection(t *testing.T) {
	const other = "https://other.example.com/mcp"
	s, rec := newService(t, coretest.Options{}, other)
	_, err := s.Evaluate(context.Background(), []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}}`), "")
	var re *pep.RequestError
	if !errors.As(err, &re) || re.Status != 400 || !strings.Contains(re.Description, "context.mcp_server") {
		t.Fatalf("two servers, none named: %v", err)
	}
	d, err := s.Evaluate(context.Background(), []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"},"context":{"mcp_server":"`+resource+`"}}`), "")
	if err != nil || !d.Decision || rec.take()[0].req.Resource != resource {
		t.Fatalf("named in context: %+v %v", d, err)
	}
	d, err = s.Evaluate(context.Background(), []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/list"},"resource":{"type":"mcp_server","id":"`+resource+`"}}`), "")
	if err != nil || !d.Decision || rec.take()[0].req.Resource != resource {
		t.Fatalf("named as the resource: %+v %v", d, err)
	}
}

func TestNew(t *testing.T) {
	if _, err := authzen.New(authzen.Options{}); err == nil {
		t.Fatal("a service without a core")
	}
	c := authzen.NewConfiguration("https://pdp.example.com")
	raw, _ := json.Marshal(c)
	if string(raw) != `{"policy_decision_point":"https://pdp.example.com","access_evaluation_endpoint":"https://pdp.example.com/access/v1/evaluation","access_evaluations_endpoint":"https://pdp.example.com/access/v1/evaluations"}` {
		t.Fatalf("%s", raw)
	}
}
