package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"
)

// TestHelpExitsZero: -h and --help print a command's usage on stdout and
// exit 0, for every command and subcommand; so do `pdp help CMD` and
// `pdp --version`.
func TestHelpExitsZero(t *testing.T) {
	cmds := [][]string{
		{"serve"}, {"gateway"}, {"token"}, {"test"}, {"check"}, {"fmt"}, {"eval"},
		{"bundle", "build"}, {"bundle", "verify"}, {"bundle"},
		{"audit", "tail"}, {"audit", "export"}, {"audit", "store"}, {"audit", "query"}, {"audit", "sql"}, {"audit", "verify"}, {"audit"},
		{"revoke", "client"}, {"revoke", "subject"}, {"revoke", "token"}, {"revoke", "list"}, {"revoke", "remove"}, {"revoke"},
		{"apikey"},
	}
	for _, c := range cmds {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, c...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errb bytes.Buffer
				if code := run(context.Background(), args, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage") || errb.Len() != 0 {
					t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
				}
			})
		}
	}
	for _, args := range [][]string{{"help", "test"}, {"--version"}, {"version"}, {"help"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 || out.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

// TestFlagHabits: flags after arguments, "--" ends the flags, and an
// unknown flag names the closest one and the command's flags (exit 2).
func TestFlagHabits(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "p", "a.rego"), "package a\n\ntest_ok if true\n")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"test", filepath.Join(dir, "p"), "-v", "--run", "ok"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "test_ok: PASS") {
		t.Fatalf("pdp test DIR -v --run ok: exit %d\n%s%s", code, out.String(), errb.String())
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"check", "--strik"}, "unknown flag --strik (did you mean --strict?); its flags are --config, --strict, --warnings-as-errors"},
		{[]string{"test", "--verbos"}, "unknown flag --verbos (did you mean --verbose?)"},
		{[]string{"test", "-x"}, "unknown flag -x; its flags are"},
		{[]string{"fmt", "--lsit"}, "(did you mean --list?)"},
		{[]string{"test", "--timeout", "soon"}, `invalid value "soon" for flag -timeout`},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) || !strings.Contains(errb.String(), "-h' for its flags") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
	// After "--" an argument that looks like a flag is a path.
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"test", "--", "-v"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "-v") {
		t.Fatalf("pdp test -- -v: exit %d, stderr %q: want the path -v refused", code, errb.String())
	}
}

// TestDefaultPolicyLocation: pdp check, eval and test default to the same
// place: ./policies (and ./test/policies for test) where it exists, else
// the embedded default policy (check, eval), which has the revision of the
// same files on disk.
func TestDefaultPolicyLocation(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // no ./policies
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "embedded policy: ok: revision sha256:") {
		t.Fatalf("check without ./policies: exit %d %s%s", code, out.String(), errb.String())
	}
	embedded := strings.TrimSuffix(strings.Fields(out.String())[4], ",")
	out.Reset()
	if code := run(context.Background(), []string{"test"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "no policies or test/policies directory here") {
		t.Fatalf("test without ./policies: exit %d %s", code, errb.String())
	}

	t.Chdir(repo)
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"check"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "policies: ok: revision "+embedded) {
		t.Fatalf("check in the repository: exit %d %s%s; want ./policies with the embedded copy's revision %s", code, out.String(), errb.String(), embedded)
	}
	in := filepath.Join(t.TempDir(), "req.json")
	testkit.WriteFile(t, in, `{"resource": "https://mcp.example.com/mcp", "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "lookup_product"}}}`)
	out.Reset()
	if code := run(context.Background(), []string{"eval", "--input", in}, &out, &errb); code != 0 || !strings.Contains(out.String(), embedded) {
		t.Fatalf("eval in the repository: exit %d %s%s; want the revision %s", code, out.String(), errb.String(), embedded)
	}
}
