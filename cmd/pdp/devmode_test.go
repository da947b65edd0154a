package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/testkit/oauthtest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/gosdk"
)

// startDevServe runs `pdp serve --dev` with args, as `make run` does but
// on a free port with its own data directory, until the test ends; it
// returns the PDP's base URL once it is ready, the data directory and the
// command's stderr.
func startDevServe(t *testing.T, args ...string) (base, dataDir string, stderr *testkit.SyncBuffer) {
	t.Helper()
	dataDir = t.TempDir()
	stderr, alive := startPDP(t, append([]string{"serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...))
	testkit.WaitFor(t, "pdp serve --dev to be ready", func() bool {
		alive()
		iss, err := devissuer.Load(filepath.Join(dataDir, server.DevIssuerFile))
		if err != nil {
			return false
		}
		base = strings.TrimSuffix(iss.IssuerURL(), "/dev")
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base, dataDir, stderr
}

// shopServer is an MCP server of the go-sdk (lookup_product public,
// generate_qr_url needing qr:generate in the demo policy) behind the Go
// PEP, at an address known before the PDP starts; start it with the
// PDP's URL. It serves its RFC 9728 document naming the dev
// authorization server.
type shopServer struct {
	hs       *httptest.Server
	Resource string
}

func newShopServer(t *testing.T) *shopServer {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	t.Cleanup(hs.Close)
	return &shopServer{hs: hs, Resource: "http://" + hs.Listener.Addr().String() + "/mcp"}
}

func (s *shopServer) start(t *testing.T, pdpURL string) {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1.0.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "lookup_product"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a product"}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "generate_qr_url"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		c := gosdk.CallerOf(req.Extra.TokenInfo)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "qr for " + c.Subject + " via " + c.ClientID}}}, nil, nil
	})
	pdp, err := pep.NewClient(pdpURL, pep.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", gosdk.Handler(func(*http.Request) *mcp.Server { return srv }, pep.Options{Decider: pdp, Resource: s.Resource}, nil))
	mux.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(
		&oauthex.ProtectedResourceMetadata{Resource: s.Resource, AuthorizationServers: []string{pdpURL + "/dev"}}))
	s.hs.Config.Handler = mux
	s.hs.Start()
}

// recordingBrowser is oauthtest.Browser that also keeps the client_id of
// each authorization URL.
type recordingBrowser struct {
	oauthtest.Browser
	mu        sync.Mutex
	clientIDs []string
}

func (b *recordingBrowser) Fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	if u, err := url.Parse(args.URL); err == nil {
		b.mu.Lock()
		b.clientIDs = append(b.clientIDs, u.Query().Get("client_id"))
		b.mu.Unlock()
	}
	return b.Browser.Fetch(ctx, args)
}

// stepUp connects the go-sdk client with h, lists and calls the public
// tool anonymously, then generate_qr_url, which needs the step-up; it
// returns that call's text.
func stepUp(t *testing.T, resource string, h auth.OAuthHandler, b *oauthtest.Browser, stderr *testkit.SyncBuffer) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "dev-user", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, OAuthHandler: h, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, stderr.String())
	}
	defer cs.Close()
	if list, err := cs.ListTools(ctx, nil); err != nil || len(list.Tools) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "lookup_product", Arguments: map[string]any{}}); err != nil || res.IsError || len(b.Asked()) != 0 {
		t.Fatalf("anonymous lookup_product: %+v %v (authorizations %v)", res, err, b.Asked())
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "generate_qr_url", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("generate_qr_url after the step-up: %+v %v\n%s", res, err, stderr.String())
	}
	if a := b.Asked(); len(a) != 1 || a[0] != "qr:generate" {
		t.Fatalf("authorizations %q, want one for qr:generate", a)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

// TestDevModeGoSDK: `pdp serve --dev --resource URL` protects a go-sdk
// server of ours behind the Go PEP, with no other authorization server:
// the go-sdk client with auth.AuthorizationCodeHandler steps up through the
// dev authorization server, registering dynamically (RFC 7591), and again
// with a Client ID Metadata Document (an https URL on loopback, self-signed)
// which the handler prefers when the server advertises it; the tool runs
// for alice and that client. The start-up banner names the resource and a
// token command.
func TestDevModeGoSDK(t *testing.T) {
	shop := newShopServer(t)
	base, _, stderr := startDevServe(t, "--resource", shop.Resource)
	shop.start(t, base)
	if out := stderr.String(); !strings.Contains(out, "Protecting "+shop.Resource) || !strings.Contains(out, " token --scope SCOPE --url ") {
		t.Fatalf("the banner does not name the resource and a token command:\n%s", out)
	}

	t.Run("dynamic registration", func(t *testing.T) {
		b := &oauthtest.Browser{}
		text := stepUp(t, shop.Resource, b.Handler(t), b, stderr)
		if !strings.HasPrefix(text, "qr for alice via dev-client-") {
			t.Fatalf("generate_qr_url said %q", text)
		}
	})

	t.Run("client ID metadata document", func(t *testing.T) {
		var fetches int
		var mu sync.Mutex
		doc := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fetches++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"client_id": "https://" + r.Host + "/client.json", "client_name": "go-sdk CIMD client",
				"redirect_uris": []string{"http://127.0.0.1:1/callback"}, "grant_types": []string{"authorization_code", "refresh_token"},
				"response_types": []string{"code"}, "token_endpoint_auth_method": "none",
			})
		}))
		t.Cleanup(doc.Close)
		cimdURL := doc.URL + "/client.json"
		b := &recordingBrowser{}
		h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
			ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: cimdURL},
			// Registration stays possible: the handler must prefer the document.
			DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs: []string{"http://127.0.0.1:1/callback"}, ClientName: "unused", TokenEndpointAuthMethod: "none",
			}},
			RedirectURL:              "http://127.0.0.1:1/callback",
			AuthorizationCodeFetcher: b.Fetch,
		})
		if err != nil {
			t.Fatal(err)
		}
		text := stepUp(t, shop.Resource, h, &b.Browser, stderr)
		if text != "qr for alice via "+cimdURL {
			t.Fatalf("generate_qr_url said %q, want it run for alice via %s", text, cimdURL)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(b.clientIDs) != 1 || b.clientIDs[0] != cimdURL || fetches != 1 {
			t.Fatalf("authorizations for %q, document fetched %d times: want one for %s, fetched once", b.clientIDs, fetches, cimdURL)
		}
	})

	t.Run("consent page", func(t *testing.T) {
		// What a browser sees at the real server's /authorize.
		regBody := `{"redirect_uris":["http://127.0.0.1:1/callback"],"client_name":"Browser Client"}`
		resp, err := http.Post(base+"/dev/register", "application/json", strings.NewReader(regBody))
		if err != nil {
			t.Fatal(err)
		}
		var reg struct {
			ClientID string `json:"client_id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&reg)
		resp.Body.Close()
		q := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {"http://127.0.0.1:1/callback"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
			"resource": {shop.Resource}, "scope": {"qr:generate"}, "state": {"s"}}
		req, _ := http.NewRequest(http.MethodGet, base+"/dev/authorize?"+q.Encode(), nil)
		req.Header.Set("Accept", "text/html,*/*;q=0.8")
		resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{">alice<", ">Browser Client<", shop.Resource, "<code>qr:generate</code>", `http-equiv="refresh"`} {
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
				t.Fatalf("HTTP %d: the consent page lacks %s:\n%s", resp.StatusCode, want, page)
			}
		}
		// A resource the server does not protect is refused.
		q.Set("resource", "https://elsewhere.example/mcp")
		req, _ = http.NewRequest(http.MethodGet, base+"/dev/authorize?"+q.Encode(), nil)
		resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if back, _ := url.Parse(resp.Header.Get("Location")); back == nil || back.Query().Get("error") != "invalid_target" {
			t.Fatalf("another resource: HTTP %d %s, want invalid_target", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// TestTokenURL: `pdp token --url` mints through the running dev server,
// from any directory and without its data directory, for its first
// resource or the --resource asked, and the PDP accepts the token; an
// unknown --resource is refused with the server's list. The file-based
// path (--data-dir) knows the same resources.
func TestTokenURL(t *testing.T) {
	const first, second = "http://127.0.0.1:3001/mcp", "http://127.0.0.1:3002/mcp"
	base, dataDir, _ := startDevServe(t, "--resource", first, "--resource", second)
	t.Chdir(t.TempDir()) // no .pdp-data here

	token := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"token"}, args...), &out, &errb); code != wantCode {
			t.Fatalf("pdp token %v: exit %d, want %d\n%s", args, code, wantCode, errb.String())
		}
		return strings.TrimSpace(out.String()), errb.String()
	}
	claims := func(tok string) map[string]any {
		t.Helper()
		var c map[string]any
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("not a JWT: %q", tok)
		}
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	tok, _ := token(0, "--url", base, "--scope", "qr:generate", "--sub", "bob")
	if c := claims(tok); c["aud"] != first || c["sub"] != "bob" || c["scope"] != "qr:generate" || c["iss"] != base+"/dev" {
		t.Fatalf("claims %v", c)
	}
	d := decide(t, base, map[string]any{"resource": first, "authorization": "Bearer " + tok,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": "generate_qr_url", "arguments": map[string]any{}}}})
	if d["allow"] != true {
		t.Fatalf("the PDP refused the minted token: %v", d)
	}
	tok, _ = token(0, "--url", base, "--resource", second, "--ttl", "2m")
	if c := claims(tok); c["aud"] != second || c["exp"].(float64)-c["iat"].(float64) != 120 {
		t.Fatalf("--resource %s: %v", second, c)
	}
	if _, msg := token(1, "--url", base, "--resource", "http://127.0.0.1:9999/mcp"); !strings.Contains(msg, first+", "+second) {
		t.Fatalf("an unknown resource: %s", msg)
	}
	if _, msg := token(1, "--url", base, "--aud", "x"); !strings.Contains(msg, "--aud needs") {
		t.Fatalf("--aud with --url: %s", msg)
	}
	if _, msg := token(1, "--url", "http://127.0.0.1:1"); !strings.Contains(msg, "127.0.0.1:1") {
		t.Fatalf("no server: %s", msg)
	}
	// The file-based path, as before, knows both resources too.
	if c := claims(first0(token(0, "--data-dir", dataDir))); c["aud"] != first {
		t.Fatalf("--data-dir: %v", c)
	}
	if c := claims(first0(token(0, "--data-dir", dataDir, "--resource", second))); c["aud"] != second {
		t.Fatalf("--data-dir --resource: %v", c)
	}
	if _, msg := token(1, "--data-dir", dataDir, "--resource", "http://x.example/mcp"); !strings.Contains(msg, "not one of them") {
		t.Fatalf("--data-dir, an unknown resource: %s", msg)
	}
	if c := claims(first0(token(0, "--data-dir", dataDir, "--aud", "anything"))); c["aud"] != "anything" {
		t.Fatalf("--aud: %v", c)
	}
	if _, err := os.Stat(".pdp-data"); err == nil {
		t.Fatal("pdp token wrote a data directory")
	}
}

func first0(a, _ string) string { return a }

// TestServeDevPolicy: `pdp serve --dev --policy DIR` decides with that
// policy instead of the demo one: a tool of its catalog needs its scope.
func TestServeDevPolicy(t *testing.T) {
	dir := coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: mine
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    mine:
      unknown: {access: deny}
      tools:
        deploy: {access: step_up, scopes: ["deploy:run"]}
      prompts: {}
      resources: {}
      resource_templates: {}
`)
	base, _, stderr := startDevServe(t, "--policy", dir)
	if !strings.Contains(stderr.String(), "the policy "+dir) || !strings.Contains(stderr.String(), "token --scope SCOPE") {
		t.Fatalf("the banner does not name the policy:\n%s", stderr.String())
	}
	d := decide(t, base, map[string]any{"resource": base + "/mcp",
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": "deploy"}}})
	if d["allow"] != false || !strings.Contains(d["www_authenticate"].(string), `scope="deploy:run"`) {
		t.Fatalf("deploy: %v", d)
	}
	d = decide(t, base, map[string]any{"resource": base + "/mcp",
		"message": map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "generate_qr_url"}}})
	if d["http_status"] == float64(401) {
		t.Fatalf("the demo policy's tool is still step-up: %v", d)
	}
}
