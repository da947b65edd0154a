package decision_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/policies"
)

// The catalog index is an optimization only: a list decided with it must
// equal the list decided item by item, for any catalog, list and caller.
func TestCatalogIndexEquivalence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := []map[string]any{
		{"access": "public"},
		{"access": "public", "scopes": []any{"a"}},
		{"access": "step_up", "scopes": []any{"a"}},
		{"access": "step_up", "scopes": []any{"b"}, "roles": []any{"admin"}},
		{"access": "restricted", "scopes": []any{"a"}},
		{"access": "restricted", "scopes": []any{"b"}},
		{"access": "restricted"},
		{"access": "public", "clients": []any{"demo"}},
		{"access": "restricted", "scopes": []any{"a"}, "clients": []any{"other"}},
		{"access": "deny"},
	}
	tokens := []*decision.Token{
		nil,
		mustToken(t, "alice", "demo", []string{"a"}, nil),
		mustToken(t, "bob", "other", []string{"a", "b"}, map[string]any{"roles": []any{"admin"}}),
		mustToken(t, "carol", "demo", []string{"c"}, nil),
	}
	shown, hidden := 0, 0
	for round := range 6 {
		b, err := decision.ReadBundle(decision.Source{FS: policies.FS})
		if err != nil {
			t.Fatal(err)
		}
		demo := b.Data["mcp"].(map[string]any)["catalogs"].(map[string]any)["demo"].(map[string]any)
		tools := map[string]any{}
		n := 5 + rng.IntN(200)
		for i := range n {
			tools[fmt.Sprintf("t%d", i)] = shapes[rng.IntN(len(shapes))]
		}
		if round%3 == 0 {
			tools["pre_*"] = shapes[rng.IntN(len(shapes))]
		}
		if round%2 == 0 {
			demo["unknown"] = map[string]any{"access": "public"}
		}
		demo["tools"] = tools
		demo["scope_implies"] = map[string]any{"c": []any{"a"}}
		b.Data["mcp"].(map[string]any)["hidden"] = []any{"t3"}
		indexed, err := decision.Prepare(context.Background(), b, "indexed", decision.Options{CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := decision.PrepareWithoutCatalogIndex(context.Background(), b, "plain", decision.Options{CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list"), Token: tok}
			for range 1 + rng.IntN(2*n) {
				name := fmt.Sprintf("t%d", rng.IntN(n+20)) // some unknown
				if rng.IntN(10) == 0 {
					name = fmt.Sprintf("pre_%d", rng.IntN(5))
				}
				in.Items = append(in.Items, decision.Item{Name: name})
			}
			a, err := indexed.Decide(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			p, err := plain.Decide(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			av, pv := visibleOf(a, in), visibleOf(p, in)
			if !reflect.DeepEqual(av, pv) {
				t.Fatalf("round %d, token %v: indexed %v\nplain %v", round, tok, av, pv)
			}
			shown += len(av)
			hidden += len(in.Items) - len(av)
		}
	}
	// Both outcomes were exercised.
	if shown < 100 || hidden < 100 {
		t.Fatalf("too few decisions compared: %d shown, %d hidden", shown, hidden)
	}
}

// A list answered from the decision cache is read in the order of the
// request that hit it, not of the one that filled it: the same names in
// another order (one cache entry, as input.names is a set) get each its
// own decision.
func TestListCacheHitInAnotherOrder(t *testing.T) {
	p := loadDefault(t) // decision cache on
	list := func(names ...string) *decision.Input {
		in := &decision.Input{Resource: resource, Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}
		for _, n := range names {
			in.Items = append(in.Items, decision.Item{Name: n})
		}
		return in
	}
	want := map[string]decision.ItemDecision{
		"ping":            {Access: "public"},
		"generate_qr_url": {Access: "step_up", Scopes: []string{"qr:generate"}},
	}
	orders := [][]string{
		{"ping", "generate_qr_url", "secret_tool"},
		{"secret_tool", "ping", "generate_qr_url"},
		{"generate_qr_url", "secret_tool", "ping", "ping"}, // a repeated name
	}
	before := p.CacheStats()
	for i, names := range orders {
		in := list(names...)
		res, err := p.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for j, n := range names {
			d, ok := res.Item(j)
			w, visible := want[n]
			if ok != visible || (ok && !reflect.DeepEqual(d, w)) {
				t.Fatalf("order %d, item %d (%s): %+v visible=%v, want %+v visible=%v", i, j, n, d, ok, w, visible)
			}
		}
		if _, ok := res.Item(len(names)); ok {
			t.Fatalf("order %d: an item past the list is visible", i)
		}
	}
	if st := p.CacheStats(); st.Hits-before.Hits < 2 {
		t.Fatalf("cache stats %+v (before %+v): want the reordered lists answered from the cache", st, before)
	}
}
