package policysource

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
)

// Defaults of Verification's arguments.
const (
	// DefaultKeyID is the key id of a verification key when none is given.
	DefaultKeyID = "default"
	// DefaultAlgorithm is the signature algorithm when none is given.
	DefaultAlgorithm = "RS256"
)

// Verification builds OPA's bundle verification config from a key file: a
// PEM public key (or certificate) for RS*, PS* and ES* signatures, or the
// shared secret for HS*. The key is checked now, so that a bad key fails at
// start-up rather than at the first bundle.
func Verification(keyFile, keyID, alg, scope string) (*bundle.VerificationConfig, error) {
	if keyFile == "" {
		return nil, errors.New("verification: no key file")
	}
	if keyID == "" {
		keyID = DefaultKeyID
	}
	if alg == "" {
		alg = DefaultAlgorithm
	}
	if !keys.IsSupportedAlgorithm(alg) {
		return nil, fmt.Errorf("verification: algorithm %q is not one of RS256..512, PS256..512, ES256..512, HS256..512", alg)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("verification key: %w", err)
	}
	key := string(raw)
	if !strings.HasPrefix(alg, "HS") {
		if err := checkPublicKey(raw); err != nil {
			return nil, fmt.Errorf("verification key %s: %w", keyFile, err)
		}
	} else if len(strings.TrimSpace(key)) == 0 {
		return nil, fmt.Errorf("verification key %s: the HMAC secret is empty", keyFile)
	}
	kc := &keys.Config{Key: key, Algorithm: alg, Scope: scope}
	return bundle.NewVerificationConfig(map[string]*keys.Config{keyID: kc}, keyID, scope, nil), nil
}

func checkPublicKey(raw []byte) error {
	block, _ := pem.Decode(raw)
	if block == nil {
		return errors.New("not a PEM file (want a PUBLIC KEY or CERTIFICATE block)")
	}
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		_, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		_, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		_, err = x509.ParseCertificate(block.Bytes)
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return errors.New("this is a private key: give the PDP only the public key (openssl pkey -in key.pem -pubout)")
	default:
		return fmt.Errorf("unsupported PEM block %q (want PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	return err
}
