package server

import (
	"go/build"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is this module's import path.
const module = "github.com/mcp-pdp/pdp/"

// allowedImports is the package table of docs/architecture.md: what each
// package may import of this module (tests aside). A package missing from
// the table fails the test, so that a new room is placed on purpose.
var allowedImports = map[string][]string{
	"pep":                              {},
	"pep/gosdk":                        {"pep"},
	"pep/mcpgo":                        {"pep"},
	"examples":                         {},
	"examples/go-sdk":                  {"pep", "pep/gosdk"},
	"examples/mcp-go":                  {"pep", "pep/mcpgo"},
	"pep/local":                        {"pep", "internal/server", "internal/config"},
	"policies":                         {},
	"internal/api":                     {"pep", "internal/stepup", "internal/jsonfast", "internal/authzen", "internal/tracing"},
	"internal/authzen":                 {"pep", "internal/token"},
	"internal/core":                    {"internal/token", "internal/dpop", "internal/decision", "internal/catalog", "internal/ratelimit", "internal/listfilter", "internal/stepup", "internal/auditsink", "internal/jsonfast", "internal/revoke", "pep"},
	"internal/token":                   {},
	"internal/dpop":                    {"internal/jsonfast"},
	"internal/decision":                {"internal/catalog"},
	"internal/catalog":                 {},
	"internal/listfilter":              {"internal/decision", "internal/jsonfast"},
	"internal/stepup":                  {"pep"},
	"internal/auditsink":               {"internal/spool"},
	"internal/auditstore":              {"internal/auditsink"},
	"internal/spool":                   {},
	"internal/policysource":            {"internal/decision"},
	"internal/policytest":              {},
	"internal/config":                  {},
	"internal/natsembed":               {},
	"internal/devissuer":               {},
	"internal/devissuer/devissuertest": {"internal/devissuer"},
	"internal/jsonfast":                {},
	"internal/testkit":                 {},
	"internal/gateway":                 {"pep", "internal/gateway/stdio", "internal/tracing"},
	"internal/gateway/stdio":           {},
	"internal/assertion":               {},
	"internal/revoke":                  {},
	"internal/ratelimit":               {},
	"internal/quota":                   {},
	"internal/tracing":                 {},
}

// TestPackageImports: the import graph is the one docs/architecture.md
// draws. internal/server, cmd/ and bench/ may import anything below them;
// nothing imports cmd/, and internal/server only cmd/, bench/ and
// pep/local (the PDP in-process).
func TestPackageImports(t *testing.T) {
	root := "../.."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			return nil // no Go files here
		}
		var own []string
		for _, imp := range pkg.Imports {
			if strings.HasPrefix(imp, module) {
				own = append(own, strings.TrimPrefix(imp, module))
			}
		}
		switch {
		case strings.HasPrefix(rel, "cmd/"), strings.HasPrefix(rel, "bench/"), rel == "internal/server":
			return nil
		}
		allowed, ok := allowedImports[rel]
		if !ok {
			if strings.HasPrefix(rel, "internal/testkit/") || strings.HasPrefix(rel, "test/") {
				return nil // test helpers and test-only packages
			}
			t.Errorf("%s is not in the package table (docs/architecture.md, allowedImports)", rel)
			return nil
		}
		for _, imp := range own {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow", rel, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
