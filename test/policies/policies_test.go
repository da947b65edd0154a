// Package policies_test runs the Rego unit tests of test/policies against
// the default policy in policies/, so that `go test ./...` covers them.
package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/policytest"
)

func TestRegoPolicies(t *testing.T) {
	var out strings.Builder
	sum, err := policytest.Run(context.Background(), policytest.Options{
		Paths:    []string{"../../policies", "."},
		Output:   &out,
		Coverage: true,
	})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() {
		t.Fatalf("rego tests: %d passed, %d failed, %d errors", sum.Pass, sum.Fail, sum.Error)
	}
}
