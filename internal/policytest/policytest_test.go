package policytest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/policytest"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		ok         bool
		pass, fail int
		errText    string
	}{
		{"passing", map[string]string{"p.rego": "package p\n\nx := 1\n", "p_test.rego": "package p_test\n\ntest_x if data.p.x == 1\n"}, true, 1, 0, ""},
		{"failing", map[string]string{"p.rego": "package p\n\nx := 1\n", "p_test.rego": "package p_test\n\ntest_x if data.p.x == 2\ntest_y if true\n"}, false, 1, 1, ""},
		{"no tests", map[string]string{"p.rego": "package p\n\nx := 1\n"}, false, 0, 0, "no tests found"},
		{"compile error", map[string]string{"p.rego": "package p\n\nx := \n"}, false, 0, 0, "p.rego:4: rego_parse_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out strings.Builder
			sum, err := policytest.Run(context.Background(), policytest.Options{Paths: []string{dir}, Output: &out})
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sum.OK() != tc.ok || sum.Pass != tc.pass || sum.Fail != tc.fail {
				t.Fatalf("summary %+v, want ok=%v pass=%d fail=%d\n%s", sum, tc.ok, tc.pass, tc.fail, out.String())
			}
			if !tc.ok && !strings.Contains(out.String(), "FAIL") {
				t.Fatalf("report does not show the failure:\n%s", out.String())
			}
		})
	}
}
