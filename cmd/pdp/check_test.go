package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"
)

func polDir(t *testing.T, files map[string]string) string {
	t.Helper()
	d := t.TempDir()
	for name, content := range files {
		testkit.WriteFile(t, filepath.Join(d, name), content)
	}
	return d
}

func TestCheck(t *testing.T) {
	ok := "package mcp.authz\n\ndecision := {\"allow\": false}\n"
	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"default policy", []string{"../../policies"}, 0, []string{"../../policies: ok: revision sha256:", "0 warnings"}},
		{"compile error with file:line and hint", []string{polDir(t, map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": allowed}\n"})}, 1,
			[]string{"refused", "authz.rego:3: rego_unsafe_var_error: var allowed is unsafe", "hint: "}},
		{"catalog error", []string{polDir(t, map[string]string{"authz.rego": ok, "mcp/data.yaml": "catalogs:\n  c:\n    tools:\n      t: {access: step_up, scope: [a]}\n"})}, 1,
			[]string{`mcp/data.yaml:4: data.mcp.catalogs.c.tools.t.scope: unknown key "scope": did you mean "scopes"?`}},
		{"no decision rule", []string{polDir(t, map[string]string{"authz.rego": "package mcp.authz\n\nallow := true\n"})}, 1,
			[]string{"no rule defines data.mcp.authz.decision"}},
		{"ignored data file warns", []string{polDir(t, map[string]string{"authz.rego": ok, "mcp/catalog.yaml": "x: 1\n"})}, 0,
			[]string{"catalog.yaml: warning: ignored: only files named data.json", "1 warnings"}},
		{"warnings as errors", []string{"--warnings-as-errors", polDir(t, map[string]string{"authz.rego": ok, "catalog.json": "{}"})}, 1, []string{"ignored"}},
		{"strict mode", []string{polDir(t, map[string]string{"authz.rego": "package mcp.authz\n\nimport data.mcp.lib\n\ndecision := {\"allow\": false}\n"}), "--strict"}, 1,
			[]string{"authz.rego:3: rego_compile_error: import data.mcp.lib unused"}},
		{"several paths, one bad", []string{"../../policies", polDir(t, map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\n"})}, 1,
			[]string{"../../policies: ok", "refused", "rego_parse_error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runCheck(context.Background(), tc.args, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errOut.String())
			}
			for _, want := range tc.wants {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// A path ending in .rego is one Rego file, checked alone as `opa check`
// does (it used to be read as a bundle archive: "gzip: invalid header").
func TestCheckRegoFile(t *testing.T) {
	file := func(name, content string) string {
		return filepath.Join(polDir(t, map[string]string{name: content}), name)
	}
	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"a library file compiles alone", []string{"../../policies/lib/scopes.rego"}, 0,
			[]string{"../../policies/lib/scopes.rego: ok: compiles"}},
		{"a file of the default policy compiles alone", []string{"../../policies/authz.rego"}, 1,
			[]string{"authz.rego:", "rego_type_error: undefined function data.mcp.lib."}},
		{"unsafe variable with file:line and hint", []string{file("broken.rego", "package acme\n\nallow if {\n\tnope == 1\n}\n")}, 1,
			[]string{"broken.rego: refused", "broken.rego:4: rego_unsafe_var_error: var nope is unsafe", "hint: "}},
		{"parse error with file:line", []string{file("parse.rego", "package acme\n\nallow if {\n")}, 1,
			[]string{"parse.rego: refused", "parse.rego:4: rego_parse_error"}},
		{"strict mode", []string{"--strict", file("unused.rego", "package acme\n\nimport data.other\n\nallow := true\n")}, 1,
			[]string{"unused.rego:3: rego_compile_error: import data.other unused"}},
		{"not strict", []string{file("unused.rego", "package acme\n\nimport data.other\n\nallow := true\n")}, 0,
			[]string{"unused.rego: ok: compiles"}},
		{"missing file", []string{filepath.Join(t.TempDir(), "missing.rego")}, 1, []string{"missing.rego: refused", "no such file"}},
		{"a file next to a directory", []string{"../../policies", file("ok.rego", "package acme\n\nallow := true\n")}, 0,
			[]string{"../../policies: ok: revision", "ok.rego: ok: compiles"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runCheck(context.Background(), tc.args, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errOut.String())
			}
			for _, want := range tc.wants {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("output lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String()+errOut.String(), "gzip") {
				t.Fatalf("a .rego file was read as a bundle archive:\n%s%s", out.String(), errOut.String())
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	dir := polDir(t, markedPolicyFiles())
	cfg := filepath.Join(t.TempDir(), "pdp.yaml")
	testkit.WriteFile(t, cfg, "resources:\n  - uri: https://mcp.example.com/mcp\n    issuer: https://issuer.example\npolicy:\n  path: "+dir+"\n")
	var out, errOut bytes.Buffer
	if code := runCheck(context.Background(), []string{"--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), dir+": ok") {
		t.Fatalf("output: %s", out.String())
	}
}

func markedPolicyFiles() map[string]string { return testkit.MarkedPolicy("a") }

// `pdp test` fails on a failing Rego test and passes on passing ones.
func TestPdpTestExitStatus(t *testing.T) {
	policy := "package acme\n\nallow if input.user == \"alice\"\n"
	tests := []struct {
		name, test string
		code       int
		want       string
	}{
		{"passing", "package acme_test\n\nimport data.acme\n\ntest_alice if acme.allow with input as {\"user\": \"alice\"}\n", 0, "PASS: 1/1"},
		{"failing", "package acme_test\n\nimport data.acme\n\ntest_bob if acme.allow with input as {\"user\": \"bob\"}\n", 1, "FAIL: 1/1"},
		{"undefined expression", "package acme_test\n\ntest_div if 1 / 0\n", 1, "FAIL: 1/1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := polDir(t, map[string]string{"acme.rego": policy, "acme_test.rego": tc.test})
			var out, errOut bytes.Buffer
			code := runTest(context.Background(), []string{dir}, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
				t.Fatalf("exit %d, want %d and %q:\n%s%s", code, tc.code, tc.want, out.String(), errOut.String())
			}
		})
	}
}
