package decision_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/policies"
)

func TestDefaultDataIsValid(t *testing.T) {
	p := loadDefault(t)
	if w := p.Warnings(); len(w) != 0 {
		t.Fatalf("default policy data has warnings: %v", w)
	}
}

const minimalPolicy = "package mcp.authz\n\ndecision := {\"allow\": false}\n"

// Each catalog mistake is refused with the data file and line that hold it
// and a message that names the fix.
func TestCatalogValidation(t *testing.T) {
	tests := []struct {
		name string
		data string // mcp/data.yaml
		line int
		want string
	}{
		{"misspelt access class", `
catalogs:
  c:
    tools:
      t: {access: publik}
default_catalog: c
`, 5, `tools.t.access: "publik" is not an access class; use one of public, step_up, restricted, deny (did you mean "public"?)`},
		{"missing access", `
default_catalog: c
catalogs:
  c:
    tools:
      t: {scopes: [a]}
`, 6, "tools.t.access: is required"},
		{"misspelt scopes key", `
default_catalog: c
catalogs:
  c:
    tools:
      t:
        access: step_up
        scope: [files:read]
`, 8, `unknown key "scope": did you mean "scopes"?`},
		{"scopes as a string", `
default_catalog: c
catalogs:
  c:
    prompts:
      p: {access: step_up, scopes: "a b"}
`, 6, `prompts.p.scopes: must be a list, not a string`},
		{"scope with a space", `
default_catalog: c
catalogs:
  c:
    tools:
      t:
        access: step_up
        scopes:
          - files:read
          - "files:write admin"
`, 10, `scopes[1]: "files:write admin" contains white space`},
		{"empty roles", `
default_catalog: c
catalogs:
  c:
    tools:
      t: {access: restricted, roles: []}
`, 6, "tools.t.roles: is empty"},
		{"unknown default catalog", `
default_catalog: prod
catalogs:
  prd: {}
`, 2, `default_catalog: names catalog "prod", which data.mcp.catalogs does not define (did you mean "prd"?)`},
		{"resource names an unknown catalog", `
default_catalog: a
resources:
  "https://mcp.example.com/mcp": {catalog: b}
catalogs:
  a: {}
`, 4, `data.mcp.resources["https://mcp.example.com/mcp"].catalog: names catalog "b"`},
		{"revoked clients as a list", `
revoked:
  clients: [evil]
`, 3, "revoked.clients: must be an object mapping each revoked id to a note"},
		{"hidden as an object", `
hidden: {a: true}
`, 2, "hidden: must be a list of names"},
		{"camel-case section", `
default_catalog: c
catalogs:
  c:
    resourceTemplates: {}
`, 5, `the section is called "resource_templates"`},
		{"scope_implies value not a list", `
default_catalog: c
catalogs:
  c:
    scope_implies:
      admin: files:write
`, 6, `scope_implies.admin: must be a list, not a string: write ["files:write"]`},
		{"section as a list", `
default_catalog: c
catalogs:
  c:
    tools: [a, b]
`, 5, "tools: must be an object mapping names to entries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), minimalPolicy)
			testkit.WriteFile(t, filepath.Join(dir, "mcp", "data.yaml"), tc.data)
			_, err := decision.Load(context.Background(), decision.Source{Path: dir})
			var pe *decision.PolicyError
			if !errors.As(err, &pe) || pe.Stage != "validate" {
				t.Fatalf("err = %v, want a validation error", err)
			}
			wantLoc := filepath.Join(dir, "mcp", "data.yaml") + ":" + strconv.Itoa(tc.line) + ": "
			for _, p := range pe.Errors() {
				if strings.Contains(p.String(), tc.want) {
					if !strings.HasPrefix(p.String(), wantLoc) {
						t.Fatalf("problem %q, want it at %s", p, wantLoc)
					}
					return
				}
			}
			t.Fatalf("err = %v\nwant a problem containing %q", err, tc.want)
		})
	}
}

func TestCatalogWarnings(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), minimalPolicy)
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), `
mcp:
  catalogs:
    c:
      tools:
        "a*b": {access: public}
        pub: {access: public, roles: [admin]}
        custom: {access: step_up, max_amount: 100, description: "own fields are fine"}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range p.Warnings() {
		if !w.Warning {
			t.Errorf("%v is not marked as a warning", w)
		}
		got = append(got, w.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"data.yaml:2: warning: data.mcp.default_catalog: is not set",
		`data.yaml:6: warning: data.mcp.catalogs.c.tools["a*b"]: only a trailing * is a wildcard`,
		"data.yaml:7: warning: data.mcp.catalogs.c.tools.pub.roles: has no effect on a public entry",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings:\n%s\nwant one containing %q", all, want)
		}
	}
	if strings.Contains(all, "custom") {
		t.Errorf("own fields of an entry were warned about:\n%s", all)
	}
}

// Policies that do not use the catalog format are not checked against it.
func TestNoCatalogNoValidation(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), minimalPolicy)
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), `{"acme": {"tools": ["a"]}}`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil || len(p.Warnings()) != 0 {
		t.Fatalf("err=%v warnings=%v", err, p.Warnings())
	}
}

// data.pdp is where the PDP puts its catalog index: a policy's own data
// there is refused, not silently replaced.
func TestReservedDataRoot(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), minimalPolicy)
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), `{"pdp": {"catalog_index": {}}}`)
	_, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("err = %v, want data.pdp refused as reserved", err)
	}
}

// Rego and data syntax errors name file and line and explain themselves.
func TestProblemHints(t *testing.T) {
	tests := []struct {
		name, file, content, loc, code, hint string
	}{
		{"missing if", "authz.rego", "package mcp.authz\n\ndecision := {\"allow\": true} { true }\n", "authz.rego:3", "rego_parse_error", "requires `if`"},
		{"unclosed brace", "authz.rego", "package mcp.authz\n\ndecision := {\n", "authz.rego:4", "rego_parse_error", "never closed"},
		{"unsafe variable", "authz.rego", "package mcp.authz\n\ndecision := {\"allow\": x}\n", "authz.rego:3", "rego_unsafe_var_error", "without ever being given a value"},
		{"undefined function", "authz.rego", "package mcp.authz\n\ndecision := {\"allow\": lib.nope(1)}\n", "authz.rego:3", "rego_type_error", "import its package"},
		{"recursion", "authz.rego", "package mcp.authz\n\ndecision := {\"allow\": a}\n\na := b\n\nb := a\n", "authz.rego:5", "rego_recursion_error", "depend on themselves"},
		{"bad JSON", "data.json", "{\n  \"a\": 1,\n  oops\n}\n", "data.json:3", "data_error", "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.WriteFile(t, filepath.Join(dir, tc.file), tc.content)
			if tc.file != "authz.rego" {
				testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), minimalPolicy)
			}
			_, err := decision.Load(context.Background(), decision.Source{Path: dir})
			ps := decision.ProblemsOf(err)
			if len(ps) == 0 {
				t.Fatalf("err = %v: no problems", err)
			}
			p := ps[0]
			if !strings.HasSuffix(p.Location(), tc.loc) || p.Code != tc.code || !strings.Contains(p.Hint, tc.hint) {
				t.Fatalf("problem = %+v\nwant %s %s with hint %q", p, tc.loc, tc.code, tc.hint)
			}
			if !strings.Contains(err.Error(), "hint: ") {
				t.Fatalf("error text has no hint: %v", err)
			}
		})
	}
}

func TestStrictMode(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\nimport data.mcp.lib\n\ndecision := {\"allow\": false}\n")
	if _, err := decision.Load(context.Background(), decision.Source{Path: dir}); err != nil {
		t.Fatalf("non-strict: %v", err)
	}
	_, err := decision.Load(context.Background(), decision.Source{Path: dir}, decision.Options{Strict: true})
	if err == nil || !strings.Contains(err.Error(), "authz.rego:3") {
		t.Fatalf("strict: err = %v, want the unused import at line 3", err)
	}
}

func TestLocateEmbedded(t *testing.T) {
	l, err := decision.LocateSource(decision.Source{FS: policies.FS})
	if err != nil {
		t.Fatal(err)
	}
	file, line := l.Lookup([]string{"mcp", "catalogs", "demo", "tools", "generate_qr_url"})
	if file != "data.yaml" || line == 0 {
		t.Fatalf("generate_qr_url at %s:%d", file, line)
	}
	// A path that does not exist is reported where its parent is.
	_, parent := l.Lookup([]string{"mcp", "catalogs", "demo", "tools"})
	if _, l2 := l.Lookup([]string{"mcp", "catalogs", "demo", "tools", "nope"}); l2 != parent {
		t.Fatalf("missing key at line %d, want its parent's %d", l2, parent)
	}
}
