package dpop

import (
	"context"
	"testing"
	"time"
)

// benchVerify measures one proof verification (parse, key, signature,
// claims, a memory replay claim) for alg. The proofs, each with a fresh
// jti, are signed before the timer starts.
func benchVerify(b *testing.B, alg string) {
	k := newKey(b, alg)
	now := time.Now()
	clock := func() time.Time { return now }
	mem := NewMemoryReplay(b.N + 1)
	mem.now = clock
	v, err := New(Options{Replay: mem, Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	checks := make([]Check, b.N)
	for i := range checks {
		p := newProof(k)
		p.claims["iat"] = now.Unix()
		checks[i] = check(p.build(b), k)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.Verify(ctx, checks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, "ES256") }
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, "RS256") }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, "EdDSA") }

// BenchmarkVerifyRejectReplay is the cost of refusing a replayed proof (the
// whole check, then the memory cache's answer).
func BenchmarkVerifyRejectReplay(b *testing.B) {
	k := newKey(b, "ES256")
	v := newTestVerifier(b, nil)
	c := check(newProof(k).build(b), k)
	ctx := context.Background()
	if _, err := v.Verify(ctx, c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, c); err == nil {
			b.Fatal("replay accepted")
		}
	}
}

// BenchmarkMemoryReplayClaim is one claim of a new key in a cache that
// sweeps as many expired keys as it adds.
func BenchmarkMemoryReplayClaim(b *testing.B) {
	m := NewMemoryReplay(1 << 16)
	now := time.Now()
	m.now = func() time.Time { return now }
	keys := make([][32]byte, 1<<16)
	for i := range keys {
		keys[i] = digest(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if _, err := m.Claim(ctx, keys[i&(len(keys)-1)], "", now.Add(time.Duration(len(keys)/2)*time.Microsecond)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
