package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"
)

// TestFmt: pdp fmt lists, fails on and rewrites a file that OPA's formatter
// would change, leaves a formatted one alone, and reports a parse error
// with the file.
func TestFmt(t *testing.T) {
	dir := t.TempDir()
	messy := filepath.Join(dir, "messy.rego")
	tidy := filepath.Join(dir, "sub", "tidy.rego")
	broken := filepath.Join(t.TempDir(), "broken.rego")
	testkit.WriteFile(t, messy, "package x\na:=1\n")
	testkit.WriteFile(t, tidy, "package x\n\nb := 2\n")
	testkit.WriteFile(t, broken, "package x\na := \n")
	fmtRun := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"fmt"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		inStderr string
	}{
		{"list", []string{"--list", dir}, 0, messy + "\n", ""},
		{"list and fail", []string{"--list", "--fail", dir}, 1, messy + "\n", ""},
		{"print", []string{messy}, 0, "package x\n\na := 1\n", ""},
		{"tidy passes", []string{"--list", "--fail", tidy}, 0, "", ""},
		{"parse error", []string{"--list", broken}, 1, "", broken},
		{"missing path", []string{"--list", filepath.Join(dir, "nope")}, 1, "", "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := fmtRun(tc.args...)
			if code != tc.code || stdout != tc.stdout || !strings.Contains(stderr, tc.inStderr) {
				t.Fatalf("exit %d stdout %q stderr %q; want %d %q, stderr containing %q", code, stdout, stderr, tc.code, tc.stdout, tc.inStderr)
			}
		})
	}
	if code, _, stderr := fmtRun("--write", dir); code != 0 {
		t.Fatalf("--write: exit %d %s", code, stderr)
	}
	if b, _ := os.ReadFile(messy); string(b) != "package x\n\na := 1\n" {
		t.Fatalf("after --write: %q", b)
	}
	if code, stdout, _ := fmtRun("--list", "--fail", dir); code != 0 || stdout != "" {
		t.Fatalf("after --write, still listed: %d %q", code, stdout)
	}
}
