package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// algInfo describes a supported algorithm: the curve of its ECDSA key, or
// nil for EdDSA.
type algInfo struct {
	name  string
	curve elliptic.Curve
}

func algInfoOf(alg string) *algInfo {
	switch alg {
	case "ES256":
		return &algInfo{alg, elliptic.P256()}
	case "ES384":
		return &algInfo{alg, elliptic.P384()}
	case "ES512":
		return &algInfo{alg, elliptic.P521()}
	case "EdDSA":
		return &algInfo{alg, nil}
	}
	return nil
}

// fits reports whether pub is a key for the algorithm.
func (a *algInfo) fits(pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return a.curve != nil && k.Curve == a.curve
	case ed25519.PublicKey:
		return a.curve == nil && len(k) == ed25519.PublicKeySize
	}
	return false
}

// algOfKey is the algorithm a private key signs with by default.
func algOfKey(priv crypto.Signer) (string, bool) {
	switch k := priv.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", true
		case elliptic.P384():
			return "ES384", true
		case elliptic.P521():
			return "ES512", true
		}
	case ed25519.PublicKey:
		return "EdDSA", true
	}
	return "", false
}

func generate(a *algInfo) (crypto.Signer, error) {
	if a.curve == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return ecdsa.GenerateKey(a.curve, rand.Reader)
}

// keyDescription names a key for error messages.
func keyDescription(priv crypto.Signer) string {
	switch k := priv.Public().(type) {
	case *ecdsa.PublicKey:
		return "an EC " + k.Curve.Params().Name + " key"
	case ed25519.PublicKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a %T", priv)
}

// loadOrCreateKey returns the key of path (created when missing; "" = a
// fresh key in memory) and the algorithm to sign with: alg, or when alg is
// "" the key's own algorithm (DefaultAlg for a new key).
func loadOrCreateKey(path, alg string) (crypto.Signer, string, error) {
	if path == "" {
		if alg == "" {
			alg = DefaultAlg
		}
		priv, err := generate(algInfoOf(alg))
		if err != nil {
			return nil, "", fmt.Errorf("assertion: generating a %s key: %w", alg, err)
		}
		return priv, alg, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = create(path, alg)
	}
	if err != nil {
		return nil, "", fmt.Errorf("assertion: key file: %w", err)
	}
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("assertion: key file %s: %w", path, err)
	}
	own, ok := algOfKey(priv)
	if !ok {
		return nil, "", fmt.Errorf("assertion: key file %s holds %s; supported: EC P-256, P-384, P-521 and Ed25519", path, keyDescription(priv))
	}
	if alg == "" {
		alg = own
	}
	if !algInfoOf(alg).fits(priv.Public()) {
		return nil, "", fmt.Errorf("assertion: key file %s holds %s, which cannot sign %s (it signs %s): set the algorithm to %s or remove the file to create a new key", path, keyDescription(priv), alg, own, own)
	}
	return priv, alg, nil
}

// ParsePrivateKey reads the first private key of a PEM file: PKCS#8
// "PRIVATE KEY", SEC 1 "EC PRIVATE KEY" (as `openssl ecparam -genkey`
// writes it, after an "EC PARAMETERS" block) or PKCS#1 "RSA PRIVATE KEY".
// It is also the reader of the introspection client's private_key_jwt key.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY)", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", blk.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T is not a signing key", k)
		}
		return s, nil
	}
	return nil, errors.New(`no PEM private key in it (want a PEM "PRIVATE KEY" block)`)
}

// create writes a new key to path with mode 0600 and returns its PEM. The
// file appears complete or not at all (written aside, then linked into
// place); when another process created it first, its key is used.
func create(path, alg string) ([]byte, error) {
	if alg == "" {
		alg = DefaultAlg
	}
	priv, err := generate(algInfoOf(alg))
	if err != nil {
		return nil, fmt.Errorf("generating a %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".assertion-key-*")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	// Link, unlike rename, does not replace a file another process created
	// in the meantime.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return b, nil
}
