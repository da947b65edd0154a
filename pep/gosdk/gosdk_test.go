package gosdk_test

import (
	"context"
	"encoding/json"
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
	"github.com/mcp-pdp/pdp/pep/gosdk"
	"github.com/mcp-pdp/pdp/pep/local"
)

// catalog: a public tool, two step-up tools with a scope each, and
// internal_debug, which is not in it (hidden: unknown to every caller).
const catalog = `mcp:
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

// shop is a go-sdk server whose tools record who called them.
type shop struct {
	mu    sync.Mutex
	calls []string // "tool by caller"
}

func (s *shop) server() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1.0.0"}, nil)
	for _, name := range []string{"lookup_product", "generate_qr_url", "sales_report", "internal_debug"} {
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				who := "anonymous"
				if c := gosdk.CallerOf(req.Extra.TokenInfo); c != nil {
					who = c.Subject + " " + strings.Join(req.Extra.TokenInfo.Scopes, ",")
				}
				s.mu.Lock()
				s.calls = append(s.calls, name+" by "+who)
				s.mu.Unlock()
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " ran for " + who}}}, nil
			})
	}
	return srv
}

func (s *shop) ran() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// serve mounts the protected go-sdk handler at /mcp of mcpSrv (resource), with the RFC
// 9728 document naming the dev authorization server.
func serve(mcpSrv *httptest.Server, resource string, s *shop, d pep.Decider, asURL string, jsonAnswers bool) {
	mux := http.NewServeMux()
	mux.Handle("/mcp", gosdk.Handler(func(*http.Request) *mcp.Server { return s.server() },
		pep.Options{Decider: d, Resource: resource}, &mcp.StreamableHTTPOptions{JSONResponse: jsonAnswers}))
	mux.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource: resource, AuthorizationServers: []string{asURL},
	}))
	mcpSrv.Config.Handler = mux
	mcpSrv.Start()
}

// TestGoSDKStepUp: the go-sdk client with its own OAuth handler
// (auth.AuthorizationCodeHandler) against a go-sdk server protected by
// gosdk.Handler, deciding with a remote PDP (pep.Client) and in-process
// (pep/local), answering in SSE and in JSON: it lists anonymously (the
// hidden tool is not listed), calls a public tool anonymously, steps up
// through a 401 and a 403 to a second scope, and tool handlers see the
// caller; a hidden tool is unknown and a denied call never reaches a
// handler.
func TestGoSDKStepUp(t *testing.T) {
	for _, remote := range []bool{true, false} {
		for _, jsonAnswers := range []bool{false, true} {
			name := map[bool]string{true: "remote PDP", false: "in-process PDP"}[remote] + map[bool]string{true: ", JSON", false: ", SSE"}[jsonAnswers]
			t.Run(name, func(t *testing.T) { stepUp(t, remote, jsonAnswers) })
		}
	}
}

func stepUp(t *testing.T, remote, jsonAnswers bool) {
	mcpSrv := httptest.NewUnstartedServer(nil)
	t.Cleanup(mcpSrv.Close)
	resource := "http://" + mcpSrv.Listener.Addr().String() + "/mcp"
	pdp := servertest.Dev(t, servertest.Options{Resources: []string{resource}, Data: catalog})
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
	s := &shop{}
	serve(mcpSrv, resource, s, d, pdp.URL+"/dev", jsonAnswers)

	b := &oauthtest.Browser{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "shopper", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, OAuthHandler: b.Handler(t), DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })

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
	if _, err := call("internal_debug"); err == nil {
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
	for _, c := range s.ran() {
		if strings.HasPrefix(c, "internal_debug") || c == "generate_qr_url by anonymous" || c == "sales_report by anonymous" {
			t.Fatalf("a denied call reached its handler: %v", s.ran())
		}
	}
}
