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
		fmt.Fprintln(fs.Output(), "Usage: pdp test [flags] [paths...]\n\nRuns Rego unit tests (rules named test_*) with OPA's tester.\nPaths default to: policies test/policies")
		fs.PrintDefaults()
	}
	verbose := fs.Bool("v", false, "verbose: print every test and its trace on failure")
	fs.BoolVar(verbose, "verbose", false, "same as -v")
	coverage := fs.Bool("coverage", false, "report coverage")
	threshold := fs.Float64("threshold", 0, "fail when coverage (percent) is below this (implies --coverage)")
	runRe := fs.String("run", "", "run only tests whose names match this regular expression")
	timeout := fs.Duration("timeout", 0, "timeout per test (default 5s)")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		paths = []string{"policies", "test/policies"}
	}
	sum, err := policytest.Run(ctx, policytest.Options{
		Paths: paths, Run: *runRe, Verbose: *verbose, Coverage: *coverage, Threshold: *threshold,
		Timeout: *timeout, Output: stdout,
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
