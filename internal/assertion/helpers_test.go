package assertion

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const (
	testIssuer   = "https://pdp.example.com"
	testAudience = "http://127.0.0.1:3000/mcp"
)

// newSigner returns a Signer with an in-memory key for alg ("" = default).
func newSigner(t testing.TB, alg string) *Signer {
	t.Helper()
	s, err := NewSigner(Options{Issuer: testIssuer, Alg: alg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSign(t testing.TB, s *Signer, c Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw signs an arbitrary header and payload with s's key: well signed
// but hostile tokens.
func signRaw(t testing.TB, s *Signer, header map[string]any, payload []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(payload)
	sig, err := rawSign(s.priv, s.size, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// stdHeader is the header Sign writes, as a map to alter.
func stdHeader(s *Signer) map[string]any {
	return map[string]any{"alg": s.alg, "kid": s.kid, "typ": Typ}
}

// stdPayload is a valid payload issued at now, as a map to alter.
func stdPayload(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1",
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodePart decodes part i (0 header, 1 payload) of a compact JWS.
func decodePart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("part %d is not JSON: %v\n%s", i, err, b)
	}
	return m
}
