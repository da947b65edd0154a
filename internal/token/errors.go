package token

import (
	"errors"
	"fmt"
)

// Error codes (RFC 6750 §3.1) carried by [Error].
const (
	// CodeInvalidRequest: the Authorization header itself is malformed
	// (wrong scheme, several tokens, empty token, bad characters).
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidToken: the token is malformed, expired, not for this
	// resource, not signed by a trusted key, or could not be checked.
	CodeInvalidToken = "invalid_token"
)

// ErrKeysUnavailable is wrapped by the *Error returned when a token could not
// be checked because the issuer's signing keys (or its metadata) could not be
// fetched. The token is still rejected (fail closed), but a caller may use
// errors.Is(err, ErrKeysUnavailable) to tell an outage from a bad token,
// e.g. to log at a higher level or to answer 503 instead of 401.
var ErrKeysUnavailable = errors.New("signing keys unavailable")

// Error is every rejection returned by this package. Code is
// [CodeInvalidRequest] or [CodeInvalidToken]; Description is a short, specific
// human-readable reason that is safe to return to the client (it never
// contains the token). The underlying cause, if any, is available through
// errors.Unwrap for logging.
type Error struct {
	Code        string
	Description string

	cause error
}

// Error implements error.
func (e *Error) Error() string {
	return e.Code + ": " + e.Description
}

// Unwrap returns the underlying cause (may be nil).
func (e *Error) Unwrap() error { return e.cause }

func invalidRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc}
}

func invalidToken(desc string) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc}
}

func invalidTokenCause(desc string, cause error) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc, cause: cause}
}

// Descriptions that are compared in tests and by callers. Keep them stable.
const (
	descMalformed       = "malformed token"
	descTooLarge        = "token too large"
	descExpired         = "token expired"
	descNotYetValid     = "token not yet valid"
	descIssuedInFuture  = "token issued in the future"
	descIssuerMismatch  = "issuer mismatch"
	descSignature       = "signature verification failed"
	descMissingExp      = "missing exp claim"
	descKeysUnavailable = "signing keys unavailable"
	descUnsupportedCrit = "unsupported critical header"
	descUnsupportedType = "unsupported token type"
	descMissingToken    = "missing bearer token"
	descMultipleTokens  = "multiple tokens in authorization header"
	// descSeveralCredentials: a comma in the Authorization value, or
	// several Authorization headers.
	descSeveralCredentials = "several credentials or Authorization headers; send one"
	descBadScheme          = "unsupported authorization scheme (expected Bearer)"
	descBadTokenChars      = "malformed bearer token"
	descEmptyHeader        = "empty authorization header"
	descAmbiguousKey       = "token has no kid and the key set has several keys"
	descActTooDeep         = "act claim nested too deeply"
	maxQuotedInDesc        = 64
	descAlgNotAllowedFmt   = "algorithm not allowed: %s"
)

func malformed(cause error) *Error { return invalidTokenCause(descMalformed, cause) }

func malformedClaim(name string) *Error {
	return invalidToken("malformed " + name + " claim")
}

func keysUnavailable(cause error) *Error {
	if cause == nil {
		return invalidTokenCause(descKeysUnavailable, ErrKeysUnavailable)
	}
	return invalidTokenCause(descKeysUnavailable, fmt.Errorf("%w: %w", ErrKeysUnavailable, cause))
}

// clip shortens attacker-controlled strings (kid, alg) before they are put in
// a description.
func clip(s string) string {
	if len(s) > maxQuotedInDesc {
		return s[:maxQuotedInDesc] + "..."
	}
	return s
}
