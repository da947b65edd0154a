package opabench_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
	opabench "github.com/mcp-pdp/pdp/bench/opa"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// TestSameDecisions checks that the OPA policy of the load benchmark answers
// every benchmark request as mcp-pdp does: same allow, status, scopes,
// reason, challenge and, for lists, the same kept tools with the same
// securitySchemes. Otherwise the benchmark would compare different work.
func TestSameDecisions(t *testing.T) {
	ctx := context.Background()
	iss, err := devissuer.New(fixture.Issuer, "RS256")
	if err != nil {
		t.Fatal(err)
	}
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(iss.JWKS())
	}))
	defer jwksSrv.Close()
	const n = 100

	// mcp-pdp, wired as in cmd/pdp (no audit).
	dir := t.TempDir()
	if err := fixture.WritePDPPolicy(dir, n); err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Load(ctx, decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Config{Resource: fixture.Resource, Issuer: fixture.Issuer, JWKSURI: jwksSrv.URL},
		token.NewKeySets(token.KeySetsConfig{}), token.NewCache(100), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := core.New(core.Options{
		Engine: decision.NewEngine(pol),
		Resources: []*core.Resource{{URI: fixture.Resource, Key: "k", Verifier: v,
			Challenge: stepup.Resource{URI: fixture.Resource, MetadataURL: fixture.ResourceMetadata, Strategy: stepup.Operation}}},
	})
	if err != nil {
		t.Fatal(err)
	}

	// OPA, with the same data.
	data, err := fixture.Data(n)
	if err != nil {
		t.Fatal(err)
	}
	data["benchcfg"] = map[string]any{"jwks": string(iss.JWKS()), "issuer": fixture.Issuer, "resource_metadata": fixture.ResourceMetadata}
	pq, err := rego.New(
		rego.Query("data.mcp.bench.decision"),
		rego.Module("policy.rego", string(opabench.Policy)),
		rego.Store(inmem.NewFromObject(data)),
	).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}

	session, err := fixture.SessionToken(iss)
	if err != nil {
		t.Fatal(err)
	}
	noScope, err := iss.Mint(devissuer.MintOptions{Subject: "bob", ClientID: "claude", Audience: []string{fixture.Resource}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := iss.Mint(devissuer.MintOptions{Subject: "bob", Audience: []string{fixture.Resource}, Scopes: []string{fixture.Scope}, TTL: -time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]fixture.Body{
		"session call":          fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(session), true),
		"anonymous call":        fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Anonymous(), true),
		"anonymous public call": fixture.CallBody(fixture.PDP, "lookup_product", fixture.Anonymous(), false),
		"insufficient scope":    fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(noScope), false),
		"restricted tool":       fixture.CallBody(fixture.PDP, fixture.ToolName(19), fixture.Same(session), false),
		"unknown tool":          fixture.CallBody(fixture.PDP, "no_such_tool", fixture.Same(session), false),
		"expired token":         fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(expired), false),
		"session list":          fixture.ListBody(fixture.PDP, n, fixture.Same(session), true),
		"anonymous list":        fixture.ListBody(fixture.PDP, 30, fixture.Anonymous(), false),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			raw := body(nil)
			var req pep.Request
			if err := json.Unmarshal(raw, &req); err != nil {
				t.Fatal(err)
			}
			want, err := svc.Decide(ctx, &req, "")
			if err != nil {
				t.Fatal(err)
			}
			var input any
			if err := json.Unmarshal(raw, &input); err != nil {
				t.Fatal(err)
			}
			rs, err := pq.Eval(ctx, rego.EvalInput(input))
			if err != nil || len(rs) != 1 {
				t.Fatalf("opa: %v %v", rs, err)
			}
			got := rs[0].Expressions[0].Value.(map[string]any)
			check := func(field string, w, g any) {
				t.Helper()
				wb, _ := json.Marshal(w)
				gb, _ := json.Marshal(g)
				if string(wb) != string(gb) {
					t.Errorf("%s: mcp-pdp %s, OPA %s", field, wb, gb)
				}
			}
			check("allow", want.Allow, got["allow"])
			check("http_status", want.HTTPStatus, got["http_status"])
			check("required_scopes", want.RequiredScopes, got["required_scopes"])
			check("missing_scopes", want.MissingScopes, got["missing_scopes"])
			check("outcome", want.Outcome, got["outcome"])
			if want.Outcome != pep.OutcomeChallenge || req.Authorization == "" {
				// Token errors: mcp-pdp tells the verifier's reason, OPA cannot.
				check("reason", want.Reason, got["reason"])
				check("www_authenticate", want.WWWAuthenticate, orEmpty(got["www_authenticate"]))
			}
			if want.JSONRPCError != nil {
				check("jsonrpc_error", want.JSONRPCError, got["jsonrpc_error"])
			}
			if want.ToolResult != nil {
				check("tool_result.isError", want.ToolResult.IsError, got["tool_result"].(map[string]any)["isError"])
			}
			if want.Result != nil {
				var w struct{ Tools []map[string]any }
				if err := json.Unmarshal(want.Result, &w); err != nil {
					t.Fatal(err)
				}
				g := got["result"].(map[string]any)["tools"].([]any)
				if len(w.Tools) != len(g) {
					t.Fatalf("kept tools: mcp-pdp %d, OPA %d", len(w.Tools), len(g))
				}
				for i := range g {
					gt := g[i].(map[string]any)
					if !reflect.DeepEqual(normalize(w.Tools[i]), normalize(gt)) {
						t.Errorf("tool %d: mcp-pdp %v\nOPA %v", i, w.Tools[i], gt)
					}
				}
				if want := fixture.VisibleInList(len(g)); req.Authorization != "" && len(g) != fixture.VisibleInList(n) {
					t.Errorf("kept %d tools, want %d", len(g), want)
				}
			}
		})
	}
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}

// normalize round-trips through JSON so that both sides compare as generic values.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}
