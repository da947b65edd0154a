package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// snippet is a fenced code block of a Markdown file.
type snippet struct {
	file string
	line int // of the opening fence
	lang string
	// context is the text of an HTML comment right above the fence,
	// e.g. <!-- rego: package cookbook.roles; import data.mcp.lib -->.
	context string
	body    string
}

var fenceRe = regexp.MustCompile("^```([a-z]*)")

// snippets reads the fenced blocks of the docs and the README.
func snippets(t *testing.T) []snippet {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	var out []snippet
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *snippet
		var prev string
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			trimmed := strings.TrimSpace(line)
			if m := fenceRe.FindStringSubmatch(trimmed); m != nil {
				if cur == nil {
					cur = &snippet{file: filepath.Base(f), line: n, lang: m[1]}
					if c, ok := strings.CutPrefix(prev, "<!--"); ok {
						cur.context = strings.TrimSpace(strings.TrimSuffix(c, "-->"))
					}
				} else {
					out = append(out, *cur)
					cur = nil
				}
				continue
			}
			if cur != nil {
				// Indented fences (inside list items) keep their indent.
				cur.body += strings.TrimPrefix(line, "  ") + "\n"
			} else if trimmed != "" {
				prev = trimmed
			}
		}
	}
	return out
}

// TestDocsRegoSnippets: every Rego snippet in docs/ compiles with the
// default policy, in strict mode, as the PDP would load it. A snippet
// with no package is a fragment of the recipe named in the comment above
// it (<!-- rego: package X; import Y -->), or of package mcp.authz.
func TestDocsRegoSnippets(t *testing.T) {
	n := 0
	for _, s := range snippets(t) {
		if s.lang != "rego" {
			continue
		}
		n++
		t.Run(s.file+":"+strconv.Itoa(s.line), func(t *testing.T) {
			src := s.body
			if !strings.HasPrefix(strings.TrimSpace(src), "package ") {
				head, _ := strings.CutPrefix(s.context, "rego:")
				head = strings.TrimSpace(head)
				if head == "" {
					head = "package mcp.authz"
				}
				src = strings.ReplaceAll(head, "; ", "\n") + "\n\n" + src
			}
			dir := coretestPolicyCopy(t)
			testkit.WriteFile(t, filepath.Join(dir, "snippet.rego"), src)
			if strings.Contains(src, "data.cookbook.") {
				// A recipe's wiring: the recipes are in test/policies/cookbook.
				for _, f := range mustGlob(t, "../../test/policies/cookbook/*.rego") {
					if !strings.HasSuffix(f, "_test.rego") {
						b, _ := os.ReadFile(f)
						testkit.WriteFile(t, filepath.Join(dir, "cookbook", filepath.Base(f)), string(b))
					}
				}
			}
			if _, err := decision.Load(context.Background(), decision.Source{Path: dir}, decision.Options{CacheSize: -1, Strict: true}); err != nil {
				t.Fatalf("the snippet does not compile with the default policy:\n%s\n%v", src, err)
			}
		})
	}
	if n < 4 {
		t.Fatalf("found %d Rego snippets: the extraction is broken", n)
	}
}

// TestDocsExtendingExample: the "Extending the default policy" example
// of docs/policy.md decides as its comments say, for every shape of the
// argument: a number above 1000 is refused for a second approver, one
// within it passes, and a string, null or a missing amount is refused as
// not a number rather than compared ("5" > 1000 holds in Rego).
func TestDocsExtendingExample(t *testing.T) {
	var ext string
	for _, s := range snippets(t) {
		if s.lang == "rego" && s.file == "policy.md" && strings.Contains(s.body, "second approver") {
			ext = s.body
		}
	}
	if ext == "" {
		t.Fatal("the Extending example is not in docs/policy.md")
	}
	dir := coretestPolicyCopy(t)
	testkit.WriteFile(t, filepath.Join(dir, "extending.rego"), ext)
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), `mcp:
  default_catalog: bank
  catalogs:
    bank:
      unknown: {access: deny}
      tools:
        transfer: {access: public}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir}, decision.Options{CacheSize: -1, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	finance, err := decision.NewToken("bob", "app", "https://issuer.example", "user", []string{}, nil, map[string]any{"department": "finance"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   string
		allow  bool
		reason string
	}{
		{`{"amount": 5000}`, false, "second approver"},
		{`{"amount": 10}`, true, ""},
		{`{"amount": 1000}`, true, ""},
		{`{"amount": "5"}`, false, "amount must be a number"},
		{`{"amount": "5000"}`, false, "amount must be a number"},
		{`{"amount": null}`, false, "amount must be a number"},
		{`{}`, false, "amount must be a number"},
	} {
		in := &decision.Input{Resource: "https://bank.example/mcp", Method: "tools/call", Class: decision.ClassifyMethod("tools/call"),
			Target: "transfer", RawArguments: []byte(tc.args), Token: finance}
		r, err := p.Decide(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		if r.Allow != tc.allow || !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("%s: allow %v, reason %q; want %v and %q", tc.args, r.Allow, r.Reason, tc.allow, tc.reason)
		}
	}
}

// TestDocsShellSnippets: every pdp command line in a shell snippet of
// docs/ and the README names a command that exists, with flags it has
// (each is run with -h appended: the flags before it are parsed, and
// -h ends the command with status 0), and every `make X` names a target
// of the Makefile. The lines that need nothing but the repository (pdp
// test, check, fmt, and pdp init in a new directory) or a running dev
// server (pdp token, the audit commands that end, pdp revoke: run where
// .pdp-data is one's, as after `make run`) are run for real and must exit
// 0; the others (another NATS or database, keys, a live MCP server,
// commands that run until stopped) are each command's own tests' business.
func TestDocsShellSnippets(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	pdpRe := regexp.MustCompile(`(?:^|[\s;&|(=$])(?:go run \./cmd/pdp|bin/pdp|pdp)\s+([^|;&>)]*)`)
	makeRe := regexp.MustCompile(`(?:^|[\s;&|(])make\s+([a-z][a-z-]*)`)
	n, ran := 0, 0
	dev := newDevDir(t)
	for _, s := range snippets(t) {
		if s.lang != "sh" && s.lang != "bash" && s.lang != "shell" {
			continue
		}
		for i, line := range joinContinuations(s.body) {
			code, _, _ := strings.Cut(line, " #") // comments
			if strings.HasPrefix(strings.TrimSpace(code), "#") {
				continue
			}
			for _, m := range makeRe.FindAllStringSubmatch(code, -1) {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m[1]) + `:`).Match(mk) {
					t.Errorf("%s:%d: make %s: no such target in the Makefile", s.file, s.line+i+1, m[1])
				}
			}
			for _, m := range pdpRe.FindAllStringSubmatch(code, -1) {
				args := shellFields(m[1])
				if len(args) == 0 {
					continue
				}
				n++
				// -h before a stdio server's command (after --).
				if i := indexOf(args, "--"); i >= 0 {
					args = append(args[:i:i], "-h")
				} else {
					args = append(args, "-h")
				}
				var out, errb bytes.Buffer
				if code := run(context.Background(), args, &out, &errb); code != 0 {
					t.Errorf("%s:%d: pdp %s: exit %d\n%s", s.file, s.line+i+1, strings.Join(args[:len(args)-1], " "), code, errb.String())
					continue
				}
				// What runs here on its own is run for real: the policy
				// tools in the repository root, pdp init in a new directory.
				args = args[:len(args)-1]
				switch {
				case selfContained(args):
					ran++
					if code, out := runIn(t, args); code != 0 {
						t.Errorf("%s:%d: pdp %s (run in %s): exit %d\n%s", s.file, s.line+i+1, strings.Join(args, " "), runDir(t, args), code, out)
					}
				case devRunnable(args):
					ran++
					if code, out := dev.run(t, args); code != 0 {
						t.Errorf("%s:%d: pdp %s (run next to a dev server): exit %d\n%s", s.file, s.line+i+1, strings.Join(args, " "), code, out)
					}
				}
			}
		}
	}
	if n < 30 || ran < 30 {
		t.Fatalf("found %d pdp command lines, ran %d: the extraction is broken", n, ran)
	}
	t.Logf("%d pdp command lines checked, %d of them run", n, ran)
}

// selfContained: a command line that needs nothing but the repository
// (or a new directory): pdp test, check and fmt without --write or a
// --config, and pdp init without --from (which needs a live server).
func selfContained(args []string) bool {
	if len(args) == 0 {
		return false
	}
	for _, a := range args {
		if a == "--write" || a == "--config" || a == "--from" || strings.HasPrefix(a, "$") || strings.ContainsAny(a, "<>") {
			return false
		}
	}
	switch args[0] {
	case "test", "check", "fmt", "init":
		return true
	}
	return false
}

// devRunnable: a line that needs the running dev server (as `make run`
// would be) and nothing else: pdp token, the audit commands that end
// (not store, not --follow), pdp revoke; not those naming another NATS,
// database, key or server.
func devRunnable(args []string) bool {
	if len(args) == 0 {
		return false
	}
	for _, a := range args {
		if a == "--follow" || a == "-f" || a == "--url" || a == "--nats" || a == "--db" || a == "--store" ||
			strings.Contains(a, "://") || strings.HasPrefix(a, "$") || strings.ContainsAny(a, "<>…") {
			return false
		}
	}
	switch args[0] {
	case "token", "revoke":
		return true
	case "audit":
		return len(args) > 1 && args[1] != "store"
	}
	return false
}

// devDir is a directory whose .pdp-data is a running dev server's data
// directory, as in the repository after `make run`: the commands the
// docs show run there with their defaults.
type devDir struct {
	dir string
}

func newDevDir(t *testing.T) *devDir {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, config.DefaultDataDir)}
	cfg.ApplyDefaults()
	srv, err := server.New(context.Background(), cfg, server.Options{Dev: true})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	// A few decisions, for the audit commands to find.
	for _, tool := range []string{"lookup_product", "generate_qr_url", "no_such_tool"} {
		body := `{"resource": "` + srv.URL() + `/mcp", "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "` + tool + `"}}}`
		resp, err := http.Post(srv.URL()+"/v1/decide", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return &devDir{dir: dir}
}

// run runs args in the dev directory, bounded in time.
func (d *devDir) run(t *testing.T, args []string) (int, string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(d.dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, args, &out, &out)
	if ctx.Err() != nil {
		return -1, "timed out after 20 s\n" + out.String()
	}
	return code, out.String()
}

// runDir is where runIn runs args: a new directory for pdp init, the
// repository root for the others.
func runDir(t *testing.T, args []string) string {
	if args[0] == "init" {
		return t.TempDir()
	}
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// runIn runs args in runDir and returns the exit status and output.
func runIn(t *testing.T, args []string) (int, string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(runDir(t, args)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

// joinContinuations joins lines ending in a backslash.
func joinContinuations(body string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(body, "\n") {
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " "), "\\"); ok {
			cur += s + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	return out
}

// shellFields splits a command line as a shell would, for what the docs
// write: words, '...' and "..." quoting; $(...) and $VAR stand as one word.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	in := false
	var quote rune
	depth := 0
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case depth > 0:
			cur.WriteRune(r)
			if r == '(' {
				depth++
			} else if r == ')' {
				depth--
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '(' && strings.HasSuffix(cur.String(), "$"):
			depth++
			cur.WriteRune(r)
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("%s: %v (%d files)", pattern, err, len(m))
	}
	return m
}

// coretestPolicyCopy copies the default policy's Rego files (not its
// data) into a temporary directory.
func coretestPolicyCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pat := range []string{"../../policies/*.rego", "../../policies/lib/*.rego"} {
		for _, f := range mustGlob(t, pat) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel("../../policies", f)
			testkit.WriteFile(t, filepath.Join(dir, rel), string(b))
		}
	}
	b, err := os.ReadFile("../../policies/data.yaml")
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), string(b))
	return dir
}
