// Package dpoptest makes real DPoP proofs (RFC 9449) for tests: an ES256
// key, its thumbprint for a token's cnf.jkt, and proofs signed by it for a
// request. It is imported by tests only.
package dpoptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Key is a client's DPoP key pair.
type Key struct {
	priv *ecdsa.PrivateKey
	pub  jwk.Key
	// JKT is the RFC 7638 SHA-256 thumbprint of the public key, base64url:
	// the cnf.jkt of the tokens bound to it.
	JKT string
}

// NewKey generates an ES256 key.
func NewKey(tb testing.TB) *Key {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	return &Key{priv: priv, pub: pub, JKT: base64.RawURLEncoding.EncodeToString(tp)}
}

// Options vary a proof: the zero value is a valid proof made now.
type Options struct {
	// IssuedAt is iat (zero: now).
	IssuedAt time.Time
	// JTI is jti (empty: random).
	JTI string
	// Nonce, when set, is the nonce claim.
	Nonce string
	// NoATH leaves ath out.
	NoATH bool
}

// Proof is a proof of k for a request (method, URL) carrying token ("":
// none, no ath).
func (k *Key) Proof(tb testing.TB, method, url, token string, o Options) string {
	tb.Helper()
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	jti := o.JTI
	if jti == "" {
		jti = rand.Text()
	}
	claims := map[string]any{"jti": jti, "htm": method, "htu": url, "iat": iat.Unix()}
	if token != "" && !o.NoATH {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if o.Nonce != "" {
		claims["nonce"] = o.Nonce
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.TypeKey: "dpop+jwt", jws.JWKKey: k.pub} {
		if err := hdr.Set(name, v); err != nil {
			tb.Fatal(err)
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), k.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatal(err)
	}
	return string(signed)
}
