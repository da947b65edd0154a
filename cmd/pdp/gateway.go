package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
)

// defaultDevGatewayListen is where `pdp gateway --dev` serves MCP clients.
const defaultDevGatewayListen = "127.0.0.1:8282"

// protectFlags collects repeated --protect NAME=SCOPE.
type protectFlags map[string]string

func (p protectFlags) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, k+"="+p[k])
	}
	return strings.Join(parts, ",")
}

func (p protectFlags) Set(v string) error {
	name, scope, ok := strings.Cut(v, "=")
	if !ok || name == "" || scope == "" || strings.ContainsAny(scope, " \t\"\\") {
		return fmt.Errorf("want NAME=SCOPE (a tool name and one scope token), not %q", v)
	}
	p[name] = scope
	return nil
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp gateway --dev --upstream URL [--protect NAME=SCOPE]... [flags]
       pdp gateway --dev [--protect NAME=SCOPE]... [flags] -- COMMAND [ARGS...]
       pdp gateway --config pdp.yaml

Protects an unmodified MCP server: MCP clients connect to the gateway, which
decides every request in-process, filters lists per caller, answers denials
with step-up challenges and forwards the rest without the client's token.

With --dev (development only: dev token issuer, embedded NATS) every tool of
the upstream is public unless --protect makes it a step-up tool needing a
scope; mint tokens with 'pdp token --scope SCOPE'. With --config the
resources that name an upstream are served on gateway.listen (see
docs/gateway.md). A stdio server is started by the gateway, one process per
MCP session: pdp gateway --dev -- npx -y @modelcontextprotocol/server-everything

`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration file (YAML); resources with an upstream are served on gateway.listen")
	dev := fs.Bool("dev", false, "development mode: dev token issuer, embedded NATS; no config needed")
	upstream := fs.String("upstream", "", "the upstream's Streamable HTTP endpoint, e.g. http://127.0.0.1:3000/mcp (with --dev)")
	protect := protectFlags{}
	fs.Var(protect, "protect", "NAME=SCOPE: tool NAME needs SCOPE (repeatable; with --dev)")
	gwListen := fs.String("gateway-listen", "", "the gateway's address for MCP clients (with --dev; default "+defaultDevGatewayListen+")")
	listen := fs.String("listen", "", "the PDP API's address (overrides the config; default "+config.DefaultListen+")")
	dataDir := fs.String("data-dir", "", "data directory (overrides the config; default "+config.DefaultDataDir+")")
	var command []string
	for i, a := range args {
		if a == "--" {
			args, command = args[:i], args[i+1:]
			break
		}
	}
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "pdp gateway: unexpected argument %q (a stdio command goes after --)\n", pos[0])
		return 2
	}
	if (*cfgPath == "") == !*dev {
		fmt.Fprintln(stderr, "pdp gateway: give exactly one of --config FILE or --dev")
		return 2
	}
	if !*dev {
		if *upstream != "" || len(protect) > 0 || len(command) > 0 || *gwListen != "" {
			fmt.Fprintln(stderr, "pdp gateway: --upstream, --protect, --gateway-listen and a command go with --dev; with --config the configuration names them")
			return 2
		}
		cfg, err := config.Load(*cfgPath)
		if err == nil {
			err = cfg.Override(func(c *config.Config) {
				if *listen != "" {
					c.Listen = *listen
				}
				if *dataDir != "" {
					c.DataDir = *dataDir
				}
			})
		}
		if err != nil {
			fmt.Fprintln(stderr, "pdp gateway:", err)
			return 1
		}
		return runServer(ctx, cfg, server.Options{}, stderr)
	}
	switch {
	case len(command) > 0 && *upstream != "":
		fmt.Fprintln(stderr, "pdp gateway: give --upstream URL or a command after --, not both")
		return 2
	case len(command) == 0 && *upstream == "":
		fmt.Fprintln(stderr, "pdp gateway: --dev needs the MCP server to protect: --upstream URL, or -- COMMAND ARGS... for a stdio server")
		return 2
	}
	up := &config.Upstream{URL: *upstream, Command: command}
	target := *upstream
	if len(command) > 0 {
		target = "the stdio server `" + strings.Join(command, " ") + "`"
	}
	cfg := config.Default()
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	cfg.Gateway.Listen = *gwListen
	if cfg.Gateway.Listen == "" {
		cfg.Gateway.Listen = defaultDevGatewayListen
	}
	fmt.Fprintln(stderr, devGatewayBanner(target, cfg.Gateway.Listen, protect))
	return runServer(ctx, cfg, server.Options{Dev: true, DevUpstream: up, DevProtect: protect}, stderr)
}

// devGatewayBanner says, before start-up, what dev mode protects and how
// to get a token.
func devGatewayBanner(upstream, listen string, protect protectFlags) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pdp gateway (dev): MCP clients connect to http://%s/mcp; requests go to %s without their tokens.\n", listen, upstream)
	if len(protect) == 0 {
		b.WriteString("Every tool of the upstream is public (use --protect NAME=SCOPE to require a scope).\n")
	} else {
		for _, name := range slices.Sorted(maps.Keys(protect)) {
			fmt.Fprintf(&b, "Tool %s needs scope %s; every other tool is public.\n", name, protect[name])
		}
		fmt.Fprintf(&b, "A token: go run ./cmd/pdp token --scope %s   (or bin/pdp token after make build)\n", protect[slices.Sorted(maps.Keys(protect))[0]])
	}
	b.WriteString("Development only: the dev issuer signs tokens for anyone who asks.")
	return b.String()
}
