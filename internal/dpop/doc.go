// Package dpop verifies OAuth 2.0 DPoP proofs (RFC 9449) presented with
// sender-constrained access tokens to an MCP server, as the MCP DPoP
// profile (SEP-1932) adopts them, and keeps each accepted proof from being
// replayed.
//
// [Verifier.Verify] takes what the PDP knows of one request ([Check]: the
// DPoP header value, the method, the URL the client addressed, the access
// token and its cnf.jkt) and checks, in the order of RFC 9449 §4.3:
//
//  1. exactly one compact JWS of at most [MaxProofBytes], strict base64url,
//     its header a JSON object without repeated member names;
//  2. typ "dpop+jwt", an allow-listed asymmetric alg (never "none" nor
//     HS*), no crit;
//  3. a jwk header holding a public key only, of the type and curve alg
//     needs (EC P-256/384/521, RSA of 2048 to 8192 bits, OKP Ed25519) in
//     canonical encoding;
//  4. the signature, verified with that key by jwx v3 over the signing
//     input exactly as received;
//  5. jti, htm (exactly the method), htu (the URL without query and
//     fragment, after RFC 3986 §6.2.2 and §6.2.3 normalization) and iat
//     within ± the window of now ([DefaultWindow]: 5 minutes);
//  6. with an access token, ath (its SHA-256, compared in constant time);
//     with a bound token, the RFC 7638 thumbprint of the proof key against
//     cnf.jkt;
//  7. with [Nonces], a nonce the server issued and still accepts, else
//     [CodeUseNonce] with a fresh nonce for the DPoP-Nonce header;
//  8. last, the jti in a [ReplayCache], keyed by the SHA-256 of the key's
//     thumbprint and the jti and kept until iat + window.
//
// Every rejection is an [*Error] with a specific Description for the
// WWW-Authenticate: DPoP challenge (error="invalid_dpop_proof" or
// "use_dpop_nonce", algs from [Verifier.Algorithms]). Any other error is a
// replay cache that could not answer: the caller refuses the request as
// unavailable (503), never lets it through.
//
// Replay caches: [MemoryReplay] for one replica (bounded, fails closed when
// full), [KVReplay] across replicas (a NATS JetStream key-value bucket,
// where kv.Create succeeds once per key), and [LayeredReplay], the memory
// first, then the bucket. [Nonces] are stateless (an HMAC of a time slot
// under a key shared by the replicas), so any replica accepts the nonce
// another issued.
//
// This package never sees more of the access token than its hash: it logs
// nothing, and its errors never contain the token or the proof.
package dpop
