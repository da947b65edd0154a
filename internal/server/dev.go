package server

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// Files that dev mode writes under the data directory, so that `pdp token`
// can mint tokens the running dev server accepts.
const (
	// DevIssuerFile holds the dev issuer's signing key.
	DevIssuerFile = "dev/issuer.json"
	// DevResourceFile holds the URI of the dev resource.
	DevResourceFile = "dev/resource"
)

// devScope is the scope the demo catalog's protected tool needs.
const devScope = "qr:generate"

// setupDev makes a fresh dev issuer served by the PDP itself under
// <base>/dev and, when cfg has no resources, adds one at <base>/mcp whose
// tokens it signs.
func setupDev(cfg *config.Config, base string) (*devissuer.Issuer, error) {
	iss, err := devissuer.New(base+"/dev", "ES256")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "dev"), 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := iss.Save(filepath.Join(cfg.DataDir, DevIssuerFile)); err != nil {
		return nil, err
	}
	resource := base + "/mcp"
	if err := os.WriteFile(filepath.Join(cfg.DataDir, DevResourceFile), []byte(resource+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	err = cfg.Override(func(c *config.Config) {
		if len(c.Resources) == 0 {
			c.Resources = []config.Resource{{
				URI:             resource,
				Issuer:          iss.IssuerURL(),
				JWKSURI:         iss.JWKSURI(),
				ScopesSupported: []string{devScope},
			}}
		}
	})
	return iss, err
}
