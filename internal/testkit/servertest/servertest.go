// Package servertest runs a real mcp-pdp for tests: internal/server in dev
// mode on a loopback port (the dev issuer and its authorization server,
// the embedded NATS with the audit on), deciding for the MCP servers the
// test names, with the default policy or a policy directory of the test.
// It is imported by tests only.
package servertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// Options say what the PDP decides for.
type Options struct {
	// Resources are the URIs of the test's MCP servers (required).
	Resources []string
	// Data, when set, replaces the default policy's data.yaml (its Rego
	// files are kept): a catalog of the test's tools.
	Data string
	// Edit, when set, edits the configuration last.
	Edit func(*config.Config)
}

// PDP is a running dev PDP.
type PDP struct {
	// URL is the PDP's base URL (its API, and the dev issuer at URL+"/dev").
	URL string
	// DataDir holds the dev issuer's key (pdp token reads it).
	DataDir string
	// PolicyDir is the policy directory made of Options.Data ("" without).
	PolicyDir string
	// Server is the running server.
	Server *server.Server
}

// Dev starts the PDP, or fails the test; it stops when the test ends.
func Dev(tb testing.TB, o Options) *PDP {
	tb.Helper()
	dir := tb.TempDir()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	if o.Data != "" {
		cfg.Policy.Path = coretest.DefaultPolicyDir(tb, o.Data)
	}
	if o.Edit != nil {
		o.Edit(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	s, err := server.New(ctx, cfg, server.Options{Dev: true, DevResources: o.Resources})
	if err != nil {
		tb.Fatalf("servertest: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	tb.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("servertest: the PDP stopped with %v", err)
			}
		case <-time.After(testkit.WaitTimeout):
			tb.Error("servertest: the PDP did not stop")
		}
	})
	return &PDP{URL: s.URL(), DataDir: cfg.DataDir, PolicyDir: cfg.Policy.Path, Server: s}
}
