// Package local runs mcp-pdp inside a Go MCP server: the decision core,
// the policy (watched and reloaded), token verification and the audit to
// NATS JetStream, configured by the same YAML as `pdp serve`, with no HTTP
// listener and no hop to a PDP. A *PDP is a pep.Decider:
//
//	pdp, err := local.Open(ctx, "pdp.yaml", local.Options{})
//	if err != nil { ... }
//	defer pdp.Close()
//	http.Handle("/mcp", pep.Middleware(mcpHandler, pep.Options{Decider: pdp, Resource: "https://mcp.example.com/mcp"}))
//
// The configuration's resources must include the server's (its URI, its
// issuer); listen and the gateway keys are ignored.
package local

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/pep"
)

// DefaultName names the server as the enforcement point in audit events.
const DefaultName = "local"

// Options configure Open.
type Options struct {
	// Name is the enforcement point's name in audit events (default
	// DefaultName).
	Name string
	// Logger receives the PDP's logs (default: none).
	Logger *slog.Logger
}

// PDP is mcp-pdp running in-process. It is safe for concurrent use.
type PDP struct {
	srv  *server.Server
	name string
}

// Open reads the configuration file at path and starts the PDP: it fails
// when the configuration is invalid (every problem named with its file and
// line) or the policy cannot be loaded. ctx bounds the start only.
func Open(ctx context.Context, path string, o Options) (*PDP, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, o)
}

func open(ctx context.Context, cfg *config.Config, o Options) (*PDP, error) {
	for i := range cfg.Resources {
		cfg.Resources[i].Upstream = nil // no gateway in-process
	}
	srv, err := server.New(ctx, cfg, server.Options{NoListener: true, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("local PDP: %w", err)
	}
	return &PDP{srv: srv, name: cmp.Or(o.Name, DefaultName)}, nil
}

// Decide decides req in-process.
func (p *PDP) Decide(ctx context.Context, req *pep.Request) (*pep.Response, error) {
	return p.srv.Core().Decide(ctx, req, p.name)
}

// Refund gives back a call a quota counted (pep.Refunder): token is its
// decision's Response.Refund.
func (p *PDP) Refund(ctx context.Context, token, reason string) (bool, error) {
	return p.srv.Core().Refund(ctx, token, p.name, reason)
}

// Close stops the PDP: the audit is flushed (or left on its spool), then
// everything it started stops.
func (p *PDP) Close() error { return p.srv.Close() }
