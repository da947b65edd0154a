package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp serve [--config pdp.yaml | --dev] [flags]")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration file (YAML); see docs/configuration.md")
	dev := fs.Bool("dev", false, "development mode: dev token issuer, demo policy, embedded NATS; no config needed")
	listen := fs.String("listen", "", "listen address (overrides the config; default "+config.DefaultListen+")")
	dataDir := fs.String("data-dir", "", "data directory (overrides the config; default "+config.DefaultDataDir+")")
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
	return runServer(ctx, cfg, server.Options{Dev: *dev, DevResources: resources}, stderr)
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
