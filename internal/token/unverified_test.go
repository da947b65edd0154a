package token

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestReadUnverified(t *testing.T) {
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	}
	long := strings.Repeat("é", 200) // 400 bytes
	tests := []struct {
		name string
		raw  string
		want UnverifiedClaims
		ok   bool
	}{
		{"all three", jwt(`{"sub":"alice","client_id":"agent","iss":"https://as.example"}`), UnverifiedClaims{"alice", "agent", "https://as.example"}, true},
		{"azp when no client_id", jwt(`{"sub":"bob","azp":"web"}`), UnverifiedClaims{Subject: "bob", ClientID: "web"}, true},
		{"client_id wins over azp", jwt(`{"client_id":"c","azp":"a"}`), UnverifiedClaims{ClientID: "c"}, true},
		{"non-string claims ignored", jwt(`{"sub":42,"client_id":{"x":1},"iss":["a"]}`), UnverifiedClaims{}, false},
		{"no claims", jwt(`{"exp":1}`), UnverifiedClaims{}, false},
		{"payload not an object", jwt(`"sub"`), UnverifiedClaims{}, false},
		{"payload not JSON", jwt(`{sub`), UnverifiedClaims{}, false},
		{"bad base64", "a.!!!.c", UnverifiedClaims{}, false},
		{"opaque token", "2YotnFZFEjr1zCsicMWpAA", UnverifiedClaims{}, false},
		{"JWE (five parts)", "a.b.c.d.e", UnverifiedClaims{}, false},
		{"too large", jwt(`{"sub":"` + strings.Repeat("a", MaxTokenBytes) + `"}`), UnverifiedClaims{}, false},
		{"long claim cut on a rune boundary", jwt(`{"sub":"` + long + `"}`), UnverifiedClaims{Subject: long[:256]}, true},
		{"invalid UTF-8 replaced", jwt("{\"sub\":\"a\xffb\"}"), UnverifiedClaims{Subject: "a\ufffdb"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ReadUnverified(tc.raw)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ReadUnverified = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
			if len(got.Subject) > maxUnverifiedClaim {
				t.Fatalf("subject of %d bytes", len(got.Subject))
			}
		})
	}
}

func FuzzReadUnverified(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		c, ok := ReadUnverified(raw)
		for _, s := range []string{c.Subject, c.ClientID, c.Issuer} {
			if len(s) > maxUnverifiedClaim {
				t.Fatalf("claim of %d bytes", len(s))
			}
		}
		if ok != (c != UnverifiedClaims{}) {
			t.Fatalf("ok %v with %+v", ok, c)
		}
	})
}
