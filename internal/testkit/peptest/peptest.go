// Package peptest is the shared test of mcp-pdp's PEP adapters: a real
// PDP (dev mode, its authorization server issuing the tokens), deciding
// remotely (pep.Client) and in-process (pep/local), an MCP server of the
// adapter under test, and the go-sdk client with its own OAuth handler
// stepping up through 401 and 403. It is imported by tests only.
package peptest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/oauthtest"
	"github.com/mcp-pdp/pdp/internal/testkit/servertest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/local"
)

// Catalog: a public tool, two step-up tools with a scope each; the server
// also has internal_debug, which is not in it (hidden: unknown to every
// caller).
const Catalog = `mcp:
  default_catalog: shop
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    shop:
      unknown: {access: deny}
      tools:
        lookup_product: {access: public}
        generate_qr_url: {access: step_up, scopes: ["qr:generate"]}
        sales_report: {access: step_up, scopes: ["reports:read"]}
      prompts: {}
      resources: {}
      resource_templates: {}
`

// Tools are the server's tools: Catalog's and internal_debug.
var Tools = []string{"lookup_product", "generate_qr_url", "sales_report", "internal_debug"}

// Calls records what the server's tool handlers ran, and for whom.
type Calls struct {
	mu    sync.Mutex
	calls []string
}

// Ran records that tool ran for caller c (nil: anonymous) and returns the
// text the tool answers: "TOOL ran for WHO".
func (r *Calls) Ran(tool string, c *pep.Caller) string {
	who := "anonymous"
	if c != nil {
		who = c.Subject + " " + strings.Join(c.Scopes, ",")
	}
	r.mu.Lock()
	r.calls = append(r.calls, tool+" by "+who)
	r.mu.Unlock()
	return tool + " ran for " + who
}

func (r *Calls) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Mount returns the protected MCP endpoint of the adapter under test, for
// resource, deciding with d, answering in JSON (or SSE when the adapter
// has the choice and jsonAnswers is false), its tool handlers reporting
// to calls.
type Mount func(d pep.Decider, resource string, jsonAnswers bool, calls *Calls) http.Handler

// StepUp runs the scenario for every decider (remote, in-process) and
// answer mode.
func StepUp(t *testing.T, mount Mount) {
	for _, remote := range []bool{true, false} {
		for _, jsonAnswers := range []bool{false, true} {
			name := map[bool]string{true: "remote PDP", false: "in-process PDP"}[remote] + map[bool]string{true: ", JSON", false: ", SSE"}[jsonAnswers]
			t.Run(name, func(t *testing.T) { stepUp(t, mount, remote, jsonAnswers, "", "") })
		}
	}
}

// StepUpVersions runs the scenario (remote PDP, SSE answers) with the
// go-sdk client asking for each protocol version in turn (the client's
// ClientSessionOptions.ProtocolVersion), and checks the version the session
// negotiated: want[v], or v itself when want has no entry (a server that
// does not speak v's era makes the client fall back).
func StepUpVersions(t *testing.T, mount Mount, versions []string, want map[string]string) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			negotiated := want[v]
			if negotiated == "" {
				negotiated = v
			}
			stepUp(t, mount, true, false, v, negotiated)
		})
	}
}

// Protocol versions of the go-sdk client the scenarios ask for.
var Versions = []string{"2025-06-18", "2025-11-25", "2026-07-28"}

func stepUp(t *testing.T, mount Mount, remote, jsonAnswers bool, version, negotiated string) {
	mcpSrv := httptest.NewUnstartedServer(nil)
	t.Cleanup(mcpSrv.Close)
	resource := "http://" + mcpSrv.Listener.Addr().String() + "/mcp"
	pdp := servertest.Dev(t, servertest.Options{Resources: []string{resource}, Data: Catalog})
	var d pep.Decider
	if remote {
		c, err := pep.NewClient(pdp.URL, pep.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d = c
	} else {
		// The same decisions in-process: a pdp.yaml that trusts the dev
		// PDP's issuer (its authorization server issues the tokens).
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "pdp.yaml")
		testkit.WriteFile(t, cfgPath, "data_dir: "+strconv.Quote(filepath.Join(dir, "data"))+"\n"+
			"policy: {path: "+strconv.Quote(pdp.PolicyDir)+"}\n"+
			"resources:\n  - uri: "+resource+"\n    issuer: "+pdp.URL+"/dev\n")
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		l, err := local.Open(ctx, cfgPath, local.Options{Name: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		d = l
	}
	calls := &Calls{}
	mux := http.NewServeMux()
	mux.Handle("/mcp", mount(d, resource, jsonAnswers, calls))
	mux.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource: resource, AuthorizationServers: []string{pdp.URL + "/dev"},
	}))
	mcpSrv.Config.Handler = mux
	mcpSrv.Start()

	b := &oauthtest.Browser{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "shopper", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, OAuthHandler: b.Handler(t), DisableStandaloneSSE: true, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	if got := cs.InitializeResult().ProtocolVersion; negotiated != "" && got != negotiated {
		t.Fatalf("negotiated protocol version %s, want %s", got, negotiated)
	}

	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("anonymous list: %v", err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "generate_qr_url,lookup_product,sales_report" {
		t.Fatalf("tools listed: %v, want the three in the catalog (internal_debug hidden)", names)
	}
	call := func(tool string) (*mcp.CallToolResult, error) {
		return cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
	}
	if res, err := call("lookup_product"); err != nil || res.IsError || b.Asked() != nil {
		t.Fatalf("anonymous public call: %+v %v (authorizations %v)", res, err, b.Asked())
	}
	if res, err := call("internal_debug"); err == nil && !res.IsError {
		t.Fatal("the hidden tool was called")
	}
	for i, tc := range []struct{ tool, scopes, caller string }{
		{"generate_qr_url", "qr:generate", "alice qr:generate"},
		{"sales_report", "qr:generate reports:read", "alice "},
	} {
		res, err := call(tc.tool)
		if err != nil || res.IsError {
			t.Fatalf("%s after the challenge: %+v %v", tc.tool, res, err)
		}
		asked := b.Asked()
		if len(asked) != i+1 || !oauthtest.SameScopes(asked[i], tc.scopes) {
			t.Fatalf("authorizations %q, want #%d for %q", asked, i+1, tc.scopes)
		}
		if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "ran for "+tc.caller) {
			t.Fatalf("%s: %q, want the handler to see %q", tc.tool, text, tc.caller)
		}
	}
	for _, c := range calls.all() {
		if strings.HasPrefix(c, "internal_debug") || c == "generate_qr_url by anonymous" || c == "sales_report by anonymous" {
			t.Fatalf("a denied call reached its handler: %v", calls.all())
		}
	}
}
