package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
)

func runBundleArgs(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := runBundle(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// A bundle built and signed by `pdp bundle build` verifies with `pdp bundle
// verify` and is served by the PDP with verification configured.
func TestBundleBuildVerifyServe(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	_, otherPub := testkit.RSAKeyFiles(t)
	out := filepath.Join(t.TempDir(), "bundles", "mcp.tar.gz")
	code, stdout, stderr := runBundleArgs("build", "../../policies", "-o", out, "--revision", "v1.2.3", "--signing-key", priv)
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "revision v1.2.3") || !strings.Contains(stdout, `signed (RS256, key id "default")`) {
		t.Fatalf("build said: %s", stdout)
	}

	code, stdout, stderr = runBundleArgs("verify", out, "--verification-key", pub)
	if code != 0 || !strings.Contains(stdout, "signature ok") || !strings.Contains(stdout, "revision v1.2.3") {
		t.Fatalf("verify: exit %d: %s %s", code, stdout, stderr)
	}
	code, _, stderr = runBundleArgs("verify", out, "--verification-key", otherPub)
	if code != 1 || !strings.Contains(stderr, "does not verify") {
		t.Fatalf("verify with another key: exit %d: %s", code, stderr)
	}
	// Verify with the key from a configuration file.
	cfg := filepath.Join(t.TempDir(), "pdp.yaml")
	testkit.WriteFile(t, cfg, "resources:\n  - uri: https://mcp.example.com/mcp\n    issuer: https://issuer.example\npolicy:\n  path: "+out+"\n  verification:\n    key_file: "+pub+"\n")
	if code, stdout, stderr = runBundleArgs("verify", out, "--config", cfg); code != 0 {
		t.Fatalf("verify --config: exit %d: %s %s", code, stdout, stderr)
	}

	// The PDP serves it, and its decisions carry the bundle's revision.
	base, a := polTestApp(t, config.Policy{Path: out, Verification: config.Verification{KeyFile: pub}})
	if rev := a.Engine().Policy().Revision(); rev != "v1.2.3" {
		t.Fatalf("served revision %q", rev)
	}
	r, err := polDecideOnce(&http.Client{Timeout: 30 * time.Second}, base)
	if err != nil || r.Revision != "v1.2.3" {
		t.Fatalf("decision %+v %v", r, err)
	}
	// The test files of the source are not in the bundle.
	pol := a.Engine().Policy()
	for _, m := range pol.Bundle().Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			t.Fatalf("bundle holds test file %s", m.Path)
		}
	}
}

func TestBundleBuildRefusesBrokenPolicies(t *testing.T) {
	priv, _ := testkit.RSAKeyFiles(t)
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"compile error", map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": x}\n"}, "authz.rego:3: rego_unsafe_var_error"},
		{"invalid catalog", map[string]string{
			"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": false}\n",
			"data.yaml":  "mcp:\n  catalogs:\n    c:\n      tools:\n        t: {access: publik}\n",
		}, `data.yaml:5: data.mcp.catalogs.c.tools.t.access: "publik" is not an access class`},
		{"no decision rule", map[string]string{"authz.rego": "package mcp.authz\n\nallow := true\n"}, "no rule defines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "mcp.tar.gz")
			code, _, stderr := runBundleArgs("build", polDir(t, tc.files), "-o", out, "--signing-key", priv)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %s\nwant %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a refused bundle was written")
			}
		})
	}
}

func TestBundleUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"build", "../../policies"}, 2, "-o is required"},
		{[]string{"build", "../../policies", "-o", "x.tar.gz", "--scope", "s"}, 1, "need --signing-key"},
		{[]string{"verify", "x.tar.gz"}, 2, "give --verification-key or --config"},
		{[]string{"verify"}, 2, "give one bundle"},
	}
	for _, tc := range tests {
		code, _, stderr := runBundleArgs(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Fatalf("%v: exit %d %q, want %d %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// A bundle signed by `pdp bundle build` with a scope verifies only for
// verifiers that require that scope (or none).
func TestBundleScope(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	out := filepath.Join(t.TempDir(), "mcp.tar.gz")
	if code, _, stderr := runBundleArgs("build", "../../policies", "-o", out, "--signing-key", priv, "--scope", "prod"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runBundleArgs("verify", out, "--verification-key", pub, "--scope", "prod"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runBundleArgs("verify", out, "--verification-key", pub, "--scope", "staging"); code != 1 || !strings.Contains(stderr, "scope") {
		t.Fatalf("exit %d %s", code, stderr)
	}
	_, _, err := server.LoadPolicy(context.Background(), config.Policy{Path: out, Verification: config.Verification{KeyFile: pub, Scope: "staging"}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("serving with the wrong scope: %v", err)
	}
}
