package devissuer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/token"
)

const resource = "https://mcp.example.com/mcp"

func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// verifyWithJWKS checks tok against the issuer's JWKS using jwx directly.
func verifyWithJWKS(t *testing.T, iss *devissuer.Issuer, tok string) {
	t.Helper()
	set, err := jwk.Parse(iss.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify([]byte(tok), jws.WithKeySet(set, jws.WithRequireKid(true))); err != nil {
		t.Fatalf("jws.Verify: %v", err)
	}
}

func TestNewAndMintAllAlgorithms(t *testing.T) {
	for _, alg := range append(devissuer.Algorithms(), "") {
		t.Run(alg, func(t *testing.T) {
			iss, err := devissuer.New("https://dev.example.com", alg)
			if err != nil {
				t.Fatal(err)
			}
			want := alg
			if want == "" {
				want = devissuer.DefaultAlg
			}
			if iss.Alg() != want || iss.KeyID() == "" {
				t.Fatalf("alg %q kid %q", iss.Alg(), iss.KeyID())
			}
			tok, err := iss.Mint(devissuer.MintOptions{Subject: "alice", Audience: []string{resource}})
			if err != nil {
				t.Fatal(err)
			}
			verifyWithJWKS(t, iss, tok)
			h := decodeSegment(t, tok, 0)
			if h["alg"] != want || h["kid"] != iss.KeyID() || h["typ"] != "at+jwt" {
				t.Fatalf("header %v", h)
			}
			// The JWKS is public only.
			set, _ := jwk.Parse(iss.JWKS())
			k, _ := set.Key(0)
			if priv, _ := jwk.IsPrivateKey(k); priv {
				t.Fatal("JWKS contains the private key")
			}
			if use, _ := k.KeyUsage(); use != "sig" {
				t.Fatalf("use %q", use)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct{ url, alg string }{
		{"https://dev.example.com", "HS256"},
		{"https://dev.example.com", "none"},
		{"dev.example.com", "ES256"},
		{"https://dev.example.com?x=1", "ES256"},
		{"https://dev.example.com#f", "ES256"},
		{"", "ES256"},
	} {
		if _, err := devissuer.New(tt.url, tt.alg); err == nil {
			t.Errorf("New(%q, %q) accepted", tt.url, tt.alg)
		}
	}
}

func TestMintClaims(t *testing.T) {
	iss, _ := devissuer.New("https://dev.example.com", "ES256")
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name  string
		opts  devissuer.MintOptions
		check func(h, c map[string]any) bool
	}{
		{"standard claims", devissuer.MintOptions{Subject: "alice", ClientID: "claude", Audience: []string{resource}, Scopes: []string{"a", "b"}, IssuedAt: now, TTL: time.Minute},
			func(h, c map[string]any) bool {
				return c["iss"] == "https://dev.example.com" && c["sub"] == "alice" && c["client_id"] == "claude" &&
					c["aud"] == resource && c["scope"] == "a b" && c["iat"] == float64(now.Unix()) &&
					c["exp"] == float64(now.Add(time.Minute).Unix()) && len(c["jti"].(string)) == 32 && c["nbf"] == nil
			}},
		{"default TTL", devissuer.MintOptions{IssuedAt: now},
			func(h, c map[string]any) bool { return c["exp"] == float64(now.Add(devissuer.DefaultTTL).Unix()) }},
		{"negative TTL is expired", devissuer.MintOptions{IssuedAt: now, TTL: -time.Minute},
			func(h, c map[string]any) bool { return c["exp"] == float64(now.Add(-time.Minute).Unix()) }},
		{"several audiences", devissuer.MintOptions{Audience: []string{"a", "b"}},
			func(h, c map[string]any) bool { a, ok := c["aud"].([]any); return ok && len(a) == 2 }},
		{"nbf", devissuer.MintOptions{NotBefore: now},
			func(h, c map[string]any) bool { return c["nbf"] == float64(now.Unix()) }},
		{"act chain outermost first", devissuer.MintOptions{Act: []devissuer.Actor{{Subject: "agent", ClientID: "orch"}, {Subject: "gw"}}},
			func(h, c map[string]any) bool {
				a := c["act"].(map[string]any)
				inner := a["act"].(map[string]any)
				return a["sub"] == "agent" && a["client_id"] == "orch" && inner["sub"] == "gw" && inner["act"] == nil
			}},
		{"extra overrides and deletes", devissuer.MintOptions{Subject: "alice", Extra: map[string]any{"sub": "bob", "exp": nil, "tenant": "t1"}},
			func(h, c map[string]any) bool {
				_, hasExp := c["exp"]
				return c["sub"] == "bob" && !hasExp && c["tenant"] == "t1"
			}},
		{"kid override", devissuer.MintOptions{Kid: "other"},
			func(h, c map[string]any) bool { return h["kid"] == "other" }},
		{"header entries, alg fixed", devissuer.MintOptions{Header: map[string]any{"typ": "JWT", "alg": "none", "kid": nil}},
			func(h, c map[string]any) bool {
				_, hasKid := h["kid"]
				return h["typ"] == "JWT" && h["alg"] == "ES256" && !hasKid
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := iss.Mint(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			h, c := decodeSegment(t, tok, 0), decodeSegment(t, tok, 1)
			if !tt.check(h, c) {
				t.Fatalf("header %v claims %v", h, c)
			}
		})
	}
}

func TestSaveLoad(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			iss, _ := devissuer.New("http://127.0.0.1:8080/dev", alg)
			path := filepath.Join(t.TempDir(), "issuer.json")
			if err := iss.Save(path); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v", fi.Mode().Perm())
			}
			got, err := devissuer.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.IssuerURL() != iss.IssuerURL() || got.KeyID() != iss.KeyID() || got.Alg() != alg || string(got.JWKS()) != string(iss.JWKS()) {
				t.Fatal("loaded issuer differs")
			}
			// A token minted by the loaded copy verifies with the original JWKS.
			tok, _ := got.Mint(devissuer.MintOptions{Subject: "alice"})
			verifyWithJWKS(t, iss, tok)
			// Saving again over the file works (atomic replace).
			if err := got.Save(path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub, _ := devissuer.New("https://dev.example.com", "ES256")
	var jwks struct{ Keys []json.RawMessage }
	_ = json.Unmarshal(pub.JWKS(), &jwks)
	for name, path := range map[string]string{
		"missing":     filepath.Join(dir, "nope.json"),
		"not json":    write("a.json", "{"),
		"no key":      write("b.json", `{"issuer":"https://x"}`),
		"bad key":     write("c.json", `{"issuer":"https://x","key":{"kty":"EC"}}`),
		"public only": write("d.json", `{"issuer":"https://x","alg":"ES256","key":`+string(jwks.Keys[0])+`}`),
		"alg vs key":  write("e.json", strings.Replace(mustSave(t, dir), `"alg": "ES256"`, `"alg": "RS256"`, 1)),
	} {
		if _, err := devissuer.Load(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func mustSave(t *testing.T, dir string) string {
	iss, _ := devissuer.New("https://dev.example.com", "ES256")
	p := filepath.Join(dir, "saved.json")
	if err := iss.Save(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestHandler(t *testing.T) {
	for _, path := range []string{"", "/tenant1"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			hs := httptest.NewServer(nil)
			defer hs.Close()
			iss, err := devissuer.New(hs.URL+path, "ES256")
			if err != nil {
				t.Fatal(err)
			}
			hs.Config.Handler = iss.Handler()
			get := func(p string) (int, []byte) {
				resp, err := http.Get(hs.URL + p)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, b
			}
			if code, b := get(path + "/jwks.json"); code != 200 || string(b) != string(iss.JWKS()) {
				t.Fatalf("jwks: %d %s", code, b)
			}
			if iss.JWKSURI() != hs.URL+path+"/jwks.json" {
				t.Fatal(iss.JWKSURI())
			}
			for _, p := range []string{
				"/.well-known/oauth-authorization-server" + path,
				"/.well-known/openid-configuration" + path,
				path + "/.well-known/openid-configuration",
			} {
				code, b := get(p)
				var doc map[string]any
				if code != 200 || json.Unmarshal(b, &doc) != nil || doc["issuer"] != iss.IssuerURL() || doc["jwks_uri"] != iss.JWKSURI() {
					t.Fatalf("%s: %d %s", p, code, b)
				}
			}
			if code, _ := get("/other"); code != 404 {
				t.Fatalf("unknown path: %d", code)
			}
		})
	}
}

func TestJWKSOf(t *testing.T) {
	a, _ := devissuer.New("https://dev.example.com", "ES256")
	b, _ := devissuer.New("https://dev.example.com", "RS256")
	doc, err := devissuer.JWKSOf(a, b)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(doc)
	if err != nil || set.Len() != 2 {
		t.Fatalf("%v %v", set, err)
	}
	for _, i := range []*devissuer.Issuer{a, b} {
		if _, ok := set.LookupKeyID(i.KeyID()); !ok {
			t.Fatalf("kid %s missing", i.KeyID())
		}
	}
}

// End to end with the token package: discovery from the dev issuer's
// metadata, real JWKS over HTTP.
func TestEndToEndWithTokenVerifier(t *testing.T) {
	srv := devissuertest.New(t, "")
	v, err := token.NewVerifier(token.Config{Resource: resource, Issuer: srv.URL}, token.NewKeySets(token.KeySetsConfig{}), token.NewCache(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := srv.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "claude", Audience: []string{resource}, Scopes: []string{"qr:generate"}})
	cl, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Subject != "alice" || cl.ClientID != "claude" || len(cl.Scopes) != 1 || cl.Grant != token.GrantUser {
		t.Fatalf("%+v", cl)
	}
}
