package listfilter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/listfilter"
	"github.com/mcp-pdp/pdp/policies"
)

// TestListMemo: a list filtered once for a caller is answered from the
// memo when the same caller sends the same bytes again (the policy is not
// evaluated, the answer is the same, shared and read-only); other
// bytes and another caller decide anew; with the caches off nothing is
// memoized.
func TestListMemo(t *testing.T) {
	load := func(size int) *decision.Engine {
		p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, decision.Options{CacheSize: size})
		if err != nil {
			t.Fatal(err)
		}
		return decision.NewEngine(p)
	}
	tok := func(scopes ...string) *decision.Token {
		tk, err := decision.NewToken("alice", "demo", "https://issuer", "user", scopes, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	list := `{"tools":[{"name":"lookup_product","inputSchema":{"type":"object"}},{"name":"generate_qr_url","inputSchema":{"type":"object"}},{"name":"internal_debug","inputSchema":{"type":"object"}}]}`
	other := `{"tools":[{"name":"lookup_product","inputSchema":{"type":"object"}}]}`
	with, without := tok("qr:generate"), tok()

	e := load(0)
	filter := func(tk *decision.Token, result string) *listfilter.Filtered {
		t.Helper()
		in := &decision.Input{Resource: "https://x/mcp", Method: "tools/list", Class: decision.ClassifyMethod("tools/list"), Token: tk}
		f, err := listfilter.Filter(context.Background(), e, in, json.RawMessage(result))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	hits := func() uint64 { return e.Policy().CacheStats().Hits }

	first := filter(with, list)
	h := hits()
	second := filter(with, list)
	if hits() != h+1 {
		t.Fatalf("the same list for the same caller was not answered from the memo (hits %d → %d)", h, hits())
	}
	if !bytes.Equal(first.Result, second.Result) || len(first.Visible) != len(second.Visible) || len(first.Hidden) != len(second.Hidden) {
		t.Fatalf("the memo answered %s (%v/%v), the filter %s (%v/%v)", second.Result, second.Visible, second.Hidden, first.Result, first.Visible, first.Hidden)
	}
	if f := filter(with, other); bytes.Equal(f.Result, first.Result) || len(f.Visible) != 1 {
		t.Fatalf("other bytes were answered from the memo: %s", f.Result)
	}
	// Another caller (anonymous, or without the scope) is another key: its
	// first list is decided, not answered from the memo or the cache.
	for _, tk := range []*decision.Token{nil, without} {
		h := hits()
		filter(tk, list)
		if hits() != h {
			t.Fatalf("another caller's first list was a cache hit: the memo is keyed on the caller")
		}
		filter(tk, list)
		if hits() != h+1 {
			t.Fatal("another caller's repeated list was not answered from the memo")
		}
	}

	e = load(-1) // caches off
	filter(with, list)
	if _, ok := e.Policy().ListMemoKeyFor(&decision.Input{Method: "tools/list", Class: decision.ClassifyMethod("tools/list")}); ok {
		t.Fatal("a policy with its caches off memoizes lists")
	}
}
