package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// introAS is an RFC 7662 introspection endpoint over real HTTP: it
// authenticates the PDP (client_secret_basic, client_secret_post or
// private_key_jwt), answers from a table of tokens, and can be told to
// misbehave. Opaque tokens are random strings, as real servers issue them.
type introAS struct {
	srv   *httptest.Server
	iss   *devissuer.Issuer // signs RFC 9701 responses
	calls atomic.Int64

	mu       sync.Mutex
	tokens   map[string]map[string]any
	mode     string // "", "500", "401", "garbage", "huge", "hang", "jwt", "jwt-wrong-aud", "notobject"
	delay    time.Duration
	accept   string // Accept of the last request
	auth     string // how the last request authenticated
	clientID string
	secret   string
	pub      crypto.PublicKey // private_key_jwt
}

const (
	introClient = "pdp client"  // a space: form-urlencoded in Basic auth
	introSecret = "s3cr:t/+&%=" // characters that must be encoded
)

func newIntroAS(t testing.TB, iss *devissuer.Issuer) *introAS {
	t.Helper()
	a := &introAS{iss: iss, tokens: map[string]map[string]any{}, clientID: introClient, secret: introSecret}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *introAS) endpoint() string { return a.srv.URL + "/introspect" }

func (a *introAS) set(tok string, resp map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[tok] = resp
}

func (a *introAS) setMode(m string) { a.mu.Lock(); a.mode = m; a.mu.Unlock() }

func (a *introAS) last() (accept, auth string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accept, a.auth
}

func (a *introAS) serve(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	a.mu.Lock()
	mode, delay := a.mode, a.delay
	a.accept = r.Header.Get("Accept")
	a.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	auth, ok := a.authenticate(r)
	a.mu.Lock()
	a.auth = auth
	resp, known := a.tokens[r.PostForm.Get("token")]
	a.mu.Unlock()
	if !ok || mode == "401" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if r.PostForm.Get("token_type_hint") != "access_token" {
		http.Error(w, "no hint", http.StatusBadRequest)
		return
	}
	if !known {
		resp = map[string]any{"active": false}
	}
	switch mode {
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case "garbage":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active": tru`))
		return
	case "notobject":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[true]`))
		return
	case "huge":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"pad":"` + strings.Repeat("x", MaxIntrospectionResponseBytes) + `"}`))
		return
	case "hang":
		<-r.Context().Done()
		return
	case "jwt", "jwt-wrong-aud":
		aud := a.clientID
		if mode == "jwt-wrong-aud" {
			aud = "someone else"
		}
		body, _ := json.Marshal(map[string]any{"iss": a.iss.IssuerURL(), "aud": aud, "iat": time.Now().Unix(), "token_introspection": resp})
		signed, err := a.iss.SignJSON(map[string]any{"typ": "token-introspection+jwt"}, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/token-introspection+jwt")
		_, _ = w.Write([]byte(signed))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(resp)
}

// authenticate checks the client authentication and names its method.
func (a *introAS) authenticate(r *http.Request) (string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		id, err1 := url.QueryUnescape(u)
		sec, err2 := url.QueryUnescape(p)
		return AuthClientSecretBasic, err1 == nil && err2 == nil && id == a.clientID && sec == a.secret
	}
	if r.PostForm.Get("client_secret") != "" {
		return AuthClientSecretPost, r.PostForm.Get("client_id") == a.clientID && r.PostForm.Get("client_secret") == a.secret
	}
	if r.PostForm.Get("client_assertion_type") == clientAssertionType {
		a.mu.Lock()
		pub := a.pub
		a.mu.Unlock()
		if pub == nil {
			return AuthPrivateKeyJWT, false
		}
		payload, err := jws.Verify([]byte(r.PostForm.Get("client_assertion")), jws.WithKey(jwa.ES256(), pub))
		if err != nil {
			return AuthPrivateKeyJWT, false
		}
		var c struct {
			Iss, Sub, Aud, Jti string
			Exp, Iat           int64
		}
		if json.Unmarshal(payload, &c) != nil {
			return AuthPrivateKeyJWT, false
		}
		now := time.Now().Unix()
		return AuthPrivateKeyJWT, c.Iss == a.clientID && c.Sub == a.clientID && c.Aud == a.iss.IssuerURL() && c.Jti != "" && c.Exp > now && c.Iat <= now
	}
	return "none", false
}

// introEnv is an issuer (its JWKS and metadata on idp), its introspection
// endpoint, and a verifier introspecting there.
type introEnv struct {
	*env
	as *introAS
}

func newIntroEnv(t testing.TB, ic IntrospectionConfig, cache *Cache) *introEnv {
	t.Helper()
	e := newEnv(t, "ES256", cache)
	as := newIntroAS(t, e.iss)
	if ic.ClientID == "" {
		ic.ClientID = introClient
	}
	if ic.ClientSecret == "" && ic.PrivateKey == nil {
		ic.ClientSecret = introSecret
	}
	if !ic.Discover {
		ic.Endpoint = as.endpoint()
	}
	cfg := e.v.cfg.Config
	cfg.Introspection = &ic
	v, err := NewVerifier(cfg, e.keys, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.now = e.clock.now
	e.v = v
	return &introEnv{env: e, as: as}
}

// opaque is a fresh random opaque token.
func opaque(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// activeResp is a typical active response for the test resource.
func activeResp(e *introEnv) map[string]any {
	return map[string]any{
		"active": true, "iss": e.iss.IssuerURL(), "aud": testResource, "client_id": "app",
		"sub": "alice", "scope": "qr:generate read", "exp": float64(e.clock.now().Add(time.Hour).Unix()),
		"iat": float64(e.clock.now().Unix()), "token_type": "Bearer",
	}
}

func TestIntrospectionActive(t *testing.T) {
	e := newIntroEnv(t, IntrospectionConfig{}, NewCache(100))
	tok := opaque(t)
	r := activeResp(e)
	r["cnf"] = map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	r["act"] = map[string]any{"sub": "agent-7"}
	e.as.set(tok, r)
	cl := mustVerify(t, e.v, tok)
	if cl.Subject != "alice" || cl.ClientID != "app" || strings.Join(cl.Scopes, " ") != "qr:generate read" ||
		cl.Validation != ValidationIntrospection || cl.JKT != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" ||
		cl.Issuer != e.iss.IssuerURL() || len(cl.Act) != 1 || cl.Act[0].Subject != "agent-7" || cl.Grant != GrantUser {
		t.Fatalf("claims %+v", cl)
	}
	if cl.Fingerprint != Fingerprint(tok) {
		t.Fatal("fingerprint")
	}
	if accept, auth := e.as.last(); accept != "application/json" || auth != AuthClientSecretBasic {
		t.Fatalf("accept %q auth %q", accept, auth)
	}
	// A client's own token (no sub): client_credentials.
	svc := opaque(t)
	sr := activeResp(e)
	delete(sr, "sub")
	e.as.set(svc, sr)
	if cl := mustVerify(t, e.v, svc); cl.Grant != GrantClientCredentials || cl.Subject != "" {
		t.Fatalf("client token: grant %q sub %q", cl.Grant, cl.Subject)
	}
	// Cached: no second request.
	mustVerify(t, e.v, tok)
	if n := e.as.calls.Load(); n != 2 {
		t.Fatalf("%d introspections, want 2 (one per token)", n)
	}
	// A JWT of the issuer is verified locally, never introspected.
	jwtCl := mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{}))
	if jwtCl.Validation != ValidationJWT || e.as.calls.Load() != 2 {
		t.Fatalf("JWT: validation %q, %d introspections", jwtCl.Validation, e.as.calls.Load())
	}
}

func TestIntrospectionMaxTTL(t *testing.T) {
	e := newIntroEnv(t, IntrospectionConfig{MaxTTL: 30 * time.Second}, NewCache(100))
	e.clock.freeze()
	tok := opaque(t)
	e.as.set(tok, activeResp(e))
	mustVerify(t, e.v, tok)
	e.clock.advance(29 * time.Second)
	mustVerify(t, e.v, tok)
	if n := e.as.calls.Load(); n != 1 {
		t.Fatalf("%d introspections within max_ttl, want 1", n)
	}
	// Revoked at the server: refused once max_ttl has passed.
	e.as.set(tok, map[string]any{"active": false})
	e.clock.advance(2 * time.Second)
	_, err := e.v.Verify(context.Background(), tok)
	wantErr(t, err, CodeInvalidToken, descInactive)
	// The rejection is remembered for negative_ttl.
	_, err = e.v.Verify(context.Background(), tok)
	wantErr(t, err, CodeInvalidToken, descInactive)
	if n := e.as.calls.Load(); n != 2 {
		t.Fatalf("%d introspections, want 2", n)
	}
	e.clock.advance(DefaultIntrospectionNegativeTTL)
	_, _ = e.v.Verify(context.Background(), tok)
	if n := e.as.calls.Load(); n != 3 {
		t.Fatalf("%d introspections after negative_ttl, want 3", n)
	}
}

// TestIntrospectionRejections: each response the PDP must not accept, with
// its own description; outages are ErrIntrospectionUnavailable (503 at the
// caller), never a 401 and never an allow.
func TestIntrospectionRejections(t *testing.T) {
	type mod func(e *introEnv, r map[string]any)
	tests := []struct {
		name        string
		cfg         IntrospectionConfig
		mode        string
		edit        mod
		desc        string
		unavailable bool
	}{
		{name: "inactive", edit: func(_ *introEnv, r map[string]any) { clear(r); r["active"] = false }, desc: descInactive},
		{name: "active missing", edit: func(_ *introEnv, r map[string]any) { delete(r, "active") }, desc: descIntrospectionMalformed},
		{name: "active a string", edit: func(_ *introEnv, r map[string]any) { r["active"] = "true" }, desc: descIntrospectionMalformed},
		{name: "expired", edit: func(e *introEnv, r map[string]any) { r["exp"] = float64(e.clock.now().Add(-time.Hour).Unix()) }, desc: descExpired},
		{name: "no exp", edit: func(_ *introEnv, r map[string]any) { delete(r, "exp") }, desc: descMissingExp},
		{name: "exp a string", edit: func(_ *introEnv, r map[string]any) { r["exp"] = "tomorrow" }, desc: "malformed exp claim"},
		{name: "other audience", edit: func(_ *introEnv, r map[string]any) { r["aud"] = "https://other.example.com/mcp" }, desc: "audience mismatch: token is not for " + testResource},
		{name: "no audience, required", cfg: IntrospectionConfig{RequireAudience: true}, edit: func(_ *introEnv, r map[string]any) { delete(r, "aud") }, desc: descIntrospectionNoAud},
		{name: "other issuer", edit: func(_ *introEnv, r map[string]any) { r["iss"] = "https://evil.example.com" }, desc: descIssuerMismatch},
		{name: "not yet valid", edit: func(e *introEnv, r map[string]any) { r["nbf"] = float64(e.clock.now().Add(time.Hour).Unix()) }, desc: descNotYetValid},
		{name: "issued in the future", edit: func(e *introEnv, r map[string]any) { r["iat"] = float64(e.clock.now().Add(time.Hour).Unix()) }, desc: descIssuedInFuture},
		{name: "a refresh token", edit: func(_ *introEnv, r map[string]any) { r["token_type"] = "refresh_token" }, desc: descNotAccessToken},
		{name: "scope not a string", edit: func(_ *introEnv, r map[string]any) { r["scope"] = []any{"a"} }, desc: "malformed scope claim"},
		{name: "cnf not an object", edit: func(_ *introEnv, r map[string]any) { r["cnf"] = "x" }, desc: "malformed cnf claim"},
		{name: "garbage", mode: "garbage", desc: descIntrospectionMalformed},
		{name: "not an object", mode: "notobject", desc: descIntrospectionMalformed},
		{name: "oversized", mode: "huge", desc: descIntrospectionMalformed},
		{name: "a signed response for another client", mode: "jwt-wrong-aud", desc: descIntrospectionMalformed},
		{name: "JSON when a signed response is required", cfg: IntrospectionConfig{JWTResponse: true}, desc: descIntrospectionMalformed},
		{name: "500", mode: "500", desc: descIntrospectionUnavailable, unavailable: true},
		{name: "the PDP's credentials refused", mode: "401", desc: descIntrospectionUnavailable, unavailable: true},
		{name: "hangs", cfg: IntrospectionConfig{Timeout: 200 * time.Millisecond}, mode: "hang", desc: descIntrospectionUnavailable, unavailable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newIntroEnv(t, tt.cfg, NewCache(100))
			tok := opaque(t)
			r := activeResp(e)
			if tt.edit != nil {
				tt.edit(e, r)
			}
			e.as.set(tok, r)
			e.as.setMode(tt.mode)
			_, err := e.v.Verify(context.Background(), tok)
			wantErr(t, err, CodeInvalidToken, tt.desc)
			if got := errors.Is(err, ErrIntrospectionUnavailable); got != tt.unavailable {
				t.Fatalf("ErrIntrospectionUnavailable: %v, want %v (%v)", got, tt.unavailable, err)
			}
			// Outages are not remembered: the next request asks again.
			_, _ = e.v.Verify(context.Background(), tok)
			want := int64(1)
			if tt.unavailable {
				want = 2
			}
			if n := e.as.calls.Load(); n != want {
				t.Fatalf("%d introspections, want %d", n, want)
			}
			// The metrics: requests made, and those that got no answer.
			st := e.v.keys.Stats()
			wantFail := uint64(0)
			if tt.unavailable {
				wantFail = 2
			}
			if st.Introspections != uint64(want) || st.IntrospectionFailures != wantFail {
				t.Fatalf("stats %+v, want %d introspections, %d failures", st, want, wantFail)
			}
		})
	}
}

func TestIntrospectionAuthMethods(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  IntrospectionConfig
	}{
		{AuthClientSecretBasic, IntrospectionConfig{AuthMethod: AuthClientSecretBasic}},
		{AuthClientSecretPost, IntrospectionConfig{AuthMethod: AuthClientSecretPost}},
		{AuthPrivateKeyJWT, IntrospectionConfig{AuthMethod: AuthPrivateKeyJWT, PrivateKey: key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newIntroEnv(t, tt.cfg, nil)
			e.as.mu.Lock()
			e.as.pub = key.Public()
			e.as.mu.Unlock()
			tok := opaque(t)
			e.as.set(tok, activeResp(e))
			mustVerify(t, e.v, tok)
			if _, auth := e.as.last(); auth != tt.name {
				t.Fatalf("authenticated by %q", auth)
			}
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		e := newIntroEnv(t, IntrospectionConfig{ClientSecret: "wrong"}, nil)
		_, err := e.v.Verify(context.Background(), opaque(t))
		if !errors.Is(err, ErrIntrospectionUnavailable) {
			t.Fatalf("%v", err)
		}
	})
}

// TestIntrospectionSignedResponse: an RFC 9701 response is verified with the
// issuer's JWKS; required, it is asked for with its media type.
func TestIntrospectionSignedResponse(t *testing.T) {
	for _, required := range []bool{false, true} {
		e := newIntroEnv(t, IntrospectionConfig{JWTResponse: required}, nil)
		e.as.setMode("jwt")
		tok := opaque(t)
		e.as.set(tok, activeResp(e))
		cl := mustVerify(t, e.v, tok)
		if cl.Subject != "alice" || cl.Validation != ValidationIntrospection {
			t.Fatalf("%+v", cl)
		}
		accept, _ := e.as.last()
		if want := map[bool]string{false: "application/json", true: "application/token-introspection+jwt"}[required]; accept != want {
			t.Fatalf("Accept %q, want %q", accept, want)
		}
	}
	// Signed by a key the issuer does not publish: refused.
	e := newIntroEnv(t, IntrospectionConfig{}, nil)
	other, err := devissuer.New(e.iss.IssuerURL(), "ES256")
	if err != nil {
		t.Fatal(err)
	}
	e.as.iss = other
	e.as.setMode("jwt")
	tok := opaque(t)
	e.as.set(tok, activeResp(e))
	_, err = e.v.Verify(context.Background(), tok)
	wantErr(t, err, CodeInvalidToken, descIntrospectionMalformed)
}

func TestIntrospectionDiscovery(t *testing.T) {
	e := newIntroEnv(t, IntrospectionConfig{Discover: true}, nil)
	// The verifier has an explicit jwks_uri; the issuer's metadata names the endpoint.
	meta, _ := json.Marshal(map[string]any{"issuer": e.iss.IssuerURL(), "jwks_uri": e.idp.jwksURI(), "introspection_endpoint": e.as.endpoint()})
	e.idp.setDoc("/.well-known/oauth-authorization-server", meta)
	tok := opaque(t)
	e.as.set(tok, activeResp(e))
	mustVerify(t, e.v, tok)

	// Metadata without an endpoint: unavailable, not a bad token.
	e2 := newIntroEnv(t, IntrospectionConfig{Discover: true}, nil)
	meta2, _ := json.Marshal(map[string]any{"issuer": e2.iss.IssuerURL(), "jwks_uri": e2.idp.jwksURI()})
	e2.idp.setDoc("/.well-known/oauth-authorization-server", meta2)
	_, err := e2.v.Verify(context.Background(), opaque(t))
	if !errors.Is(err, ErrIntrospectionUnavailable) {
		t.Fatalf("%v", err)
	}
}

// TestIntrospectionCoalesced: 32 callers presenting one fresh token at once
// make one request to the authorization server.
func TestIntrospectionCoalesced(t *testing.T) {
	e := newIntroEnv(t, IntrospectionConfig{}, NewCache(100))
	e.as.mu.Lock()
	e.as.delay = 100 * time.Millisecond
	e.as.mu.Unlock()
	tok := opaque(t)
	e.as.set(tok, activeResp(e))
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.v.Verify(context.Background(), tok) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if n := e.as.calls.Load(); n != 1 {
		t.Fatalf("%d introspections for 32 concurrent callers, want 1", n)
	}
}

// TestIntrospectionCallerGivesUp: a caller whose context ends is answered
// at once (unavailable); the request goes on for the others.
func TestIntrospectionCallerGivesUp(t *testing.T) {
	e := newIntroEnv(t, IntrospectionConfig{}, NewCache(100))
	e.as.mu.Lock()
	e.as.delay = 200 * time.Millisecond
	e.as.mu.Unlock()
	tok := opaque(t)
	e.as.set(tok, activeResp(e))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.v.Verify(ctx, tok); !errors.Is(err, ErrIntrospectionUnavailable) {
		t.Fatalf("%v", err)
	}
	mustVerify(t, e.v, tok)
	if n := e.as.calls.Load(); n != 1 {
		t.Fatalf("%d introspections, want 1 (the second caller joined the first request)", n)
	}
}

func TestIntrospectionConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		cfg  IntrospectionConfig
		want string
	}{
		{IntrospectionConfig{ClientID: "x", ClientSecret: "s"}, "endpoint is required"},
		{IntrospectionConfig{Endpoint: "https://as.example.com/i", Discover: true, ClientID: "x", ClientSecret: "s"}, "exclude each other"},
		{IntrospectionConfig{Endpoint: "https://as.example.com/i", ClientSecret: "s"}, "client_id is required"},
		{IntrospectionConfig{Endpoint: "https://as.example.com/i", ClientID: "x"}, "needs a client secret"},
		{IntrospectionConfig{Endpoint: "https://as.example.com/i", ClientID: "x", AuthMethod: AuthPrivateKeyJWT}, "needs a private key"},
		{IntrospectionConfig{Endpoint: "https://as.example.com/i", ClientID: "x", AuthMethod: "tls_client_auth"}, `auth_method "tls_client_auth"`},
		{IntrospectionConfig{Endpoint: "http://as.example.com/i", ClientID: "x", ClientSecret: "s"}, "must be an absolute https URL"},
	} {
		cfg := Config{Resource: testResource, Issuer: "https://as.example.com", JWKSURI: "https://as.example.com/jwks", Introspection: &tt.cfg}
		_, err := NewVerifier(cfg, NewKeySets(KeySetsConfig{}), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
