package listfilter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/listfilter"
	"github.com/mcp-pdp/pdp/policies"
)

// counting wraps the real engine and counts evaluations.
type counting struct {
	e *decision.Engine
	n int
}

func (c *counting) Decide(ctx context.Context, in *decision.Input) (*decision.Result, error) {
	c.n++
	return c.e.Decide(ctx, in)
}

func engine(t testing.TB) *counting {
	t.Helper()
	p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, decision.Options{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &counting{e: decision.NewEngine(p)}
}

func input(method string) *decision.Input {
	return &decision.Input{Resource: "https://x/mcp", Method: method, Class: decision.ClassifyMethod(method)}
}

func TestFilterTools(t *testing.T) {
	d := engine(t)
	result := `{"tools":[
		{ "name":"ping","inputSchema":{"type":"object"}},
		{"name":"generate_qr_url","_meta":{"x":1},"inputSchema":{}},
		{"name":"secret","inputSchema":{}},
		{"name":"lookup_product","securitySchemes":[{"type":"oauth2","scopes":["bogus"]}]},
		{"name":"search_products","annotations":{"readOnlyHint":true}}
	],"nextCursor":"n1","_meta":{"m":true}}`
	f, err := listfilter.Filter(context.Background(), d, input("tools/list"), json.RawMessage(result))
	if err != nil {
		t.Fatal(err)
	}
	if d.n != 1 {
		t.Fatalf("%d evaluations for one list", d.n)
	}
	if !reflect.DeepEqual(f.Visible, []string{"ping", "generate_qr_url", "lookup_product", "search_products"}) || !reflect.DeepEqual(f.Hidden, []string{"secret"}) {
		t.Fatalf("visible %v hidden %v", f.Visible, f.Hidden)
	}
	var out struct {
		Tools      []map[string]any `json:"tools"`
		NextCursor string           `json:"nextCursor"`
		Meta       map[string]any   `json:"_meta"`
	}
	if err := json.Unmarshal(f.Result, &out); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, f.Result)
	}
	if out.NextCursor != "n1" || out.Meta["m"] != true || len(out.Tools) != 4 {
		t.Fatalf("result = %s", f.Result)
	}
	schemes := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	want := map[string]string{
		"ping":            `[{"type":"noauth"}]`,
		"generate_qr_url": `[{"scopes":["qr:generate"],"type":"oauth2"}]`,
		"lookup_product":  `[{"type":"noauth"}]`,
		"search_products": `[{"type":"noauth"}]`,
	}
	for _, tool := range out.Tools {
		name := tool["name"].(string)
		if got := schemes(tool["securitySchemes"]); got != want[name] {
			t.Errorf("%s securitySchemes = %s, want %s", name, got, want[name])
		}
		meta := tool["_meta"].(map[string]any)
		if got := schemes(meta["securitySchemes"]); got != want[name] {
			t.Errorf("%s _meta.securitySchemes = %s, want %s", name, got, want[name])
		}
	}
	if out.Tools[1]["_meta"].(map[string]any)["x"] != float64(1) {
		t.Errorf("existing _meta lost: %v", out.Tools[1])
	}
	if _, ok := out.Tools[0]["inputSchema"]; !ok {
		t.Errorf("tool fields lost: %v", out.Tools[0])
	}
}

func TestFilterOtherLists(t *testing.T) {
	d := engine(t)
	tests := []struct{ method, result, wantVisible string }{
		{"prompts/list", `{"prompts":[{"name":"p1"}]}`, ""},
		{"resources/list", `{"resources":[{"uri":"file:///a","name":"a"}]}`, ""},
		{"resources/templates/list", `{"resourceTemplates":[{"uriTemplate":"file:///{x}","name":"t"}]}`, ""},
		{"tools/list", `{"tools":[]}`, ""},
	}
	for _, tc := range tests {
		f, err := listfilter.Filter(context.Background(), d, input(tc.method), json.RawMessage(tc.result))
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		if strings.Join(f.Visible, ",") != tc.wantVisible || !json.Valid(f.Result) {
			t.Fatalf("%s: visible %v result %s", tc.method, f.Visible, f.Result)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, result, want string }{
		{"not an object", `[]`, "must be a JSON object"},
		{"no list", `{"x":1}`, `no "tools" array`},
		{"list not array", `{"tools":{}}`, "must be an array"},
		{"item not object", `{"tools":[1]}`, "must be an object"},
		{"item without name", `{"tools":[{"title":"x"}]}`, "name must be a non-empty string"},
		{"name not string", `{"tools":[{"name":5}]}`, "tools[0]"},
		{"truncated", `{"tools":[{"name":"a"}`, "invalid list result"},
		{"twice", `{"tools":[],"tools":[]}`, "twice"},
		{"bad annotations", `{"tools":[{"name":"a","annotations":5}]}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := listfilter.Parse(decision.ClassifyMethod("tools/list"), json.RawMessage(tc.result))
			if tc.want == "" {
				return // accepted or rejected, but never a panic
			}
			if !errors.Is(err, listfilter.ErrInvalidResult) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzFilter: any accepted result yields valid JSON whose tools are exactly
// the visible ones; nothing panics; FilterValid, given valid JSON, answers
// as Filter does.
func FuzzFilter(f *testing.F) {
	f.Add(`{"tools":[{"name":"ping"},{"name":"x","_meta":{"a":1}}],"nextCursor":"c"}`)
	f.Add(`{"tools":[ { "name" : "generate_qr_url" , "securitySchemes":[] } ]}`)
	f.Add(`{"tools":[{"name":"a\u0041"}]}`)
	f.Add(`{"tools":[{"name":1}]}`)
	d := engine(f)
	f.Fuzz(func(t *testing.T, result string) {
		out, err := listfilter.Filter(context.Background(), d, input("tools/list"), json.RawMessage(result))
		if json.Valid([]byte(result)) {
			vout, verr := listfilter.FilterValid(context.Background(), d, input("tools/list"), json.RawMessage(result))
			if fmt.Sprint(verr) != fmt.Sprint(err) {
				t.Fatalf("FilterValid error %v, Filter error %v", verr, err)
			}
			if err == nil && (!bytes.Equal(vout.Result, out.Result) || !reflect.DeepEqual(vout.Visible, out.Visible) || !reflect.DeepEqual(vout.Hidden, out.Hidden)) {
				t.Fatalf("FilterValid %s %v %v, Filter %s %v %v", vout.Result, vout.Visible, vout.Hidden, out.Result, out.Visible, out.Hidden)
			}
		}
		if err != nil {
			return
		}
		var parsed struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(out.Result, &parsed); err != nil {
			t.Fatalf("filtered result is not valid JSON: %v\nin:  %s\nout: %s", err, result, out.Result)
		}
		if len(parsed.Tools) != len(out.Visible) {
			t.Fatalf("%d tools in result, %d visible", len(parsed.Tools), len(out.Visible))
		}
	})
}

// A policy that reads input.items sees each item's annotations (converted
// only for such a policy); one that does not is never given them.
func TestAnnotationsReachPolicy(t *testing.T) {
	dir := t.TempDir()
	mod := `package mcp.authz

decision := {"allow": true, "items": {item.name: {"access": "public"} |
	some item in input.items
	item.annotations.readOnlyHint == true
}}
`
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	result := `{"tools":[{"name":"ro","annotations":{"readOnlyHint":true}},{"name":"rw","annotations":{"readOnlyHint":false}},{"name":"none"}]}`
	f, err := listfilter.Filter(context.Background(), decision.NewEngine(p), input("tools/list"), json.RawMessage(result))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Visible, []string{"ro"}) || !reflect.DeepEqual(f.Hidden, []string{"rw", "none"}) {
		t.Fatalf("visible %v hidden %v", f.Visible, f.Hidden)
	}
}
