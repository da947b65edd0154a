package catalog_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/catalog"
)

// data decodes a JSON document the way OPA's loader gives policy data.
func data(t *testing.T, doc string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // problem strings, in order; "warning: " marks warnings
	}{
		{"no mcp data", `{"acme": {"tools": ["a"]}}`, nil},
		{"valid", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"unknown": {"access": "deny"}, "tools": {"t": {"access": "step_up", "scopes": ["a"], "max": 5}}}}}}`, nil},
		{"reserved root", `{"pdp": {}}`, []string{"data.pdp: is reserved: the PDP puts its catalog index there (data.pdp.catalog_index)"}},
		{"mcp not an object", `{"mcp": [1]}`, []string{"data.mcp: must be an object (the policy data), not a list"}},
		{"misspelt top key", `{"mcp": {"catalog": {}}}`, []string{`data.mcp.catalog: unknown key "catalog": did you mean "catalogs"?`}},
		{"default catalog not set", `{"mcp": {"catalogs": {"c": {}}}}`, []string{"warning: data.mcp.default_catalog: is not set"}},
		{"hidden entries", `{"mcp": {"hidden": ["a", 1]}}`, []string{"data.mcp.hidden[1]: must be a name (a string), not a number"}},
		{"access not a string", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {"t": {"access": true}}}}}}`,
			[]string{"data.mcp.catalogs.c.tools.t.access: must be one of public, step_up, restricted, deny, not a boolean"}},
		{"entry not an object", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"prompts": {"p": "public"}}}}}`,
			[]string{`data.mcp.catalogs.c.prompts.p: must be an object such as {access: step_up, scopes: ["files:read"]}, not a string`}},
		{"empty clients and scope", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {"t": {"access": "restricted", "clients": [], "scopes": [""]}}}}}}`,
			[]string{"data.mcp.catalogs.c.tools.t.clients: is empty: no caller could ever match it", "data.mcp.catalogs.c.tools.t.scopes[0]: must not be empty"}},
		{"client ids may hold spaces", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {"t": {"access": "restricted", "clients": ["my app"]}}}}}}`, nil},
		{"resource entry not an object", `{"mcp": {"resources": {"https://x/mcp": "c"}}}`,
			[]string{`data.mcp.resources["https://x/mcp"]: must be an object such as {catalog: <name>}, not a string`}},
		{"acquirable listing", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {}}, "resources": {"https://x/mcp": {"catalog": "c", "listing": "acquirable", "acquirable_scopes": ["a"]}}, "scope_ceilings": {"grants": {"client_credentials": ["a"]}, "clients": {"app": []}}}}`, nil},
		{"acquirable listing, wrong values", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {}}, "resources": {"https://x/mcp": {"catalog": "c", "listing": "some", "acquirable_scopes": "a"}}, "scope_ceilings": {"grants": ["client_credentials"]}}}`,
			[]string{`data.mcp.resources["https://x/mcp"].acquirable_scopes: must be a list, not a string: write ["a"]`, `data.mcp.resources["https://x/mcp"].listing: must be "all" (the default) or "acquirable", not some`,
				"data.mcp.scope_ceilings.grants: must be an object mapping each grant to the scopes it can ever be granted, not a list"}},
		{"annotations and destructive_scope", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"destructive_scope": "tools:destructive", "tools": {"t": {"access": "public", "annotations": {"readOnlyHint": true}}}}}}}`, nil},
		{"annotations and destructive_scope, wrong types", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"destructive_scope": ["x"], "tools": {"t": {"access": "public", "annotations": "ro"}}}}}}`,
			[]string{"data.mcp.catalogs.c.destructive_scope: must be the scope destructive tools need (a non-empty string), not a list",
				"data.mcp.catalogs.c.tools.t.annotations: must be an object of MCP tool annotations such as {destructiveHint: true}, not a string"}},
		{"_meta", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {"t": {"access": "public", "_meta": {"com.example/classification": "internal"}}}}}}}`, nil},
		{"_meta, wrong type", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {"t": {"access": "public", "_meta": ["internal"]}}}}}}`,
			[]string{`data.mcp.catalogs.c.tools.t._meta: must be an object of _meta keys such as {"com.example/classification": "internal"}, not a list`}},
		{"misspellings: swapped letters, two edits in a long key", `{"mcp": {"defualt_catalog": "c", "default_catalog": "c", "catalogs": {"c": {"unknwon": {"access": "deny"}, "scope_implys": {}, "tools": {"t": {"access": "public", "socpes": []}}}}}}`,
			[]string{
				`data.mcp.catalogs.c.scope_implys: unknown key "scope_implys": did you mean "scope_implies"?`,
				`data.mcp.catalogs.c.tools.t.socpes: unknown key "socpes": did you mean "scopes"?`,
				`data.mcp.catalogs.c.unknwon: unknown key "unknwon": did you mean "unknown"?`,
				`data.mcp.defualt_catalog: unknown key "defualt_catalog": did you mean "default_catalog"?`,
			}},
		{"rate and quota", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"default_limits": {"rate": {"limit": 100, "per": "1m", "by": "sub+client"}}, "tools": {"t": {"access": "step_up", "scopes": ["a"], "rate": {"limit": 10, "per": "1m", "burst": 20, "by": "client"}, "quota": {"limit": 100, "per": "day", "by": "sub", "time_zone": "Europe/Berlin"}}}}}}}`, nil},
		{"rate mistakes", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"tools": {
			"a": {"access": "public", "rate": {"limit": 0, "per": "1m", "by": "client"}},
			"b": {"access": "public", "rate": {"limit": 2.5, "per": "1m", "by": "client"}},
			"c": {"access": "public", "rate": {"limit": 10, "per": "minute", "by": "client"}},
			"d": {"access": "public", "rate": {"limit": 10, "per": "1m", "by": "clinet"}},
			"e": {"access": "public", "rate": {"limit": 10, "per": "1m", "by": "client", "brust": 5}},
			"f": {"access": "public", "rate": {"limit": -5, "per": "1m", "by": "sub"}},
			"g": {"access": "public", "rate": {"limit": 1e12, "per": "1m", "by": "sub"}},
			"h": {"access": "public", "rate": {"limit": 10, "per": "0s", "by": "sub"}},
			"i": {"access": "public", "rate": "10/m"},
			"j": {"access": "public", "rate": {"limit": "10", "per": "1m", "by": "sub"}},
			"k": {"access": "public", "rate": {"limit": 10, "per": "1m", "burst": 20, "by": "sub", "shared": true}},
			"l": {"access": "public", "rate": {"limit": 10, "per": "1500ms", "by": "sub", "shared": true}},
			"m": {"access": "public", "rate": {"limit": 10, "per": "1m", "by": "sub", "shared": "yes"}},
			"n": {"access": "public", "rate": {"limit": 10, "per": "1m", "by": "sub", "shared": true}}}}}}}`,
			[]string{
				"data.mcp.catalogs.c.tools.a.rate.limit: 0 is not allowed: at least 1 (to refuse every call use access: deny)",
				"data.mcp.catalogs.c.tools.b.rate.limit: 2.5 is not a whole number",
				`data.mcp.catalogs.c.tools.c.rate.per: "minute" is not a duration such as 1s, 1m or 1h`,
				`data.mcp.catalogs.c.tools.d.rate.by: must be one of sub, client, sub+client, resource, not clinet (did you mean "client"?)`,
				`data.mcp.catalogs.c.tools.e.rate.brust: unknown key (did you mean "burst"?); the keys are limit, per, burst, by, shared`,
				"data.mcp.catalogs.c.tools.f.rate.limit: -5 is not allowed: at least 1 (to refuse every call use access: deny)",
				"data.mcp.catalogs.c.tools.g.rate.limit: 1e+12 is too large: at most 1000000000",
				"data.mcp.catalogs.c.tools.h.rate.per: 0s is out of range: from 1ms to 8784h0m0s (for longer windows use a quota)",
				"data.mcp.catalogs.c.tools.i.rate: must be an object such as {limit: 10, per: 1m, burst: 20, by: client}, not a string",
				"data.mcp.catalogs.c.tools.j.rate.limit: must be a whole number of calls, not a string",
				"data.mcp.catalogs.c.tools.k.rate.burst: a shared rate counts fixed windows of per, with no burst: use limit 20 or leave out the burst",
				"data.mcp.catalogs.c.tools.l.rate.per: 1500ms: a shared rate's window is whole seconds from 1s to 744h0m0s",
				"data.mcp.catalogs.c.tools.m.rate.shared: must be true or false, not a string",
			}},
		{"quota mistakes", `{"mcp": {"default_catalog": "c", "catalogs": {"c": {"default_limits": {"qouta": {}}, "tools": {
			"a": {"access": "public", "quota": {"limit": 100, "per": "1d", "by": "sub"}},
			"b": {"access": "public", "quota": {"limit": 100, "per": "dya", "by": "sub"}},
			"c": {"access": "public", "quota": {"limit": 100, "per": "day", "by": "sub", "time_zone": "Mars/Olympus"}},
			"d": {"access": "public", "quota": {"per": "day", "by": "sub"}},
			"e": {"access": "deny", "quota": {"limit": 1, "per": "month", "by": "resource"}}}}}}}`,
			[]string{
				`data.mcp.catalogs.c.default_limits.qouta: unknown key "qouta": did you mean "quota"?`,
				`data.mcp.catalogs.c.tools.a.quota.per: "1d" is not a calendar window; use one of hour, day, month (a rate limit takes durations)`,
				`data.mcp.catalogs.c.tools.b.quota.per: "dya" is not a calendar window; use one of hour, day, month (did you mean "day"?) (a rate limit takes durations)`,
				`data.mcp.catalogs.c.tools.c.quota.time_zone: "Mars/Olympus" is not a known time zone (an IANA name such as Europe/Berlin or UTC)`,
				"data.mcp.catalogs.c.tools.d.quota.limit: is required: a whole number of calls, at least 1",
				"warning: data.mcp.catalogs.c.tools.e: has a rate or quota but access deny: no call is allowed, so none is counted",
			}},
		{"ordered by path", `{"mcp": {"hidden": {}, "default_catalog": 1}}`,
			[]string{"data.mcp.default_catalog: must be the name of a catalog (a string), not a number", "data.mcp.hidden: must be a list of names, not an object"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range catalog.Validate(data(t, tc.data)) {
				if p.Warning != strings.HasPrefix(p.String(), "warning: ") {
					t.Errorf("%q: Warning=%v", p, p.Warning)
				}
				if p.Code != catalog.CodeCatalog {
					t.Errorf("%q: code %q", p, p.Code)
				}
				got = append(got, strings.SplitN(p.String(), "\n", 2)[0])
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFormatDataPath(t *testing.T) {
	tests := []struct {
		segs []string
		want string
	}{
		{[]string{"mcp", "catalogs", "demo"}, "mcp.catalogs.demo"},
		{[]string{"mcp", "resources", "https://mcp.example.com/mcp", "catalog"}, `mcp.resources["https://mcp.example.com/mcp"].catalog`},
		{[]string{"mcp", "hidden", "3"}, "mcp.hidden[3]"},
		{[]string{"mcp", "tools", "a*b"}, `mcp.tools["a*b"]`},
		{[]string{"mcp", "x1", "_y"}, "mcp.x1._y"},
		{[]string{"1x"}, `["1x"]`},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := catalog.FormatDataPath(tc.segs); got != tc.want {
			t.Errorf("FormatDataPath(%q) = %s, want %s", tc.segs, got, tc.want)
		}
	}
}

const locData = `mcp:
  default_catalog: demo
  catalogs:
    demo:
      tools:
        ping: {access: publik}
        list:
          - a
          - b
`

func TestLocateFS(t *testing.T) {
	fsys := fstest.MapFS{
		"policy/data.yaml":      {Data: []byte(locData)},
		"policy/acl/data.json":  {Data: []byte("{\n  \"blocked\": {\n    \"mallory\": true\n  }\n}\n")},
		"policy/authz.rego":     {Data: []byte("package mcp.authz\n")},
		"policy/ignored.yaml":   {Data: []byte("x: 1\n")},
		"policy/other/data.yml": {Data: []byte("k: [unclosed\n")},
	}
	l, err := catalog.LocateFS(fsys, "policy")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		segs []string
		file string
		line int
	}{
		{[]string{"mcp", "catalogs", "demo", "tools", "ping"}, "policy/data.yaml", 6},
		{[]string{"mcp", "catalogs", "demo", "tools", "ping", "access"}, "policy/data.yaml", 6},
		{[]string{"mcp", "catalogs", "demo", "tools", "list", "1"}, "policy/data.yaml", 9},
		{[]string{"mcp", "catalogs", "demo", "tools", "nope"}, "policy/data.yaml", 5}, // where its parent is
		{[]string{"acl", "blocked", "mallory"}, "policy/acl/data.json", 3},
		{[]string{"acl"}, "policy/acl/data.json", 1},
		{[]string{"x"}, "policy/data.yaml", 1}, // the root document
	}
	for _, tc := range tests {
		if file, line := l.Lookup(tc.segs); file != tc.file || line != tc.line {
			t.Errorf("Lookup(%q) = %s:%d, want %s:%d", tc.segs, file, line, tc.file, tc.line)
		}
	}
	var none *catalog.Locations
	if file, line := none.Lookup([]string{"mcp"}); file != "" || line != 0 {
		t.Errorf("nil Locations found %s:%d", file, line)
	}
}

func TestLocatePathAndTarball(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "mcp", "data.yaml"), "default_catalog: demo\ncatalogs:\n  demo: {}\n")
	l, err := catalog.LocatePath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if file, line := l.Lookup([]string{"mcp", "catalogs", "demo"}); file != filepath.Join(dir, "mcp", "data.yaml") || line != 3 {
		t.Fatalf("directory: demo at %s:%d", file, line)
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range map[string]string{"/mcp/data.yaml": "default_catalog: demo\ncatalogs:\n  demo: {}\n", "/authz.rego": "package mcp.authz\n"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "bundle.tar.gz")
	write(t, archive, buf.String())
	for name, locate := range map[string]func() (*catalog.Locations, error){
		"tarball": func() (*catalog.Locations, error) { return catalog.LocateTarball(bytes.NewReader(buf.Bytes())) },
		"path":    func() (*catalog.Locations, error) { return catalog.LocatePath(archive) },
	} {
		l, err := locate()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if file, line := l.Lookup([]string{"mcp", "catalogs", "demo"}); file != "mcp/data.yaml" || line != 3 {
			t.Fatalf("%s: demo at %s:%d, want mcp/data.yaml:3 (the path inside the bundle)", name, file, line)
		}
	}
	if _, err := catalog.LocatePath(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing path was located")
	}
}

// Validate's problems get their file and line from the data files and are
// ordered by them.
func TestLocateProblems(t *testing.T) {
	fsys := fstest.MapFS{"data.yaml": {Data: []byte(locData)}}
	l, err := catalog.LocateFS(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	ps := catalog.Validate(map[string]any{"mcp": map[string]any{
		"default_catalog": "demo",
		"catalogs": map[string]any{"demo": map[string]any{"tools": map[string]any{
			"ping": map[string]any{"access": "publik"},
			"list": []any{"a", "b"},
		}}},
	}})
	l.LocateProblems(ps)
	var got []string
	for _, p := range ps {
		got = append(got, strings.SplitN(p.String(), "\n", 2)[0])
	}
	want := []string{
		"data.yaml:6: data.mcp.catalogs.demo.tools.ping.access: \"publik\" is not an access class; use one of public, step_up, restricted, deny (did you mean \"public\"?)",
		"data.yaml:7: data.mcp.catalogs.demo.tools.list: must be an object such as {access: step_up, scopes: [\"files:read\"]}, not a list",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDataFileProblem(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		file, content string
		line          int
		message, hint string
	}{
		{"data.json", "{\n  \"a\": 1,\n  oops\n}\n", 3, "invalid JSON: ", "not valid JSON"},
		{"data.yaml", "a: 1\nb:\n\tc: 2\n", 3, "invalid YAML: ", "not valid YAML"},
		{"missing.json", "", 0, "the loader's reason", "not valid JSON"},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.file)
		if tc.content != "" {
			write(t, path, tc.content)
		}
		p := catalog.DataFileProblem(path, "the loader's reason")
		if p.File != path || p.Line != tc.line || p.Code != catalog.CodeDataError ||
			!strings.HasPrefix(p.Message, tc.message) || !strings.Contains(p.Hint, tc.hint) {
			t.Errorf("%s: %+v", tc.file, p)
		}
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    catalog.Problem
		want string
	}{
		{catalog.Problem{File: "a.rego", Line: 3, Code: "rego_parse_error", Message: "bad", Details: []string{"x := "}, Hint: "fix it"},
			"a.rego:3: rego_parse_error: bad\n\tx := \n\thint: fix it"},
		{catalog.Problem{File: "data.yaml", Code: catalog.CodeCatalog, Path: "mcp.hidden", Message: "must be a list", Warning: true},
			"data.yaml: warning: data.mcp.hidden: must be a list"},
		{catalog.Problem{Code: catalog.CodeCatalog, Path: `["odd key"]`, Message: "m"}, `data["odd key"]: m`},
		{catalog.Problem{Message: "plain"}, "plain"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestWithIndex(t *testing.T) {
	in := data(t, `{"mcp": {"catalogs": {"demo": {
		"tools": {"a": {"access": "public"}, "b": {"access": "public"}, "c": {"access": "step_up", "scopes": ["x"]}, "pre_*": {"access": "deny"}},
		"prompts": "not an object",
		"methods": {"ping": {"access": "public"}}
	}}}, "pdp": {"own": true}}`)
	before, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, terms := catalog.WithIndex(in)
	if after, _ := json.Marshal(in); !bytes.Equal(before, after) {
		t.Fatalf("WithIndex modified its input:\n%s\n%s", before, after)
	}
	root := out[catalog.IndexRoot].(map[string]any)
	if root["own"] != true {
		t.Fatalf("data.%s lost its own keys: %v", catalog.IndexRoot, root)
	}
	sections := root["catalog_index"].(map[string]any)["demo"].(map[string]any)
	if _, ok := sections["prompts"]; ok {
		t.Error("a section that is not an object was indexed")
	}
	if _, ok := sections["methods"]; ok {
		t.Error("the methods section was indexed")
	}
	tools := sections["tools"].(map[string]any)
	if got := tools["prefixes"]; !reflect.DeepEqual(got, []any{"pre_"}) {
		t.Errorf("prefixes = %v", got)
	}
	groups := map[string][]string{}
	for _, g := range tools["groups"].([]any) {
		g := g.(map[string]any)
		entry, _ := json.Marshal(g["entry"])
		names := g["names"].(ast.Set)
		var members []string
		for m := range g["members"].(map[string]any) {
			members = append(members, m)
			if !names.Contains(terms[m]) {
				t.Errorf("group %s: names lack %q", entry, m)
			}
		}
		if names.Len() != len(members) {
			t.Errorf("group %s: %d names, %d members", entry, names.Len(), len(members))
		}
		groups[string(entry)] = members
	}
	if len(groups) != 2 || len(groups[`{"access":"public"}`]) != 2 || len(groups[`{"access":"step_up","scopes":["x"]}`]) != 1 {
		t.Errorf("groups = %v", groups)
	}
	if all := tools["names"].(ast.Set); all.Len() != 3 || all.Contains(ast.StringTerm("pre_*")) {
		t.Errorf("names = %v", all)
	}
	for _, n := range []string{"a", "b", "c"} {
		if terms[n] == nil || terms[n].Value.Compare(ast.String(n)) != 0 {
			t.Errorf("term of %q = %v", n, terms[n])
		}
	}

	if out, terms := catalog.WithIndex(map[string]any{"acme": 1}); terms != nil || len(out) != 1 {
		t.Errorf("data without catalogs: %v %v", out, terms)
	}
}

// A section with more distinct entries than the index holds is left to the
// policy's item-by-item path.
func TestWithIndexBound(t *testing.T) {
	tools := map[string]any{}
	for i := range 65 {
		tools[fmt.Sprintf("t%d", i)] = map[string]any{"access": "step_up", "scopes": []any{fmt.Sprint(i)}}
	}
	out, _ := catalog.WithIndex(map[string]any{"mcp": map[string]any{"catalogs": map[string]any{"c": map[string]any{"tools": tools}}}})
	sections := out[catalog.IndexRoot].(map[string]any)["catalog_index"].(map[string]any)["c"].(map[string]any)
	if _, ok := sections["tools"]; ok {
		t.Fatal("a section of 65 distinct entries was indexed")
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
