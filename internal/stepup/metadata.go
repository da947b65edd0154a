package stepup

import (
	"net/url"
	"strings"
)

// Metadata is an RFC 9728 protected resource metadata document.
type Metadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// NewMetadata builds the document for a resource; resource is the
// configured URI, identical to what tokens carry in aud (RFC 9728 §3.3).
func NewMetadata(resource string, authServers, scopes []string) Metadata {
	return Metadata{
		Resource:               resource,
		AuthorizationServers:   authServers,
		ScopesSupported:        scopes,
		BearerMethodsSupported: []string{"header"},
	}
}

// MetadataPath is the request path under which the PDP serves the metadata
// of resource: the well-known prefix followed by the resource's path.
func MetadataPath(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil {
		return "", err
	}
	return WellKnownPath + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}
