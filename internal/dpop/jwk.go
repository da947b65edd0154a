package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

var b64 = base64.RawURLEncoding.Strict()

// privateMembers are the JWK members that only a private or symmetric key
// has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). A proof's jwk holding
// any of them is refused (RFC 9449 §4.3 step 7).
var privateMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// proofKey is the verified public key of a proof's jwk header.
type proofKey struct {
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	jkt string // RFC 7638 SHA-256 thumbprint, base64url
}

// parseProofKey checks the raw jwk header member for algorithm ai: a public
// key only, of the type and curve ai needs, with the canonical base64url
// encodings of RFC 7518 (full-size EC coordinates, RSA values without
// leading zero octets) so that its thumbprint is the one every RFC 7638
// implementation computes. The key itself is parsed by jwx.
func parseProofKey(raw []byte, ai *algInfo) (*proofKey, *Error) {
	m, err := parseObject(raw)
	if err != nil {
		return nil, invalidCause(descJWK, err)
	}
	for _, name := range privateMembers {
		if _, ok := m[name]; ok {
			return nil, invalid(descPrivateKey)
		}
	}
	kty, present, ok := memberString(m, "kty")
	if !present || !ok {
		return nil, jwkErr(`no "kty" string`)
	}
	var fam keyFamily
	switch kty {
	case "EC":
		fam = famEC
	case "RSA":
		fam = famRSA
	case "OKP":
		fam = famOKP
	case "oct":
		return nil, invalid(descSymmetricKey)
	default:
		return nil, invalid(descKeyType)
	}
	if fam != ai.fam {
		return nil, keyDoesNotFit(ai.name)
	}
	if alg, present, ok := memberString(m, "alg"); present {
		if !ok {
			return nil, jwkErr(`"alg" is not a string`)
		}
		if alg != ai.name && !(fam == famOKP && (alg == "EdDSA" || alg == "Ed25519")) {
			return nil, keyDoesNotFit(ai.name)
		}
	}

	// The RFC 7638 members, lexicographically ordered, no whitespace; all
	// values are checked to be base64url or a known curve name, so none
	// needs JSON escaping.
	var tp []byte
	switch fam {
	case famEC, famOKP:
		crv, _, ok := memberString(m, "crv")
		if !ok || crv == "" {
			return nil, jwkErr(`no "crv" string`)
		}
		if crv != ai.crv {
			return nil, keyDoesNotFit(ai.name)
		}
		x, err := coordinate(m, "x", ai.size)
		if err != nil {
			return nil, invalidCause(descJWK, err)
		}
		if fam == famOKP {
			tp = fmt.Appendf(nil, `{"crv":"%s","kty":"OKP","x":"%s"}`, crv, x)
			break
		}
		y, err := coordinate(m, "y", ai.size)
		if err != nil {
			return nil, invalidCause(descJWK, err)
		}
		tp = fmt.Appendf(nil, `{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, crv, x, y)
	case famRSA:
		n, nb, err := unsignedInt(m, "n")
		if err != nil {
			return nil, invalidCause(descJWK, err)
		}
		e, _, err := unsignedInt(m, "e")
		if err != nil {
			return nil, invalidCause(descJWK, err)
		}
		switch nbits := (len(nb)-1)*8 + bits.Len8(nb[0]); {
		case nbits < minRSABits:
			return nil, invalid(descRSAShort)
		case nbits > maxRSABits:
			return nil, invalid(descRSALong)
		}
		tp = fmt.Appendf(nil, `{"e":"%s","kty":"RSA","n":"%s"}`, e, n)
	}

	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, invalidCause(descJWK, err)
	}
	var pub any
	if err := jwk.Export(k, &pub); err != nil {
		return nil, invalidCause(descJWK, err)
	}
	// jwx parsed the same members; make sure it made the key checked above.
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if fam != famEC || p.Curve.Params().Name != ai.crv {
			return nil, keyDoesNotFit(ai.name)
		}
	case *rsa.PublicKey:
		if fam != famRSA || p.N.BitLen() < minRSABits {
			return nil, invalid(descRSAShort)
		}
	case ed25519.PublicKey:
		if fam != famOKP {
			return nil, keyDoesNotFit(ai.name)
		}
	default:
		return nil, invalid(descKeyType)
	}
	sum := sha256.Sum256(tp)
	return &proofKey{key: pub, jkt: b64.EncodeToString(sum[:])}, nil
}

// coordinate reads a base64url member that must decode to exactly size
// bytes (EC coordinates, RFC 7518 §6.2.1.2; Ed25519 x, RFC 8037 §2).
func coordinate(m map[string][]byte, name string, size int) (string, error) {
	s, present, ok := memberString(m, name)
	if !present || !ok {
		return "", fmt.Errorf("no %q string", name)
	}
	if !isB64URL(s) {
		return "", fmt.Errorf("%q is not base64url", name)
	}
	if b64.DecodedLen(len(s)) != size {
		return "", fmt.Errorf("%q is not %d bytes", name, size)
	}
	if _, err := b64.DecodeString(s); err != nil {
		return "", fmt.Errorf("%q: %w", name, err)
	}
	return s, nil
}

// unsignedInt reads a base64url Base64urlUInt member (RFC 7518 §2): at
// least one octet, no leading zero octet.
func unsignedInt(m map[string][]byte, name string) (string, []byte, error) {
	s, present, ok := memberString(m, name)
	if !present || !ok {
		return "", nil, fmt.Errorf("no %q string", name)
	}
	if !isB64URL(s) {
		return "", nil, fmt.Errorf("%q is not base64url", name)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return "", nil, fmt.Errorf("%q: %w", name, err)
	}
	if len(b) == 0 || b[0] == 0 {
		return "", nil, fmt.Errorf("%q has a leading zero octet", name)
	}
	return s, b, nil
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint of key's public
// key, base64url-encoded without padding: the cnf.jkt value of RFC 9449
// §6.1. key may be a private key; its public part is used. Symmetric keys
// are refused: they cannot prove possession to a third party.
func Thumbprint(key jwk.Key) (string, error) {
	if key == nil {
		return "", errors.New("dpop: thumbprint of a nil key")
	}
	if _, ok := key.(jwk.AsymmetricKey); !ok {
		return "", fmt.Errorf("dpop: thumbprint: %s is not an asymmetric key", key.KeyType())
	}
	pub, err := key.PublicKey()
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	sum, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return b64.EncodeToString(sum), nil
}

// AccessTokenHash is the ath claim a proof carries for the access token
// (RFC 9449 §4.2): the base64url SHA-256 of its ASCII value.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}
