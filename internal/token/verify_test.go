package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

var enc = base64.RawURLEncoding

func TestVerifyValidAlgorithms(t *testing.T) {
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, alg, nil)
			iat := time.Now().Add(-time.Minute).Truncate(time.Second)
			raw := e.mint(t, devissuer.MintOptions{
				Subject: "alice", ClientID: "claude", Scopes: []string{"qr:generate", "files:read"},
				Audience: []string{"https://other.example.com", testResource}, IssuedAt: iat, TTL: time.Hour,
				NotBefore: iat,
			})
			cl := mustVerify(t, e.v, raw)
			if cl.Subject != "alice" || cl.ClientID != "claude" || cl.Issuer != e.iss.IssuerURL() {
				t.Fatalf("identity: %+v", cl)
			}
			if !slices.Equal(cl.Scopes, []string{"qr:generate", "files:read"}) {
				t.Fatalf("scopes %v", cl.Scopes)
			}
			if !slices.Equal(cl.Audience, []string{"https://other.example.com", testResource}) {
				t.Fatalf("aud %v", cl.Audience)
			}
			if !cl.IssuedAt.Equal(iat) || !cl.ExpiresAt.Equal(iat.Add(time.Hour)) {
				t.Fatalf("times iat=%v exp=%v", cl.IssuedAt, cl.ExpiresAt)
			}
			if cl.Grant != GrantUser {
				t.Fatalf("grant %q", cl.Grant)
			}
			if _, ok := cl.Raw["jti"].(string); !ok {
				t.Fatalf("raw claims: %v", cl.Raw)
			}
			if _, ok := cl.Raw["exp"].(float64); !ok {
				t.Fatalf("raw exp is %T, want float64", cl.Raw["exp"])
			}
			if cl.Fingerprint != Fingerprint(raw) || !strings.HasPrefix(cl.Fingerprint, "sha256:") || len(cl.Fingerprint) != 7+32 {
				t.Fatalf("fingerprint %q", cl.Fingerprint)
			}
			if strings.Contains(fmt.Sprintf("%+v", cl), raw) {
				t.Fatal("claims contain the raw token")
			}
		})
	}
}

func TestVerifyNoKidSingleKey(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	raw := e.mint(t, devissuer.MintOptions{Header: map[string]any{"kid": nil}})
	mustVerify(t, e.v, raw)
}

func TestVerifyAcceptedTypes(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	for _, typ := range []any{"JWT", "jwt", "at+jwt", "application/at+jwt", "AT+JWT", nil} {
		raw := e.mint(t, devissuer.MintOptions{Header: map[string]any{"typ": typ}})
		if _, err := e.v.Verify(context.Background(), raw); err != nil {
			t.Errorf("typ %v: %v", typ, err)
		}
	}
}

func TestVerifyClockSkew(t *testing.T) {
	e := newEnv(t, "ES256", nil, func(c *Config, _ *KeySetsConfig) { c.ClockSkew = time.Minute })
	now := time.Now()
	// Expired 30s ago, nbf/iat 30s ahead: inside a 1m skew.
	raw := e.mint(t, devissuer.MintOptions{IssuedAt: now.Add(30 * time.Second), TTL: -time.Minute, NotBefore: now.Add(30 * time.Second)})
	mustVerify(t, e.v, raw)
	raw = e.mint(t, devissuer.MintOptions{IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour - time.Minute - time.Second})
	_, err := e.v.Verify(context.Background(), raw)
	wantErr(t, err, CodeInvalidToken, descExpired)
}

func TestVerifyClaimsMapping(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	tests := []struct {
		name   string
		opts   devissuer.MintOptions
		check  func(*Claims) bool
		expect string
	}{
		{"scope string, dedup, order kept", devissuer.MintOptions{Extra: map[string]any{"scope": "b a  b c a"}},
			func(c *Claims) bool { return slices.Equal(c.Scopes, []string{"b", "a", "c"}) }, "scopes b a c"},
		{"scp array", devissuer.MintOptions{Extra: map[string]any{"scp": []string{"x", "y", "x"}}},
			func(c *Claims) bool { return slices.Equal(c.Scopes, []string{"x", "y"}) }, "scopes x y"},
		{"scp string", devissuer.MintOptions{Extra: map[string]any{"scp": "x y"}},
			func(c *Claims) bool { return slices.Equal(c.Scopes, []string{"x", "y"}) }, "scopes x y"},
		{"scope and scp merged", devissuer.MintOptions{Scopes: []string{"a"}, Extra: map[string]any{"scp": []string{"b", "a"}}},
			func(c *Claims) bool { return slices.Equal(c.Scopes, []string{"a", "b"}) }, "scopes a b"},
		{"no scopes", devissuer.MintOptions{},
			func(c *Claims) bool { return len(c.Scopes) == 0 }, "no scopes"},
		{"client_id", devissuer.MintOptions{ClientID: "claude", Extra: map[string]any{"azp": "other"}},
			func(c *Claims) bool { return c.ClientID == "claude" }, "client claude"},
		{"azp fallback", devissuer.MintOptions{Extra: map[string]any{"azp": "cursor"}},
			func(c *Claims) bool { return c.ClientID == "cursor" }, "client cursor"},
		{"act chain", devissuer.MintOptions{Act: []devissuer.Actor{{Subject: "agent-1", ClientID: "orchestrator"}, {Subject: "gateway"}}},
			func(c *Claims) bool {
				return slices.Equal(c.Act, []Actor{{Subject: "agent-1", ClientID: "orchestrator"}, {Subject: "gateway"}})
			}, "two actors"},
		{"act depth at limit", devissuer.MintOptions{Act: make([]devissuer.Actor, MaxActDepth)},
			func(c *Claims) bool { return len(c.Act) == MaxActDepth }, "8 actors"},
		{"grant: sub == client_id", devissuer.MintOptions{Subject: "svc", ClientID: "svc"},
			func(c *Claims) bool { return c.Grant == GrantClientCredentials }, "client_credentials"},
		{"grant: sub != client_id", devissuer.MintOptions{Subject: "alice", ClientID: "claude"},
			func(c *Claims) bool { return c.Grant == GrantUser }, "user"},
		{"grant: sub only", devissuer.MintOptions{Subject: "alice"},
			func(c *Claims) bool { return c.Grant == "" }, "unknown"},
		{"grant: gty client-credentials", devissuer.MintOptions{Subject: "x@clients", ClientID: "x", Extra: map[string]any{"gty": "client-credentials"}},
			func(c *Claims) bool { return c.Grant == GrantClientCredentials }, "client_credentials"},
		{"grant: grant_type authorization_code", devissuer.MintOptions{Subject: "svc", ClientID: "svc", Extra: map[string]any{"grant_type": "authorization_code"}},
			func(c *Claims) bool { return c.Grant == GrantUser }, "user"},
		{"grant: token-exchange falls back to heuristic", devissuer.MintOptions{Subject: "svc", ClientID: "svc", Extra: map[string]any{"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"}},
			func(c *Claims) bool { return c.Grant == GrantClientCredentials }, "client_credentials"},
		{"grant: entra idtyp app", devissuer.MintOptions{Subject: "oid", ClientID: "appid", Extra: map[string]any{"idtyp": "app"}},
			func(c *Claims) bool { return c.Grant == GrantClientCredentials }, "client_credentials"},
		{"fractional exp", devissuer.MintOptions{Extra: map[string]any{"exp": float64(time.Now().Add(time.Hour).Unix()) + 0.5}},
			func(c *Claims) bool { return c.ExpiresAt.Nanosecond() == 5e8 }, "half second"},
		{"raw keeps custom claims JSON-compatible", devissuer.MintOptions{Extra: map[string]any{"tenant": map[string]any{"id": 7, "tags": []string{"a"}}}},
			func(c *Claims) bool {
				tn, ok := c.Raw["tenant"].(map[string]any)
				return ok && tn["id"] == float64(7) && slices.Equal(tn["tags"].([]any), []any{"a"})
			}, "nested map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := mustVerify(t, e.v, e.mint(t, tt.opts))
			if !tt.check(cl) {
				t.Fatalf("want %s, got %+v", tt.expect, cl)
			}
		})
	}
}

// TestHostileTokens: every token here must be rejected with invalid_token
// and its own description.
func TestHostileTokens(t *testing.T) {
	e := newEnv(t, "RS256", nil)
	now := time.Now()
	rsaPub := e.iss.PublicKey().(*rsa.PublicKey)
	kid := e.iss.KeyID()
	validClaims := map[string]any{"iss": e.iss.IssuerURL(), "aud": testResource, "sub": "mallory", "exp": now.Add(time.Hour).Unix()}
	payload, _ := json.Marshal(validClaims)

	// Hand-made tokens.
	compact := func(hdr map[string]any, payload []byte, sign func([]byte) []byte) string {
		hb, _ := json.Marshal(hdr)
		in := enc.EncodeToString(hb) + "." + enc.EncodeToString(payload)
		var sig []byte
		if sign != nil {
			sig = sign([]byte(in))
		}
		return in + "." + enc.EncodeToString(sig)
	}
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) }
	}
	der, _ := x509.MarshalPKIXPublicKey(rsaPub)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es256Sign := func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, _ := ecdsa.Sign(rand.Reader, ecKey, h[:])
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	other, _ := devissuer.New(e.iss.IssuerURL(), "RS256")
	otherSameKid, _ := other.Mint(devissuer.MintOptions{Kid: kid, Subject: "mallory", Audience: []string{testResource}})
	signWithIssuer := func(hdr map[string]any, claims map[string]any) string {
		b, _ := json.Marshal(claims)
		tok, err := e.iss.SignJSON(hdr, b)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range validClaims {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	good := e.mint(t, devissuer.MintOptions{})
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + enc.EncodeToString(payload) + "." + parts[2]
	sig := []byte(parts[2])
	if sig[10] == 'A' { // a different base64url character, same length
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	if sig[10] == parts[2][10] {
		t.Fatal("tamper failed")
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	deepAct := map[string]any{"sub": "x"}
	for range MaxActDepth {
		deepAct = map[string]any{"sub": "x", "act": deepAct}
	}

	tests := []struct {
		name string
		raw  string
		desc string
	}{
		{"alg none", compact(map[string]any{"alg": "none", "typ": "JWT"}, payload, nil), "algorithm not allowed: none"},
		{"alg None with kid", compact(map[string]any{"alg": "None", "kid": kid}, payload, nil), "algorithm not allowed: None"},
		{"HS256 with RSA public key PEM as secret", compact(map[string]any{"alg": "HS256", "kid": kid}, payload, hs256(pemKey)), "algorithm not allowed: HS256"},
		{"HS256 with RSA modulus as secret", compact(map[string]any{"alg": "HS256", "kid": kid}, payload, hs256(rsaPub.N.Bytes())), "algorithm not allowed: HS256"},
		{"HS256 with JWK n string as secret", compact(map[string]any{"alg": "HS256"}, payload, hs256([]byte(enc.EncodeToString(rsaPub.N.Bytes())))), "algorithm not allowed: HS256"},
		{"ES256 header over RSA key", compact(map[string]any{"alg": "ES256", "kid": kid}, payload, es256Sign), fmt.Sprintf("signing key (kid %q) cannot verify ES256", kid)},
		{"PS256 header with RS256 key", compact(map[string]any{"alg": "PS256", "kid": kid}, payload, es256Sign), fmt.Sprintf("signing key (kid %q) cannot verify PS256", kid)},
		{"other key, same kid", otherSameKid, descSignature},
		{"wrong iss", e.mint(t, devissuer.MintOptions{Extra: map[string]any{"iss": "https://evil.example.com"}}), descIssuerMismatch},
		{"no iss", e.mint(t, devissuer.MintOptions{Extra: map[string]any{"iss": nil}}), descIssuerMismatch},
		{"other audience", e.mint(t, devissuer.MintOptions{Audience: []string{"https://other.example.com/mcp"}}), "audience mismatch: token is not for " + testResource},
		{"resource with trailing slash", e.mint(t, devissuer.MintOptions{Audience: []string{testResource + "/"}}), "audience mismatch: token is not for " + testResource},
		{"no aud", e.mint(t, devissuer.MintOptions{Audience: []string{}}), "audience mismatch: token is not for " + testResource},
		{"aud number", signWithIssuer(nil, with("aud", 42)), "malformed aud claim"},
		{"no exp", e.mint(t, devissuer.MintOptions{Extra: map[string]any{"exp": nil}}), descMissingExp},
		{"exp null", signWithIssuer(nil, with("exp", nil)), descMissingExp},
		{"exp string", signWithIssuer(nil, with("exp", "4102444800")), "malformed exp claim"},
		{"exp absurd", signWithIssuer(nil, with("exp", 1e300)), "malformed exp claim"},
		{"expired", e.mint(t, devissuer.MintOptions{TTL: -time.Hour}), descExpired},
		{"nbf in the future", e.mint(t, devissuer.MintOptions{NotBefore: now.Add(time.Hour)}), descNotYetValid},
		{"iat in the future", e.mint(t, devissuer.MintOptions{IssuedAt: now.Add(time.Hour)}), descIssuedInFuture},
		{"sub not a string", signWithIssuer(nil, with("sub", 7)), "malformed sub claim"},
		{"scope not a string", signWithIssuer(nil, with("scope", []string{"a"})), "malformed scope claim"},
		{"act not an object", signWithIssuer(nil, with("act", "root")), "malformed act claim"},
		{"act too deep", signWithIssuer(nil, with("act", deepAct)), descActTooDeep},
		{"unknown kid", e.mint(t, devissuer.MintOptions{Kid: "rotated-away"}), `unknown signing key (kid "rotated-away")`},
		{"tampered payload", tamperedPayload, descSignature},
		{"tampered signature", tamperedSig, descSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", descSignature},
		{"signature is not base64url", parts[0] + "." + parts[1] + ".a", descMalformed},
		{"garbage", "not-a-jwt", descMalformed},
		{"garbage three segments", "a.b.c", descMalformed},
		{"header not JSON", enc.EncodeToString([]byte("alg")) + "." + parts[1] + "." + parts[2], descMalformed},
		{"header JSON array", enc.EncodeToString([]byte(`["alg"]`)) + "." + parts[1] + "." + parts[2], descMalformed},
		{"no alg", compact(map[string]any{"kid": kid}, payload, nil), descMalformed},
		{"alg not a string", compact(map[string]any{"alg": 256}, payload, nil), descMalformed},
		{"padding in segment", parts[0] + "=." + parts[1] + "." + parts[2], descMalformed},
		{"std base64 characters", strings.ReplaceAll(parts[0], "e", "+") + "." + parts[1] + "." + parts[2], descMalformed},
		{"four segments", good + ".x", descMalformed},
		{"JWE shaped", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", descMalformed},
		{"empty payload segment", parts[0] + ".." + parts[2], descMalformed},
		{"payload not an object", signWithIssuer(nil, nil), descMalformed},
		{"crit header", signWithIssuer(map[string]any{"crit": []string{"exp"}, "exp": 1}, validClaims), descUnsupportedCrit},
		{"dpop proof typ", signWithIssuer(map[string]any{"typ": "dpop+jwt"}, validClaims), descUnsupportedType},
		{"typ not a string", signWithIssuer(map[string]any{"typ": 1}, validClaims), descUnsupportedType},
		{"kid not a string", signWithIssuer(map[string]any{"kid": 1}, validClaims), descMalformed},
		{"16 KiB token", good + strings.Repeat("A", 16<<10), descTooLarge},
		{"token one byte too large", strings.Repeat("A", MaxTokenBytes+1), descTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := e.v.Verify(context.Background(), tt.raw)
			if cl != nil {
				t.Fatalf("accepted: %+v", cl)
			}
			wantErr(t, err, CodeInvalidToken, tt.desc)
			if strings.Contains(err.Error(), tt.raw) && len(tt.raw) > 16 {
				t.Fatal("error contains the token")
			}
		})
	}
	// And the good one still passes.
	mustVerify(t, e.v, good)
}

func TestVerifyEmpty(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	_, err := e.v.Verify(context.Background(), "")
	wantErr(t, err, CodeInvalidRequest, descMissingToken)
}

func TestVerifyAlgorithmAllowList(t *testing.T) {
	e := newEnv(t, "RS256", nil, func(c *Config, _ *KeySetsConfig) { c.Algorithms = []string{"ES256"} })
	_, err := e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{}))
	wantErr(t, err, CodeInvalidToken, "algorithm not allowed: RS256")
}

func TestVerifyAudiences(t *testing.T) {
	e := newEnv(t, "ES256", nil, func(c *Config, _ *KeySetsConfig) {
		c.Audiences = []string{"api://mcp", "https://alias.example.com"}
	})
	mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{Audience: []string{"x", "api://mcp"}}))
	// The resource itself is not implied when Audiences is set.
	_, err := e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{Audience: []string{testResource}}))
	wantErr(t, err, CodeInvalidToken, "audience mismatch: token is not for "+testResource)
}

func TestNewVerifierConfig(t *testing.T) {
	keys := NewKeySets(KeySetsConfig{})
	base := Config{Resource: testResource, Issuer: "https://id.example.com"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"explicit jwks and non-URL issuer", func(c *Config) { c.Issuer = "urn:example:issuer"; c.JWKSURI = "https://id.example.com/jwks" }, ""},
		{"no resource", func(c *Config) { c.Resource = "" }, "resource is required"},
		{"relative resource", func(c *Config) { c.Resource = "/mcp" }, "absolute"},
		{"resource with fragment", func(c *Config) { c.Resource = testResource + "#x" }, "fragment"},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer is required"},
		{"non-URL issuer without jwks", func(c *Config) { c.Issuer = "urn:example:issuer" }, "set a jwks_uri"},
		{"bad jwks uri", func(c *Config) { c.JWKSURI = "ftp://x/jwks" }, "jwks_uri"},
		{"negative skew", func(c *Config) { c.ClockSkew = -time.Second }, "negative"},
		{"none", func(c *Config) { c.Algorithms = []string{"RS256", "none"} }, `"none"`},
		{"HS256", func(c *Config) { c.Algorithms = []string{"HS256"} }, `"HS256"`},
		{"HS512 and none named", func(c *Config) { c.Algorithms = []string{"HS512", "NONE"} }, `"HS512", "NONE"`},
		{"unknown alg", func(c *Config) { c.Algorithms = []string{"ES256K"} }, `"ES256K"`},
		{"empty audience", func(c *Config) { c.Audiences = []string{""} }, "audiences[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			v, err := NewVerifier(cfg, keys, nil, nil)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := NewVerifier(base, nil, nil, nil); err == nil {
		t.Fatal("nil KeySets accepted")
	}
}

// The default audience list must not alias the caller's slice.
func TestConfigNotAliased(t *testing.T) {
	auds := []string{"a"}
	v, err := NewVerifier(Config{Resource: testResource, Issuer: "https://id.example.com", Audiences: auds}, NewKeySets(KeySetsConfig{}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	auds[0] = "b"
	if !v.audienceOK([]string{"a"}) {
		t.Fatal("verifier shares the caller's audience slice")
	}
}
