package main

import (
	"context"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/testkit/oauthtest"
)

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
	endpoint, _, stderr := startDevGateway(t, "--upstream", up.URL, "--protect", "sum=math:sum", "--protect", "echo=math:echo")

	f := &oauthtest.Browser{}
	h := f.Handler(t)
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
	if len(f.Asked()) != 0 {
		t.Fatalf("the client authorized before it was challenged: %v", f.Asked())
	}
	for i, tc := range []struct{ tool, wantScopes string }{
		{"sum", "math:sum"},
		{"echo", "math:echo math:sum"},
	} {
		res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: tc.tool})
		if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != tc.tool+" ran" {
			t.Fatalf("%s after the challenge: %+v %v\n%s", tc.tool, res, err, stderr.String())
		}
		asked := f.Asked()
		if len(asked) != i+1 || !oauthtest.SameScopes(asked[i], tc.wantScopes) {
			t.Fatalf("authorizations asked for %q, want authorization %d for %q", asked, i+1, tc.wantScopes)
		}
	}
	// Both tools keep working with the stepped-up token, without another
	// authorization.
	if _, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "sum"}); err != nil || len(f.Asked()) != 2 {
		t.Fatalf("sum after the step-up: %v (authorizations %q)", err, f.Asked())
	}
	for _, hd := range seen.all() {
		if hd.Get("Authorization") != "" {
			t.Fatal("the upstream received an Authorization header")
		}
	}
}
