package token

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Actor is one link of an RFC 8693 `act` (delegation) chain.
type Actor struct {
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// Grant values reported in Claims.Grant.
const (
	GrantClientCredentials = "client_credentials"
	GrantUser              = "user"
)

// MaxActDepth bounds the `act` chain; deeper nesting rejects the token.
const MaxActDepth = 8

// Claims is an immutable verified token. It is shared between goroutines
// through the cache: never modify it (nor Raw, nor the slices).
type Claims struct {
	Subject  string // `sub`
	ClientID string // `client_id`, else `azp`
	Issuer   string // `iss`
	Audience []string
	// Scopes from `scope` (space-delimited string, RFC 8693/9068) and `scp`
	// (array, or space-delimited string); deduplicated, first occurrence
	// order kept.
	Scopes []string
	// Grant is GrantClientCredentials or GrantUser when the token tells it,
	// "" when unknown. Taken from a `grant_type`/`gty` claim, or Entra ID's
	// `idtyp`, else guessed: sub == client -> client_credentials; sub and
	// client both present and different -> user.
	Grant string
	// Act is the RFC 8693 `act` chain, outermost (current actor) first.
	Act       []Actor
	ExpiresAt time.Time
	IssuedAt  time.Time // zero when the token has no iat
	// Raw holds every claim as encoding/json decodes it into any
	// (numbers are float64).
	Raw map[string]any
	// Fingerprint is "sha256:" + hex of the first 16 bytes of SHA-256(raw
	// token); safe to log and publish, useless to replay.
	Fingerprint string
	// Validation tells how the token was validated: ValidationJWT or
	// ValidationIntrospection.
	Validation string
	// JKT is the token's `cnf.jkt` (RFC 9449 §6): the base64url SHA-256
	// thumbprint of the key the token is bound to, "" for a bearer token.
	JKT string
}

// Values of Claims.Validation.
const (
	ValidationJWT           = "jwt"
	ValidationIntrospection = "introspection"
	// ValidationPEP: the enforcement point verified the token and sent
	// its caller (core.Service.DecideVerified, the AuthZEN API).
	ValidationPEP = "pep"
)

// confirmationJKT returns the `cnf.jkt` of claims m: "" when there is no
// `cnf` or it binds no key thumbprint; ok is false when `cnf` or `jkt` has
// the wrong type (a malformed binding is never ignored).
func confirmationJKT(m map[string]any) (string, bool) {
	v, present := m["cnf"]
	if !present || v == nil {
		return "", true
	}
	cnf, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	return optString(cnf, "jkt")
}

// maxNumericDate is 9999-12-31T23:59:59Z; larger values are malformed.
const maxNumericDate = 253402300799

// numericDate converts a JSON NumericDate (seconds since the epoch, possibly
// fractional).
func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// optString returns m[name] if it is a string; ok is false when the claim is
// present with another type.
func optString(m map[string]any, name string) (string, bool) {
	v, present := m[name]
	if !present || v == nil {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// stringOrArray decodes a claim that is a string or an array of strings.
func stringOrArray(v any) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case string:
		return []string{t}, true
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// scopesOf merges `scope` and `scp`.
func scopesOf(m map[string]any) ([]string, *Error) {
	var out []string
	if v, ok := m["scope"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, malformedClaim("scope")
		}
		out = appendFields(out, s)
	}
	if v, ok := m["scp"]; ok && v != nil {
		switch t := v.(type) {
		case string:
			out = appendFields(out, t)
		case []any:
			for _, e := range t {
				s, ok := e.(string)
				if !ok {
					return nil, malformedClaim("scp")
				}
				out = appendFields(out, s)
			}
		default:
			return nil, malformedClaim("scp")
		}
	}
	return dedup(out), nil
}

// appendFields splits a scope string on spaces only (RFC 6749 §3.3:
// scope-tokens are separated by %x20); other whitespace stays part of a
// token, which then matches no configured scope.
func appendFields(out []string, s string) []string {
	for f := range strings.SplitSeq(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func dedup(in []string) []string {
	if len(in) < 2 {
		return in
	}
	if len(in) <= 16 {
		out := in[:0:0]
		for _, s := range in {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if _, dup := seen[s]; !dup {
			seen[s] = struct{}{}
			out = append(out, s)
		}
	}
	return out
}

// actChain walks `act`, `act.act`, ... (RFC 8693 §4.1).
func actChain(v any) ([]Actor, *Error) {
	var out []Actor
	for v != nil {
		if len(out) == MaxActDepth {
			return nil, invalidToken(descActTooDeep)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, malformedClaim("act")
		}
		sub, ok1 := optString(m, "sub")
		cid, ok2 := optString(m, "client_id")
		if !ok1 || !ok2 {
			return nil, malformedClaim("act")
		}
		out = append(out, Actor{Subject: sub, ClientID: cid})
		v = m["act"]
	}
	return out, nil
}

// grantOf classifies the token; see Claims.Grant.
func grantOf(m map[string]any, sub, client string) string {
	for _, name := range [...]string{"grant_type", "gty"} {
		s, _ := m[name].(string)
		if s == "" {
			continue
		}
		switch strings.ReplaceAll(strings.ToLower(s), "-", "_") {
		case "client_credentials":
			return GrantClientCredentials
		case "authorization_code", "password", "refresh_token", "implicit", "device_code",
			"urn:ietf:params:oauth:grant_type:device_code", "urn:openid:params:grant_type:ciba":
			return GrantUser
		}
		// token-exchange, jwt-bearer, ...: say nothing, use the heuristic.
	}
	switch s, _ := m["idtyp"].(string); s { // Microsoft Entra ID
	case "app":
		return GrantClientCredentials
	case "user":
		return GrantUser
	}
	if sub != "" && client != "" {
		if sub == client {
			return GrantClientCredentials
		}
		return GrantUser
	}
	return ""
}
