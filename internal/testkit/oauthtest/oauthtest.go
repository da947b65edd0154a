// Package oauthtest drives real OAuth clients in tests: the go-sdk's
// authorization code flow against an auto-approving authorization server
// (the dev authorization server of mcp-pdp), with the browser played by
// an HTTP client. It is imported by tests only.
package oauthtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// Browser is the user's browser for the go-sdk's authorization code flow:
// it opens the authorization URL (the server approves at once) and reads
// the code off the redirect, as the client's callback would. It records
// the scopes each authorization asked for.
type Browser struct {
	mu     sync.Mutex
	scopes []string
}

// Fetch is an auth.AuthorizationCodeFetcher.
func (b *Browser) Fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	u, err := url.Parse(args.URL)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.scopes = append(b.scopes, u.Query().Get("scope"))
	b.mu.Unlock()
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

// Asked returns the scopes of each authorization so far, in order.
func (b *Browser) Asked() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.scopes...)
}

// Handler returns the go-sdk's authorization code handler, registering
// itself dynamically (RFC 7591) as a public client, with b as its browser.
func (b *Browser) Handler(tb testing.TB) *auth.AuthorizationCodeHandler {
	tb.Helper()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{"http://127.0.0.1:1/callback"}, ClientName: "go-sdk test client",
			TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		AuthorizationCodeFetcher: b.Fetch,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// SameScopes compares space-separated scope lists as sets.
func SameScopes(a, b string) bool {
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
