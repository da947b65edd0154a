package dpop

import (
	"errors"
	"fmt"
)

// Error codes (RFC 9449 §7.1 and §9) carried by [Error].
const (
	// CodeInvalidProof: the DPoP proof is missing, malformed, not signed by
	// its key, not for this request, too old, not bound to the access
	// token or its key, or replayed.
	CodeInvalidProof = "invalid_dpop_proof"
	// CodeUseNonce: the server requires a nonce it issued (RFC 9449 §9)
	// and the proof has none, or an expired or invalid one. [Error.Nonce]
	// is the nonce to send in the DPoP-Nonce response header.
	CodeUseNonce = "use_dpop_nonce"
)

// ErrReplayCacheFull is returned (wrapped, never as an [*Error]) by
// [MemoryReplay.Claim], and so by [Verifier.Verify], when the cache holds
// its maximum of unexpired entries: it refuses rather than forgets a proof
// it must still remember (fail closed). The caller answers 503.
var ErrReplayCacheFull = errors.New("dpop: replay cache full of unexpired proofs")

// Error is every rejection of a proof by [Verifier.Verify]. Code is
// [CodeInvalidProof] or [CodeUseNonce]; Description is a short, specific
// reason that is safe to return to the client (error_description). Nonce,
// set with CodeUseNonce only, is the fresh nonce to put in the DPoP-Nonce
// response header. The underlying cause, if any, is available through
// errors.Unwrap for logging.
type Error struct {
	Code        string
	Description string
	Nonce       string

	cause error
}

// Error implements error.
func (e *Error) Error() string {
	return e.Code + ": " + e.Description
}

// Unwrap returns the underlying cause (may be nil).
func (e *Error) Unwrap() error { return e.cause }

func invalid(desc string) *Error {
	return &Error{Code: CodeInvalidProof, Description: desc}
}

func invalidCause(desc string, cause error) *Error {
	return &Error{Code: CodeInvalidProof, Description: desc, cause: cause}
}

func useNonce(desc, nonce string) *Error {
	return &Error{Code: CodeUseNonce, Description: desc, Nonce: nonce}
}

// Descriptions that are compared in tests and by callers. Keep them stable.
const (
	descMissing        = "missing DPoP proof"
	descTooLarge       = "DPoP proof too large"
	descSeveral        = "more than one DPoP proof"
	descNotJWS         = "the DPoP proof is not a compact JWS"
	descHeader         = "malformed DPoP proof header"
	descTyp            = "the DPoP proof typ is not dpop+jwt"
	descNoAlg          = "the DPoP proof header has no alg"
	descAlgNotAllowed  = "DPoP proof algorithm not allowed: "
	descCrit           = "unsupported critical header in DPoP proof"
	descNoJWK          = "the DPoP proof header has no jwk"
	descJWK            = "malformed jwk header"
	descPrivateKey     = "the jwk header holds a private key"
	descSymmetricKey   = "the jwk header holds a symmetric key"
	descKeyType        = "unsupported jwk key type"
	descKeyFit         = "the jwk header key does not fit alg "
	descRSAShort       = "the jwk RSA key is shorter than 2048 bits"
	descRSALong        = "the jwk RSA key is longer than 8192 bits"
	descSignature      = "DPoP proof signature verification failed"
	descPayload        = "malformed DPoP proof payload"
	descJTITooLong     = "jti claim too long"
	descHTM            = "htm does not match the request method"
	descHTU            = "htu does not match the request URL"
	descRequestURL     = "the request URL is not an absolute http(s) URL"
	descStale          = "the DPoP proof is too old (iat)"
	descFuture         = "the DPoP proof is issued in the future (iat)"
	descATH            = "ath does not match the access token"
	descJKT            = "the proof key does not match the token's cnf.jkt"
	descNonceMissing   = "the server requires a DPoP nonce"
	descNonceExpired   = "the DPoP nonce has expired"
	descNonceInvalid   = "invalid DPoP nonce"
	descReplayed       = "the proof was used before (jti replayed)"
	maxQuotedInDesc    = 64
	maxJTIBytes        = 256
	maxNumericDateSecs = 253402300799 // 9999-12-31T23:59:59Z
)

func missingClaim(name string) *Error { return invalid("missing " + name + " claim") }

func malformedClaim(name string) *Error { return invalid("malformed " + name + " claim") }

func algNotAllowed(alg string) *Error { return invalid(descAlgNotAllowed + clip(alg)) }

func keyDoesNotFit(alg string) *Error { return invalid(descKeyFit + alg) }

func jwkErr(format string, args ...any) *Error {
	return invalidCause(descJWK, fmt.Errorf(format, args...))
}

// clip shortens attacker-controlled strings (alg) before they are put in a
// description.
func clip(s string) string {
	if len(s) > maxQuotedInDesc {
		return s[:maxQuotedInDesc] + "..."
	}
	return s
}
