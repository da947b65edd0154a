package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp serve --config pdp.yaml [flags]
       pdp serve --dev [--resource URL]... [--policy DIR] [flags]

With --dev (development only: no config needed) the PDP runs with a dev
authorization server (issuer <base>/dev: registration, Client ID Metadata
Documents, an auto-approving consent page, tokens for the dev user alice),
the demo policy (or --policy DIR) and embedded NATS. --resource protects an
MCP server of yours whose PEP asks this PDP: OAuth clients sign in through
the dev authorization server, and 'pdp token --resource URL' mints for it.

`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration file (YAML); see docs/configuration.md")
	dev := fs.Bool("dev", false, "development mode: dev authorization server, demo policy, embedded NATS; no config needed")
	listen := fs.String("listen", "", "listen address (overrides the config; default "+config.DefaultListen+")")
	dataDir := fs.String("data-dir", "", "data directory (overrides the config; default "+config.DefaultDataDir+")")
	policy := fs.String("policy", "", "policy: a directory of .rego and data files, a bundle file or URL (overrides the config's policy.path; with --dev, instead of the demo policy)")
	var resources resourceFlags
	fs.Var(&resources, "resource", "with --dev: the URI of an MCP server of yours whose PEP asks this PDP; dev tokens are for it (repeatable; default the PDP's own /mcp)")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	if len(resources) > 0 && !*dev {
		fmt.Fprintln(stderr, "pdp serve: --resource goes with --dev; with --config, list resources in the file")
		return 2
	}
	if (*cfgPath == "") == !*dev {
		fmt.Fprintln(stderr, "pdp serve: give exactly one of --config FILE or --dev")
		return 2
	}
	flags := func(c *config.Config) {
		if *listen != "" {
			c.Listen = *listen
		}
		if *dataDir != "" {
			c.DataDir = *dataDir
		}
		if *policy != "" {
			c.Policy.Path = *policy
		}
	}
	var cfg *config.Config
	if *dev {
		// Validated by server.New once the dev resource exists.
		cfg = config.Default()
		flags(cfg)
	} else {
		c, err := config.Load(*cfgPath)
		if err == nil {
			err = c.Override(flags)
		}
		if err != nil {
			fmt.Fprintln(stderr, "pdp serve:", err)
			return 1
		}
		cfg = c
	}
	if *dev {
		fmt.Fprintln(stderr, devServeBanner(cfg, resources, pdpCommand()))
	}
	return runServer(ctx, cfg, server.Options{Dev: *dev, DevResources: resources}, stderr)
}

// devServeBanner says, before start-up, what `pdp serve --dev` protects
// and how to get a token, with a command that works where it was started:
// cmd is how this pdp was run (pdpCommand).
func devServeBanner(cfg *config.Config, resources []string, cmd string) string {
	var b strings.Builder
	base := "http://" + cfg.Listen
	if strings.HasSuffix(cfg.Listen, ":0") {
		base = "http://<the addr logged below>" // a port the system picks
	}
	policy := "the demo policy"
	if cfg.Policy.Path != "" {
		policy = "the policy " + cfg.Policy.Path
	}
	fmt.Fprintf(&b, "pdp serve (dev): %s; OAuth clients sign in as alice at %s/dev (no password, development only).\n", policy, base)
	scope := "qr:generate"
	switch {
	case len(resources) > 0:
		fmt.Fprintf(&b, "Protecting %s: its PEP asks this PDP at %s.\n", strings.Join(resources, ", "), base)
		scope = "SCOPE"
	case cfg.Policy.Path != "":
		scope = "SCOPE"
	}
	tok := cmd + " token --scope " + scope
	if cfg.Listen != config.DefaultListen || cfg.DataDir != config.DefaultDataDir {
		tok += " --url " + base
	}
	if len(resources) > 1 {
		tok += " [--resource URL]"
	}
	fmt.Fprintf(&b, "A token: %s", tok)
	if cmd == goRunCommand {
		b.WriteString("   (or bin/pdp token ... after make build)")
	}
	return b.String()
}

// goRunCommand runs pdp from the repository's root.
const goRunCommand = "go run ./cmd/pdp"

// pdpCommand is how to run this pdp again, for hints: `go run ./cmd/pdp`
// when it was built by go run (its executable is in a go-build directory),
// the path it was started by when that has a slash (bin/pdp), else pdp
// (found on PATH).
func pdpCommand() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return goRunCommand
	}
	if strings.Contains(os.Args[0], "/") {
		return os.Args[0]
	}
	return "pdp"
}

// resourceFlags collects repeated --resource URI.
type resourceFlags []string

func (r *resourceFlags) String() string { return strings.Join(*r, ",") }

func (r *resourceFlags) Set(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("want the MCP server's URI (http or https, no fragment), not %q", v)
	}
	*r = append(*r, v)
	return nil
}

// runServer runs the PDP of cfg until ctx is done: the logger and the
// collector settings of the configuration, then the server.
func runServer(ctx context.Context, cfg *config.Config, o server.Options, stderr io.Writer) int {
	log, err := server.NewLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pdp:", err)
		return 1
	}
	gc, err := server.PlanGC(os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), cfg.Runtime)
	if err != nil {
		fmt.Fprintln(stderr, "pdp:", err)
		return 1
	}
	server.ApplyGC(gc, log)
	o.Logger, o.Version = log, version
	if err := serve(ctx, cfg, o); err != nil {
		log.Error("pdp stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the PDP until ctx is done.
func serve(ctx context.Context, cfg *config.Config, o server.Options) error {
	s, err := server.New(ctx, cfg, o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
