package token

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// UnverifiedClaims are what a token says about its holder, read without
// checking anything: for the audit of a refused token only ("who presented
// it", or who a forgery pretends to be). Never decide on them.
type UnverifiedClaims struct {
	Subject  string
	ClientID string // client_id, or azp when client_id is absent
	Issuer   string
}

// maxUnverifiedClaim bounds each unverified claim as recorded.
const maxUnverifiedClaim = 256

// ReadUnverified decodes the payload of a JWS compact token without
// verifying it and returns its string sub, client_id (or azp) and iss,
// each cut to 256 bytes on a UTF-8 boundary. ok is false for anything that
// is not a JWT with a JSON object payload (an opaque token, a JWE, garbage)
// or whose claims are all absent. Bounded: tokens over MaxTokenBytes are
// not read.
func ReadUnverified(raw string) (c UnverifiedClaims, ok bool) {
	if len(raw) > MaxTokenBytes {
		return c, false
	}
	first := strings.IndexByte(raw, '.')
	if first < 0 {
		return c, false
	}
	rest := raw[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return c, false
	}
	var p struct {
		Sub      json.RawMessage `json:"sub"`
		ClientID json.RawMessage `json:"client_id"`
		Azp      json.RawMessage `json:"azp"`
		Iss      json.RawMessage `json:"iss"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return c, false
	}
	c.Subject = unverifiedString(p.Sub)
	c.ClientID = unverifiedString(p.ClientID)
	if c.ClientID == "" {
		c.ClientID = unverifiedString(p.Azp)
	}
	c.Issuer = unverifiedString(p.Iss)
	return c, c != UnverifiedClaims{}
}

// unverifiedString is the value of a JSON string claim, cut to
// maxUnverifiedClaim bytes; "" for any other JSON type.
func unverifiedString(v json.RawMessage) string {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return ""
	}
	if len(s) > maxUnverifiedClaim {
		s = s[:maxUnverifiedClaim]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
