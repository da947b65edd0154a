package decision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/policies"
)

// The decision caches (see "Caching" in the package documentation) are an
// optimization only: for any request, Decide through every cache layer
// answers what an evaluation of the whole input (Eval of Input.Value,
// which no cache and no projection touches) answers. The fuzz input is a
// program that picks the requests (method, resource, target, token,
// arguments, list items); every request is decided by each of a few
// policies that exercise the static analyses the caches rely on, twice: the
// second pass must be answered from the caches.
//
//	go test -run '^$' -fuzz '^FuzzCacheEquivalence$' ./internal/decision
func FuzzCacheEquivalence(f *testing.F) {
	pols := equivalencePolicies(f)
	pool := newTokenPool(f)
	rng := rand.New(rand.NewPCG(11, 12))
	for range 32 {
		seed := make([]byte, 16+rng.IntN(96))
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		f.Add(seed)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, program []byte) {
		checkEquivalence(t, pols, pool.requests(t, program))
	})
}

// checkEquivalence decides each of ins twice with each policy and compares
// every answer with an uncached evaluation.
func checkEquivalence(t *testing.T, pols []namedPolicy, ins []*decision.Input) {
	t.Helper()
	ctx := context.Background()
	for _, pol := range pols {
		missed := make([]bool, len(ins)) // by the first pass: now in the cache
		for pass := range 2 {
			for i, in := range ins {
				before := pol.p.CacheStats().Hits
				got, gerr := pol.p.Decide(ctx, in)
				hit := pol.p.CacheStats().Hits > before
				v := in.Value()
				if v == nil {
					t.Fatalf("%s: request %d (%s): no input document", pol.name, i, describe(in))
				}
				want, werr := pol.p.Eval(ctx, v)
				if (gerr == nil) != (werr == nil) {
					t.Fatalf("%s, pass %d: request %d (%s):\ncached error %v\nuncached error %v", pol.name, pass, i, describe(in), gerr, werr)
				}
				if gerr != nil {
					continue
				}
				if g, w := viewOf(got, in, true), viewOf(want, in, false); !reflect.DeepEqual(g, w) {
					t.Fatalf("%s, pass %d: request %d (%s):\ncached   %+v\nuncached %+v", pol.name, pass, i, describe(in), g, w)
				}
				// The second pass repeats the first with the same objects:
				// each decision the first pass put in the caches is a hit
				// of the call or the result cache, unless another input
				// with the same hash took its place (OPA hashes arrays,
				// such as input.items, without regard to order). A first
				// pass hit may be of an old entry, which eviction (first
				// in, first out) can have removed since.
				if pass == 0 {
					missed[i] = !hit
				} else if missed[i] && !hit && !hashTwin(t, pol.p, ins, i) {
					t.Fatalf("%s: request %d (%s) repeated: not answered from the cache", pol.name, i, describe(in))
				}
			}
		}
	}
}

// hashTwin reports whether another of ins has a result cache key (see
// Policy.CacheKey) with the hash of ins[i]'s but is not equal to it.
func hashTwin(t *testing.T, p *decision.Policy, ins []*decision.Input, i int) bool {
	t.Helper()
	key := func(in *decision.Input) ast.Value {
		k, err := p.CacheKey(in)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := key(ins[i])
	for j, other := range ins {
		if o := key(other); j != i && o.Hash() == k.Hash() && o.Compare(k) != 0 {
			return true
		}
	}
	return false
}

// decisionView is what a caller reads of a Result.
type decisionView struct {
	Allow, Visible, Forbidden bool
	Access, Reason, Revision  string
	Required, Missing         []string
	Items                     []itemView // list methods: one per Input.Items
}

type itemView struct {
	Visible  bool
	Decision decision.ItemDecision
}

// viewOf reads res; aligned is true for a result Decide returned (items
// read by index, as the list filter reads them) and false for one of Eval
// (items looked up by name).
func viewOf(res *decision.Result, in *decision.Input, aligned bool) decisionView {
	v := decisionView{
		Allow: res.Allow, Visible: res.Visible, Forbidden: res.Forbidden,
		Access: res.Access, Reason: res.Reason, Revision: res.Revision,
		Required: res.RequiredScopes, Missing: res.MissingScopes,
	}
	if in.Class.Operation == decision.OpList {
		for i, it := range in.Items {
			var iv itemView
			if aligned {
				iv.Decision, iv.Visible = res.Item(i)
			} else {
				iv.Decision, iv.Visible = res.Lookup(it.Name)
			}
			v.Items = append(v.Items, iv)
		}
	}
	return v
}

func describe(in *decision.Input) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s target=%q", in.Method, in.Resource, in.Target)
	if in.Token != nil {
		fmt.Fprintf(&b, " sub=%s client=%s scopes=%v", in.Token.Subject, in.Token.ClientID, in.Token.Scopes)
	}
	if in.RawArguments != nil {
		fmt.Fprintf(&b, " raw arguments %s", in.RawArguments)
	}
	if in.Arguments != nil {
		fmt.Fprintf(&b, " arguments %v", in.Arguments)
	}
	if in.TargetMeta != nil {
		fmt.Fprintf(&b, " tool annotations %s _meta %s", in.TargetMeta.Annotations, in.TargetMeta.Meta)
	}
	for _, it := range in.Items {
		fmt.Fprintf(&b, " item %q %s %s", it.Name, it.RawAnnotations, it.RawMeta)
	}
	return b.String()
}

type namedPolicy struct {
	name string
	p    *decision.Policy
}

// equivalencePolicies are the policies the equivalence is checked on: the
// default policy as shipped and with data that uses every part of the
// catalog format, and small policies that read arguments, claims (by name
// and as a whole), list items, the subject as a data key, the subject as a
// value, the whole input, and a subject looked up in rules, not data. All
// keep the decision cache on.
func equivalencePolicies(tb testing.TB) []namedPolicy {
	tb.Helper()
	b, err := decision.ReadBundle(decision.Source{FS: policies.FS})
	if err != nil {
		tb.Fatal(err)
	}
	mcp := b.Data["mcp"].(map[string]any)
	mcp["revoked"] = map[string]any{
		"clients":  map[string]any{"evil": "key leaked"},
		"subjects": map[string]any{"mallory": "stolen laptop"},
	}
	mcp["hidden"] = []any{"compare_products"}
	mcp["resources"] = map[string]any{otherResource: map[string]any{"catalog": "other"}}
	catalogs := mcp["catalogs"].(map[string]any)
	catalogs["demo"].(map[string]any)["destructive_scope"] = "tools:destructive"
	tools := catalogs["demo"].(map[string]any)["tools"].(map[string]any)
	tools["pre_*"] = map[string]any{"access": "step_up", "scopes": []any{"qr:generate"}}
	tools["admin_tool"] = map[string]any{"access": "restricted", "scopes": []any{"qr:admin"}, "roles": []any{"admin"}}
	tools["demo_only"] = map[string]any{"access": "public", "clients": []any{"demo"}}
	catalogs["other"] = map[string]any{
		"unknown": map[string]any{"access": "public"},
		"tools": map[string]any{
			"ping":     map[string]any{"access": "restricted", "scopes": []any{"qr:generate"}},
			"pre_x":    map[string]any{"access": "deny"},
			"a_reader": map[string]any{"access": "step_up", "scopes": []any{"read"}, "roles": []any{"sre"}},
		},
	}
	custom, err := decision.Prepare(context.Background(), b, "default-custom")
	if err != nil {
		tb.Fatal(err)
	}
	return []namedPolicy{
		{"default", loadDefault(tb)},
		{"default-custom", custom},
		{"arguments", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

default allow := false

allow if input.tool.arguments.amount < 5

allow if {
	input.target.kind == "prompt"
	input.target.arguments.lang == "en"
}

decision := {"allow": allow, "reason": sprintf("%s on %s", [input.method, input.resource])}
`})},
		{"claims", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

default allow := false

allow if {
	input.token.claims.tenant == "acme"
	"admin" in input.token.claims.roles
}

allow if input.token.claims.level > 2

default group := "none"

group := input.token.claims["https://x/grp"]

default client := "anonymous"

client := input.token.client_id

decision := {"allow": allow, "required_scopes": input.token.scopes, "reason": concat(" ", [client, group])}
`})},
		{"claims-as-a-value", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

decision := {"allow": count(input.token.claims) > 2}
`})},
		{"items", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

access(it) := "public" if it.annotations.readOnlyHint == true
else := "step_up"

items := {it.name: {"access": access(it), "scopes": ["write"]} |
	some it in input.items
	not it.annotations.destructiveHint
}

decision := {"allow": true, "items": items} if input.operation == "list"

decision := {"allow": input.token.present, "reason": input.kind} if input.operation != "list"
`})},
		{"tool-metadata", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

default allow := false

allow if input.target.annotations.readOnlyHint == true

allow if input.target._meta["com.example/tier"] == "free"

items := {it.name: {"access": "public"} |
	some it in input.items
	it._meta["com.example/tier"] != "hidden"
}

decision := {"allow": true, "items": items} if input.operation == "list"

decision := {"allow": allow, "reason": input.kind} if input.operation != "list"
`})},
		{"subject-lookups", loadFiles(tb, map[string]string{
			"authz.rego": `package mcp.authz

default allow := false

allow if {
	input.token.present
	not data.acl.blocked[input.token.sub]
}

default tier := "none"

tier := data.acl.vip[input.token.sub]

decision := {"allow": allow, "reason": tier}
`,
			"data.json": `{"acl": {"blocked": {"mallory": true}, "vip": {"alice": "gold", "bob": "gold", "dave": "silver"}}}`,
		})},
		{"subject-compared", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

default allow := false

allow if input.token.sub == "alice"

allow if data.acl.ok[input.token.sub]

decision := {"allow": allow}
`, "data.json": `{"acl": {"ok": {"bob": true}}}`})},
		{"subject-rules", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

staff contains "alice"

staff contains "dave"

default allow := false

allow if data.mcp.authz.staff[input.token.sub]

decision := {"allow": allow}
`})},
		{"whole-input", loadFiles(tb, map[string]string{"authz.rego": `package mcp.authz

decision := {
	"allow": count(input.token.claims) > 1,
	"reason": sprintf("%v|%v|%v", [object.get(input.token, "sub", ""), object.get(input, "tool", null), object.get(input, "items", [])]),
}
`})},
	}
}

// loadFiles loads a policy directory made of files (name -> content).
func loadFiles(tb testing.TB, files map[string]string) *decision.Policy {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		testkit.WriteFile(tb, filepath.Join(dir, name), content)
	}
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		tb.Fatal(err)
	}
	if !p.Deterministic() || !p.CacheStats().Enabled {
		tb.Fatalf("policy %v: the decision cache is off", files)
	}
	return p
}

const otherResource = "https://other.example/mcp"

var (
	eqResources = []string{resource, otherResource}
	eqMethods   = []string{
		"tools/call", "tools/call", "tools/call", "prompts/get", "resources/read",
		"tools/list", "tools/list", "prompts/list", "resources/list", "resources/templates/list",
		"initialize", "ping", "notifications/initialized", "completion/complete", "logging/setLevel", "sampling/createMessage",
	}
	eqNames = []string{
		"ping", "generate_qr_url", "compare_products", "admin_tool", "demo_only", "lookup_product",
		"pre_x", "pre_y", "a_reader", "unknown_tool", "file:///public/a.txt", "",
	}
	eqAnnotations = []string{"", `{"readOnlyHint": true}`, `{"destructiveHint": true}`, `{"readOnlyHint": false, "title": "t"}`}
	eqToolMeta    = []string{"", `{"com.example/tier": "free"}`, `{"com.example/tier": "hidden"}`, `{"com.example/tier": "paid", "x": [1]}`}
)

// tokenSpec is a caller; tokens made from equal specs are equal.
type tokenSpec struct {
	sub, client string
	scopes      []string
	claims      map[string]any
}

// eqCallers differ in what each policy reads: scopes, roles and groups
// (the default policy), tenant, roles, level and a URL-named claim (claims),
// subjects that data looks up (revoked, acl) and claims nobody reads (jti).
var eqCallers = []tokenSpec{
	{"alice", "demo", []string{"qr:generate"}, map[string]any{"tenant": "acme", "roles": []any{"admin"}, "jti": "1"}},
	{"alice", "demo", []string{"qr:generate"}, map[string]any{"tenant": "acme", "roles": []any{"admin"}, "jti": "2"}},
	{"bob", "demo", []string{"qr:generate"}, map[string]any{"tenant": "acme", "roles": []any{"admin"}, "jti": "3"}},
	{"bob", "demo", nil, map[string]any{"tenant": "globex", "level": 3}},
	{"mallory", "demo", []string{"qr:generate"}, map[string]any{"jti": "4"}},
	{"frank", "demo", []string{"qr:generate"}, map[string]any{"jti": "5"}},
	{"carol", "evil", []string{"qr:admin"}, map[string]any{"roles": []any{"admin", "dev"}, "https://x/grp": "g"}},
	{"dave", "demo", []string{"qr:admin", "read"}, map[string]any{"groups": []any{"sre"}, "roles": "admin sre"}},
	{"erin", "other", []string{"qr:generate", "read"}, map[string]any{"groups": []any{"sre"}, "level": 1.5}},
}

// tokenPool hands out, per caller, one shared Token (as the token memo
// does for a token seen again) or a new equal one (another token object
// with the same claims).
type tokenPool struct {
	shared []*decision.Token
	// toolMetas are what lists said of tools, shared like the tokens.
	toolMetas []*decision.ToolMeta
}

func newTokenPool(tb testing.TB) *tokenPool {
	p := &tokenPool{}
	for _, c := range eqCallers {
		p.shared = append(p.shared, c.token(tb))
	}
	for _, a := range eqAnnotations {
		for _, m := range eqToolMeta {
			if a != "" || m != "" {
				p.toolMetas = append(p.toolMetas, &decision.ToolMeta{Annotations: []byte(a), Meta: []byte(m)})
			}
		}
	}
	return p
}

func (c tokenSpec) token(tb testing.TB) *decision.Token {
	tb.Helper()
	tok, err := decision.NewToken(c.sub, c.client, "https://issuer.example", "user", c.scopes, nil, c.claims)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// program reads the fuzz input one choice at a time; past its end every
// choice is 0.
type program struct {
	b []byte
}

func (p *program) pick(n int) int {
	if len(p.b) == 0 {
		return 0
	}
	v := int(p.b[0])
	p.b = p.b[1:]
	return v % n
}

// requests builds up to 12 requests from the fuzz input. A request is
// either new or a variant of an earlier one that differs in one part only
// (arguments, caller, target, items or resource): the inputs a cache could
// confuse.
func (pool *tokenPool) requests(tb testing.TB, raw []byte) []*decision.Input {
	pr := &program{b: raw}
	n := 1 + pr.pick(12)
	ins := make([]*decision.Input, 0, n)
	for range n {
		if len(ins) == 0 || pr.pick(3) == 0 {
			method := eqMethods[pr.pick(len(eqMethods))]
			in := &decision.Input{
				Resource: eqResources[pr.pick(len(eqResources))],
				Method:   method,
				Class:    decision.ClassifyMethod(method),
			}
			pool.caller(tb, pr, in)
			pool.target(tb, pr, in)
			ins = append(ins, in)
			continue
		}
		in := *ins[pr.pick(len(ins))]
		switch pr.pick(5) {
		case 0:
			in.Arguments, in.RawArguments = nil, nil
			pool.arguments(tb, pr, &in)
		case 1:
			pool.caller(tb, pr, &in)
		case 2:
			pool.target(tb, pr, &in)
		case 3:
			in.Items = slices.Clone(in.Items)
			if len(in.Items) > 0 {
				i, j := pr.pick(len(in.Items)), pr.pick(len(in.Items))
				in.Items[i], in.Items[j] = in.Items[j], in.Items[i]
				in.Items[i].RawAnnotations = annotations(pr)
			}
		case 4:
			in.Resource = eqResources[(slices.Index(eqResources, in.Resource)+1)%len(eqResources)]
		}
		ins = append(ins, &in)
	}
	return ins
}

// caller sets in.Token: anonymous, a shared token or a new equal one.
func (pool *tokenPool) caller(tb testing.TB, pr *program, in *decision.Input) {
	in.Token = nil
	if c := pr.pick(len(eqCallers) + 1); c > 0 {
		if pr.pick(3) == 0 {
			in.Token = eqCallers[c-1].token(tb)
		} else {
			in.Token = pool.shared[c-1]
		}
	}
}

// target sets what in is about: the target and arguments of a call, the
// items of a list.
func (pool *tokenPool) target(tb testing.TB, pr *program, in *decision.Input) {
	switch in.Class.Operation {
	case decision.OpCall:
		in.Target = eqNames[pr.pick(len(eqNames))]
		in.TargetMeta = pool.toolMeta(pr)
		pool.arguments(tb, pr, in)
	case decision.OpList:
		in.Items = nil
		for range pr.pick(8) {
			in.Items = append(in.Items, decision.Item{Name: eqNames[pr.pick(len(eqNames))], RawAnnotations: annotations(pr), RawMeta: toolMetaJSON(pr)})
		}
	}
}

// arguments sets the call arguments of in: none, JSON text or a Rego value.
func (pool *tokenPool) arguments(tb testing.TB, pr *program, in *decision.Input) {
	if in.Class.Operation != decision.OpCall {
		return
	}
	amount := pr.pick(10)
	lang := []string{"en", "de"}[pr.pick(2)]
	switch pr.pick(5) {
	case 1:
		in.RawArguments = mustJSON(tb, map[string]any{"amount": amount})
	case 2:
		in.RawArguments = mustJSON(tb, map[string]any{"amount": amount, "lang": lang})
	case 3:
		v, err := ast.InterfaceToValue(map[string]any{"amount": amount, "lang": lang})
		if err != nil {
			tb.Fatal(err)
		}
		in.Arguments = v
	case 4:
		in.RawArguments = []byte(`{}`)
	}
}

// toolMeta is what a list said of a called tool: nothing, a shared value
// (as the core keeps one per tool) or a new equal one.
func (pool *tokenPool) toolMeta(pr *program) *decision.ToolMeta {
	i := pr.pick(len(pool.toolMetas) + 1)
	if i == 0 {
		return nil
	}
	if pr.pick(3) == 0 {
		m := *pool.toolMetas[i-1]
		return &m
	}
	return pool.toolMetas[i-1]
}

func toolMetaJSON(pr *program) []byte {
	if m := eqToolMeta[pr.pick(len(eqToolMeta))]; m != "" {
		return []byte(m)
	}
	return nil
}

func annotations(pr *program) []byte {
	if a := eqAnnotations[pr.pick(len(eqAnnotations))]; a != "" {
		return []byte(a)
	}
	return nil
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
