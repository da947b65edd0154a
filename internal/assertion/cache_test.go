package assertion

import (
	"testing"
	"time"
)

// TestCache: one signature per caller for half the assertion's lifetime;
// any claim that differs is another assertion; a full cache starts over.
func TestCache(t *testing.T) {
	s, err := NewSigner(Options{Issuer: testIssuer, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := NewCache(s, 2)
	c.now = func() time.Time { return now }
	alice := Claims{Subject: "alice", ClientID: "a", Scopes: []string{"x", "y"}, Audience: testAudience}
	sign := func(cl Claims) string {
		t.Helper()
		tok, err := c.Sign(cl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(tok, s.JWKS(), testIssuer, cl.Audience, time.Now()); err != nil {
			t.Fatalf("a cached assertion does not verify: %v", err)
		}
		return tok
	}
	first := sign(alice)
	if sign(alice) != first {
		t.Fatal("the same caller was signed for twice within half the lifetime")
	}
	others := []Claims{
		{Subject: "alice", ClientID: "a", Scopes: []string{"x"}, Audience: testAudience},
		{Subject: "alice", ClientID: "a", Scopes: []string{"x", "y", "z"}, Audience: testAudience},
		{Subject: "alice", ClientID: "b", Scopes: []string{"x", "y"}, Audience: testAudience},
		{Subject: "alice", ClientID: "a", Scopes: []string{"x", "y"}, Audience: testAudience + "/other"},
		{Subject: "alice", ClientID: "a", Scopes: []string{"x", "y"}, Audience: testAudience, Act: []Actor{{Subject: "bot"}}},
		{Audience: testAudience},
	}
	for _, o := range others {
		if sign(o) == first {
			t.Fatalf("claims %+v got alice's assertion", o)
		}
	}
	now = now.Add(31 * time.Second)
	if sign(alice) == first {
		t.Fatal("an assertion past half its lifetime was reused")
	}
	if len(c.m) > 2 {
		t.Fatalf("the cache holds %d entries, over its bound of 2", len(c.m))
	}
}
