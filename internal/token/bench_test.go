package token

import (
	"context"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

func benchEnv(b *testing.B, alg string, cache *Cache) (*env, string) {
	b.Helper()
	e := newEnv(b, alg, cache)
	raw := e.mint(b, devissuer.MintOptions{Subject: "alice", ClientID: "claude", Scopes: []string{"qr:generate", "files:read"}})
	if _, err := e.v.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	return e, raw
}

func BenchmarkVerifyCached(b *testing.B) {
	e, raw := benchEnv(b, "ES256", NewCache(0))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	e, raw := benchEnv(b, "ES256", NewCache(0))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.v.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Fresh: no cache, so every iteration is a full verification (keys are
// already loaded).
func benchFresh(b *testing.B, alg string) {
	e, raw := benchEnv(b, alg, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyFreshRS256(b *testing.B) { benchFresh(b, "RS256") }
func BenchmarkVerifyFreshES256(b *testing.B) { benchFresh(b, "ES256") }
func BenchmarkVerifyFreshEdDSA(b *testing.B) { benchFresh(b, "EdDSA") }

// Baselines: jwx's own verification of the same token.
func BenchmarkJWXJWSVerifyRS256(b *testing.B) {
	e, raw := benchEnv(b, "RS256", nil)
	key := e.iss.PublicKey()
	buf := []byte(raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify(buf, jws.WithKey(jwa.RS256(), key)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJWXJWTParseRS256(b *testing.B) {
	e, raw := benchEnv(b, "RS256", nil)
	key := e.iss.PublicKey()
	buf := []byte(raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jwt.Parse(buf, jwt.WithKey(jwa.RS256(), key), jwt.WithIssuer(e.iss.IssuerURL()), jwt.WithAudience(testResource)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAuthorization(b *testing.B) {
	h := "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyMyIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIiwic3ViIjoiYWxpY2UifQ.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAuthorization(h); err != nil {
			b.Fatal(err)
		}
	}
}
