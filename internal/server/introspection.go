package server

import (
	"crypto"
	"fmt"
	"os"
	"strings"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/token"
)

// introspection is the token package's configuration of a resource's
// introspection, its secret or private key read from their files.
func introspection(in *config.Introspection) (*token.IntrospectionConfig, error) {
	if in == nil {
		return nil, nil
	}
	ic := &token.IntrospectionConfig{
		Endpoint: in.Endpoint, Discover: in.Discover, ClientID: in.ClientID, AuthMethod: in.AuthMethod,
		KeyID: in.KeyID, JWTResponse: in.JWTResponse, RequireAudience: in.RequireAudience,
		Timeout: in.Timeout.D(), MaxTTL: in.MaxTTL.D(), NegativeTTL: in.NegativeTTL.D(),
	}
	if in.ClientSecretFile != "" {
		b, err := os.ReadFile(in.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("introspection.client_secret_file: %w", err)
		}
		ic.ClientSecret = strings.TrimSpace(string(b))
		if ic.ClientSecret == "" {
			return nil, fmt.Errorf("introspection.client_secret_file %s is empty", in.ClientSecretFile)
		}
	}
	if in.PrivateKeyFile != "" {
		key, err := readPrivateKey(in.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("introspection.private_key_file: %w", err)
		}
		ic.PrivateKey = key
	}
	return ic, nil
}

// readPrivateKey reads a PEM private key file (assertion.ParsePrivateKey:
// PKCS #8, SEC 1 or PKCS #1).
func readPrivateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := assertion.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}
