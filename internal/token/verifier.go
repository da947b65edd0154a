package token

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Verifier verifies bearer JWTs for one protected resource. It is immutable
// and safe for concurrent use.
type Verifier struct {
	cfg         *normalized
	intro       *introspector // nil: no introspection
	keys        *KeySets
	cache       *Cache
	log         *slog.Logger
	scope       uint64 // cache namespace: digest of the configuration
	audMismatch string
	b64         *base64.Encoding // strict unpadded base64url
	now         func() time.Time
}

// NewVerifier validates cfg and returns a verifier that takes keys from keys
// (required) and caches verified tokens in cache (nil = no caching). log may
// be nil.
func NewVerifier(cfg Config, keys *KeySets, cache *Cache, log *slog.Logger) (*Verifier, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if keys == nil {
		return nil, fmt.Errorf("token: resource %q: a *KeySets is required", cfg.Resource)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{
		cfg:         n,
		keys:        keys,
		cache:       cache,
		log:         log.With("resource", n.Resource),
		scope:       n.digest(),
		audMismatch: "audience mismatch: token is not for " + n.Resource,
		b64:         base64.RawURLEncoding.Strict(),
		now:         time.Now,
	}
	if n.Introspection != nil {
		v.intro = newIntrospector(n.Introspection, v)
	}
	return v, nil
}

// digest identifies everything that influences a verification result, so
// that cache entries are never shared between different configurations.
func (n *normalized) digest() uint64 {
	h := sha256.New()
	algs := slices.Sorted(func(yield func(string) bool) {
		for a := range n.algs {
			if !yield(a) {
				return
			}
		}
	})
	auds := slices.Sorted(slices.Values(n.Audiences))
	var intro []string
	if ic := n.Introspection; ic != nil {
		intro = []string{ic.Endpoint, strconv.FormatBool(ic.Discover), ic.ClientID, strconv.FormatBool(ic.RequireAudience), strconv.FormatBool(ic.JWTResponse), ic.MaxTTL.String()}
	}
	for _, part := range [][]string{{n.Resource, n.Issuer, n.JWKSURI, n.skew.String()}, auds, algs, intro} {
		for _, s := range part {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Resource returns the canonical resource URI this verifier protects.
func (v *Verifier) Resource() string { return v.cfg.Resource }

// Warm resolves the JWKS URI and fetches the keys now (use at start-up). The
// error is logged here too; callers may treat it as non-fatal since keys are
// fetched again on demand.
func (v *Verifier) Warm(ctx context.Context) error {
	uri, kerr := v.jwksURI(ctx)
	if kerr == nil {
		_, err := v.keys.jwksCell(uri).get(ctx)
		if err == nil {
			v.log.Debug("token: signing keys ready", "jwks_uri", uri)
			return nil
		}
		kerr = keysUnavailable(err)
	}
	v.log.Warn("token: cannot fetch signing keys yet; will retry on demand", "issuer", v.cfg.Issuer, "err", kerr.Unwrap())
	return fmt.Errorf("token: warm %s: %w", v.cfg.Resource, kerr)
}

func (v *Verifier) jwksURI(ctx context.Context) (string, *Error) {
	if v.cfg.JWKSURI != "" {
		return v.cfg.JWKSURI, nil
	}
	return v.keys.jwksURIFor(ctx, v.cfg.Issuer)
}

// Verify checks raw (the token, without "Bearer ") and returns its claims.
// Every rejection is an *Error with Code "invalid_token" (or
// "invalid_request" for an empty token). A token seen before is answered
// from the cache: one SHA-256, one map lookup and an expiry check.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, invalidRequest(descMissingToken)
	}
	if len(raw) > MaxTokenBytes {
		return nil, invalidToken(descTooLarge)
	}
	// The hash only reads the bytes; avoid copying the token.
	key := cacheKey{sum: sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw))), scope: v.scope}
	now := v.now()
	if v.cache != nil {
		if cl := v.cache.get(&key, now.UnixNano()); cl != nil {
			return cl, nil
		}
	}
	var cl *Claims
	var until time.Time
	var err *Error
	if v.intro != nil && !v.ownJWT(raw) {
		cl, until, err = v.intro.introspect(ctx, raw, &key.sum)
	} else {
		cl, err = v.verify(ctx, raw, &key.sum, now)
		if err == nil {
			until = cl.ExpiresAt
		}
	}
	if err != nil {
		if v.log.Enabled(ctx, slog.LevelDebug) {
			v.log.DebugContext(ctx, "token: rejected", "fingerprint", fingerprint(&key.sum), "reason", err.Description, "cause", err.Unwrap())
		}
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(&key, cl, until.UnixNano(), now.UnixNano())
	}
	return cl, nil
}

// ownJWT reports whether raw looks like a JWT of the issuer: three
// segments whose payload decodes to an object with the issuer's `iss`
// (unverified: it only routes the token to local verification, which
// checks everything). Any other token is introspected.
func (v *Verifier) ownJWT(raw string) bool {
	dot1 := strings.IndexByte(raw, '.')
	if dot1 < 0 {
		return false
	}
	rest := raw[dot1+1:]
	dot2 := strings.IndexByte(rest, '.')
	if dot2 < 0 || strings.IndexByte(rest[dot2+1:], '.') >= 0 {
		return false
	}
	pb, err := v.b64.DecodeString(rest[:dot2])
	if err != nil {
		return false
	}
	var p struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(pb, &p) == nil && p.Iss == v.cfg.Issuer
}

// verify is the full check: structure, header, algorithm, key, signature,
// then claims. The payload is parsed only after the signature verified.
func (v *Verifier) verify(ctx context.Context, raw string, sum *[32]byte, now time.Time) (*Claims, *Error) {
	m, err := v.verifyJWS(ctx, raw, acceptedTyp)
	if err != nil {
		return nil, err
	}
	return v.claims(m, sum, now)
}

// verifyJWS checks a compact JWS signed by a key of the issuer (structure,
// header, algorithm, key, signature) whose typ, when present, typOK
// accepts, and returns its decoded payload, parsed only after the
// signature verified.
func (v *Verifier) verifyJWS(ctx context.Context, raw string, typOK func(string) bool) (map[string]any, *Error) {
	// Compact JWS: exactly three base64url segments.
	dot1, dot2 := -1, -1
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '.' {
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return nil, malformed(errors.New("more than three segments (JWE is not supported)"))
			}
			continue
		}
		if !isB64URLChar(c) {
			return nil, malformed(errors.New("invalid character"))
		}
	}
	if dot2 < 0 || dot1 == 0 || dot2 == dot1+1 {
		return nil, malformed(errors.New("not a compact JWS"))
	}
	hSeg, pSeg, sSeg := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]

	// Header.
	hb, err := v.b64.DecodeString(hSeg)
	if err != nil {
		return nil, malformed(fmt.Errorf("header: %w", err))
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr == nil {
		return nil, malformed(errors.New("header is not a JSON object"))
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return nil, malformed(errors.New(`header has no "alg"`))
	}
	ai := v.cfg.algs[alg]
	if ai == nil {
		return nil, invalidToken(fmt.Sprintf(descAlgNotAllowedFmt, clip(alg)))
	}
	if _, ok := hdr["crit"]; ok {
		return nil, invalidToken(descUnsupportedCrit)
	}
	if t, present := hdr["typ"]; present {
		if s, ok := t.(string); !ok || !typOK(s) {
			return nil, invalidToken(descUnsupportedType)
		}
	}
	kid, ok := optString(hdr, "kid")
	if !ok {
		return nil, malformed(errors.New(`header "kid" is not a string`))
	}
	if sSeg == "" {
		return nil, invalidToken(descSignature)
	}
	sig, err := v.b64.DecodeString(sSeg)
	if err != nil {
		return nil, malformed(fmt.Errorf("signature: %w", err))
	}

	// Key.
	uri, kerr := v.jwksURI(ctx)
	if kerr != nil {
		return nil, kerr
	}
	cands, kerr := v.keys.lookup(ctx, uri, kid, ai)
	if kerr != nil {
		return nil, kerr
	}

	// Signature over the ASCII "header.payload" exactly as received.
	signingInput := []byte(raw[:dot2])
	var verr error
	for _, k := range cands {
		if verr = ai.verifier.Verify(k.key, signingInput, sig); verr == nil {
			break
		}
	}
	if verr != nil {
		return nil, invalidTokenCause(descSignature, verr)
	}

	// Claims.
	pb, err := v.b64.DecodeString(pSeg)
	if err != nil {
		return nil, malformed(fmt.Errorf("payload: %w", err))
	}
	var m map[string]any
	if err := json.Unmarshal(pb, &m); err != nil || m == nil {
		return nil, malformed(errors.New("payload is not a JSON object"))
	}
	return m, nil
}

func (v *Verifier) claims(m map[string]any, sum *[32]byte, now time.Time) (*Claims, *Error) {
	iss, ok := optString(m, "iss")
	if !ok || iss != v.cfg.Issuer {
		return nil, invalidToken(descIssuerMismatch)
	}
	aud, ok := stringOrArray(m["aud"])
	if !ok {
		return nil, malformedClaim("aud")
	}
	if !v.audienceOK(aud) {
		return nil, invalidToken(v.audMismatch)
	}

	expV, ok := m["exp"]
	if !ok || expV == nil {
		return nil, invalidToken(descMissingExp)
	}
	exp, ok := numericDate(expV)
	if !ok {
		return nil, malformedClaim("exp")
	}
	skew := v.cfg.skew
	if !now.Before(exp.Add(skew)) {
		return nil, invalidToken(descExpired)
	}
	if nbfV, ok := m["nbf"]; ok && nbfV != nil {
		nbf, ok := numericDate(nbfV)
		if !ok {
			return nil, malformedClaim("nbf")
		}
		if nbf.After(now.Add(skew)) {
			return nil, invalidToken(descNotYetValid)
		}
	}
	var iat time.Time
	if iatV, ok := m["iat"]; ok && iatV != nil {
		if iat, ok = numericDate(iatV); !ok {
			return nil, malformedClaim("iat")
		}
		if iat.After(now.Add(skew)) {
			return nil, invalidToken(descIssuedInFuture)
		}
	}

	sub, ok := optString(m, "sub")
	if !ok {
		return nil, malformedClaim("sub")
	}
	client, ok := optString(m, "client_id")
	if !ok {
		return nil, malformedClaim("client_id")
	}
	if client == "" {
		if client, ok = optString(m, "azp"); !ok {
			return nil, malformedClaim("azp")
		}
	}
	scopes, kerr := scopesOf(m)
	if kerr != nil {
		return nil, kerr
	}
	act, kerr := actChain(m["act"])
	if kerr != nil {
		return nil, kerr
	}
	jkt, ok := confirmationJKT(m)
	if !ok {
		return nil, malformedClaim("cnf")
	}
	return &Claims{
		Subject:     sub,
		ClientID:    client,
		Issuer:      iss,
		Audience:    aud,
		Scopes:      scopes,
		Grant:       grantOf(m, sub, client),
		Act:         act,
		ExpiresAt:   exp,
		IssuedAt:    iat,
		Raw:         m,
		Fingerprint: fingerprint(sum),
		Validation:  ValidationJWT,
		JKT:         jkt,
	}, nil
}

func (v *Verifier) audienceOK(aud []string) bool {
	for _, a := range aud {
		if slices.Contains(v.cfg.Audiences, a) {
			return true
		}
	}
	return false
}

// acceptedTyp: RFC 9068 access tokens ("at+jwt") and plain JWTs. Other
// types (e.g. "dpop+jwt", "logout+jwt") are not access tokens.
func acceptedTyp(t string) bool {
	t = strings.TrimPrefix(strings.ToLower(t), "application/")
	return t == "jwt" || t == "at+jwt"
}

func isB64URLChar(c byte) bool { return charClass[c] == ccB64URL }

// Fingerprint returns the loggable fingerprint of a raw token:
// "sha256:" + hex of the first 16 bytes of its SHA-256.
func Fingerprint(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return fingerprint(&sum)
}

func fingerprint(sum *[32]byte) string {
	var buf [7 + 32]byte
	copy(buf[:], "sha256:")
	hex.Encode(buf[7:], sum[:16])
	return string(buf[:])
}
