package token

import "strings"

// MaxTokenBytes is the largest bearer token accepted, both by
// [ParseAuthorization] and by [Verifier.Verify]. Real access tokens are 1-2 KiB.
const MaxTokenBytes = 8 << 10

// ParseAuthorization extracts the bearer token from an HTTP Authorization
// header value (RFC 6750 §2.1).
//
// An empty value means an anonymous request and yields ("", nil). Otherwise
// the scheme must be "Bearer" (ASCII case-insensitive) followed by one or more
// spaces and exactly one b64token (ALPHA / DIGIT / "-" / "." / "_" / "~" / "+"
// / "/", then optional trailing "="). Surrounding spaces and tabs are ignored.
// Every rejection is an *Error: "invalid_request" for a malformed header and
// "invalid_token" ("token too large") for a token longer than MaxTokenBytes.
// It never panics and does not allocate on success.
func ParseAuthorization(h string) (string, error) {
	scheme, tok, err := ParseCredentials(h)
	if err == nil && scheme == SchemeDPoP {
		return "", invalidRequest(descBadScheme)
	}
	return tok, err
}

// Authorization schemes of [ParseCredentials].
const (
	SchemeBearer = "Bearer"
	SchemeDPoP   = "DPoP" // RFC 9449 §7.1
)

// ParseCredentials is [ParseAuthorization] for the schemes Bearer and DPoP
// (RFC 9449 §7.1: the same token syntax): it returns which one (as
// SchemeBearer or SchemeDPoP) with the token. An empty value yields
// ("", "", nil).
func ParseCredentials(h string) (scheme, tok string, err error) {
	if h == "" {
		return "", "", nil
	}
	tok, scheme, err = parseCredentials(h)
	return scheme, tok, err
}

func parseCredentials(h string) (string, string, error) {
	// Bound the work before looking at the content.
	if len(h) > MaxTokenBytes+256 {
		return "", "", invalidToken(descTooLarge)
	}
	// A comma is in no token and in no scheme: the value holds several
	// credentials, or several Authorization headers joined (RFC 9110
	// §5.3; the PEPs join them so that the PDP refuses the request rather
	// than deciding on one of them).
	if strings.IndexByte(h, ',') >= 0 {
		return "", "", invalidRequest(descSeveralCredentials)
	}
	h = trimOWS(h)
	if h == "" {
		return "", "", invalidRequest(descEmptyHeader)
	}
	scheme, rest := h, ""
	for i := 0; i < len(h); i++ {
		if h[i] == ' ' {
			scheme, rest = h[:i], h[i+1:]
			break
		}
	}
	var canon string
	switch {
	case isBearer(scheme):
		canon = SchemeBearer
	case isDPoP(scheme):
		canon = SchemeDPoP
	default:
		return "", "", invalidRequest(descBadScheme)
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if rest == "" {
		return "", "", invalidRequest(descMissingToken)
	}
	if len(rest) > MaxTokenBytes {
		return "", "", invalidToken(descTooLarge)
	}
	padding := false
	for i := 0; i < len(rest); i++ {
		switch charClass[rest[i]] {
		case ccB64URL, ccB64Token, ccDot:
			if padding { // "=" only at the end
				return "", "", invalidRequest(descBadTokenChars)
			}
		case ccPad:
			if i == 0 {
				return "", "", invalidRequest(descBadTokenChars)
			}
			padding = true
		case ccSep:
			return "", "", invalidRequest(descMultipleTokens)
		default:
			return "", "", invalidRequest(descBadTokenChars)
		}
	}
	return rest, canon, nil
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isBearer compares ASCII case-insensitively (no Unicode folding).
func isBearer(s string) bool { return asciiFold(s, "bearer") }

// isDPoP is isBearer for the DPoP scheme.
func isDPoP(s string) bool { return asciiFold(s, "dpop") }

// asciiFold reports whether s equals the lower-case want, ASCII
// case-insensitively.
func asciiFold(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// Character classes for token scanning, indexed by byte.
const (
	ccInvalid  = iota
	ccB64URL   // A-Z a-z 0-9 - _
	ccB64Token // ~ + / (b64token, not base64url)
	ccDot      // .
	ccPad      // =
	ccSep      // space, comma, tab
)

// charClass is a read-only lookup table (a string constant, so immutable).
const charClass = "" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x05\x01\x03\x02\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x00\x00\x00\x04\x00\x00" +
	"\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x00\x00\x00\x00\x01" +
	"\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x00\x00\x00\x02\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// isB64TokenChar reports whether c is in the RFC 6750 b64token alphabet
// (without the trailing "=" padding).
func isB64TokenChar(c byte) bool {
	switch charClass[c] {
	case ccB64URL, ccB64Token, ccDot:
		return true
	}
	return false
}
