package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// metadataURLs lists the discovery documents to try for an issuer, in order.
//
// Without a path component: RFC 8414 then OpenID Connect Discovery at the
// origin. With a path (e.g. https://id.example.com/tenant1), as the MCP
// authorization spec prescribes: RFC 8414 with path insertion
// (/.well-known/oauth-authorization-server/tenant1), OIDC with path insertion
// (/.well-known/openid-configuration/tenant1), then OIDC path appending
// (/tenant1/.well-known/openid-configuration).
func metadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer %q is not a URL: %w", issuer, err)
	}
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{
			origin + "/.well-known/oauth-authorization-server",
			origin + "/.well-known/openid-configuration",
		}, nil
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration",
	}, nil
}

// issuerMeta is what the PDP uses of an issuer's metadata.
type issuerMeta struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	// IntrospectionSigningAlgs (RFC 9701 §7): the server can answer an
	// introspection with a signed JWT.
	IntrospectionSigningAlgs []string `json:"introspection_signing_alg_values_supported"`
}

// discover returns the issuer's metadata. Its "issuer" must equal the
// configured issuer exactly (RFC 8414 §3.3, OIDC Discovery §4.3); the
// jwks_uri and introspection_endpoint it names (either may be absent: an
// issuer of opaque tokens only may have no keys) must be https (http only
// when the issuer itself is http, for development).
func (k *KeySets) discover(ctx context.Context, issuer string) (*issuerMeta, time.Duration, error) {
	urls, err := metadataURLs(issuer)
	if err != nil {
		return nil, 0, err
	}
	var errs []error
	for _, mu := range urls {
		body, maxAge, status, err := k.httpGet(ctx, mu, "application/json")
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil || status == 0 {
				// Timed out or the host is unreachable: the other
				// candidates live on the same host.
				break
			}
			continue // 404 and friends: try the next well-known location
		}
		var doc issuerMeta
		if err := json.Unmarshal(body, &doc); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid JSON: %w", mu, err))
			continue
		}
		if doc.Issuer != issuer {
			errs = append(errs, fmt.Errorf("%s: metadata issuer %q does not match %q", mu, clip(doc.Issuer), issuer))
			continue
		}
		if doc.JWKSURI == "" && doc.IntrospectionEndpoint == "" {
			errs = append(errs, fmt.Errorf("%s: neither jwks_uri nor introspection_endpoint", mu))
			continue
		}
		if err := checkEndpoint(doc.JWKSURI, issuer); doc.JWKSURI != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: jwks_uri: %w", mu, err))
			continue
		}
		if err := checkEndpoint(doc.IntrospectionEndpoint, issuer); doc.IntrospectionEndpoint != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: introspection_endpoint: %w", mu, err))
			continue
		}
		k.log.Debug("token: discovered metadata", "issuer", issuer, "metadata", mu, "jwks_uri", doc.JWKSURI, "introspection_endpoint", doc.IntrospectionEndpoint)
		return &doc, maxAge, nil
	}
	return nil, 0, fmt.Errorf("no usable authorization server metadata: %w", errors.Join(errs...))
}

// checkEndpoint checks a URL of the issuer's metadata: absolute https, or
// http when the issuer itself is http (development).
func checkEndpoint(s, issuer string) error {
	if s == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && u.Host != "" && strings.HasPrefix(issuer, "http://"):
		return nil
	}
	return fmt.Errorf("%q must be an absolute https URL", clip(s))
}
