// Package devissuer is a development token issuer: one fresh signing key, a
// public JWKS, authorization server metadata and token minting.
//
// It backs `pdp serve --dev` and `pdp token`, and tests everywhere in the
// project use it to mint real signed tokens (see the devissuertest
// subpackage for an httptest server). Its AuthServer adds the endpoints a
// real MCP client needs to finish an OAuth flow in development: dynamic
// registration (RFC 7591) and Client ID Metadata Documents (a client_id
// that is the URL of the client's metadata, fetched by the server), an
// auto-approving authorization endpoint with PKCE whose consent page names
// the user, the client, the scopes and the resource, a token endpoint with
// refresh tokens, and a loopback-only mint endpoint for `pdp token --url`.
// There is no login, no real consent and no client authentication. Never
// trust its keys, or its tokens, in production.
package devissuer
