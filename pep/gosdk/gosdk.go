// Package gosdk protects a server of the official Go MCP SDK
// (github.com/modelcontextprotocol/go-sdk) with mcp-pdp: its Streamable
// HTTP handler behind pep.Middleware, and the caller handed to tool
// handlers through the SDK's own API, req.Extra.TokenInfo.
//
//	pdp, _ := pep.NewClient("http://127.0.0.1:8181", pep.ClientOptions{})
//	h := gosdk.Handler(func(*http.Request) *mcp.Server { return server },
//		pep.Options{Decider: pdp, Resource: "https://mcp.example.com/mcp"}, nil)
//	http.Handle("/mcp", h)
//
// In a tool handler, req.Extra.TokenInfo is nil for an anonymous caller;
// for a caller with a valid token its Scopes are the token's, its UserID
// names the user (issuer and subject, which the SDK also uses to bind its
// sessions), and Extra["caller"] holds the *pep.Caller (CallerOf reads
// it).
package gosdk

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/pep"
)

// callerKey is the key of the *pep.Caller in TokenInfo.Extra.
const callerKey = "caller"

// Handler is mcp.NewStreamableHTTPHandler(getServer, opts) protected by
// pep.Middleware(…, o), with the caller of every allowed request in the
// SDK's TokenInfo.
func Handler(getServer func(*http.Request) *mcp.Server, o pep.Options, opts *mcp.StreamableHTTPOptions) http.Handler {
	sdk := mcp.NewStreamableHTTPHandler(getServer, opts)
	// The SDK takes a TokenInfo only from its bearer-token middleware; its
	// verifier here does not verify (the PDP did): it hands on the caller
	// of the decision.
	withInfo := auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		return TokenInfo(pep.CallerFrom(ctx)), nil
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(sdk)
	return pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pep.CallerFrom(r.Context()) == nil {
			sdk.ServeHTTP(w, r) // anonymous: no TokenInfo
			return
		}
		if a := r.Header.Get("Authorization"); len(a) > 5 && strings.EqualFold(a[:5], "DPoP ") {
			// The SDK's middleware reads the Bearer scheme only; the PDP
			// has checked the token and its proof (RFC 9449).
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(a[5:]))
		}
		withInfo.ServeHTTP(w, r)
	}), o)
}

// TokenInfo is the SDK's view of caller c (nil for nil).
func TokenInfo(c *pep.Caller) *auth.TokenInfo {
	if c == nil {
		return nil
	}
	ti := &auth.TokenInfo{
		Scopes: c.Scopes,
		UserID: c.Issuer + " " + c.Subject,
		Extra:  map[string]any{callerKey: c, "sub": c.Subject, "client_id": c.ClientID, "issuer": c.Issuer},
	}
	if c.ExpiresAt != 0 {
		ti.Expiration = time.Unix(c.ExpiresAt, 0)
	}
	return ti
}

// CallerOf returns the caller behind a tool call's TokenInfo
// (req.Extra.TokenInfo), nil for an anonymous caller.
func CallerOf(ti *auth.TokenInfo) *pep.Caller {
	if ti == nil {
		return nil
	}
	c, _ := ti.Extra[callerKey].(*pep.Caller)
	return c
}
