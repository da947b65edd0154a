package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// initServer is a real MCP server (go-sdk, Streamable HTTP) with tools
// (one read-only, one destructive), a prompt, a resource and a template;
// with a token set it answers 401 to requests without it.
func initServer(t *testing.T, token string) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "qr-server", Version: "1.2.3"}, nil)
	no := false
	yes := true
	type in struct {
		Text string `json:"text"`
	}
	handler := func(context.Context, *mcp.CallToolRequest, in) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	}
	mcp.AddTool(s, &mcp.Tool{Name: "lookup_product", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, DestructiveHint: &no}}, handler)
	mcp.AddTool(s, &mcp.Tool{Name: "delete_product", Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes}}, handler)
	mcp.AddTool(s, &mcp.Tool{Name: "generate qr \"code\""}, handler) // a name that needs quoting
	s.AddPrompt(&mcp.Prompt{Name: "summarize"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{}, nil
	})
	read := func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{}, nil
	}
	s.AddResource(&mcp.Resource{URI: "file:///catalog.csv", Name: "catalog"}, read)
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///products/{gtin}", Name: "product"}, read)
	h := http.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	if token != "" {
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="http://x/.well-known/oauth-protected-resource"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// TestInit: pdp init scaffolds a project that pdp test and pdp check pass
// as it is; with --from, its catalog lists a live server's tools, prompts,
// resources and templates, each restricted to a scope of its own, the
// server's hints noted; a server that wants a token is told so; an
// existing policies/ is not overwritten.
func TestInit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  func(dir string) []string
		token string
		want  []string
	}{
		{"plain", func(dir string) []string { return []string{"init", dir} }, "", []string{"echo: {access: public}", `write_file: {access: step_up, scopes: ["files:write"]}`}},
		{"from a live server", nil, "", []string{
			`"lookup_product": {access: restricted, scopes: ["tools:lookup_product"]}  # the server says: read-only`,
			`"delete_product": {access: restricted, scopes: ["tools:delete_product"]}  # the server says: destructive`,
			`"generate qr \"code\"": {access: restricted, scopes: ["tools:generate_qr__code_"]}`,
			`prompts:` + "\n" + `        "summarize": {access: restricted, scopes: ["prompts:summarize"]}`,
			`"file:///catalog.csv": {access: restricted, scopes: ["resources:file:///catalog.csv"]}`,
			`"file:///products/{gtin}": {access: restricted`,
			"by `pdp init --from`",
		}},
		{"from a server that wants a token", nil, "s3cret", []string{`"lookup_product": {access: restricted`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"init", dir}
			if tc.args != nil {
				args = tc.args(dir)
			} else {
				args = append(args, "--from", initServer(t, tc.token))
				if tc.token != "" {
					// Without the token: told what to do.
					var out, errb bytes.Buffer
					if code := run(context.Background(), args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "give --token") {
						t.Fatalf("without the token: exit %d, %s", code, errb.String())
					}
					args = append(args, "--token", tc.token)
				}
			}
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 0 {
				t.Fatalf("pdp init: exit %d\n%s%s", code, out.String(), errb.String())
			}
			data, err := os.ReadFile(filepath.Join(dir, "policies", "data.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(data), w) {
					t.Errorf("data.yaml lacks %s\n%s", w, data)
				}
			}
			for _, f := range []string{"POLICY.md", "test/policies/catalog_test.rego", "policies/authz.rego", "policies/lib/scopes.rego"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
			t.Chdir(dir)
			for _, cmd := range [][]string{{"test", "-v"}, {"check", "--strict", "--warnings-as-errors"}, {"fmt", "--list", "--fail"}} {
				out.Reset()
				errb.Reset()
				if code := run(context.Background(), cmd, &out, &errb); code != 0 {
					t.Fatalf("pdp %v in the new project: exit %d\n%s%s", cmd, code, out.String(), errb.String())
				}
			}
			// A second init does not overwrite it.
			errb.Reset()
			if code := run(context.Background(), []string{"init", "."}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "exists: not overwriting") {
				t.Fatalf("init again: exit %d %s", code, errb.String())
			}
		})
	}
}
