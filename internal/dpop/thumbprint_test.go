package dpop

import (
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// The example of RFC 7638 §3.1.
const (
	rfc7638Key = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	rfc7638JKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func TestThumbprintRFC7638Example(t *testing.T) {
	k, err := jwk.ParseKey([]byte(rfc7638Key))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(k)
	if err != nil || got != rfc7638JKT {
		t.Fatalf("Thumbprint = %q, %v; want %q", got, err, rfc7638JKT)
	}
	// The proof-key path computes the same value from the members.
	ai, _ := lookupAlg("RS256")
	pk, perr := parseProofKey([]byte(rfc7638Key), &ai)
	if perr != nil || pk.jkt != rfc7638JKT {
		t.Fatalf("parseProofKey jkt = %v, %v; want %q", pk, perr, rfc7638JKT)
	}
}

// For each key type, the thumbprint of a proof key (from the JWK members)
// is the one jwx computes (from the parsed key), and a private key has the
// thumbprint of its public key.
func TestThumbprintMatchesJWX(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, alg)
			ai, _ := lookupAlg(alg)
			pk, perr := parseProofKey(k.jwk, &ai)
			if perr != nil {
				t.Fatal(perr)
			}
			if pk.jkt != k.jkt {
				t.Errorf("proof key jkt %s, jwx %s", pk.jkt, k.jkt)
			}
			full, err := jwk.ParseKey(k.full)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Thumbprint(full); err != nil || got != k.jkt {
				t.Errorf("Thumbprint(private) = %s, %v; want %s", got, err, k.jkt)
			}
		})
	}
}

func TestThumbprintRefusesSymmetric(t *testing.T) {
	k, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Thumbprint(k); err == nil {
		t.Fatalf("Thumbprint(oct) = %q; want an error", got)
	}
	if _, err := Thumbprint(nil); err == nil {
		t.Fatal("Thumbprint(nil): want an error")
	}
}

func TestAccessTokenHash(t *testing.T) {
	// RFC 9449 §7.1 example: the ath of the access token
	// "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU".
	const token, want = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU", "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
	if got := AccessTokenHash(token); got != want {
		t.Fatalf("AccessTokenHash = %s; want %s", got, want)
	}
}
