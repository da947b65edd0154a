package decision_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/catalog"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/policies"
)

const resource = "http://127.0.0.1:8181/mcp"

func loadDefault(t testing.TB) *decision.Policy {
	t.Helper()
	p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS})
	if err != nil {
		t.Fatalf("load default policy: %v", err)
	}
	return p
}

func mustToken(t testing.TB, sub, client string, scopes []string, claims map[string]any) *decision.Token {
	t.Helper()
	if claims == nil {
		claims = map[string]any{}
	}
	tok, err := decision.NewToken(sub, client, "https://issuer.example", "user", scopes, nil, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// visibleOf is what a list result shows of in.Items, by name, read the way
// the list filter reads it (Result.Item, in the order of in.Items).
func visibleOf(res *decision.Result, in *decision.Input) map[string]decision.ItemDecision {
	out := map[string]decision.ItemDecision{}
	for i, it := range in.Items {
		if d, ok := res.Item(i); ok {
			out[it.Name] = d
		}
	}
	return out
}

func call(method, name string, tok *decision.Token) *decision.Input {
	return &decision.Input{Resource: resource, Method: method, Class: decision.ClassifyMethod(method), Target: name, Token: tok}
}

func TestDefaultPolicyCalls(t *testing.T) {
	p := loadDefault(t)
	withQR := mustToken(t, "alice", "demo", []string{"qr:generate"}, nil)
	noScopes := mustToken(t, "bob", "demo", nil, nil)
	admin := mustToken(t, "carol", "demo", []string{"qr:admin"}, nil)
	tests := []struct {
		name        string
		in          *decision.Input
		allow       bool
		visible     bool
		required    []string
		missing     []string
		reasonMatch string
	}{
		{"anonymous public tool", call("tools/call", "lookup_product", nil), true, true, []string{}, []string{}, "public"},
		{"anonymous step-up tool", call("tools/call", "generate_qr_url", nil), false, true, []string{"qr:generate"}, []string{"qr:generate"}, "authorization required"},
		{"token without scope", call("tools/call", "generate_qr_url", noScopes), false, true, []string{"qr:generate"}, []string{"qr:generate"}, "missing scopes: qr:generate"},
		{"token with scope", call("tools/call", "generate_qr_url", withQR), true, true, []string{"qr:generate"}, []string{}, "step_up"},
		{"scope via hierarchy", call("tools/call", "generate_qr_url", admin), true, true, []string{"qr:generate"}, []string{}, "step_up"},
		{"unknown tool hidden", call("tools/call", "drop_tables", withQR), false, false, []string{}, []string{}, "hidden"},
		{"lifecycle", call("initialize", "", nil), true, true, []string{}, []string{}, "lifecycle"},
		{"notification", call("notifications/initialized", "", nil), true, true, []string{}, []string{}, "lifecycle"},
		{"listed other method", call("completion/complete", "", nil), true, true, []string{}, []string{}, "public"},
		{"unlisted other method", call("sampling/createMessage", "", withQR), false, false, []string{}, []string{}, "hidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Decide(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allow != tc.allow || res.Visible != tc.visible {
				t.Fatalf("allow=%v visible=%v, want %v %v (reason %q)", res.Allow, res.Visible, tc.allow, tc.visible, res.Reason)
			}
			if !reflect.DeepEqual(res.RequiredScopes, tc.required) {
				t.Errorf("required = %#v, want %#v", res.RequiredScopes, tc.required)
			}
			if !reflect.DeepEqual(res.MissingScopes, tc.missing) {
				t.Errorf("missing = %#v, want %#v", res.MissingScopes, tc.missing)
			}
			if !strings.Contains(res.Reason, tc.reasonMatch) {
				t.Errorf("reason = %q, want it to contain %q", res.Reason, tc.reasonMatch)
			}
			if !strings.HasPrefix(res.Revision, "sha256:") {
				t.Errorf("revision = %q", res.Revision)
			}
		})
	}
}

func TestDefaultPolicyListOneEvaluation(t *testing.T) {
	p := loadDefault(t)
	in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
	for _, n := range []string{"ping", "generate_qr_url", "secret_tool"} {
		in.Items = append(in.Items, decision.Item{Name: n})
	}
	res, err := p.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]decision.ItemDecision{
		"ping":            {Access: "public"},
		"generate_qr_url": {Access: "step_up", Scopes: []string{"qr:generate"}},
	}
	if got := visibleOf(res, in); !reflect.DeepEqual(got, want) {
		t.Fatalf("items = %#v, want %#v", got, want)
	}
	// By name, as tools read it.
	if got := res.VisibleItems("ping", "generate_qr_url", "secret_tool", "not_listed_anywhere"); !reflect.DeepEqual(got, want) {
		t.Fatalf("VisibleItems = %#v, want %#v", got, want)
	}
}

// A policy directory with a custom catalog, restricted tools, roles, wildcards,
// argument conditions and revocation: every branch of the default policy.
func TestCustomCatalog(t *testing.T) {
	dir := t.TempDir()
	copyDefault(t, dir)
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), `
mcp:
  default_catalog: ops
  resources: {}
  revoked: {clients: {evil: "key leaked"}, subjects: {}}
  catalogs:
    ops:
      unknown: {access: public}
      wildcard_scopes: ["mcp:tools:*"]
      scope_implies:
        "repo:write": ["repo:read"]
      tools:
        read_repo: {access: restricted, scopes: ["repo:read"]}
        deploy: {access: restricted, scopes: ["mcp:tools:deploy"], roles: ["sre"]}
        transfer: {access: step_up, scopes: ["pay"]}
        beta: {access: step_up, clients: ["beta-client"]}
      resources:
        "file:///public/*": {access: public}
        "file:///public/secret/*": {access: deny}
`)
	testkit.WriteFile(t, filepath.Join(dir, "limits.rego"), `package mcp.authz

deny contains "amount exceeds 100" if {
	input.tool.name == "transfer"
	input.tool.arguments.amount > 100
}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	writer := mustToken(t, "u", "c", []string{"repo:write"}, nil)
	wild := mustToken(t, "u", "c", []string{"mcp:tools:*"}, map[string]any{"groups": []any{"sre"}})
	wildNoRole := mustToken(t, "u", "c", []string{"mcp:tools:*"}, map[string]any{"roles": "dev ops"})
	payer := mustToken(t, "u", "c", []string{"pay"}, nil)
	evil := mustToken(t, "u", "evil", []string{"pay"}, nil)
	beta := mustToken(t, "u", "beta-client", nil, nil)
	args := func(amount int) ast.Value {
		return ast.NewObject(ast.Item(ast.StringTerm("amount"), ast.IntNumberTerm(amount)))
	}
	tests := []struct {
		name           string
		in             *decision.Input
		allow, visible bool
	}{
		{"restricted hidden from anonymous", call("tools/call", "read_repo", nil), false, false},
		{"restricted via implied scope", call("tools/call", "read_repo", writer), true, true},
		{"wildcard scope and role", call("tools/call", "deploy", wild), true, true},
		{"wildcard scope without role", call("tools/call", "deploy", wildNoRole), false, false},
		{"token wildcard not listed in the catalog", call("tools/call", "read_repo", mustToken(t, "u", "c", []string{"*"}, nil)), false, false},
		{"token wildcard of another prefix", call("tools/call", "read_repo", mustToken(t, "u", "c", []string{"repo:*"}, nil)), false, false},
		{"unknown is public here", call("tools/call", "whatever", nil), true, true},
		{"argument within limit", withArgs(call("tools/call", "transfer", payer), args(50)), true, true},
		{"argument over limit", withArgs(call("tools/call", "transfer", payer), args(500)), false, true},
		{"revoked client", withArgs(call("tools/call", "transfer", evil), args(5)), false, true},
		{"client allow-list: other client", call("tools/call", "beta", payer), false, false},
		{"client allow-list: listed client", call("tools/call", "beta", beta), true, true},
		{"resource prefix", call("resources/read", "file:///public/a.txt", nil), true, true},
		{"longest prefix wins", call("resources/read", "file:///public/secret/k", nil), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Decide(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allow != tc.allow || res.Visible != tc.visible {
				t.Fatalf("allow=%v visible=%v, want %v %v (reason %q)", res.Allow, res.Visible, tc.allow, tc.visible, res.Reason)
			}
		})
	}
	res, err := p.Decide(context.Background(), withArgs(call("tools/call", "transfer", payer), args(500)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != "amount exceeds 100" {
		t.Errorf("reason = %q", res.Reason)
	}
}

func withArgs(in *decision.Input, v ast.Value) *decision.Input { in.Arguments = v; return in }

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"syntax error names file and line", "authz.rego", "package mcp.authz\n\ndecision := {\n", "authz.rego:4: rego_parse_error"},
		{"no decision rule", "authz.rego", "package mcp.authz\n\nallow := true\n", "no rule defines data.mcp.authz.decision"},
		{"bad data", "data.json", "{not json", "data.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.WriteFile(t, filepath.Join(dir, tc.file), tc.content)
			if tc.file != "authz.rego" {
				testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\ndecision := {\"allow\": true}\n")
			}
			_, err := decision.Load(context.Background(), decision.Source{Path: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEvaluationErrorsFailClosed(t *testing.T) {
	tests := []struct {
		name, policy string
		want         string
	}{
		{"undefined decision", "package mcp.authz\n\ndecision := true if false\n", "no decision"},
		{"wrong type", "package mcp.authz\n\ndecision := \"yes\"\n", "want an object"},
		{"allow not boolean", "package mcp.authz\n\ndecision := {\"allow\": \"true\"}\n", "want a boolean"},
		{"remediation not a string", "package mcp.authz\n\ndecision := {\"allow\": false, \"remediation\": true}\n", "field remediation is boolean, want a string"},
		{"remediation unknown", "package mcp.authz\n\ndecision := {\"allow\": false, \"remediation\": \"maybe\"}\n", `field remediation is "maybe", want available, unavailable or undisclosed`},
		{"conflict", "package mcp.authz\n\ndecision := {\"allow\": true} if input.method\ndecision := {\"allow\": false} if input.resource\n", "conflict"},
		{"limits not an object", "package mcp.authz\n\ndecision := {\"allow\": true, \"limits\": [1]}\n", "field limits is array, want an object"},
		{"limits unknown key", "package mcp.authz\n\ndecision := {\"allow\": true, \"limits\": {\"rates\": {}}}\n", "limits.rates: unknown key"},
		{"computed quota out of range", "package mcp.authz\n\ndecision := {\"allow\": true, \"limits\": {\"quota\": {\"limit\": 0, \"per\": \"day\", \"by\": \"sub\"}}}\n", "limits.quota: limit: 0 is not allowed"},
		{"computed rate without by", "package mcp.authz\n\ndecision := {\"allow\": true, \"limits\": {\"rate\": {\"limit\": 5, \"per\": \"1s\"}}}\n", "limits.rate: by: is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), tc.policy)
			p, err := decision.Load(context.Background(), decision.Source{Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			res, err := decision.NewEngine(p).Decide(context.Background(), call("tools/call", "x", nil))
			if err == nil || res != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("res=%v err=%v, want error containing %q", res, err, tc.want)
			}
		})
	}
}

// A policy that writes its own decision object may say whether a refusal
// can be remedied (structured denials).
func TestRemediation(t *testing.T) {
	for _, r := range []string{"available", "unavailable", "undisclosed"} {
		dir := t.TempDir()
		testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\ndecision := {\"allow\": false, \"visible\": true, \"forbidden\": true, \"remediation\": \""+r+"\"}\n")
		p, err := decision.Load(context.Background(), decision.Source{Path: dir})
		if err != nil {
			t.Fatal(err)
		}
		res, err := decision.NewEngine(p).Decide(context.Background(), call("tools/call", "x", nil))
		if err != nil || res.Remediation != r || !res.Forbidden {
			t.Fatalf("%s: %+v %v", r, res, err)
		}
	}
}

// The limits a policy returns (the default policy: the catalog's) are
// read into the Result; a premium plan's larger quota is computed in Rego.
func TestLimits(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), `package mcp.authz

decision := {"allow": true, "limits": {
	"rate": {"limit": 10, "per": "1m", "by": "client"},
	"quota": {"limit": quota, "per": "month", "by": "sub", "time_zone": "America/New_York"},
}}

default quota := 100

quota := 1000 if input.target.name == "premium"
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tool  string
		quota int
	}{{"x", 100}, {"premium", 1000}} {
		res, err := decision.NewEngine(p).Decide(context.Background(), call("tools/call", tc.tool, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantRate := catalog.Rate{Limit: 10, Per: time.Minute, Burst: 10, By: catalog.ByClient}
		wantQuota := catalog.Quota{Limit: tc.quota, Per: "month", By: catalog.BySubject, TimeZone: "America/New_York"}
		if res.Rate == nil || *res.Rate != wantRate || res.Quota == nil || *res.Quota != wantQuota {
			t.Fatalf("%s: rate %+v quota %+v, want %+v %+v", tc.tool, res.Rate, res.Quota, wantRate, wantQuota)
		}
	}
}

func TestEvaluationBudget(t *testing.T) {
	dir := t.TempDir()
	// numbers.range over a huge range: a pathological policy.
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), `package mcp.authz

decision := {"allow": count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := p.Decide(ctx, call("tools/call", "x", nil))
	if err == nil || res != nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("res=%v err=%v, want a stopped evaluation", res, err)
	}
}

func TestNotReady(t *testing.T) {
	if _, err := decision.NewEngine(nil).Decide(context.Background(), call("ping", "", nil)); err != decision.ErrNotReady {
		t.Fatalf("err = %v", err)
	}
}

// copyDefault writes the Rego modules of the default policy (not its data)
// into dir.
func copyDefault(t *testing.T, dir string) {
	t.Helper()
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		if err != nil {
			return err
		}
		testkit.WriteFile(t, filepath.Join(dir, filepath.FromSlash(p)), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// loadModule loads a policy made of one module (authz.rego).
func loadModule(t testing.TB, module string) *decision.Policy {
	t.Helper()
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), module)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadsArguments(t *testing.T) {
	tests := []struct {
		name, module string
		want         bool
	}{
		{"default policy shape", "package mcp.authz\n\ndecision := {\"allow\": input.tool.name == \"x\", \"k\": input.target.kind}\n", false},
		{"tool arguments", "package mcp.authz\n\ndecision := {\"allow\": input.tool.arguments.amount < 5}\n", true},
		{"target arguments", "package mcp.authz\n\ndecision := {\"allow\": count(input.target.arguments) == 0}\n", true},
		{"whole tool", "package mcp.authz\n\ndecision := {\"allow\": true, \"t\": input.tool}\n", true},
		{"whole input", "package mcp.authz\n\ndecision := {\"allow\": true, \"i\": input}\n", true},
		{"dynamic key", "package mcp.authz\n\ndecision := {\"allow\": true} if { some k; input.tool[k] }\n", true},
		{"dynamic top key", "package mcp.authz\n\ndecision := {\"allow\": true} if { some k; input[k] }\n", true},
		{"import", "package mcp.authz\n\nimport input.tool as t\n\ndecision := {\"allow\": t.name == \"x\"}\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := loadModule(t, tc.module)
			if p.ReadsArguments() != tc.want {
				t.Fatalf("ReadsArguments = %v, want %v", p.ReadsArguments(), tc.want)
			}
		})
	}
	if loadDefault(t).ReadsArguments() {
		t.Fatal("the default policy does not read arguments")
	}
}

func TestReadsBudget(t *testing.T) {
	tests := []struct {
		name, module string
		want         bool
	}{
		{"tool only", "package mcp.authz\n\ndecision := {\"allow\": input.tool.name == \"x\"}\n", false},
		{"budget", "package mcp.authz\n\ndecision := {\"allow\": input.budget.quota.remaining > 2}\n", true},
		{"whole input", "package mcp.authz\n\ndecision := {\"allow\": true, \"i\": input}\n", true},
		{"dynamic top key", "package mcp.authz\n\ndecision := {\"allow\": true} if { some k; input[k] }\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := loadModule(t, tc.module).ReadsBudget(); got != tc.want {
				t.Fatalf("ReadsBudget = %v, want %v", got, tc.want)
			}
		})
	}
	if loadDefault(t).ReadsBudget() {
		t.Fatal("the default policy does not read input.budget: the PDP must not look budgets up for it")
	}
}

// A policy that reads arguments must see them, also through the cache.
func TestArgumentsReachPolicyThroughCache(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\ndecision := {\"allow\": input.tool.arguments.amount < 5}\n")
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		amount int
		allow  bool
	}{{1, true}, {9, false}, {1, true}, {9, false}} {
		in := call("tools/call", "t", nil)
		in.Arguments = ast.NewObject(ast.Item(ast.StringTerm("amount"), ast.IntNumberTerm(tc.amount)))
		r, err := p.Decide(context.Background(), in)
		if err != nil || r.Allow != tc.allow {
			t.Fatalf("amount %d: %+v %v", tc.amount, r, err)
		}
	}
}

// Arguments given as JSON text are parsed for a policy that reads them;
// text that is not an object is an error (deny), never an empty object.
func TestRawArguments(t *testing.T) {
	reads := loadModule(t, "package mcp.authz\n\ndefault allow := false\n\nallow if input.tool.arguments.amount < 5\n\ndecision := {\"allow\": allow}\n")
	ignores := loadDefault(t)
	tests := []struct {
		raw     string
		allow   bool
		wantErr bool
	}{
		{`{"amount": 1}`, true, false},
		{`{"amount": 9}`, false, false},
		{`{}`, false, false},
		{`[1]`, false, true},
		{`{"amount": `, false, true},
	}
	for _, tc := range tests {
		in := call("tools/call", "t", nil)
		in.RawArguments = []byte(tc.raw)
		r, err := reads.Decide(context.Background(), in)
		if (err != nil) != tc.wantErr || (err == nil && r.Allow != tc.allow) {
			t.Fatalf("%s: %+v %v", tc.raw, r, err)
		}
		// A policy that cannot read arguments never parses them.
		in = call("tools/call", "ping", nil)
		in.RawArguments = []byte(tc.raw)
		if r, err := ignores.Decide(context.Background(), in); err != nil || !r.Allow {
			t.Fatalf("default policy, %s: %+v %v", tc.raw, r, err)
		}
	}
}

// The decision cache is bounded by weight: large lists cannot pile up.
func TestDecisionCacheBounded(t *testing.T) {
	p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, decision.Options{CacheSize: 1600})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
		for j := range 50 {
			in.Items = append(in.Items, decision.Item{Name: fmt.Sprintf("t%d_%d", i, j)})
		}
		if _, err := p.Decide(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	st := p.CacheStats()
	// 16 shards of 100 units: at most one 51-unit list per shard.
	if !st.Enabled || st.Entries > 16 || st.Misses != 200 {
		t.Fatalf("cache stats %+v", st)
	}
	// Small decisions still hit.
	in := call("tools/call", "ping", nil)
	for range 3 {
		if _, err := p.Decide(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if st2 := p.CacheStats(); st2.Hits != 2 {
		t.Fatalf("cache stats %+v", st2)
	}
}

func TestReadClaims(t *testing.T) {
	tests := []struct {
		name, module string
		all          bool
		names        []string
	}{
		{"no claims", "package mcp.authz\n\ndecision := {\"allow\": input.token.sub == \"x\"}\n", false, nil},
		{"named claims", "package mcp.authz\n\ndecision := {\"allow\": true} if { input.token.claims.tenant == \"a\"; input.token.claims[\"https://x/roles\"] }\n", false, []string{"https://x/roles", "tenant"}},
		{"nested claim", "package mcp.authz\n\ndecision := {\"allow\": input.token.claims.realm_access.roles[_] == \"a\"}\n", false, []string{"realm_access"}},
		{"claims as a value", "package mcp.authz\n\ndecision := {\"allow\": count(input.token.claims) > 0}\n", true, nil},
		{"token as a value", "package mcp.authz\n\nf(t) := t.claims.x\n\ndecision := {\"allow\": f(input.token)}\n", true, nil},
		{"dynamic claim", "package mcp.authz\n\ndecision := {\"allow\": true} if { some k; input.token.claims[k] }\n", true, nil},
		{"dynamic token key", "package mcp.authz\n\ndecision := {\"allow\": true} if { some k; input.token[k] }\n", true, nil},
		{"whole input", "package mcp.authz\n\ndecision := {\"allow\": true, \"i\": input}\n", true, nil},
		{"import", "package mcp.authz\n\nimport input.token.claims as c\n\ndecision := {\"allow\": c.x}\n", true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := loadModule(t, tc.module)
			all, names := p.ReadClaims()
			if all != tc.all || !slices.Equal(names, tc.names) {
				t.Fatalf("ReadClaims = %v %q, want %v %q", all, names, tc.all, tc.names)
			}
		})
	}
	all, names := loadDefault(t).ReadClaims()
	if all || !slices.Equal(names, []string{"groups", "roles"}) {
		t.Fatalf("default policy ReadClaims = %v %q, want roles and groups only", all, names)
	}
}

// Claims a policy reads reach it; claims it cannot read are left out of
// the input, so tokens differing only in those share a cache entry.
func TestClaimsProjection(t *testing.T) {
	p := loadModule(t, "package mcp.authz\n\ndefault allow := false\n\nallow if input.token.claims.tenant == \"a\"\n\ndecision := {\"allow\": allow}\n")
	tests := []struct {
		claims map[string]any
		allow  bool
	}{
		{map[string]any{"tenant": "a", "jti": "1"}, true},
		{map[string]any{"tenant": "a", "jti": "2"}, true},
		{map[string]any{"tenant": "b", "jti": "3"}, false},
		{map[string]any{"jti": "4"}, false},
	}
	for _, tc := range tests {
		tok := mustToken(t, "alice", "demo", nil, tc.claims)
		r, err := p.Decide(context.Background(), call("tools/call", "t", tok))
		if err != nil || r.Allow != tc.allow {
			t.Fatalf("claims %v: %+v %v", tc.claims, r, err)
		}
		// The full view (pdp eval, explain) keeps every claim.
		full := call("tools/call", "t", tok).Value().(ast.Object)
		got, err := full.Find(ast.Ref{ast.StringTerm("token"), ast.StringTerm("claims"), ast.StringTerm("jti")})
		if err != nil || got == nil {
			t.Fatalf("Input.Value lost the jti claim: %v", err)
		}
	}
	// jti 1 and 2 are one entry: 3 misses, 1 hit.
	if st := p.CacheStats(); st.Hits != 1 || st.Misses != 3 {
		t.Fatalf("cache stats %+v, want 1 hit and 3 misses", st)
	}
}

func TestSubjectLookups(t *testing.T) {
	tests := []struct {
		name, module string
		keyed        bool
	}{
		{"lookup only", "package mcp.authz\n\ndefault allow := false\n\nallow if not data.acl.blocked[input.token.sub]\n\ndecision := {\"allow\": allow}\n", true},
		{"no subject", "package mcp.authz\n\ndecision := {\"allow\": input.token.present}\n", true},
		{"compared", "package mcp.authz\n\ndecision := {\"allow\": input.token.sub == \"alice\"}\n", false},
		{"in the output", "package mcp.authz\n\ndecision := {\"allow\": false, \"reason\": input.token.sub}\n", false},
		{"lookup and output", "package mcp.authz\n\ndefault allow := false\n\nallow if data.acl.ok[input.token.sub]\n\ndecision := {\"allow\": allow, \"reason\": input.token.sub}\n", false},
		{"key not last", "package mcp.authz\n\ndefault allow := false\n\nallow if data.acl[input.token.sub].ok\n\ndecision := {\"allow\": allow}\n", false},
		{"token as a value", "package mcp.authz\n\nf(t) := t.sub\n\ndecision := {\"allow\": f(input.token) == \"a\"}\n", false},
		{"rules under the path", "package acl.blocked\n\nalice := true\n", false},
		{"function argument", "package mcp.authz\n\ndecision := {\"allow\": object.get(data.acl, input.token.sub, false)}\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), tc.module)
			if !strings.Contains(tc.module, "decision") {
				testkit.WriteFile(t, filepath.Join(dir, "main.rego"), "package mcp.authz\n\ndefault allow := false\n\nallow if not data.acl.blocked[input.token.sub]\n\ndecision := {\"allow\": allow}\n")
			}
			p, err := decision.Load(context.Background(), decision.Source{Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.SubjectKeyed(); got != tc.keyed {
				t.Fatalf("SubjectKeyed = %v, want %v", got, tc.keyed)
			}
		})
	}
	if !loadDefault(t).SubjectKeyed() {
		t.Fatal("the default policy only looks subjects up: its decisions should be keyed on the lookup")
	}
}

// Callers that differ only in their subject share a decision when the
// policy only looks the subject up, unless the lookup finds one of them.
func TestSubjectSharing(t *testing.T) {
	b, err := decision.ReadBundle(decision.Source{FS: policies.FS})
	if err != nil {
		t.Fatal(err)
	}
	b.Data["mcp"].(map[string]any)["revoked"] = map[string]any{"clients": map[string]any{}, "subjects": map[string]any{"mallory": "stolen laptop"}}
	p, err := decision.Prepare(context.Background(), b, "test")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		sub   string
		allow bool
		hits  uint64
	}{
		{"alice", true, 0},
		{"mallory", false, 0}, // revoked: never alice's entry
		{"bob", true, 1},      // alice's entry
		{"mallory", false, 2}, // mallory's own entry
		{"carol", true, 3},
	}
	for _, st := range steps {
		tok := mustToken(t, st.sub, "demo", []string{"qr:generate"}, nil)
		r, err := p.Decide(context.Background(), call("tools/call", "generate_qr_url", tok))
		if err != nil || r.Allow != st.allow {
			t.Fatalf("%s: %+v %v", st.sub, r, err)
		}
		if !st.allow && r.Reason != "the token's subject is revoked" {
			t.Fatalf("%s: reason %q", st.sub, r.Reason)
		}
		if h := p.CacheStats().Hits; h != st.hits {
			t.Fatalf("after %s: %d cache hits, want %d", st.sub, h, st.hits)
		}
	}
}

// The call cache in front of the decision cache is emptied when full and
// never answers for another target, method or token.
func TestCallCacheKeys(t *testing.T) {
	p := loadDefault(t)
	alice := mustToken(t, "alice", "demo", []string{"qr:generate"}, nil)
	bob := mustToken(t, "bob", "demo", nil, nil)
	tests := []struct {
		in    *decision.Input
		allow bool
	}{
		{call("tools/call", "generate_qr_url", alice), true},
		{call("tools/call", "generate_qr_url", bob), false},
		{call("tools/call", "generate_qr_url", nil), false},
		{call("tools/call", "ping", nil), true},
		{call("tools/call", "format_disk", alice), false},
	}
	for round := range 3 {
		for i, tc := range tests {
			r, err := p.Decide(context.Background(), tc.in)
			if err != nil || r.Allow != tc.allow {
				t.Fatalf("round %d, case %d: %+v %v", round, i, r, err)
			}
		}
	}
	// Past its size the call cache starts over; answers stay right.
	for i := range 5000 {
		in := call("tools/call", fmt.Sprintf("unknown_%d", i), alice)
		if r, err := p.Decide(context.Background(), in); err != nil || r.Allow {
			t.Fatalf("unknown_%d: %+v %v", i, r, err)
		}
	}
	if r, err := p.Decide(context.Background(), tests[0].in); err != nil || !r.Allow {
		t.Fatalf("after eviction: %+v %v", r, err)
	}
}

// TestRevisionIsContentOnly: the default policy has one revision however
// it is loaded: the embedded copy, its directory by a relative path, the
// same with ./ and a trailing slash, and its absolute path.
func TestRevisionIsContentOnly(t *testing.T) {
	abs, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	want := loadDefault(t).Revision()
	for _, path := range []string{"../../policies", "./../../policies/", abs, abs + "/"} {
		p, err := decision.Load(context.Background(), decision.Source{Path: path})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := p.Revision(); got != want {
			t.Errorf("%s: revision %s, the embedded copy's is %s", path, got, want)
		}
	}
}
