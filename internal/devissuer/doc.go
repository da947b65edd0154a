// Package devissuer is a development token issuer: one fresh signing key, a
// public JWKS, authorization server metadata and token minting.
//
// It backs `pdp serve --dev` and `pdp token`, and tests everywhere in the
// project use it to mint real signed tokens (see the devissuertest
// subpackage for an httptest server). It is not an OAuth authorization
// server: there is no token endpoint, no client authentication, no consent.
// Never trust its keys in production.
package devissuer
