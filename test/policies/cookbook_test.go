package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/decision"
)

const resource = "https://mcp.example.com/mcp"

// enableSnippet extracts the "Enable it in your policy:" lines from a
// recipe's METADATA: the documented wiring is the wiring under test.
var enableSnippet = regexp.MustCompile(`(?s)Enable it in your policy[^\n]*:\n((?:#     [^\n]*\n)+)`)

// recipePolicy builds a policy directory the way an author would: the
// default policy, the recipe file, the wiring snippet from the recipe's
// documentation, and the recipe's data.
func recipePolicy(t *testing.T, recipe, data string) *decision.Policy {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, "../../policies/authz.rego", filepath.Join(dir, "authz.rego"))
	copyFile(t, "../../policies/authz_lists.rego", filepath.Join(dir, "authz_lists.rego"))
	copyFile(t, "../../policies/lib/scopes.rego", filepath.Join(dir, "lib", "scopes.rego"))
	src := filepath.Join("cookbook", recipe+".rego")
	copyFile(t, src, filepath.Join(dir, "cookbook", recipe+".rego"))
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	m := enableSnippet.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("%s documents no \"Enable it in your policy:\" snippet", src)
	}
	var wiring strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(m[1]), "\n"), "\n") {
		wiring.WriteString(strings.TrimPrefix(line, "#     "))
		wiring.WriteString("\n")
	}
	testkit.WriteFile(t, filepath.Join(dir, "enable_"+recipe+".rego"), wiring.String())
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), data)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatalf("the %s recipe does not load as a policy: %v", recipe, err)
	}
	if w := p.Warnings(); len(w) > 0 {
		t.Fatalf("the %s recipe's data has warnings: %v", recipe, w)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, to, string(b))
}

type caller struct {
	sub, client, grant string
	scopes             []string
	claims             map[string]any
}

func (c *caller) token(t *testing.T) *decision.Token {
	if c == nil {
		return nil
	}
	claims := c.claims
	if claims == nil {
		claims = map[string]any{}
	}
	tok, err := decision.NewToken(c.sub, c.client, "https://idp.example.com", c.grant, c.scopes, nil, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func toolCall(t *testing.T, name string, args map[string]any, c *caller) *decision.Input {
	in := &decision.Input{Resource: resource, Method: "tools/call", Class: decision.ClassifyMethod("tools/call"), Target: name, Token: c.token(t)}
	if args != nil {
		v, err := ast.InterfaceToValue(args)
		if err != nil {
			t.Fatal(err)
		}
		in.Arguments = v
	}
	return in
}

func toolList(t *testing.T, names []string, c *caller) *decision.Input {
	in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list"), Token: c.token(t)}
	for _, n := range names {
		in.Items = append(in.Items, decision.Item{Name: n})
	}
	return in
}

// withMeta gives a call the tool's _meta as a tools/list said it.
func withMeta(in *decision.Input, meta string) *decision.Input {
	in.TargetMeta = &decision.ToolMeta{Meta: []byte(meta)}
	return in
}

// Every cookbook recipe, enabled exactly as its documentation says, is a
// policy the PDP loads and serves.
func TestCookbookRecipesServe(t *testing.T) {
	user := func(scopes ...string) *caller {
		return &caller{sub: "alice", client: "desktop-app", grant: "user", scopes: scopes}
	}
	agent := func(scopes ...string) *caller {
		return &caller{sub: "bot", client: "bot", grant: "client_credentials", scopes: scopes}
	}
	catalog := func(tools string) string {
		return "mcp:\n  default_catalog: demo\n  catalogs:\n    demo:\n      tools:\n" + tools
	}
	type check struct {
		in     *decision.Input
		allow  bool
		reason string // "" = any
		items  []string
		quota  int // the decision's quota limit, when > 0
	}
	tests := []struct {
		recipe, data  string
		checks        []check
		deterministic bool
	}{
		{"roles", catalog("        deploy: {access: step_up, scopes: [deploy], realm_roles: [sre]}\n"), []check{
			{in: toolCall(t, "deploy", nil, &caller{sub: "a", client: "c", grant: "user", scopes: []string{"deploy"}, claims: map[string]any{"realm_access": map[string]any{"roles": []any{"sre"}}}}), allow: true},
			{in: toolCall(t, "deploy", nil, user("deploy")), reason: "requires one of the roles: sre"},
		}, true},
		{"arguments", catalog("        transfer: {access: step_up, scopes: [pay], max: {amount: 100}}\n        mail: {access: step_up, scopes: [pay], allowed_domains: {to: [example.com]}}\n"), []check{
			{in: toolCall(t, "transfer", map[string]any{"amount": 100}, user("pay")), allow: true},
			{in: toolCall(t, "transfer", map[string]any{"amount": 101}, user("pay")), reason: "amount must be at most 100"},
			{in: toolCall(t, "mail", map[string]any{"to": "x@evil.io"}, user("pay")), reason: "to: x@evil.io is not in an allowed domain"},
		}, true},
		{"clients", catalog("        ping: {access: public}\n") + "  resources:\n    \"" + resource + "\": {catalog: demo, clients: [desktop-app]}\n", []check{
			{in: toolCall(t, "ping", nil, user()), allow: true},
			{in: toolCall(t, "ping", nil, &caller{sub: "m", client: "other", grant: "user"}), reason: "client other may not use this server"},
			{in: toolList(t, []string{"ping"}, &caller{sub: "m", client: "other", grant: "user"}), allow: true, items: []string{}},
		}, true},
		{"tenant", catalog("        ping: {access: public}\n") + "  resources:\n    \"" + resource + "\": {catalog: demo, tenant: acme}\n", []check{
			{in: toolCall(t, "ping", nil, &caller{sub: "a", client: "c", grant: "user", claims: map[string]any{"tenant": "acme"}}), allow: true},
			{in: toolCall(t, "ping", nil, &caller{sub: "a", client: "c", grant: "user", claims: map[string]any{"tenant": "globex"}}), reason: "the token is for another tenant"},
		}, true},
		{"plans", catalog("        generate_qr_url: {access: step_up, scopes: [qr:generate], quota: {limit: 10, per: day, by: sub}}\n") +
			"plans:\n  pro: {generate_qr_url: 1000}\n", []check{
			{in: toolCall(t, "generate_qr_url", nil, &caller{sub: "a", client: "c", grant: "user", scopes: []string{"qr:generate"}, claims: map[string]any{"plan": "pro"}}), allow: true, quota: 1000},
			{in: toolCall(t, "generate_qr_url", nil, &caller{sub: "b", client: "c", grant: "user", scopes: []string{"qr:generate"}}), allow: true, quota: 10},
		}, true},
		{"hours", catalog("        always: {access: public, hours: {from: 0, to: 24}}\n        never: {access: public, hours: {from: 5, to: 5}}\n"), []check{
			{in: toolCall(t, "always", nil, nil), allow: true},
			{in: toolCall(t, "never", nil, nil), reason: "never may only be called from 05:00 to 05:00 UTC"},
		}, false},
		{"agents", catalog("        search: {access: public, read_only: true}\n        delete: {access: step_up, scopes: [write]}\n"), []check{
			{in: toolCall(t, "search", nil, agent()), allow: true},
			{in: toolCall(t, "delete", nil, agent("write")), reason: "agents (client credentials) may only use read-only tools"},
			{in: toolCall(t, "delete", nil, user("write")), allow: true},
			{in: toolList(t, []string{"search", "delete"}, agent("write")), allow: true, items: []string{"search"}},
		}, true},
		{"classification", catalog("        lookup: {access: public}\n        export: {access: public, _meta: {\"com.example/classification\": restricted}}\n"), []check{
			{in: withMeta(toolCall(t, "lookup", nil, &caller{sub: "a", client: "c", grant: "user", claims: map[string]any{"clearance": "internal"}}), `{"com.example/classification":"internal"}`), allow: true},
			{in: withMeta(toolCall(t, "lookup", nil, &caller{sub: "a", client: "c", grant: "user", claims: map[string]any{"clearance": "internal"}}), `{"com.example/classification":"confidential"}`), reason: "lookup is classified confidential; the token's clearance is internal"},
			{in: withMeta(toolCall(t, "export", nil, &caller{sub: "a", client: "c", grant: "user", claims: map[string]any{"clearance": "confidential"}}), `{"com.example/classification":"public"}`), reason: "export is classified restricted; the token's clearance is confidential"},
		}, true},
		{"revocation", catalog("        ping: {access: public}\n") + "  revoked:\n    clients: {}\n    subjects: {}\n    clients_before: {desktop-app: \"2026-03-01T12:00:00Z\"}\n    tokens: {stolen: \"reported\"}\n", []check{
			{in: toolCall(t, "ping", nil, &caller{sub: "a", client: "desktop-app", grant: "user", claims: map[string]any{"iat": 1893456000}}), allow: true}, // 2030
			{in: toolCall(t, "ping", nil, &caller{sub: "a", client: "desktop-app", grant: "user", claims: map[string]any{"iat": 1767225600}}), reason: "tokens of client desktop-app issued before 2026-03-01T12:00:00Z are revoked"},
			{in: toolCall(t, "ping", nil, &caller{sub: "a", client: "other", grant: "user", claims: map[string]any{"jti": "stolen"}}), reason: "this token is revoked"},
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.recipe, func(t *testing.T) {
			p := recipePolicy(t, tc.recipe, tc.data)
			// The decision cache is on (default size) exactly for policies
			// that call no non-deterministic built-in.
			if cached := p.CacheStats().Enabled; cached != tc.deterministic {
				t.Fatalf("cache enabled = %v, want %v (a policy that reads the clock must not be cached)", cached, tc.deterministic)
			}
			for i, c := range tc.checks {
				res, err := p.Decide(context.Background(), c.in)
				if err != nil {
					t.Fatalf("check %d: %v", i, err)
				}
				if res.Allow != c.allow || (c.reason != "" && res.Reason != c.reason) {
					t.Fatalf("check %d: allow=%v reason=%q, want allow=%v reason=%q", i, res.Allow, res.Reason, c.allow, c.reason)
				}
				if c.quota > 0 && (res.Quota == nil || res.Quota.Limit != c.quota) {
					t.Fatalf("check %d: quota %+v, want limit %d", i, res.Quota, c.quota)
				}
				if c.items != nil {
					var got []string
					for j, it := range c.in.Items {
						if _, ok := res.Item(j); ok {
							got = append(got, it.Name)
						}
					}
					if strings.Join(got, ",") != strings.Join(c.items, ",") {
						t.Fatalf("check %d: visible items %v, want %v", i, got, c.items)
					}
				}
			}
		})
	}
}
