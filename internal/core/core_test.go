package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/policies"
)

// customPolicy is the default policy plus an argument limit, with a
// step-up tool "transfer" needing scope "pay".
func customPolicy(t *testing.T) *decision.Policy {
	t.Helper()
	files := map[string]string{
		"data.yaml": `mcp:
  default_catalog: bank
  catalogs:
    bank:
      tools:
        transfer: {access: step_up, scopes: [pay]}
`,
		"limits.rego": `package mcp.authz

deny contains "amount exceeds the limit of 100" if input.tool.arguments.amount > 100
`,
	}
	// Every Rego file of the default policy; its data.yaml is replaced.
	err := fs.WalkDir(policies.FS, ".", func(f string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || path.Ext(f) != ".rego" {
			return err
		}
		b, err := policies.FS.ReadFile(f)
		files[f] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return coretest.PolicyFiles(t, files)
}

func transfer(authz string, amount int) *pep.Request {
	msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": "transfer", "arguments": map[string]any{"amount": amount}}})
	return &pep.Request{Resource: resource, Authorization: authz, Message: msg}
}

// An explicit deny is final: no step-up challenge even when scopes are
// missing too, and the answer is an in-band tool error.
func TestExplicitDenyIsNotAChallenge(t *testing.T) {
	e := coretest.New(t, coretest.Options{Policy: customPolicy(t), TokenCacheSize: -1})
	s, iss := e.Service, e.Issuer
	mint := func(scopes ...string) string {
		return "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "u", ClientID: "c", Audience: []string{resource}, Scopes: scopes})
	}
	tests := []struct {
		name    string
		req     *pep.Request
		allow   bool
		status  int
		outcome string
		header  bool
	}{
		{"within limit with scope", transfer(mint("pay"), 50), true, 200, pep.OutcomeAllow, false},
		{"over limit with scope", transfer(mint("pay"), 500), false, 200, pep.OutcomeDeny, false},
		{"over limit without scope", transfer(mint(), 500), false, 200, pep.OutcomeDeny, false},
		{"within limit without scope", transfer(mint(), 50), false, 403, pep.OutcomeChallenge, true},
		{"anonymous within limit", transfer("", 50), false, 401, pep.OutcomeChallenge, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Decide(context.Background(), tc.req, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Allow != tc.allow || r.HTTPStatus != tc.status || r.Outcome != tc.outcome || (r.WWWAuthenticate != "") != tc.header {
				t.Fatalf("%+v", r)
			}
			if tc.outcome == pep.OutcomeDeny && (r.ToolResult == nil || !strings.Contains(r.ToolResult.Content[0].Text, "limit of 100") || r.ToolResult.Meta != nil) {
				t.Fatalf("deny tool_result = %+v", r.ToolResult)
			}
		})
	}
}

// When the issuer's keys cannot be fetched the caller is not at fault: the
// decision is a deny with 503, not a 401 that would send the client to
// re-authorize for nothing.
func TestKeysUnavailable(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer down.Close()
	e := coretest.New(t, coretest.Options{JWKSURI: down.URL + "/jwks.json", TokenCacheSize: -1})
	s, iss := e.Service, e.Issuer
	tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "u", Audience: []string{resource}})
	r, err := s.Decide(context.Background(), callRequest(tok, "lookup_product"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Allow || r.HTTPStatus != 503 || r.WWWAuthenticate != "" || !strings.Contains(r.Reason, "signing keys") {
		t.Fatalf("%+v", r)
	}
}

func TestRequestErrors(t *testing.T) {
	s, _ := newService(t)
	tests := []struct {
		name string
		req  *pep.Request
		code string
	}{
		{"no resource", &pep.Request{Message: json.RawMessage(`{}`)}, "invalid_request"},
		{"unknown resource", &pep.Request{Resource: "https://x", Message: json.RawMessage(`{}`)}, "unknown_resource"},
		{"null message", &pep.Request{Resource: resource, Message: json.RawMessage(`null`)}, "invalid_request"},
		{"string message", &pep.Request{Resource: resource, Message: json.RawMessage(`"x"`)}, "invalid_message"},
		{"method not a string", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","method":5}`)}, "invalid_message"},
		{"jsonrpc 1.0", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"1.0","method":"ping"}`)}, "invalid_message"},
		// A key that encoding/json takes for a member up to case but a
		// server reading keys exactly does not: the decided message would
		// not be the served one (a public tool decided, a protected run).
		{"Params beside params", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin"},"Params":{"name":"echo"}}`)}, "invalid_message"},
		{"NAME beside name", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin","NAME":"echo"}}`)}, "invalid_message"},
		{"Method alone", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"echo"}}`)}, "invalid_message"},
		{"Arguments", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{}}}`)}, "invalid_message"},
		{"escaped long s", &pep.Request{Resource: resource, Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","argument\u017f":{}}}`)}, "invalid_message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Decide(context.Background(), tc.req, "")
			var re *pep.RequestError
			if !errors.As(err, &re) || re.Code != tc.code || re.Status != 400 || strings.Contains(re.Description, "core.") {
				t.Fatalf("err = %#v, want %s", err, tc.code)
			}
		})
	}
}

func TestInvalidParamsAreInBand(t *testing.T) {
	s, _ := newService(t)
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":[1]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`,
	} {
		r, err := s.Decide(context.Background(), &pep.Request{Resource: resource, Message: json.RawMessage(msg)}, "")
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		if r.Allow || r.JSONRPCError == nil || r.JSONRPCError.Code != stepup.CodeInvalidParams {
			t.Fatalf("%s: %+v", msg, r)
		}
	}
}
