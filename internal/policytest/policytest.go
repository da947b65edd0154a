// Package policytest runs Rego unit tests (test_* rules) with OPA's own
// tester, for `pdp test` and for `go test` over test/policies.
package policytest

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Options select and report tests.
type Options struct {
	// Paths are files or directories holding policies, data and tests.
	Paths []string
	// Run filters tests by a regular expression on their names.
	Run     string
	Verbose bool
	// Coverage reports coverage; Threshold (percent) fails the run below it.
	Coverage  bool
	Threshold float64
	Timeout   time.Duration
	// Format of the report on Output: FormatPretty (the default, as
	// opa test), FormatJSON (OPA's JSON array of results) or FormatJUnit
	// (JUnit XML for CI systems). With JSON and JUnit the coverage is
	// not printed (Threshold still applies).
	Format string
	Output io.Writer
}

// Summary counts the results.
type Summary struct {
	Pass, Fail, Error, Skip int
	Coverage                float64
}

// OK reports a run without failures or errors that ran at least one test.
func (s Summary) OK() bool { return s.Fail == 0 && s.Error == 0 && s.Pass > 0 }

// Run loads the paths, runs their tests and reports to o.Output.
func Run(ctx context.Context, o Options) (Summary, error) {
	var sum Summary
	switch o.Format {
	case "", FormatPretty, FormatJSON, FormatJUnit:
	default:
		return sum, fmt.Errorf("format %q: use pretty, json or junit", o.Format)
	}
	loaded, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithProcessAnnotation(true).Filtered(o.Paths, nil)
	if err != nil {
		return sum, fmt.Errorf("load %v: %w", o.Paths, err)
	}
	modules := map[string]*ast.Module{}
	for name, m := range loaded.ParsedModules() {
		modules[name] = m
	}
	store := inmem.NewFromObject(loaded.Documents)
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return sum, err
	}
	defer store.Abort(ctx, txn)

	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true)
	var cov *cover.Cover
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		CapturePrintOutput(true).
		EnableTracing(o.Verbose || o.Format == FormatJUnit). // JUnit names the failed expression
		SetModules(modules).
		SetTimeout(timeout).
		Filter(o.Run)
	if o.Coverage || o.Threshold > 0 {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return sum, fmt.Errorf("compile tests: %w", err)
	}
	// Count as results stream to the reporter.
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			switch {
			case r.Skip:
				sum.Skip++
			case r.Error != nil:
				sum.Error++
			case r.Fail:
				sum.Fail++
			default:
				sum.Pass++
			}
			counted <- r
		}
	}()
	out := o.Output
	if out == nil {
		out = io.Discard
	}
	var rep tester.Reporter
	switch o.Format {
	case "", FormatPretty:
		rep = tester.PrettyReporter{Output: out, Verbose: o.Verbose, FailureLine: true}
	case FormatJSON:
		rep = tester.JSONReporter{Output: out}
	case FormatJUnit:
		rep = junitReporter{out: out}
	}
	if err := rep.Report(counted); err != nil {
		return sum, err
	}
	if cov != nil {
		report := cov.Report(modules)
		sum.Coverage = report.Coverage
		pretty := o.Format == "" || o.Format == FormatPretty
		if pretty {
			fmt.Fprintf(out, "coverage: %.1f%%\n", report.Coverage)
		}
		if pretty && o.Verbose {
			for file, fr := range report.Files {
				fmt.Fprintf(out, "  %s: %.1f%%\n", file, fr.Coverage)
			}
		}
		if o.Threshold > 0 && report.Coverage < o.Threshold {
			return sum, fmt.Errorf("coverage %.1f%% is below the threshold %.1f%%", report.Coverage, o.Threshold)
		}
	}
	if sum.Pass+sum.Fail+sum.Error == 0 {
		return sum, fmt.Errorf("no tests found in %v", o.Paths)
	}
	return sum, nil
}
