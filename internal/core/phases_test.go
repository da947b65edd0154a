package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// listMethods are the list methods with a list result of each for the
// demo catalog: one public item, one unknown (hidden) item.
var listMethods = []struct {
	method string
	result string
}{
	{"tools/list", `{"tools":[{"name":"lookup_product"},{"name":"internal_admin"}]}`},
	{"prompts/list", `{"prompts":[{"name":"p"}]}`},
	{"resources/list", `{"resources":[{"uri":"file:///x"}]}`},
	{"resources/templates/list", `{"resourceTemplates":[{"uriTemplate":"file:///{x}"}]}`},
}

func listMsg(method string) json.RawMessage {
	return json.RawMessage(`{"jsonrpc":"2.0","id":3,"method":"` + method + `"}`)
}

// auditedEnv is the real core with the default policy, a real dev issuer
// and an audit log.
func auditedEnv(t *testing.T, o coretest.Options) (*coretest.Env, *eventLog) {
	t.Helper()
	log := &eventLog{}
	o.Auditor = log
	return coretest.New(t, o), log
}

// decideOne decides req through both entry points (Decide and
// DecideValid), checks that each is one well-formed audit event whose
// outcome is the answer's, and returns Decide's answer and event.
func decideOne(t *testing.T, e *coretest.Env, log *eventLog, req *pep.Request) (*pep.Response, *auditsink.Event) {
	t.Helper()
	var resp *pep.Response
	var ev *auditsink.Event
	for i, decide := range []func(context.Context, *pep.Request, string) (*pep.Response, error){e.Service.Decide, e.Service.DecideValid} {
		r, err := decide(context.Background(), req, "pep-a")
		if err != nil {
			t.Fatalf("entry point %d: %v", i, err)
		}
		events, errs := log.take()
		if len(errs) > 0 || len(events) != 1 || events[0].ID != r.DecisionID || events[0].Outcome != r.Outcome || events[0].HTTPStatus != r.HTTPStatus {
			t.Fatalf("entry point %d: events %+v (%v) for %+v", i, events, errs, r)
		}
		if i == 0 {
			resp, ev = r, events[0]
			continue
		}
		r.DecisionID = resp.DecisionID
		if !reflect.DeepEqual(r, resp) {
			t.Fatalf("DecideValid %+v, Decide %+v", r, resp)
		}
	}
	return resp, ev
}

// A list sent without its result is decided as a request: may this caller
// list at all? Allowed for anonymous callers and valid tokens, 401 for a
// token that is rejected, with the same challenge a call of a public tool
// gets, and no result in the answer.
func TestListRequestPhase(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	valid := e.Bearer(t, devissuer.MintOptions{ClientID: "app", Scopes: []string{"qr:generate"}})
	expired := e.Bearer(t, devissuer.MintOptions{TTL: -time.Hour})
	otherAud := e.Bearer(t, devissuer.MintOptions{Audience: []string{"https://other.example/mcp"}})
	tests := []struct {
		name    string
		authz   string
		allow   bool
		status  int
		outcome string
		caller  bool
	}{
		{"anonymous", "", true, 200, pep.OutcomeAllow, false},
		{"valid token", valid, true, 200, pep.OutcomeAllow, true},
		{"expired token", expired, false, 401, pep.OutcomeChallenge, false},
		{"token for another resource", otherAud, false, 401, pep.OutcomeChallenge, false},
		{"malformed header", "Basic YTpi", false, 401, pep.OutcomeChallenge, false},
		{"garbage token", "Bearer a.b.c", false, 401, pep.OutcomeChallenge, false},
	}
	for _, m := range listMethods {
		for _, tc := range tests {
			t.Run(m.method+"/"+tc.name, func(t *testing.T) {
				r, ev := decideOne(t, e, log, &pep.Request{Resource: resource, Authorization: tc.authz, Message: listMsg(m.method)})
				if r.Allow != tc.allow || r.HTTPStatus != tc.status || r.Outcome != tc.outcome || (r.Caller != nil) != tc.caller {
					t.Fatalf("%+v", r)
				}
				if r.Result != nil || len(r.RequiredScopes) != 0 || len(r.MissingScopes) != 0 || r.JSONRPCError != nil || r.ToolResult != nil {
					t.Fatalf("request phase answer %+v", r)
				}
				if r.PolicyRevision == "" {
					t.Fatal("the policy was not consulted")
				}
				if ev.Method != m.method || ev.Visible != nil || ev.Hidden != nil || string(ev.JSONRPCID) != "3" || ev.PEP != "pep-a" {
					t.Fatalf("audit event %+v", ev)
				}
				if !tc.allow {
					// The challenge a call of a public tool gets with the same
					// Authorization: invalid_token, no scope.
					c, _ := decideOne(t, e, log, callRequest(tc.authz, "lookup_product"))
					if r.WWWAuthenticate == "" || r.WWWAuthenticate != c.WWWAuthenticate || !strings.Contains(r.WWWAuthenticate, `error="invalid_token"`) {
						t.Fatalf("list challenge %q, call challenge %q", r.WWWAuthenticate, c.WWWAuthenticate)
					}
				}
			})
		}
	}
}

// A PEP that decides a list in two phases (request, then response) gets
// two decisions and two audit events; the one-phase PEP gets the same
// filtered answer as the second phase.
func TestListTwoPhases(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	valid := e.Bearer(t, devissuer.MintOptions{ClientID: "app"})
	for _, authz := range []string{"", valid} {
		for _, m := range listMethods {
			t.Run(m.method+"/token="+map[bool]string{true: "yes", false: "no"}[authz != ""], func(t *testing.T) {
				req := &pep.Request{Resource: resource, Authorization: authz, Message: listMsg(m.method)}
				first, ev1 := decideOne(t, e, log, req)
				if !first.Allow || first.Outcome != pep.OutcomeAllow || first.Result != nil {
					t.Fatalf("request phase %+v", first)
				}
				req.Result = json.RawMessage(m.result)
				second, ev2 := decideOne(t, e, log, req)
				if !second.Allow || second.Outcome != pep.OutcomeFiltered || !json.Valid(second.Result) {
					t.Fatalf("response phase %+v", second)
				}
				if ev1.ID == ev2.ID || ev2.Outcome != pep.OutcomeFiltered || ev2.Visible == nil && ev2.Hidden == nil {
					t.Fatalf("events %+v, %+v", ev1, ev2)
				}
				if !reflect.DeepEqual(first.Caller, second.Caller) {
					t.Fatalf("callers %+v, %+v", first.Caller, second.Caller)
				}
				if m.method == "tools/list" && (strings.Contains(string(second.Result), "internal_admin") || !strings.Contains(string(second.Result), "lookup_product")) {
					t.Fatalf("filtered %s", second.Result)
				}
			})
		}
	}
}

// An expired token on tools/list is refused before the MCP server builds
// its list: the first phase answers 401, and a PEP never gets to the second.
// Sent with the result (one phase), it gets the same challenge.
func TestExpiredTokenListChallengedBeforeResult(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	expired := e.Bearer(t, devissuer.MintOptions{TTL: -time.Hour})
	req := &pep.Request{Resource: resource, Authorization: expired, Message: listMsg("tools/list")}
	first, _ := decideOne(t, e, log, req)
	if first.Allow || first.HTTPStatus != 401 || !strings.Contains(first.WWWAuthenticate, `error="invalid_token"`) ||
		!strings.Contains(first.WWWAuthenticate, `resource_metadata="`+coretest.MetadataURL+`"`) {
		t.Fatalf("%+v", first)
	}
	req.Result = json.RawMessage(listMethods[0].result)
	once, _ := decideOne(t, e, log, req)
	if once.Allow || once.HTTPStatus != 401 || once.WWWAuthenticate != first.WWWAuthenticate || once.Result != nil {
		t.Fatalf("one phase %+v, request phase %+v", once, first)
	}
}

// listDenyPolicy lists everything to everyone except that its deny
// extension refuses the client "evil", in both phases of a list.
const listDenyPolicy = `package mcp.authz

deny contains "client evil is refused" if input.token.client_id == "evil"

default decision := {"allow": false, "visible": false, "reason": "no rule", "required_scopes": [], "missing_scopes": []}

decision := {
	"allow": count(deny) == 0,
	"visible": true,
	"forbidden": count(deny) > 0,
	"reason": concat("; ", ["listed", concat("; ", deny)]),
	"required_scopes": [],
	"missing_scopes": [],
	"items": {n: {"access": "public"} | some n in input.names},
} if input.operation == "list"
`

// The policy decides the list request: a policy whose list decision
// honours its deny rules refuses listing in the request phase as in the
// response phase.
func TestPolicyRefusesListing(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{Policy: coretest.PolicyFiles(t, map[string]string{"authz.rego": listDenyPolicy})})
	evil := e.Bearer(t, devissuer.MintOptions{ClientID: "evil"})
	good := e.Bearer(t, devissuer.MintOptions{ClientID: "good"})
	for _, result := range []json.RawMessage{nil, json.RawMessage(listMethods[0].result)} {
		r, _ := decideOne(t, e, log, &pep.Request{Resource: resource, Authorization: evil, Message: listMsg("tools/list"), Result: result})
		if r.Allow || r.Outcome != pep.OutcomeDeny || r.JSONRPCError == nil || r.JSONRPCError.Code != -32001 || r.Result != nil || r.Caller != nil {
			t.Fatalf("result %s: %+v", result, r)
		}
		r, _ = decideOne(t, e, log, &pep.Request{Resource: resource, Authorization: good, Message: listMsg("tools/list"), Result: result})
		if !r.Allow || r.Caller == nil || r.Caller.ClientID != "good" {
			t.Fatalf("result %s: %+v", result, r)
		}
	}
}

// Allowed answers carry the verified caller (never the token); refusals and
// anonymous callers carry none.
func TestCaller(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	iat := time.Now().Truncate(time.Second)
	exp := iat.Add(devissuer.DefaultTTL).Unix()
	raw := e.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "app", Scopes: []string{"qr:generate", "openid"},
		Act: []devissuer.Actor{{Subject: "agent-1", ClientID: "bot"}, {Subject: "orchestrator"}}, IssuedAt: iat})
	want := &pep.Caller{Subject: "alice", ClientID: "app", Scopes: []string{"qr:generate", "openid"},
		Act: []pep.Actor{{Subject: "agent-1", ClientID: "bot"}, {Subject: "orchestrator"}}, Grant: "user", Issuer: e.Issuer.URL, ExpiresAt: exp}
	noScope := e.Bearer(t, devissuer.MintOptions{Subject: "svc", ClientID: "svc", IssuedAt: iat})
	wantNoScope := &pep.Caller{Subject: "svc", ClientID: "svc", Scopes: []string{}, Grant: "client_credentials", Issuer: e.Issuer.URL, ExpiresAt: exp}
	tests := []struct {
		name string
		req  *pep.Request
		want *pep.Caller
	}{
		{"allowed call", callRequest(raw, "generate_qr_url"), want},
		{"allowed public call", callRequest(raw, "lookup_product"), want},
		{"list request phase", &pep.Request{Resource: resource, Authorization: raw, Message: listMsg("tools/list")}, want},
		{"filtered list", &pep.Request{Resource: resource, Authorization: raw, Message: listMsg("tools/list"), Result: json.RawMessage(listMethods[0].result)}, want},
		{"lifecycle", &pep.Request{Resource: resource, Authorization: raw, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)}, want},
		{"GET", &pep.Request{Resource: resource, Authorization: raw, HTTPMethod: pep.HTTPMethodGet}, want},
		{"token without scopes", callRequest(noScope, "lookup_product"), wantNoScope},
		{"missing scope (403)", callRequest(noScope, "generate_qr_url"), nil},
		{"hidden tool", callRequest(raw, "drop_database"), nil},
		{"anonymous", callRequest("", "lookup_product"), nil},
		{"invalid params", &pep.Request{Resource: resource, Authorization: raw, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := decideOne(t, e, log, tc.req)
			if !reflect.DeepEqual(r.Caller, tc.want) {
				t.Fatalf("caller %+v, want %+v (answer %+v)", r.Caller, tc.want, r)
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if tok := strings.TrimPrefix(tc.req.Authorization, "Bearer "); tok != "" && strings.Contains(string(out), tok) {
				t.Fatal("the answer carries the token")
			}
			if (tc.want != nil) != strings.Contains(string(out), `"caller":{`) {
				t.Fatalf("JSON %s", out)
			}
		})
	}
}

// An allowed decision turned into a deny because its audit event could not
// be recorded names no caller.
func TestCallerDroppedWhenUnaudited(t *testing.T) {
	fail := failingAuditor{}
	e := coretest.New(t, coretest.Options{Auditor: fail, Core: func(o *core.Options) { o.DenyUnaudited = true }})
	r, err := e.Service.Decide(context.Background(), callRequest(e.Bearer(t, devissuer.MintOptions{}), "lookup_product"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Allow || r.HTTPStatus != 503 || r.Caller != nil {
		t.Fatalf("%+v", r)
	}
}

type failingAuditor struct{}

func (failingAuditor) Record(context.Context, *auditsink.Event) error {
	return errors.New("audit down")
}

// Streamable HTTP GET and DELETE carry no JSON-RPC message: the caller is
// authenticated for the resource, and the policy is not consulted.
func TestTransportRequests(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	valid := e.Bearer(t, devissuer.MintOptions{ClientID: "app"})
	expired := e.Bearer(t, devissuer.MintOptions{TTL: -time.Hour})
	tests := []struct {
		name    string
		authz   string
		allow   bool
		status  int
		outcome string
	}{
		{"anonymous", "", true, 200, pep.OutcomeAllow},
		{"valid token", valid, true, 200, pep.OutcomeAllow},
		{"expired token", expired, false, 401, pep.OutcomeChallenge},
		{"malformed header", "Bearer a b", false, 401, pep.OutcomeChallenge},
	}
	for _, method := range []string{pep.HTTPMethodGet, pep.HTTPMethodDelete, pep.HTTPMethodPost} {
		for _, tc := range tests {
			t.Run(method+"/"+tc.name, func(t *testing.T) {
				for _, msg := range []json.RawMessage{nil, json.RawMessage(`null`)} {
					r, ev := decideOne(t, e, log, &pep.Request{Resource: resource, Authorization: tc.authz, Message: msg, HTTPMethod: method})
					if r.Allow != tc.allow || r.HTTPStatus != tc.status || r.Outcome != tc.outcome || (r.Caller != nil) != (tc.authz == valid) {
						t.Fatalf("%+v", r)
					}
					if r.PolicyRevision != "" || r.Result != nil || r.JSONRPCError != nil || r.ToolResult != nil || len(r.RequiredScopes) != 0 {
						t.Fatalf("%+v", r)
					}
					if !tc.allow && !strings.HasPrefix(r.WWWAuthenticate, `Bearer error="invalid_token"`) {
						t.Fatalf("challenge %q", r.WWWAuthenticate)
					}
					if ev.Method != "http/"+method || ev.Target != "" || ev.JSONRPCID != nil || ev.PEP != "pep-a" {
						t.Fatalf("audit event %+v", ev)
					}
					if subj := ev.NATSSubject("mcp.audit"); subj != "mcp.audit."+coretest.ResourceKey+".http/"+method+"."+r.Outcome {
						t.Fatalf("subject %s", subj)
					}
					if tc.authz == valid && (ev.Subject != "alice" || ev.ClientID != "app" || ev.TokenFingerprint == "") {
						t.Fatalf("audit event %+v", ev)
					}
				}
			})
		}
	}
}

func TestTransportRequestErrors(t *testing.T) {
	s, _ := newService(t)
	tests := []struct {
		name string
		req  *pep.Request
		code string
	}{
		{"PUT", &pep.Request{Resource: resource, HTTPMethod: "PUT"}, "invalid_request"},
		{"lower case", &pep.Request{Resource: resource, HTTPMethod: "get"}, "invalid_request"},
		{"PUT", &pep.Request{Resource: resource, HTTPMethod: "PUT"}, "invalid_request"},
		{"with a message", &pep.Request{Resource: resource, HTTPMethod: "GET", Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)}, "invalid_request"},
		{"with an empty object", &pep.Request{Resource: resource, HTTPMethod: "DELETE", Message: json.RawMessage(`{}`)}, "invalid_request"},
		{"unknown resource", &pep.Request{Resource: "https://x", HTTPMethod: "GET"}, "unknown_resource"},
		{"no resource", &pep.Request{HTTPMethod: "GET"}, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Decide(context.Background(), tc.req, "")
			var re *pep.RequestError
			if !errors.As(err, &re) || re.Code != tc.code || re.Status != 400 || re.Description == "" {
				t.Fatalf("err = %#v, want %s", err, tc.code)
			}
		})
	}
}

// When the issuer's keys cannot be fetched, a list request phase and a
// transport request are unavailable (503), not challenged.
func TestKeysUnavailableNewRequests(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer down.Close()
	e, log := auditedEnv(t, coretest.Options{JWKSURI: down.URL + "/jwks.json", TokenCacheSize: -1})
	tok := e.Bearer(t, devissuer.MintOptions{})
	for _, req := range []*pep.Request{
		{Resource: resource, Authorization: tok, Message: listMsg("tools/list")},
		{Resource: resource, Authorization: tok, HTTPMethod: pep.HTTPMethodGet},
	} {
		r, _ := decideOne(t, e, log, req)
		if r.Allow || r.HTTPStatus != 503 || r.WWWAuthenticate != "" || !strings.Contains(r.Reason, "signing keys") || r.Caller != nil {
			t.Fatalf("%+v", r)
		}
		if !slices.Contains([]string{pep.OutcomeDeny}, r.Outcome) {
			t.Fatalf("outcome %s", r.Outcome)
		}
	}
}
