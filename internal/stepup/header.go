package stepup

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Header builds a Bearer challenge (RFC 6750 §3): parameters quoted, each at
// most once, in the order error, resource_metadata, scope,
// error_description (insufficient_scope: error, scope, resource_metadata,
// error_description, as in the MCP specification's example); empty values
// are left out.
//
// error_description always comes last and never holds '=' or ',': it may
// carry text from the token (an alg, a kid), and MCP clients read
// parameters with unanchored patterns ("resource_metadata=" anywhere in the
// header), so a description must not be able to pose as a parameter.
// Values are sanitized to the characters RFC 6750 allows in them.
func Header(errCode, description, metadataURL string, scopes []string) string {
	return challenge("Bearer", errCode, description, metadataURL, scopes, nil)
}

// DPoPHeader builds a DPoP challenge (RFC 9449 §7.1): as Header, with the
// scheme DPoP and, first, algs (the proof algorithms accepted,
// space-separated). errCode may be a DPoP error (invalid_dpop_proof,
// use_dpop_nonce) or an RFC 6750 one.
func DPoPHeader(errCode, description, metadataURL string, scopes, algs []string) string {
	return challenge("DPoP", errCode, description, metadataURL, scopes, algs)
}

func challenge(scheme, errCode, description, metadataURL string, scopes, algs []string) string {
	var b strings.Builder
	b.Grow(64 + len(description) + len(metadataURL) + 16*len(scopes) + 8*len(algs))
	b.WriteString(scheme)
	first := true
	param := func(name, value string) {
		if value == "" {
			return
		}
		if first {
			b.WriteByte(' ')
			first = false
		} else {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
	}
	scope := strings.Join(scopes, " ")
	param("algs", strings.Join(algs, " "))
	param("error", errCode)
	if errCode == "insufficient_scope" {
		param("scope", scope)
		param("resource_metadata", quotedSafe(metadataURL))
	} else {
		param("resource_metadata", quotedSafe(metadataURL))
		param("scope", scope)
	}
	param("error_description", descriptionSafe(description))
	return b.String()
}

// descriptionSafe keeps the characters RFC 6750 §3 allows in
// error_description (%x20-21 / %x23-5B / %x5D-7E) except '=' and ',', and
// replaces the others.
func descriptionSafe(s string) string {
	return mapASCII(s, func(c byte) bool {
		return c != '=' && c != ',' && (c == 0x20 || c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E))
	})
}

// quotedSafe keeps printable ASCII except '"' and '\' (URIs never need them).
func quotedSafe(s string) string {
	return mapASCII(s, func(c byte) bool { return c >= 0x21 && c <= 0x7E && c != '"' && c != '\\' })
}

func mapASCII(s string, ok func(byte) bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i := range b {
		if !ok(b[i]) {
			b[i] = '\''
		}
	}
	return string(b)
}

// ValidScope reports whether s is an RFC 6749 §3.3 scope-token.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 0x21 && (c < 0x23 || c > 0x5B) && (c < 0x5D || c > 0x7E) {
			return false
		}
	}
	return true
}

// Challenge is a parsed WWW-Authenticate challenge.
type Challenge struct {
	Scheme string
	Params map[string]string
}

// ParseChallenges parses a WWW-Authenticate header value strictly per
// RFC 7235 §4.1 (challenges with auth-params; token68 is rejected as this
// project never emits it). It exists to prove our headers parse back to the
// parameters that built them, and to read challenges in tests and tools.
func ParseChallenges(h string) ([]Challenge, error) {
	p := &parser{s: h}
	var out []Challenge
	for {
		p.skipOWS()
		if p.eof() {
			break
		}
		scheme := p.token()
		if scheme == "" {
			return nil, p.errf("expected auth-scheme")
		}
		ch := Challenge{Scheme: scheme, Params: map[string]string{}}
		// auth-params are separated from the scheme by 1*SP.
		if !p.eof() && p.peek() == ' ' {
			p.skipOWS()
			for !p.eof() {
				save := p.i
				name := p.token()
				p.skipBWS()
				if name == "" || p.eof() || p.peek() != '=' {
					// Start of the next challenge.
					p.i = save
					break
				}
				p.i++ // '='
				p.skipBWS()
				var val string
				var err error
				if !p.eof() && p.peek() == '"' {
					val, err = p.quoted()
				} else {
					val = p.token()
					if val == "" {
						err = p.errf("expected token or quoted-string for %s", name)
					}
				}
				if err != nil {
					return nil, err
				}
				key := strings.ToLower(name)
				if _, dup := ch.Params[key]; dup {
					return nil, p.errf("parameter %s appears twice", name)
				}
				ch.Params[key] = val
				p.skipOWS()
				if p.eof() {
					break
				}
				if p.peek() != ',' {
					return nil, p.errf("expected ',' after parameter %s", name)
				}
				p.i++
				p.skipOWS()
			}
		}
		out = append(out, ch)
		p.skipOWS()
		if !p.eof() && p.peek() == ',' {
			p.i++
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no challenge")
	}
	return out, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) eof() bool  { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }
func (p *parser) skipOWS() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}
func (p *parser) skipBWS() { p.skipOWS() }

func (p *parser) errf(format string, args ...any) error {
	return &ParseError{Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *parser) token() string {
	start := p.i
	for !p.eof() && isTchar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) quoted() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			p.i++
			if p.eof() {
				return "", p.errf("unterminated quoted-pair")
			}
			b.WriteByte(p.peek())
			p.i++
		case c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E) || c >= 0x80:
			b.WriteByte(c)
			p.i++
		default:
			return "", p.errf("invalid character %q in quoted-string", c)
		}
	}
	return "", p.errf("unterminated quoted-string")
}

// ParseError locates a syntax error in a challenge.
type ParseError struct {
	Offset int
	Msg    string
}

func (e *ParseError) Error() string {
	return "www-authenticate: " + e.Msg + " at offset " + strconv.Itoa(e.Offset)
}
