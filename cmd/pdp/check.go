package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/policysource"
	"github.com/mcp-pdp/pdp/internal/server"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp check [--strict] [paths...]
       pdp check --config pdp.yaml

Checks each path (a policy directory or bundle file) as the PDP would load
it: Rego compile errors, a data.mcp.authz.decision rule, and the catalog
data format, each reported as file:line with a hint. A path ending in .rego
is one Rego file, checked alone as opa check does: it must parse and
compile, nothing more. Exit status 1 when any path would be refused.
Paths default to ./policies, or, without one, the embedded default policy
(the same default as pdp eval and pdp test).

With --config, checks the configured policy (policy.path, fetched and
signature-verified as the server does).

`)
		fs.PrintDefaults()
	}
	strict := fs.Bool("strict", false, "OPA strict mode: unused variables and imports, deprecated built-ins are errors")
	werror := fs.Bool("warnings-as-errors", false, "exit 1 on warnings too")
	cfgPath := fs.String("config", "", "check the policy configured in this file instead of paths")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	type result struct {
		name string
		pol  *decision.Policy // nil for a single Rego file
		err  error
		lint []decision.Problem
	}
	var results []result
	if *cfgPath == "" && len(paths) == 0 {
		paths = defaultPolicyPaths(false)
	}
	if *cfgPath == "" && len(paths) == 0 {
		// No ./policies: the embedded default policy, as pdp serve --dev
		// and pdp eval take it.
		pol, _, err := server.LoadPolicy(ctx, config.Default().Policy, slog.New(slog.DiscardHandler))
		results = append(results, result{name: "embedded policy", pol: pol, err: err})
	} else if *cfgPath != "" {
		if len(paths) > 0 {
			fmt.Fprintln(stderr, "pdp check: give paths or --config, not both")
			return 2
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "pdp check:", err)
			return 1
		}
		name := cfg.Policy.Path
		if name == "" {
			name = "embedded policy"
		}
		pol, _, err := server.LoadPolicy(ctx, cfg.Policy, slog.New(slog.DiscardHandler))
		results = append(results, result{name: name, pol: pol, err: err})
	} else {
		for _, p := range paths {
			if isRegoFile(p) {
				results = append(results, result{name: p, err: checkRegoFile(p, *strict)})
				continue
			}
			pol, err := decision.Load(ctx, decision.Source{Path: p}, decision.Options{CacheSize: -1, Strict: *strict})
			results = append(results, result{name: p, pol: pol, err: err, lint: policysource.IgnoredDataFiles(p)})
		}
	}
	code = 0
	for _, r := range results {
		if r.err != nil {
			code = 1
			fmt.Fprintf(stdout, "%s: refused\n", r.name)
			if ps := decision.ProblemsOf(r.err); len(ps) > 0 {
				for _, p := range ps {
					fmt.Fprintln(stdout, p)
				}
			} else {
				fmt.Fprintln(stdout, r.err)
			}
			continue
		}
		if r.pol == nil {
			fmt.Fprintf(stdout, "%s: ok: compiles (one Rego file, checked alone)\n", r.name)
			continue
		}
		warnings := slices.Concat(r.pol.Warnings(), r.lint)
		for _, w := range warnings {
			fmt.Fprintln(stdout, w)
		}
		if len(warnings) > 0 && *werror {
			code = 1
		}
		fmt.Fprintf(stdout, "%s: ok: revision %s, %d modules, %d warnings\n", r.name, r.pol.Revision(), len(r.pol.Bundle().Modules), len(warnings))
	}
	return code
}

// isRegoFile reports whether path names one Rego file rather than a policy
// directory or a bundle archive.
func isRegoFile(path string) bool {
	if !strings.EqualFold(filepath.Ext(path), ".rego") {
		return false
	}
	fi, err := os.Stat(path)
	return err != nil || !fi.IsDir() // a missing file is reported by checkRegoFile
}

// checkRegoFile checks one Rego file as `opa check FILE` does: the module
// is parsed and compiled on its own (other modules' rules and data are not
// there, so a call of a function defined elsewhere is an error), with OPA's
// strict mode when strict is set. Problems carry file:line and a hint.
func checkRegoFile(path string, strict bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	m, err := ast.ParseModuleWithOpts(path, string(raw), ast.ParserOptions{ProcessAnnotation: true})
	if err != nil {
		return decision.NewPolicyError(path, "load", err)
	}
	c := ast.NewCompiler().WithStrict(strict).WithEnablePrintStatements(true).WithUseTypeCheckAnnotations(true)
	if c.Compile(map[string]*ast.Module{path: m}); c.Failed() {
		return decision.NewPolicyError(path, "compile", c.Errors)
	}
	return nil
}
