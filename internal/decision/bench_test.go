package decision_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/policies"
)

// BenchmarkBarePreparedEval is the floor: the prepared OPA query of the
// default policy with a prebuilt input value, results left as OPA returns them.
func BenchmarkBarePreparedEval(b *testing.B) {
	p := loadDefault(b)
	tok := mustToken(b, "alice", "demo", []string{"qr:generate"}, map[string]any{"sub": "alice"})
	in := call("tools/call", "generate_qr_url", tok)
	in.Arguments = ast.NewObject(ast.Item(ast.StringTerm("gtin"), ast.StringTerm("4006381333931")))
	pq, err := rego.New(rego.Query(decision.Query), rego.ParsedBundle("mcp", p.Bundle()), rego.StoreReadAST(true)).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	v := in.Value()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(v))
		if err != nil || len(rs) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideCall is Policy.Decide for a tools/call: input built, evaluated, result typed.
func BenchmarkDecideCall(b *testing.B) {
	p := loadDefault(b)
	tok := mustToken(b, "alice", "demo", []string{"qr:generate"}, map[string]any{"sub": "alice"})
	in := call("tools/call", "generate_qr_url", tok)
	in.Arguments = ast.NewObject(ast.Item(ast.StringTerm("gtin"), ast.StringTerm("4006381333931")))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := p.Decide(ctx, in); err != nil || !r.Allow {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkDecideList is one evaluation over a list of n tools.
func BenchmarkDecideList(b *testing.B) {
	p := loadDefault(b)
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("tools=%d", n), func(b *testing.B) {
			in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
			for i := range n {
				in.Items = append(in.Items, decision.Item{Name: fmt.Sprintf("tool_%d", i)})
			}
			in.Items[0].Name = "ping"
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Decide(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideListUncached is one evaluation over n tools with the
// decision cache off: the cost of a list the PDP has not seen before.
func BenchmarkDecideListUncached(b *testing.B) {
	p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, decision.Options{CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("tools=%d", n), func(b *testing.B) {
			in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
			for i := range n {
				in.Items = append(in.Items, decision.Item{Name: fmt.Sprintf("tool_%d", i)})
			}
			in.Items[0].Name = "ping"
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Decide(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bigCatalogPolicy is the default policy with n extra tools in the demo
// catalog, a mix of the access classes (every 10th restricted, every 3rd
// step_up, the rest public), decision cache off.
func bigCatalogPolicy(b *testing.B, n int) (*decision.Policy, []decision.Item) {
	b.Helper()
	bu, err := decision.ReadBundle(decision.Source{FS: policies.FS})
	if err != nil {
		b.Fatal(err)
	}
	tools := bu.Data["mcp"].(map[string]any)["catalogs"].(map[string]any)["demo"].(map[string]any)["tools"].(map[string]any)
	var items []decision.Item
	for i := range n {
		name := fmt.Sprintf("tool_%d", i)
		switch {
		case i%10 == 0:
			tools[name] = map[string]any{"access": "restricted", "scopes": []any{"qr:generate"}}
		case i%3 == 0:
			tools[name] = map[string]any{"access": "step_up", "scopes": []any{"qr:generate"}}
		default:
			tools[name] = map[string]any{"access": "public"}
		}
		items = append(items, decision.Item{Name: name})
	}
	p, err := decision.Prepare(context.Background(), bu, "bench", decision.Options{CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	return p, items
}

// BenchmarkDecideUncached is Policy.Decide with the decision cache off: the
// full cost of a decision the PDP has not seen before (a fresh token, a
// first call), against a catalog of 1000 tools.
func BenchmarkDecideUncached(b *testing.B) {
	p, items := bigCatalogPolicy(b, 1000)
	tok := mustToken(b, "alice", "demo", []string{"qr:generate"}, map[string]any{"sub": "alice"})
	ctx := context.Background()
	b.Run("call", func(b *testing.B) {
		in := call("tools/call", "generate_qr_url", tok)
		b.ReportAllocs()
		for b.Loop() {
			if r, err := p.Decide(ctx, in); err != nil || !r.Allow {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("call-anonymous", func(b *testing.B) {
		in := call("tools/call", "generate_qr_url", nil)
		b.ReportAllocs()
		for b.Loop() {
			if r, err := p.Decide(ctx, in); err != nil || r.Allow {
				b.Fatal(r, err)
			}
		}
	})
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("list-known=%d", n), func(b *testing.B) {
			in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list"), Token: tok, Items: items[:n]}
			b.ReportAllocs()
			for b.Loop() {
				r, err := p.Decide(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if _, ok := r.Item(i); !ok {
						b.Fatalf("item %d hidden", i)
					}
				}
			}
		})
	}
}

// BenchmarkRegoListFloor is what any Rego list filter pays before deciding
// anything: one evaluation that only collects the names of n listed items
// (a comprehension over input.items), result converted as the PDP reads it.
// It bounds what a one-evaluation tools/list can cost on this machine.
func BenchmarkRegoListFloor(b *testing.B) {
	pq, err := rego.New(
		rego.Query("data.floor.names"),
		rego.Module("floor.rego", "package floor\n\nnames := [item.name | some item in input.items]\n"),
	).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("tools=%d", n), func(b *testing.B) {
			in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
			for i := range n {
				in.Items = append(in.Items, decision.Item{Name: fmt.Sprintf("tool_%d", i)})
			}
			v := in.Value()
			ctx := context.Background()
			keep := rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
			b.ReportAllocs()
			for b.Loop() {
				rs, err := pq.Eval(ctx, rego.EvalParsedInput(v), keep)
				if err != nil || len(rs) != 1 {
					b.Fatal(err)
				}
			}
		})
	}
}
