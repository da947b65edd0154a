// Package assertion is the identity assertion the gateway sends to an
// upstream MCP server in place of the client's token: a short-lived JWT,
// signed by the gateway, saying who is calling and what was decided.
//
// No token passthrough: the client's Authorization header never reaches the
// upstream. The gateway signs [Claims] with a [Signer] for each forwarded
// request and sends the result in the [Header] request header; the upstream
// verifies it against the gateway's JWKS ([Signer.Handler]) with [Verify]
// (Go) or any JOSE library (for example `jose` in TypeScript).
//
// # The token
//
// A compact JWS with the protected header
//
//	{"alg":"ES256","kid":"<RFC 7638 thumbprint>","typ":"mcp-pdp-assertion+jwt"}
//
// The explicit type ([Typ]) keeps the assertion from being mistaken for an
// access token (RFC 8725 §3.11): a resource server that accepts "at+jwt" or
// "JWT" refuses it, and [Verify] accepts nothing else. The claims, in this
// order:
//
//	iss          the gateway's issuer URL (Options.Issuer)
//	sub          the end user or client the token named; absent when anonymous
//	anon         true when the caller presented no token; absent otherwise
//	aud          the upstream (Claims.Audience), one string
//	iat, exp     issued at and expiry, exp = iat + Options.TTL (60s by default)
//	jti          16 random bytes, base64url: unique per assertion
//	client_id    the OAuth client the caller used
//	act          the RFC 8693 §4.1 delegation chain as nested objects,
//	             {"sub":..,"client_id":..,"act":{..}}, current actor outermost
//	scope        the granted scopes, space-separated (RFC 8693 §4.2, RFC 9068)
//	grant        "user", "client_credentials", or absent when unknown
//	decision_id  the PDP decision that allowed this request (audit correlation)
//
// Empty values are omitted. Nothing else is in it, and in particular not
// the client's token nor any of its other claims: the upstream learns what
// the gateway vouches for and no more.
//
// # Anonymous callers
//
// An anonymous caller (one that presented no token, let through because the
// policy allows it) still gets an assertion: `sub` is absent and
// `"anon": true` is present, with no client_id, act, scope or grant. The
// header is never simply left out, so that an upstream can tell "the gateway
// vouches that this caller is anonymous" from "this request did not come
// through the gateway", and refuse the second. [Signer.Sign] refuses an
// anonymous assertion that carries client, act, scope or grant, and [Verify]
// refuses an assertion that has both or neither of `sub` and `anon`.
//
// # Keys
//
// One key, ES256 by default (ES384, ES512 and EdDSA on request; RSA is not
// offered because an assertion is signed per request and RSA signing is
// slow). The key lives in Options.KeyFile, a PEM PKCS#8 private key created
// with mode 0600 when missing, so that a restart keeps the key and
// upstreams keep trusting it. Key rotation is out of scope: to change the
// key, replace the file and restart; upstreams that cache the JWKS must
// fetch it again when they see an unknown kid.
package assertion
