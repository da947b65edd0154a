package assertion

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// ErrInvalid is wrapped by every error Verify returns for an assertion it
// refuses; the message says why.
var ErrInvalid = errors.New("assertion: invalid")

// Verifier checks assertions against one JWKS, for one issuer and one
// audience. It is immutable and safe for concurrent use; build it once per
// JWKS and reuse it (Verify builds one per call).
type Verifier struct {
	iss, aud  string
	keys      []verifyKey
	verifiers map[string]jws.Verifier2
	b64       *base64.Encoding
}

type verifyKey struct {
	kid string
	alg string // "" when the JWK does not say
	pub crypto.PublicKey
}

// NewVerifier parses jwks (a JWKS document, as Signer.JWKS returns and
// Signer.Handler serves) and returns a Verifier for assertions issued by
// issuer (the exact `iss`) for audience (the upstream, matched exactly
// against `aud`). Keys that cannot verify an accepted algorithm (RSA,
// symmetric, "use" other than "sig") are skipped; none left is an error.
func NewVerifier(jwks []byte, issuer, audience string) (*Verifier, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("assertion: verifier: issuer and audience are required")
	}
	set, err := jwk.Parse(jwks, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, fmt.Errorf("assertion: verifier: JWKS: %w", err)
	}
	v := &Verifier{
		iss:       issuer,
		aud:       audience,
		verifiers: make(map[string]jws.Verifier2, 4),
		b64:       base64.RawURLEncoding.Strict(),
	}
	for _, a := range Algorithms() {
		sa, _ := jwa.LookupSignatureAlgorithm(a)
		jv, err := jws.VerifierFor(sa)
		if err != nil {
			return nil, fmt.Errorf("assertion: verifier: %s: %w", a, err)
		}
		v.verifiers[a] = jv
	}
	for i := range set.Len() {
		key, _ := set.Key(i)
		if use, ok := key.KeyUsage(); ok && use != "" && use != "sig" {
			continue
		}
		k := verifyKey{}
		k.kid, _ = key.KeyID()
		if a, ok := key.Algorithm(); ok {
			if k.alg = a.String(); algInfoOf(k.alg) == nil {
				continue
			}
		}
		pk, err := key.PublicKey()
		if err != nil {
			continue // symmetric
		}
		var raw any
		if err := jwk.Export(pk, &raw); err != nil {
			continue
		}
		switch r := raw.(type) {
		case *ecdsa.PublicKey, ed25519.PublicKey:
			k.pub = r
		default:
			continue
		}
		v.keys = append(v.keys, k)
	}
	if len(v.keys) == 0 {
		return nil, fmt.Errorf("assertion: verifier: the JWKS has no EC or Ed25519 signature key (%d entries)", set.Len())
	}
	return v, nil
}

// Verify checks token with a Verifier built for this one call; see
// Verifier.Verify.
func Verify(token string, keys []byte, issuer, audience string, now time.Time) (*Claims, error) {
	v, err := NewVerifier(keys, issuer, audience)
	if err != nil {
		return nil, err
	}
	return v.Verify(token, now)
}

// Verify checks an assertion at time now and returns its claims. It
// requires: a compact JWS of at most MaxBytes; "typ" Typ; "alg" one of
// Algorithms() (never "none" nor HS*); no "crit"; a signature by a key of
// the JWKS (by kid) that fits the algorithm; `iss` equal to the issuer;
// `aud` (a string or an array) containing the audience; `exp` not past and
// `iat` not in the future, both with Leeway, and at most MaxTTL apart; a
// `jti`; and either a `sub` or `"anon": true` (an anonymous assertion has no
// client_id, act, scope or grant). Every refusal wraps ErrInvalid. Unknown
// claims are ignored.
func (v *Verifier) Verify(token string, now time.Time) (*Claims, error) {
	if token == "" {
		return nil, invalid("empty (no %s header?)", Header)
	}
	if len(token) > MaxBytes {
		return nil, invalid("%d bytes, more than %d", len(token), MaxBytes)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, invalid("not a compact JWS (three base64url parts separated by dots)")
	}

	hb, err := v.b64.DecodeString(h)
	if err != nil {
		return nil, invalid("header is not base64url: %v", err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr == nil {
		return nil, invalid("header is not a JSON object")
	}
	alg, _ := hdr["alg"].(string)
	if u := strings.ToUpper(alg); u == "" || u == "NONE" || strings.HasPrefix(u, "HS") {
		return nil, invalid("algorithm %q is never accepted (unsigned or symmetric)", clip(alg))
	}
	ai := algInfoOf(alg)
	if ai == nil {
		return nil, invalid("algorithm %q is not accepted (accepted: %s)", clip(alg), strings.Join(Algorithms(), " "))
	}
	typ, _ := hdr["typ"].(string)
	if t := strings.TrimPrefix(strings.ToLower(typ), "application/"); t != Typ {
		return nil, invalid("typ %q is not %q (an access token is not an assertion)", clip(typ), Typ)
	}
	if _, ok := hdr["crit"]; ok {
		return nil, invalid(`header has "crit"; no extension is understood`)
	}
	kidV, hasKid := hdr["kid"]
	kid, ok := kidV.(string)
	if hasKid && !ok {
		return nil, invalid(`header "kid" is not a string`)
	}
	sig, err := v.b64.DecodeString(s)
	if err != nil || len(sig) == 0 {
		return nil, invalid("signature is missing or not base64url")
	}

	input := []byte(token[:len(h)+1+len(p)])
	jv := v.verifiers[alg]
	matched := false
	verified := false
	for i := range v.keys {
		k := &v.keys[i]
		if hasKid && k.kid != kid || k.alg != "" && k.alg != alg || !ai.fits(k.pub) {
			continue
		}
		matched = true
		if jv.Verify(k.pub, input, sig) == nil {
			verified = true
			break
		}
	}
	if !matched {
		return nil, invalid("no %s key with kid %q in the JWKS (fetch it again: the gateway's key may have changed)", alg, clip(kid))
	}
	if !verified {
		return nil, invalid("signature does not verify")
	}

	pb, err := v.b64.DecodeString(p)
	if err != nil {
		return nil, invalid("payload is not base64url: %v", err)
	}
	return v.claims(pb, now)
}

// wire is the payload as Sign writes it.
type wire struct {
	Iss        string          `json:"iss"`
	Sub        *string         `json:"sub"`
	Anon       bool            `json:"anon"`
	Aud        json.RawMessage `json:"aud"`
	Iat        *float64        `json:"iat"`
	Exp        *float64        `json:"exp"`
	Jti        string          `json:"jti"`
	ClientID   string          `json:"client_id"`
	Act        *wireActor      `json:"act"`
	Scope      string          `json:"scope"`
	Grant      string          `json:"grant"`
	DecisionID string          `json:"decision_id"`
}

type wireActor struct {
	Sub      string     `json:"sub"`
	ClientID string     `json:"client_id"`
	Act      *wireActor `json:"act"`
}

// maxNumericDate is 9999-12-31T23:59:59Z.
const maxNumericDate = 253402300799

func (v *Verifier) claims(pb []byte, now time.Time) (*Claims, error) {
	var w wire
	if err := json.Unmarshal(pb, &w); err != nil {
		return nil, invalid("claims: %v", err)
	}
	if w.Iss != v.iss {
		return nil, invalid("issuer %q is not %q", clip(w.Iss), v.iss)
	}
	if len(w.Aud) == 0 {
		return nil, invalid("aud is missing")
	}
	if !audienceHas(w.Aud, v.aud) {
		return nil, invalid("audience %s is not %q", clip(string(w.Aud)), v.aud)
	}
	if w.Exp == nil || w.Iat == nil {
		return nil, invalid("exp and iat are required")
	}
	exp, ok1 := numericDate(*w.Exp)
	iat, ok2 := numericDate(*w.Iat)
	if !ok1 || !ok2 {
		return nil, invalid("exp or iat is not a NumericDate")
	}
	if !now.Before(exp.Add(Leeway)) {
		return nil, invalid("expired %s ago (exp %s, leeway %s)", now.Sub(exp).Round(time.Second), exp.UTC().Format(time.RFC3339), Leeway)
	}
	if iat.After(now.Add(Leeway)) {
		return nil, invalid("issued in the future (iat %s, leeway %s)", iat.UTC().Format(time.RFC3339), Leeway)
	}
	if exp.Before(iat) || exp.Sub(iat) > MaxTTL {
		return nil, invalid("lifetime exp-iat = %s is not between 0 and %s", exp.Sub(iat), MaxTTL)
	}
	if w.Jti == "" {
		return nil, invalid("jti is required")
	}
	c := &Claims{
		ClientID:   w.ClientID,
		Grant:      w.Grant,
		DecisionID: w.DecisionID,
		Audience:   v.aud,
		Issuer:     w.Iss,
		ID:         w.Jti,
		IssuedAt:   iat,
		ExpiresAt:  exp,
	}
	if w.Scope != "" {
		c.Scopes = strings.Fields(w.Scope)
	}
	switch {
	case w.Anon && w.Sub != nil:
		return nil, invalid(`both "sub" and "anon": an assertion is for a known or an anonymous caller`)
	case w.Anon:
		if w.ClientID != "" || w.Act != nil || w.Scope != "" || w.Grant != "" {
			return nil, invalid("an anonymous assertion has client_id, act, scope or grant")
		}
	case w.Sub == nil || *w.Sub == "":
		return nil, invalid(`neither "sub" nor "anon": true`)
	default:
		c.Subject = *w.Sub
	}
	for a := w.Act; a != nil; a = a.Act {
		if len(c.Act) == MaxActDepth {
			return nil, invalid("act chain longer than %d", MaxActDepth)
		}
		if a.Sub == "" && a.ClientID == "" {
			return nil, invalid("act[%d] has neither sub nor client_id", len(c.Act))
		}
		c.Act = append(c.Act, Actor{Subject: a.Sub, ClientID: a.ClientID})
	}
	return c, nil
}

// audienceHas reports whether aud (a JSON string or array of strings)
// contains want.
func audienceHas(aud json.RawMessage, want string) bool {
	aud = bytes.TrimSpace(aud)
	if len(aud) == 0 {
		return false
	}
	if aud[0] == '[' {
		var list []string
		if json.Unmarshal(aud, &list) != nil {
			return false
		}
		for _, a := range list {
			if a == want {
				return true
			}
		}
		return false
	}
	var s string
	return json.Unmarshal(aud, &s) == nil && s == want
}

func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
