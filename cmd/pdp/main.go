// Command pdp is mcp-pdp: a policy decision point for Model Context Protocol
// servers. See `pdp help`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // quota time zones on machines (and images) without a zone database
)

const usage = `pdp - policy decision point for MCP servers

Usage:
  pdp serve [--config pdp.yaml | --dev]   run the PDP (HTTP API on 127.0.0.1:8181 by default)
  pdp gateway --dev --upstream URL        protect an unmodified MCP server (an MCP gateway)
  pdp token [--scope S] [--url URL] ...   mint a token from the running dev server's issuer
  pdp test [-v] [--coverage] [paths...]   run Rego unit tests (default: policies test/policies)
  pdp check [--strict] [paths...]         compile a policy and validate its catalog data (CI)
  pdp doctor --config pdp.yaml            check a deployment: keys, issuers, NATS, policy, TLS (exit 0/1/3)
  pdp fmt [--list] [--write] [paths...]   format Rego files (OPA's formatter, as opa fmt)
  pdp init [DIR] [--from URL]             scaffold a policy project (the catalog of a live server with --from)
  pdp eval --input req.json [--explain M] the decision for a /v1/decide body, with the rules behind it
  pdp bundle build|verify [flags]         build (and sign) an OPA bundle, or verify one
  pdp audit tail|export|verify|store|query|sql  read, verify, store and query decision audit events
  pdp revoke client|subject|token ID      cut a caller off on every PDP at once (list, remove)
  pdp apikey [--name N]                   print a new PEP API key and its config entry
  pdp version                             print the version (also pdp --version)

Run 'pdp <command> -h' (or 'pdp help <command>') for the flags of a command;
flags may come before or after a command's arguments.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "gateway":
		return runGateway(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "test":
		return runTest(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, stdout, stderr)
	case "eval":
		return runEval(ctx, rest, stdout, stderr)
	case "bundle":
		return runBundle(ctx, rest, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, stdout, stderr)
	case "revoke":
		return runRevoke(ctx, rest, stdout, stderr)
	case "fmt":
		return runFmt(ctx, rest, stdout, stderr)
	case "init":
		return runInit(ctx, rest, stdout, stderr)
	case "apikey":
		return runAPIKey(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "pdp", version)
		return 0
	case "help", "-h", "--help":
		if len(rest) > 0 && rest[0] != "help" && !strings.HasPrefix(rest[0], "-") {
			// pdp help test: the command's own help.
			return run(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pdp: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
