// Package token turns the Authorization header an MCP server received into
// verified claims, or into an RFC 6750 error.
//
// The job, in order:
//
//  1. [ParseAuthorization] extracts exactly one Bearer token from the header
//     value ("" means anonymous) and rejects malformed headers with
//     "invalid_request".
//  2. [Verifier.Verify] checks the token for one protected resource
//     ([Config]): a compact JWS signed with an allow-listed asymmetric
//     algorithm (never "none" nor HS*), by a key of the issuer's JWKS
//     selected by kid whose type and curve fit the algorithm; then exact
//     `iss`, an accepted `aud` (the resource by default, RFC 8707), a
//     required `exp` and `nbf`/`iat` not in the future, all with a clock
//     skew. Every rejection is an [*Error] with code "invalid_token" and a
//     specific description suitable for WWW-Authenticate.
//  3. The result, [Claims], is normalized for policy: subject, client
//     (`client_id` or `azp`), scopes (`scope` and/or `scp`), the RFC 8693
//     `act` chain, a grant guess, and every raw claim.
//
// Keys come from a [KeySets] shared by all verifiers: JWKS URIs are
// discovered from the issuer's RFC 8414 / OpenID metadata when not
// configured, fetched with size and time limits, refreshed in the
// background, refetched at most once per interval when an unknown kid
// appears (concurrent callers share one fetch), and kept usable while the
// endpoint fails. Verified tokens are kept in a bounded [Cache] keyed by the
// token's SHA-256 and the verifier configuration, so a repeated token costs
// a hash and a map lookup.
//
// No raw token ever leaves this package: logs and claims carry only
// [Claims.Fingerprint]. JWS signatures are checked with jwx v3
// (jws.VerifierFor over keys parsed by jwk); the compact serialization and
// the claims are parsed here so that the signing input is the received bytes
// (no re-encoding), the payload is decoded once into the JSON-compatible
// Raw map, and each failure gets its own description.
package token
