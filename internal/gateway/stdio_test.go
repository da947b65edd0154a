package gateway_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/policies"
)

// stdioServer is the stdio package's test server (a real go-sdk server on
// stdio in its "sdk" mode), built once for these tests.
var stdioServer string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stdioServer = filepath.Join(dir, "fakeserver")
	build := exec.Command("go", "build", "-o", stdioServer, "./stdio/testdata/fakeserver")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the stdio test server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mathPolicy is the default policy with a catalog for the stdio server's
// tools: echo public, sum a step-up tool needing math:sum.
func mathPolicy(t *testing.T) coretest.Options {
	files := map[string]string{"data.yaml": `mcp:
  default_catalog: math
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    math:
      unknown: {access: deny}
      tools:
        echo: {access: public}
        sum: {access: step_up, scopes: ["math:sum"]}
        whoami: {access: public}
      prompts: {}
      resources: {}
      resource_templates: {}
`}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".rego" {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return coretest.Options{Policy: coretest.PolicyFiles(t, files)}
}

// TestGatewayStdio: an unmodified stdio MCP server (go-sdk) behind the
// gateway, reached by the go-sdk client over Streamable HTTP: the gateway
// issues the session, starts one child per session, filters the list,
// refuses the step-up tool without its scope and runs it with a token.
func TestGatewayStdio(t *testing.T) {
	env := coretest.New(t, mathPolicy(t))
	g, err := gateway.New(gateway.Options{
		Decider: env.Service, Resource: coretest.Resource,
		Stdio: &stdio.Options{Command: []string{stdioServer, "sdk"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	gs := httptest.NewServer(g)
	t.Cleanup(gs.Close)
	f := &fixture{env: env, endpoint: gs.URL + "/mcp"}

	ctx := context.Background()
	anon := f.connect(t, "")
	list, err := anon.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list through the stdio gateway: %v", err)
	}
	if got := toolNames(list); !slices.Equal(got, []string{"echo", "sum", "whoami"}) || list.CacheScope != "private" {
		t.Fatalf("tools/list = %v (cacheScope %q)", got, list.CacheScope)
	}
	res, err := anon.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError {
		t.Fatalf("anonymous echo: %+v %v", res, err)
	}
	if _, err := anon.CallTool(ctx, &mcp.CallToolParams{Name: "sum", Arguments: map[string]any{"a": 1, "b": 2}}); err == nil {
		t.Fatal("anonymous sum succeeded")
	}
	tok := env.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Scopes: []string{"math:sum"}})
	alice := f.connect(t, tok)
	res, err = alice.CallTool(ctx, &mcp.CallToolParams{Name: "sum", Arguments: map[string]any{"a": 1, "b": 2}})
	if err != nil || res.IsError {
		t.Fatalf("alice's sum: %+v %v", res, err)
	}

	// A session id the gateway never issued is not found; so is a session
	// after DELETE.
	resp, _ := post(t, f.endpoint, "", "not-a-session", `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown session: HTTP %d, want 404", resp.StatusCode)
	}
}
