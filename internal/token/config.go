package token

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// DefaultClockSkew is the leeway applied to exp, nbf and iat when
// Config.ClockSkew is zero.
const DefaultClockSkew = 30 * time.Second

// DefaultAlgorithms is the signature algorithm allow-list used when
// Config.Algorithms is empty. Symmetric (HS*) algorithms and "none" are never
// accepted.
func DefaultAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// Config for one protected resource.
type Config struct {
	// Resource is the canonical resource URI (RFC 8707), e.g.
	// "https://mcp.example.com/mcp". It is the default audience.
	Resource string
	// Issuer is the exact `iss` value required.
	Issuer string
	// Audiences accepted; empty = []string{Resource}. The token's `aud` must
	// contain at least one of them (exact string comparison).
	Audiences []string
	// JWKSURI is optional. If empty it is discovered from the issuer's
	// metadata: RFC 8414 `/.well-known/oauth-authorization-server` (with the
	// RFC 8414 §3.1 path insertion for issuers with a path), then OpenID
	// Connect `/.well-known/openid-configuration`; `jwks_uri` is used.
	JWKSURI string
	// Algorithms is the allow-list; empty = DefaultAlgorithms(). "none" and
	// HS* are rejected by NewVerifier.
	Algorithms []string
	// ClockSkew is the leeway for exp/nbf/iat; 0 = DefaultClockSkew.
	// Negative is an error.
	ClockSkew time.Duration
	// Introspection, when set, validates the tokens that are not JWTs of
	// Issuer by RFC 7662 introspection; without it they are rejected.
	Introspection *IntrospectionConfig
}

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
	curve    elliptic.Curve // famEC only
	verifier jws.Verifier2
}

// lookupAlg returns the description of a supported asymmetric algorithm.
func lookupAlg(name string) (algInfo, bool) {
	switch name {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return algInfo{name: name, fam: famRSA}, true
	case "ES256":
		return algInfo{name: name, fam: famEC, curve: elliptic.P256()}, true
	case "ES384":
		return algInfo{name: name, fam: famEC, curve: elliptic.P384()}, true
	case "ES512":
		return algInfo{name: name, fam: famEC, curve: elliptic.P521()}, true
	case "EdDSA", "Ed25519":
		return algInfo{name: name, fam: famOKP}, true
	}
	return algInfo{}, false
}

// forbiddenAlg reports algorithms that must never be configured.
func forbiddenAlg(name string) bool {
	u := strings.ToUpper(strings.TrimSpace(name))
	return u == "NONE" || u == "" || strings.HasPrefix(u, "HS")
}

// normalized is the validated form of a Config.
type normalized struct {
	Config
	algs map[string]*algInfo
	skew time.Duration
}

func (c Config) normalize() (*normalized, error) {
	if c.Resource == "" {
		return nil, errors.New("resource is required (the canonical resource URI, e.g. https://mcp.example.com/mcp)")
	}
	if err := checkHTTPURL(c.Resource, true); err != nil {
		return nil, fmt.Errorf("resource %q: %w", c.Resource, err)
	}
	if c.Issuer == "" {
		return nil, fmt.Errorf("resource %q: issuer is required (the exact iss of accepted tokens)", c.Resource)
	}
	if c.JWKSURI == "" {
		// The issuer is used for discovery, so it must be a URL.
		if err := checkHTTPURL(c.Issuer, false); err != nil {
			return nil, fmt.Errorf("resource %q: issuer %q cannot be used for metadata discovery (%w); set a jwks_uri", c.Resource, c.Issuer, err)
		}
	} else if err := checkHTTPURL(c.JWKSURI, false); err != nil {
		return nil, fmt.Errorf("resource %q: jwks_uri %q: %w", c.Resource, c.JWKSURI, err)
	}
	if c.ClockSkew < 0 {
		return nil, fmt.Errorf("resource %q: clock skew %s is negative; use 0 for the default (%s)", c.Resource, c.ClockSkew, DefaultClockSkew)
	}
	n := &normalized{Config: c, skew: c.ClockSkew}
	if n.skew == 0 {
		n.skew = DefaultClockSkew
	}
	if len(c.Audiences) == 0 {
		n.Audiences = []string{c.Resource}
	} else {
		n.Audiences = slices.Clone(c.Audiences)
		for i, a := range n.Audiences {
			if a == "" {
				return nil, fmt.Errorf("resource %q: audiences[%d] is empty", c.Resource, i)
			}
		}
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms()
	}
	var forbidden, unknown []string
	n.algs = make(map[string]*algInfo, len(algs))
	for _, a := range algs {
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
			return nil, fmt.Errorf("resource %q: algorithm %s is not registered with jwx", c.Resource, a)
		}
		v, err := jws.VerifierFor(sa)
		if err != nil {
			return nil, fmt.Errorf("resource %q: algorithm %s: %w", c.Resource, a, err)
		}
		ai.verifier = v
		n.algs[a] = &ai
	}
	if len(forbidden) > 0 {
		return nil, fmt.Errorf("resource %q: algorithms %s are never accepted (symmetric or unsigned); allowed: %s",
			c.Resource, strings.Join(forbidden, ", "), strings.Join(DefaultAlgorithms(), " "))
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("resource %q: unsupported algorithms %s; supported: %s Ed25519",
			c.Resource, strings.Join(unknown, ", "), strings.Join(DefaultAlgorithms(), " "))
	}
	n.Algorithms = slices.Clone(algs)
	if c.Introspection != nil {
		ic, err := c.Introspection.normalize(c.Issuer)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", c.Resource, err)
		}
		n.Introspection = ic
	}
	return n, nil
}

// checkHTTPURL requires an absolute http(s) URL without fragment (and, unless
// allowQuery, without query).
func checkHTTPURL(s string, allowQuery bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.Host == "" {
		return errors.New("must have a host")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("must not have a fragment")
	}
	if !allowQuery && u.RawQuery != "" {
		return errors.New("must not have a query")
	}
	return nil
}
