package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
)

// rawSign signs input with the standard library directly and returns the
// JWS signature (RFC 7518 §3.4: r||s, each left-padded to the curve size,
// for ECDSA; the 64 bytes of RFC 8037 for EdDSA). jwx's signer does the
// same through encoding/asn1 (reflection) and math/big: 8 more allocations
// per ES256 signature (70 instead of 62, nearly all inside crypto/ecdsa's
// hedged nonce generation) and 5 instead of 2 for EdDSA. The JWKS, the key
// handling and Verify stay with jwx, which checks every signature made here
// in the tests.
func rawSign(priv crypto.Signer, size int, input []byte) ([]byte, error) {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input), nil
	case *ecdsa.PrivateKey:
		var der []byte
		var err error
		switch size {
		case 32:
			h := sha256.Sum256(input)
			der, err = ecdsa.SignASN1(rand.Reader, k, h[:])
		case 48:
			h := sha512.Sum384(input)
			der, err = ecdsa.SignASN1(rand.Reader, k, h[:])
		case 66:
			h := sha512.Sum512(input)
			der, err = ecdsa.SignASN1(rand.Reader, k, h[:])
		default:
			return nil, fmt.Errorf("no ECDSA hash for %d-byte curve", size)
		}
		if err != nil {
			return nil, err
		}
		return derToRS(der, size)
	}
	return nil, fmt.Errorf("cannot sign with %T", priv)
}

// derToRS converts an ASN.1 ECDSA-Sig-Value, SEQUENCE { INTEGER r, INTEGER
// s }, as ecdsa.SignASN1 writes it, to r||s with each left-padded to size
// bytes.
func derToRS(der []byte, size int) ([]byte, error) {
	errDER := errors.New("malformed ECDSA signature")
	body, rest, ok := derTLV(der, 0x30)
	if !ok || len(rest) != 0 {
		return nil, errDER
	}
	out := make([]byte, 2*size)
	for i := range 2 {
		var n []byte
		if n, body, ok = derTLV(body, 0x02); !ok || len(n) == 0 || n[0]&0x80 != 0 {
			return nil, errDER
		}
		for len(n) > 1 && n[0] == 0 { // the sign byte of a positive INTEGER
			n = n[1:]
		}
		if len(n) > size {
			return nil, errDER
		}
		copy(out[(i+1)*size-len(n):(i+1)*size], n)
	}
	if len(body) != 0 {
		return nil, errDER
	}
	return out, nil
}

// derTLV reads one DER element with the given tag (definite length, at most
// two length bytes: enough for any ECDSA signature).
func derTLV(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 3:
		n, hdr = int(b[2]), 3
	case n == 0x82 && len(b) >= 4:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return nil, nil, false
	}
	if len(b)-hdr < n {
		return nil, nil, false
	}
	return b[hdr : hdr+n], b[hdr+n:], true
}
