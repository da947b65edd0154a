package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
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

	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// fetcher is the user's browser for the go-sdk's authorization code flow:
// it opens the authorization URL (the dev authorization server approves at
// once) and reads the code off the redirect, as the client's callback
// would. It records the scopes each authorization asked for.
type fetcher struct {
	mu     sync.Mutex
	scopes []string
}

func (f *fetcher) fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	u, err := url.Parse(args.URL)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.scopes = append(f.scopes, u.Query().Get("scope"))
	f.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args.URL, nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, errors.New("the authorization endpoint answered " + resp.Status)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, err
	}
	q := back.Query()
	if e := q.Get("error"); e != "" {
		return nil, errors.New("authorization refused: " + e + ": " + q.Get("error_description"))
	}
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}

func (f *fetcher) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.scopes...)
}

// TestGatewayGoSDKOAuth: the go-sdk client with its
// auth.AuthorizationCodeHandler in front of `pdp gateway --dev`, with no
// other authorization server: it lists anonymously, calls a protected tool,
// gets the 401 challenge, registers itself (RFC 7591), authorizes against
// the dev authorization server with PKCE and the resource indicator, and
// its retry is allowed; a tool needing a second scope answers 403
// insufficient_scope, the handler authorizes again for both scopes, and the
// retry is allowed.
func TestGatewayGoSDKOAuth(t *testing.T) {
	var seen headerLog
	up := mathUpstream(t, &seen)
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"gateway", "--dev", "--upstream", up.URL, "--protect", "sum=math:sum", "--protect", "echo=math:echo",
			"--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--data-dir", dataDir}, &bytes.Buffer{}, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testkit.WaitTimeout):
			t.Error("pdp gateway did not stop")
		}
	})
	var endpoint string
	testkit.WaitFor(t, "the dev gateway to start", func() bool {
		b, err := os.ReadFile(filepath.Join(dataDir, server.DevResourceFile))
		endpoint = strings.TrimSpace(string(b))
		if err != nil || endpoint == "" {
			return false
		}
		resp, err := http.Get(strings.Replace(endpoint, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	f := &fetcher{}
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{"http://127.0.0.1:1/callback"}, ClientName: "go-sdk test client",
			TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		AuthorizationCodeFetcher: f.fetch,
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "oauth-client", Version: "1"}, nil).Connect(cctx,
		&mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: h, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = cs.Close() })
	if _, err := cs.ListTools(cctx, nil); err != nil {
		t.Fatalf("anonymous list: %v", err)
	}
	if len(f.asked()) != 0 {
		t.Fatalf("the client authorized before it was challenged: %v", f.asked())
	}
	for i, tc := range []struct{ tool, wantScopes string }{
		{"sum", "math:sum"},
		{"echo", "math:echo math:sum"},
	} {
		res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: tc.tool})
		if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != tc.tool+" ran" {
			t.Fatalf("%s after the challenge: %+v %v\n%s", tc.tool, res, err, stderr.String())
		}
		asked := f.asked()
		if len(asked) != i+1 || !sameScopes(asked[i], tc.wantScopes) {
			t.Fatalf("authorizations asked for %q, want authorization %d for %q", asked, i+1, tc.wantScopes)
		}
	}
	// Both tools keep working with the stepped-up token, without another
	// authorization.
	if _, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "sum"}); err != nil || len(f.asked()) != 2 {
		t.Fatalf("sum after the step-up: %v (authorizations %q)", err, f.asked())
	}
	for _, hd := range seen.all() {
		if hd.Get("Authorization") != "" {
			t.Fatal("the upstream received an Authorization header")
		}
	}
}

// sameScopes compares space-separated scope lists as sets.
func sameScopes(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	if len(x) != len(y) {
		return false
	}
	for _, s := range x {
		if !strings.Contains(" "+b+" ", " "+s+" ") {
			return false
		}
	}
	return true
}
