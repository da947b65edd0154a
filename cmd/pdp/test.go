package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mcp-pdp/pdp/internal/policytest"
)

func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp test [flags] [paths...]\n\nRuns Rego unit tests (rules named test_*) with OPA's tester.\nPaths default to ./policies and ./test/policies (those that exist), as pdp check and pdp eval.")
		fs.PrintDefaults()
	}
	verbose := fs.Bool("v", false, "verbose: print every test and its trace on failure")
	fs.BoolVar(verbose, "verbose", false, "same as -v")
	coverage := fs.Bool("coverage", false, "report coverage")
	threshold := fs.Float64("threshold", 0, "fail when coverage (percent) is below this (implies --coverage)")
	runRe := fs.String("run", "", "run only tests whose names match this regular expression")
	timeout := fs.Duration("timeout", 0, "timeout per test (default 5s)")
	format := fs.String("format", "pretty", "report format: pretty, json (OPA's), or junit (JUnit XML for CI systems)")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	switch *format {
	case policytest.FormatPretty, policytest.FormatJSON, policytest.FormatJUnit:
	default:
		fmt.Fprintf(stderr, "pdp test: --format %q: use pretty, json or junit\n", *format)
		return 2
	}
	if len(paths) == 0 {
		if paths = defaultPolicyPaths(true); len(paths) == 0 {
			fmt.Fprintf(stderr, "pdp test: no %s or %s directory here: give the paths of your policy and its tests\n", defaultPolicyDir, defaultTestDir)
			return 2
		}
	}
	sum, err := policytest.Run(ctx, policytest.Options{
		Paths: paths, Run: *runRe, Verbose: *verbose, Coverage: *coverage, Threshold: *threshold,
		Timeout: *timeout, Format: *format, Output: stdout,
	})
	if err != nil {
		fmt.Fprintln(stderr, "pdp test:", err)
		return 1
	}
	if !sum.OK() {
		return 1
	}
	return 0
}
