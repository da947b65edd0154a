package dpop

import (
	"fmt"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// DefaultAlgorithms is the proof signature algorithm allow-list used when
// Options.Algorithms is empty: asymmetric algorithms only (RFC 9449 §4.3
// step 5). "none" and HS* are never accepted.
func DefaultAlgorithms() []string {
	return []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"}
}

// Key sizes accepted for RSA proof keys. The upper bound caps the cost of
// one verification, which a client chooses.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

type keyFamily uint8

const (
	famRSA keyFamily = iota + 1
	famEC
	famOKP
)

// algInfo describes one allowed JWS algorithm and the key it needs.
type algInfo struct {
	name     string
	fam      keyFamily
	crv      string // the JWK crv: P-256, P-384, P-521 or Ed25519
	size     int    // EC coordinate or Ed25519 key bytes
	verifier jws.Verifier2
}

// lookupAlg returns the description of a supported asymmetric algorithm.
func lookupAlg(name string) (algInfo, bool) {
	switch name {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return algInfo{name: name, fam: famRSA}, true
	case "ES256":
		return algInfo{name: name, fam: famEC, crv: "P-256", size: 32}, true
	case "ES384":
		return algInfo{name: name, fam: famEC, crv: "P-384", size: 48}, true
	case "ES512":
		return algInfo{name: name, fam: famEC, crv: "P-521", size: 66}, true
	case "EdDSA", "Ed25519":
		return algInfo{name: name, fam: famOKP, crv: "Ed25519", size: 32}, true
	}
	return algInfo{}, false
}

// forbiddenAlg reports algorithms that must never be configured.
func forbiddenAlg(name string) bool {
	u := strings.ToUpper(strings.TrimSpace(name))
	return u == "NONE" || u == "" || strings.HasPrefix(u, "HS")
}

// buildAlgs validates an allow-list and prepares a jwx verifier for each.
func buildAlgs(names []string) (map[string]*algInfo, error) {
	var forbidden, unknown []string
	algs := make(map[string]*algInfo, len(names))
	for _, a := range names {
		if forbiddenAlg(a) {
			forbidden = append(forbidden, fmt.Sprintf("%q", a))
			continue
		}
		ai, ok := lookupAlg(a)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", a))
			continue
		}
		sa, ok := jwa.LookupSignatureAlgorithm(a)
		if !ok {
			return nil, fmt.Errorf("algorithm %s is not registered with jwx", a)
		}
		v, err := jws.VerifierFor(sa)
		if err != nil {
			return nil, fmt.Errorf("algorithm %s: %w", a, err)
		}
		ai.verifier = v
		algs[a] = &ai
	}
	if len(forbidden) > 0 {
		return nil, fmt.Errorf("algorithms %s are never accepted for DPoP proofs (symmetric or unsigned); allowed: %s",
			strings.Join(forbidden, ", "), strings.Join(DefaultAlgorithms(), " "))
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unsupported algorithms %s; supported: %s Ed25519",
			strings.Join(unknown, ", "), strings.Join(DefaultAlgorithms(), " "))
	}
	return algs, nil
}
