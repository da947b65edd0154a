package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// testNow is the verifiers' clock in tests.
var testNow = time.Unix(1_760_000_000, 0)

const (
	testMethod = "POST"
	testURL    = "https://mcp.example.com/mcp"
	testToken  = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
)

// testKey is a real key pair with its public JWK.
type testKey struct {
	alg  string
	priv crypto.Signer
	jwk  json.RawMessage // public
	full json.RawMessage // with the private members
	jkt  string
}

func newKey(tb testing.TB, alg string) *testKey {
	tb.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA", "Ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("newKey: unknown alg %s", alg)
	}
	if err != nil {
		tb.Fatalf("newKey %s: %v", alg, err)
	}
	return keyFor(tb, alg, priv)
}

func keyFor(tb testing.TB, alg string, priv crypto.Signer) *testKey {
	tb.Helper()
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		tb.Fatalf("jwk.Import: %v", err)
	}
	full, err := jwk.Import(priv)
	if err != nil {
		tb.Fatalf("jwk.Import: %v", err)
	}
	k := &testKey{alg: alg, priv: priv, jwk: mustJSON(tb, pub), full: mustJSON(tb, full)}
	if k.jkt, err = Thumbprint(pub); err != nil {
		tb.Fatalf("Thumbprint: %v", err)
	}
	return k
}

func mustJSON(tb testing.TB, v any) json.RawMessage {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	return b
}

// sign makes a JWS signature of input by hand (crypto/*), in the JWS
// formats of RFC 7518 (r||s for ECDSA).
func sign(tb testing.TB, alg string, priv any, input []byte) []byte {
	tb.Helper()
	digest := func(h hash.Hash) []byte { h.Write(input); return h.Sum(nil) }
	var h crypto.Hash
	switch alg[2:] {
	case "256":
		h = crypto.SHA256
	case "384":
		h = crypto.SHA384
	case "512":
		h = crypto.SHA512
	}
	newHash := map[crypto.Hash]func() hash.Hash{crypto.SHA256: sha256.New, crypto.SHA384: sha512.New384, crypto.SHA512: sha512.New}[h]
	switch alg[:2] {
	case "ES":
		k := priv.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, digest(newHash()))
		if err != nil {
			tb.Fatalf("ecdsa.Sign: %v", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	case "RS":
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), h, digest(newHash()))
		if err != nil {
			tb.Fatalf("rsa.SignPKCS1v15: %v", err)
		}
		return sig
	case "PS":
		sig, err := rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), h, digest(newHash()), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			tb.Fatalf("rsa.SignPSS: %v", err)
		}
		return sig
	case "HS":
		m := hmac.New(newHash, priv.([]byte))
		m.Write(input)
		return m.Sum(nil)
	case "Ed":
		return ed25519.Sign(priv.(ed25519.PrivateKey), input)
	}
	tb.Fatalf("sign: unknown alg %s", alg)
	return nil
}

// proof is a DPoP proof under construction: its header and claims are
// plain maps a test may change before build signs them.
type proof struct {
	key    *testKey
	header map[string]any
	claims map[string]any
	// signAlg and signKey, when set, override what signs (alg confusion,
	// wrong key).
	signAlg string
	signKey any
}

// newProof is a valid proof for testMethod testURL with testToken at
// testNow, signed by k.
func newProof(k *testKey) *proof {
	return &proof{
		key:    k,
		header: map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.jwk},
		claims: map[string]any{
			"jti": rand.Text(),
			"htm": testMethod,
			"htu": testURL,
			"iat": testNow.Unix(),
			"ath": AccessTokenHash(testToken),
		},
	}
}

var enc = base64.RawURLEncoding

// build signs the proof; rawHeader/rawPayload, when not nil, replace the
// JSON of the maps.
func (p *proof) build(tb testing.TB) string {
	tb.Helper()
	return p.buildRaw(tb, mustJSON(tb, p.header), mustJSON(tb, p.claims))
}

func (p *proof) buildRaw(tb testing.TB, header, payload []byte) string {
	tb.Helper()
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	alg, key := p.key.alg, any(p.key.priv)
	if p.signAlg != "" {
		alg = p.signAlg
	}
	if p.signKey != nil {
		key = p.signKey
	}
	if alg == "none" {
		return input + "."
	}
	return input + "." + enc.EncodeToString(sign(tb, alg, key, []byte(input)))
}

// check is the request a proof from newProof is valid for.
func check(proofValue string, k *testKey) Check {
	return Check{Proof: proofValue, Method: testMethod, URL: testURL, AccessToken: testToken, JKT: k.jkt}
}

func newTestVerifier(tb testing.TB, mod func(*Options)) *Verifier {
	tb.Helper()
	o := Options{Replay: newTestMemory(1000, func() time.Time { return testNow }), Now: func() time.Time { return testNow }}
	if mod != nil {
		mod(&o)
	}
	v, err := New(o)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return v
}

// newTestMemory is a memory replay cache on the tests' clock.
func newTestMemory(max int, now func() time.Time) *MemoryReplay {
	m := NewMemoryReplay(max)
	m.now = now
	return m
}
