package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/config"
)

// TestAPIKeyCommand: `pdp apikey` prints a fresh key alone on the first
// line and a configuration entry that the config accepts and that matches
// the key.
func TestAPIKeyCommand(t *testing.T) {
	var out1, out2, stderr bytes.Buffer
	if code := run(context.Background(), []string{"apikey", "--name", "gw-1"}, &out1, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if code := run(context.Background(), []string{"apikey", "--name", "gw-1"}, &out2, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	key, snippet, _ := strings.Cut(out1.String(), "\n")
	key2, _, _ := strings.Cut(out2.String(), "\n")
	if !strings.HasPrefix(key, apiKeyPrefix) || len(key) < 40 || key == key2 {
		t.Fatalf("keys %q %q", key, key2)
	}
	cfg, err := config.Parse(strings.NewReader("resources:\n  - uri: https://mcp.example.com/mcp\n    issuer: https://auth.example.com\n" + snippet))
	if err != nil {
		t.Fatalf("the printed entry is not a valid configuration: %v\n%s", err, snippet)
	}
	if len(cfg.Auth.APIKeys) != 1 || cfg.Auth.APIKeys[0].Name != "gw-1" || cfg.Auth.APIKeys[0].SHA256 != api.HashAPIKey(key) {
		t.Fatalf("auth = %+v", cfg.Auth)
	}
	if strings.Contains(snippet, key) {
		t.Fatal("the key itself is in the configuration entry")
	}
	for _, bad := range [][]string{{"apikey", "--name", "a b"}, {"apikey", "--name", ""}, {"apikey", "extra"}} {
		if code := run(context.Background(), bad, io.Discard, io.Discard); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
