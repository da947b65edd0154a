package assertion

import (
	"testing"
	"time"
)

// benchClaims is a typical caller: user, client, two scopes, a decision.
var benchClaims = Claims{
	Subject: "alice@example.com", ClientID: "claude-desktop", Scopes: []string{"math:sum", "files:read"},
	Grant: "user", DecisionID: "01J9Z8Q4X6W2V7R3T5Y1N0M8KD", Audience: testAudience,
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range Algorithms() {
		b.Run(alg, func(b *testing.B) {
			s := newSigner(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(benchClaims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignParallel(b *testing.B) {
	s := newSigner(b, "")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(benchClaims); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerify is the upstream's side with a Verifier built once.
func BenchmarkVerify(b *testing.B) {
	s := newSigner(b, "")
	v, err := NewVerifier(s.JWKS(), testIssuer, testAudience)
	if err != nil {
		b.Fatal(err)
	}
	tok := mustSign(b, s, benchClaims)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
