package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// polEvalResource is the resource the command tests decide for.
const polEvalResource = "https://mcp.example.com/mcp"

// polTestApp builds the PDP (no audit, no listener) for the policy pc and
// serves its API from an httptest server.
func polTestApp(t *testing.T, pc config.Policy) (base string, s *server.Server) {
	t.Helper()
	iss := devissuertest.New(t, "ES256")
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		Resources: []config.Resource{{URI: polEvalResource, Issuer: iss.URL}},
		Policy:    pc,
	}
	off := false
	cfg.Audit.Enabled = &off
	cfg.ApplyDefaults()
	s, err := server.New(context.Background(), cfg, server.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close()
	})
	return hs.URL, s
}

// polPublicCall is a call of a tool that no catalog names.
var polPublicCall = []byte(`{"resource": "` + polEvalResource + `", "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "anything"}}}`)

func polDecideOnce(client *http.Client, base string) (testkit.Decision, error) {
	return testkit.PostDecide(client, base, polPublicCall)
}
