package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Client authentication methods of IntrospectionConfig.AuthMethod
// (RFC 7591 §2 names).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// Defaults of IntrospectionConfig.
const (
	DefaultIntrospectionTimeout     = 3 * time.Second
	DefaultIntrospectionMaxTTL      = time.Minute
	DefaultIntrospectionNegativeTTL = 5 * time.Second
	// MaxIntrospectionResponseBytes bounds an introspection response.
	MaxIntrospectionResponseBytes = 64 << 10
	// maxNegative bounds the remembered rejections per resource.
	maxNegative = 10_000
)

// Media types of an introspection response (RFC 7662 §2.2, RFC 9701 §5).
const (
	mediaJSON             = "application/json"
	mediaIntrospectionJWT = "application/token-introspection+jwt"
	typIntrospectionJWT   = "token-introspection+jwt"
	clientAssertionType   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// ErrIntrospectionUnavailable is wrapped by the *Error returned when a token
// could not be introspected: the endpoint failed, timed out, or refused the
// PDP's own client authentication. The token is rejected (fail closed); a
// caller tells the outage from a bad token with errors.Is and answers 503.
var ErrIntrospectionUnavailable = errors.New("token introspection unavailable")

const (
	descIntrospectionUnavailable = "token introspection unavailable"
	descInactive                 = "token is not active"
	descIntrospectionMalformed   = "malformed introspection response"
	descIntrospectionNoAud       = "introspection response has no aud"
	descNotAccessToken           = "not an access token"
)

// IntrospectionConfig configures OAuth 2.0 Token Introspection (RFC 7662)
// for the tokens of a resource that are not JWTs of its issuer (opaque
// tokens).
type IntrospectionConfig struct {
	// Endpoint is the introspection endpoint URL. Empty with Discover:
	// the issuer's metadata `introspection_endpoint` (RFC 8414).
	Endpoint string
	// Discover takes the endpoint from the issuer's metadata.
	Discover bool
	// ClientID authenticates the PDP to the endpoint (required).
	ClientID string
	// AuthMethod is AuthClientSecretBasic (default), AuthClientSecretPost
	// or AuthPrivateKeyJWT.
	AuthMethod string
	// ClientSecret for the client_secret_* methods.
	ClientSecret string
	// PrivateKey signs the client assertion of private_key_jwt (RSA of
	// 2048 bits or more, ECDSA P-256/384/521, Ed25519); KeyID, when set,
	// is its kid.
	PrivateKey crypto.Signer
	KeyID      string
	// JWTResponse asks for an RFC 9701 signed introspection response and
	// requires one. Without it a plain JSON response is asked for; a
	// signed one is accepted (and verified) all the same.
	JWTResponse bool
	// RequireAudience rejects a response without `aud`; with or without
	// it, an `aud` that does not name the resource is rejected.
	RequireAudience bool
	// Timeout bounds one introspection (default
	// DefaultIntrospectionTimeout).
	Timeout time.Duration
	// MaxTTL bounds how long an active result is reused (default
	// DefaultIntrospectionMaxTTL): a token revoked at the authorization
	// server is refused after at most this long. Never beyond `exp`.
	MaxTTL time.Duration
	// NegativeTTL is how long a rejected token is answered without asking
	// again (default DefaultIntrospectionNegativeTTL).
	NegativeTTL time.Duration
	// HTTPClient for the endpoint; nil: a client that follows no
	// redirects.
	HTTPClient *http.Client
}

// normalize checks c and fills its defaults.
func (c IntrospectionConfig) normalize(issuer string) (*IntrospectionConfig, error) {
	switch {
	case c.Endpoint == "" && !c.Discover:
		return nil, errors.New("introspection: endpoint is required (or discover: true)")
	case c.Endpoint != "" && c.Discover:
		return nil, errors.New("introspection: endpoint and discover exclude each other")
	case c.ClientID == "":
		return nil, errors.New("introspection: client_id is required")
	case c.Timeout < 0 || c.MaxTTL < 0 || c.NegativeTTL < 0:
		return nil, errors.New("introspection: timeout, max_ttl and negative_ttl must not be negative")
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint, issuer); err != nil {
			return nil, fmt.Errorf("introspection: endpoint: %w", err)
		}
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthClientSecretBasic
	}
	switch c.AuthMethod {
	case AuthClientSecretBasic, AuthClientSecretPost:
		if c.ClientSecret == "" {
			return nil, fmt.Errorf("introspection: %s needs a client secret", c.AuthMethod)
		}
	case AuthPrivateKeyJWT:
		if c.PrivateKey == nil {
			return nil, errors.New("introspection: private_key_jwt needs a private key")
		}
		if _, err := assertionAlg(c.PrivateKey); err != nil {
			return nil, fmt.Errorf("introspection: private key: %w", err)
		}
	default:
		return nil, fmt.Errorf("introspection: auth_method %q is not one of %s, %s, %s", c.AuthMethod, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultIntrospectionTimeout
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultIntrospectionMaxTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultIntrospectionNegativeTTL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &c, nil
}

// assertionAlg is the JWS algorithm of a private_key_jwt assertion signed
// by key.
func assertionAlg(key crypto.Signer) (jwa.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return jwa.SignatureAlgorithm{}, fmt.Errorf("RSA key of %d bits; at least %d", k.N.BitLen(), minRSABits)
		}
		return jwa.RS256(), nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		case elliptic.P521():
			return jwa.ES512(), nil
		}
		return jwa.SignatureAlgorithm{}, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return jwa.EdDSA(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("unsupported key type %T", key.Public())
}

// introspector introspects the opaque tokens of one Verifier: results are
// cached (active ones in the Verifier's Cache, rejections here, briefly),
// and concurrent introspections of one token share one request.
type introspector struct {
	cfg *IntrospectionConfig
	v   *Verifier

	mu      sync.Mutex
	flights map[[32]byte]*introspection
	neg     map[[32]byte]negative
}

type introspection struct {
	done   chan struct{}
	claims *Claims
	until  time.Time // cache the claims until then
	err    *Error
}

type negative struct {
	err   *Error
	until time.Time
}

func newIntrospector(cfg *IntrospectionConfig, v *Verifier) *introspector {
	return &introspector{cfg: cfg, v: v, flights: map[[32]byte]*introspection{}, neg: map[[32]byte]negative{}}
}

// introspect validates the opaque token raw (whose SHA-256 is sum) and
// returns its claims and how long they may be reused.
func (in *introspector) introspect(ctx context.Context, raw string, sum *[32]byte) (*Claims, time.Time, *Error) {
	now := in.v.now()
	in.mu.Lock()
	if n, ok := in.neg[*sum]; ok {
		if now.Before(n.until) {
			in.mu.Unlock()
			return nil, time.Time{}, n.err
		}
		delete(in.neg, *sum)
	}
	f := in.flights[*sum]
	if f == nil {
		f = &introspection{done: make(chan struct{})}
		in.flights[*sum] = f
		key := *sum // the closure must not capture the caller's (stack) digest
		in.v.keys.spawn(func() { in.run(f, raw, key) })
	}
	in.mu.Unlock()
	select {
	case <-f.done:
		return f.claims, f.until, f.err
	case <-ctx.Done():
		return nil, time.Time{}, unavailable(ctx.Err())
	}
}

// run makes the introspection request of a flight, in a context of its
// own (bounded by Timeout, canceled by KeySets.Close): the callers waiting
// for it may give up, the request is not cut for the others.
func (in *introspector) run(f *introspection, raw string, sum [32]byte) {
	defer close(f.done)
	ctx, cancel := context.WithTimeout(in.v.keys.base, in.cfg.Timeout)
	defer cancel()
	f.claims, f.until, f.err = in.request(ctx, raw, &sum)
	in.v.keys.introspections.Add(1)
	if f.err != nil && errors.Is(f.err, ErrIntrospectionUnavailable) {
		in.v.keys.introspectionFailures.Add(1)
	}
	now := in.v.now()
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.flights, sum)
	if f.err != nil && !errors.Is(f.err, ErrIntrospectionUnavailable) && !errors.Is(f.err, ErrKeysUnavailable) {
		in.remember(sum, f.err, now)
	}
	if f.err != nil && in.v.log.Enabled(context.Background(), slog.LevelDebug) {
		in.v.log.Debug("token: introspection rejected", "fingerprint", fingerprint(&sum), "reason", f.err.Description, "cause", f.err.Unwrap())
	}
}

// remember keeps a rejection for NegativeTTL (in.mu held). When full, the
// expired entries go first, then arbitrary ones down to half the bound.
func (in *introspector) remember(sum [32]byte, err *Error, now time.Time) {
	if len(in.neg) >= maxNegative {
		for k, n := range in.neg {
			if !now.Before(n.until) {
				delete(in.neg, k)
			}
		}
		for k := range in.neg {
			if len(in.neg) < maxNegative/2 {
				break
			}
			delete(in.neg, k)
		}
	}
	in.neg[sum] = negative{err: err, until: now.Add(in.cfg.NegativeTTL)}
}

func unavailable(cause error) *Error {
	return invalidTokenCause(descIntrospectionUnavailable, fmt.Errorf("%w: %w", ErrIntrospectionUnavailable, cause))
}

// endpoint is the configured or discovered introspection endpoint.
func (in *introspector) endpoint(ctx context.Context) (string, *Error) {
	if in.cfg.Endpoint != "" {
		return in.cfg.Endpoint, nil
	}
	meta, err := in.v.keys.metadataFor(ctx, in.v.cfg.Issuer)
	if err != nil {
		return "", unavailable(err)
	}
	if meta.IntrospectionEndpoint == "" {
		return "", unavailable(fmt.Errorf("the metadata of %s has no introspection_endpoint", in.v.cfg.Issuer))
	}
	return meta.IntrospectionEndpoint, nil
}

// request asks the endpoint about raw and checks the answer.
func (in *introspector) request(ctx context.Context, raw string, sum *[32]byte) (*Claims, time.Time, *Error) {
	endpoint, kerr := in.endpoint(ctx)
	if kerr != nil {
		return nil, time.Time{}, kerr
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	var basic bool
	switch in.cfg.AuthMethod {
	case AuthClientSecretBasic:
		basic = true
	case AuthClientSecretPost:
		form.Set("client_id", in.cfg.ClientID)
		form.Set("client_secret", in.cfg.ClientSecret)
	case AuthPrivateKeyJWT:
		a, err := in.clientAssertion()
		if err != nil {
			return nil, time.Time{}, unavailable(fmt.Errorf("signing the client assertion: %w", err))
		}
		form.Set("client_id", in.cfg.ClientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, time.Time{}, unavailable(fmt.Errorf("POST %s: %w", endpoint, err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if in.cfg.JWTResponse {
		req.Header.Set("Accept", mediaIntrospectionJWT)
	} else {
		req.Header.Set("Accept", mediaJSON)
	}
	if basic {
		// RFC 6749 §2.3.1: both form-urlencoded before the Basic encoding.
		req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	}
	resp, err := in.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, time.Time{}, unavailable(fmt.Errorf("POST %s: %w", endpoint, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionResponseBytes+1))
	if err != nil {
		return nil, time.Time{}, unavailable(fmt.Errorf("POST %s: reading the response: %w", endpoint, err))
	}
	if resp.StatusCode != http.StatusOK {
		// 401/403: the endpoint refused the PDP's own credentials, a set-up
		// fault the caller cannot fix by authorizing again; 5xx: an outage.
		in.v.log.Warn("token: introspection endpoint answered an error", "endpoint", endpoint, "status", resp.StatusCode)
		return nil, time.Time{}, unavailable(fmt.Errorf("POST %s: status %s", endpoint, resp.Status))
	}
	if len(body) > MaxIntrospectionResponseBytes {
		return nil, time.Time{}, invalidTokenCause(descIntrospectionMalformed, fmt.Errorf("response larger than %d bytes", MaxIntrospectionResponseBytes))
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var m map[string]any
	switch {
	case mt == mediaIntrospectionJWT:
		var kerr *Error
		if m, kerr = in.signedResponse(ctx, strings.TrimSpace(string(body))); kerr != nil {
			return nil, time.Time{}, kerr
		}
	case in.cfg.JWTResponse:
		return nil, time.Time{}, invalidTokenCause(descIntrospectionMalformed, fmt.Errorf("a signed response (%s) is required, got %q", mediaIntrospectionJWT, clip(mt)))
	default:
		if err := json.Unmarshal(body, &m); err != nil || m == nil {
			return nil, time.Time{}, invalidTokenCause(descIntrospectionMalformed, errors.New("not a JSON object"))
		}
	}
	return in.claims(m, sum)
}

// signedResponse verifies an RFC 9701 response: a JWT of type
// token-introspection+jwt signed by a key of the issuer, `iss` the issuer,
// `aud` the PDP's client id, `iat` present; the introspection is its
// `token_introspection` member.
func (in *introspector) signedResponse(ctx context.Context, raw string) (map[string]any, *Error) {
	m, kerr := in.v.verifyJWS(ctx, raw, func(t string) bool {
		return strings.EqualFold(strings.TrimPrefix(strings.ToLower(t), "application/"), typIntrospectionJWT)
	})
	if kerr != nil {
		if errors.Is(kerr, ErrKeysUnavailable) {
			return nil, kerr
		}
		return nil, invalidTokenCause(descIntrospectionMalformed, fmt.Errorf("signed response: %s: %w", kerr.Description, kerr))
	}
	bad := func(why string) *Error {
		return invalidTokenCause(descIntrospectionMalformed, errors.New("signed response: "+why))
	}
	if iss, _ := m["iss"].(string); iss != in.v.cfg.Issuer {
		return nil, bad("iss is not the issuer")
	}
	aud, ok := stringOrArray(m["aud"])
	if !ok || !slices.Contains(aud, in.cfg.ClientID) {
		return nil, bad("aud is not the PDP's client_id")
	}
	if _, ok := numericDate(m["iat"]); !ok {
		return nil, bad("no iat")
	}
	ti, ok := m["token_introspection"].(map[string]any)
	if !ok {
		return nil, bad("no token_introspection object")
	}
	return ti, nil
}

// claims checks an introspection response as strictly as a JWT: active
// true, exp present and ahead, iss (when present) the issuer, aud (when
// present, or required) naming the resource, nbf and iat not ahead, a
// token type (when present) of an access token.
func (in *introspector) claims(m map[string]any, sum *[32]byte) (*Claims, time.Time, *Error) {
	now := in.v.now()
	active, ok := m["active"].(bool)
	if !ok {
		return nil, time.Time{}, invalidTokenCause(descIntrospectionMalformed, errors.New("active is not a boolean"))
	}
	if !active {
		return nil, time.Time{}, invalidToken(descInactive)
	}
	iss, ok := optString(m, "iss")
	if !ok {
		return nil, time.Time{}, malformedClaim("iss")
	}
	if iss != "" && iss != in.v.cfg.Issuer {
		return nil, time.Time{}, invalidToken(descIssuerMismatch)
	}
	aud, ok := stringOrArray(m["aud"])
	if !ok {
		return nil, time.Time{}, malformedClaim("aud")
	}
	switch {
	case len(aud) == 0 && in.cfg.RequireAudience:
		return nil, time.Time{}, invalidToken(descIntrospectionNoAud)
	case len(aud) > 0 && !in.v.audienceOK(aud):
		return nil, time.Time{}, invalidToken(in.v.audMismatch)
	}
	expV, ok := m["exp"]
	if !ok || expV == nil {
		return nil, time.Time{}, invalidToken(descMissingExp)
	}
	exp, ok := numericDate(expV)
	if !ok {
		return nil, time.Time{}, malformedClaim("exp")
	}
	skew := in.v.cfg.skew
	if !now.Before(exp.Add(skew)) {
		return nil, time.Time{}, invalidToken(descExpired)
	}
	if nbfV, ok := m["nbf"]; ok && nbfV != nil {
		nbf, ok := numericDate(nbfV)
		if !ok {
			return nil, time.Time{}, malformedClaim("nbf")
		}
		if nbf.After(now.Add(skew)) {
			return nil, time.Time{}, invalidToken(descNotYetValid)
		}
	}
	var iat time.Time
	if iatV, ok := m["iat"]; ok && iatV != nil {
		if iat, ok = numericDate(iatV); !ok {
			return nil, time.Time{}, malformedClaim("iat")
		}
		if iat.After(now.Add(skew)) {
			return nil, time.Time{}, invalidToken(descIssuedInFuture)
		}
	}
	tt, ok := optString(m, "token_type")
	if !ok {
		return nil, time.Time{}, malformedClaim("token_type")
	}
	if tt != "" && !strings.EqualFold(tt, "bearer") && !strings.EqualFold(tt, "dpop") && !strings.EqualFold(tt, "access_token") {
		return nil, time.Time{}, invalidToken(descNotAccessToken)
	}
	sub, ok := optString(m, "sub")
	if !ok {
		return nil, time.Time{}, malformedClaim("sub")
	}
	client, ok := optString(m, "client_id")
	if !ok {
		return nil, time.Time{}, malformedClaim("client_id")
	}
	scopes, kerr := scopesOf(m)
	if kerr != nil {
		return nil, time.Time{}, kerr
	}
	act, kerr := actChain(m["act"])
	if kerr != nil {
		return nil, time.Time{}, kerr
	}
	jkt, ok := confirmationJKT(m)
	if !ok {
		return nil, time.Time{}, malformedClaim("cnf")
	}
	if iss == "" {
		iss = in.v.cfg.Issuer // the endpoint speaks for the configured issuer
	}
	grant := grantOf(m, sub, client)
	if grant == "" && sub == "" && client != "" {
		// RFC 7662 §2.2: sub names the resource owner; a token with a
		// client and no resource owner is the client's own
		// (client_credentials), as authorization servers answer for them.
		grant = GrantClientCredentials
	}
	cl := &Claims{
		Subject:     sub,
		ClientID:    client,
		Issuer:      iss,
		Audience:    aud,
		Scopes:      scopes,
		Grant:       grant,
		Act:         act,
		ExpiresAt:   exp,
		IssuedAt:    iat,
		Raw:         m,
		Fingerprint: fingerprint(sum),
		Validation:  ValidationIntrospection,
		JKT:         jkt,
	}
	return cl, minTime(exp, now.Add(in.cfg.MaxTTL)), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// clientAssertion is a fresh private_key_jwt assertion (RFC 7523 §3): iss
// and sub the client id, aud the issuer, a minute of life, a random jti.
func (in *introspector) clientAssertion() (string, error) {
	alg, err := assertionAlg(in.cfg.PrivateKey)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := in.v.now()
	payload, err := json.Marshal(map[string]any{
		"iss": in.cfg.ClientID, "sub": in.cfg.ClientID, "aud": in.v.cfg.Issuer,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": hex.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	if in.cfg.KeyID != "" {
		if err := hdr.Set(jws.KeyIDKey, in.cfg.KeyID); err != nil {
			return "", err
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(alg, in.cfg.PrivateKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}
