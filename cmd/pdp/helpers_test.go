package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

func polRsaKeys(t *testing.T) (priv, pub string) { return testkit.RSAKeyFiles(t) }

func polWriteTestFile(t *testing.T, path, content string) { testkit.WriteFile(t, path, content) }

// polMarkedPolicy is a policy whose rules and data both carry name, so that a
// decision made from the rules of one bundle and the data of another would
// show as "rules-a/data-b".
func polMarkedPolicy(name string) map[string]string {
	return map[string]string{
		"authz.rego": fmt.Sprintf(`package mcp.authz

decision := {"allow": true, "reason": concat("/", ["rules-%s", data.marker])}
`, name),
		"data.json": fmt.Sprintf(`{"marker": "data-%s"}`, name),
	}
}

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

type polDecideResult struct {
	status   int
	allow    bool
	reason   string
	revision string
}

// polDecideOnce asks base for a decision on a call of a tool that no
// catalog names.
func polDecideOnce(client *http.Client, base string) (polDecideResult, error) {
	body := []byte(`{"resource": "` + polEvalResource + `", "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "anything"}}}`)
	resp, err := client.Post(base+"/v1/decide", "application/json", bytes.NewReader(body))
	if err != nil {
		return polDecideResult{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Allow          bool   `json:"allow"`
		Reason         string `json:"reason"`
		PolicyRevision string `json:"policy_revision"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		return polDecideResult{status: resp.StatusCode}, fmt.Errorf("HTTP %d %s", resp.StatusCode, raw)
	}
	return polDecideResult{resp.StatusCode, out.Allow, out.Reason, out.PolicyRevision}, nil
}
