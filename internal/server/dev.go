package server

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// Files that dev mode writes under the data directory, so that `pdp token`
// can mint tokens the running dev server accepts.
const (
	// DevIssuerFile holds the dev issuer's signing key.
	DevIssuerFile = "dev/issuer.json"
	// DevResourceFile holds the URIs of the dev resources, one a line;
	// the first is `pdp token`'s default audience.
	DevResourceFile = "dev/resource"
)

// devScope is the scope the demo catalog's protected tool needs.
const devScope = "qr:generate"

// devAllowedOrigins are the browser origins the dev gateway accepts: the
// MCP Inspector's web UI on its default port.
func devAllowedOrigins() []string {
	return []string{"http://localhost:6274", "http://127.0.0.1:6274"}
}

// devGatewayCatalog names the catalog of the dev gateway resource.
const devGatewayCatalog = "dev_gateway"

// setupDev makes a fresh dev issuer served by the PDP itself under
// <base>/dev and, when the configuration has no resources, adds one whose
// tokens it signs: at <base>/mcp, or, with Options.DevUpstream, at
// <gateway URL>/mcp in front of that upstream, with a catalog in which
// every name is public but the tools of Options.DevProtect; with
// Options.DevResources, those instead. The issuer's authorization server
// issues tokens for these resources only and serves the mint endpoint of
// `pdp token --url`. The resources are written, one a line, the first
// being `pdp token`'s default, to DevResourceFile.
func (s *Server) setupDev() (*devissuer.Issuer, error) {
	cfg := s.cfg
	iss, err := devissuer.New(s.base+"/dev", "ES256")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "dev"), 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := iss.Save(filepath.Join(cfg.DataDir, DevIssuerFile)); err != nil {
		return nil, err
	}
	resource := s.base + "/mcp"
	scopes := []string{devScope}
	if cfg.Policy.Path != "" {
		scopes = nil // your own policy: its scopes are not known here
	}
	if s.opts.DevUpstream != nil {
		resource = s.gwBase + "/mcp"
		scopes = slices.Sorted(maps.Values(s.opts.DevProtect))
		scopes = slices.Compact(scopes)
		s.policyData = devGatewayData(resource, s.opts.DevProtect)
	}
	err = cfg.Override(func(c *config.Config) {
		for _, uri := range s.opts.DevResources {
			c.Resources = append(c.Resources, config.Resource{URI: uri, Issuer: iss.IssuerURL(), JWKSURI: iss.JWKSURI()})
		}
		if len(c.Resources) == 0 {
			c.Resources = []config.Resource{{
				URI:             resource,
				Issuer:          iss.IssuerURL(),
				JWKSURI:         iss.JWKSURI(),
				ScopesSupported: scopes,
				Upstream:        s.opts.DevUpstream,
			}}
		}
		if s.opts.DevUpstream != nil && len(c.Gateway.AllowedOrigins) == 0 {
			// The MCP Inspector's web UI, run on its default port.
			c.Gateway.AllowedOrigins = devAllowedOrigins()
		}
	})
	if err != nil {
		return nil, err
	}
	var uris []string
	for _, r := range cfg.Resources {
		if r.Issuer == iss.IssuerURL() && !slices.Contains(uris, r.URI) {
			uris = append(uris, r.URI)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, DevResourceFile), []byte(strings.Join(uris, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return iss.WithAuthServerDefaults(devissuer.AuthServerOptions{Resources: uris, MintEndpoint: true}), nil
}

// devGatewayData is the policy data of the dev gateway: the resource uses
// a catalog where every name is public (an unknown upstream's tools are
// not known in advance) except the protected tools, which are step-up.
func devGatewayData(resource string, protect map[string]string) map[string]any {
	tools := map[string]any{}
	for name, scope := range protect {
		tools[name] = map[string]any{"access": "step_up", "scopes": []any{scope}}
	}
	return map[string]any{
		"resources": map[string]any{resource: map[string]any{"catalog": devGatewayCatalog}},
		"catalogs": map[string]any{devGatewayCatalog: map[string]any{
			"unknown":            map[string]any{"access": "public"},
			"tools":              tools,
			"prompts":            map[string]any{},
			"resources":          map[string]any{},
			"resource_templates": map[string]any{},
		}},
	}
}
