// Package devissuer is a development token issuer: one fresh signing key, a
// public JWKS, authorization server metadata and token minting.
//
// It backs `pdp serve --dev` and `pdp token`, and tests everywhere in the
// project use it to mint real signed tokens (see the devissuertest
// subpackage for an httptest server). Its AuthServer adds the endpoints a
// real MCP client needs to finish an OAuth flow in development (dynamic
// registration, an auto-approving authorization endpoint with PKCE, a token
// endpoint): no login, no consent, no client authentication. Never trust
// its keys, or its tokens, in production.
package devissuer
