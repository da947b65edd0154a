package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/policies"
)

// runInit implements `pdp init [DIR] [--from URL]`: a policy project
// (the default policy, a catalog, Rego tests, a README with the CI
// snippet) that `pdp test` and `pdp check` run as it is.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp init", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp init [DIR] [--from URL] [flags]

Scaffolds a policy project in DIR (default: the current directory):
  policies/          the default policy (Rego, as pdp serve --dev runs it) and
                     policies/data.yaml, the catalog of your MCP server
  test/policies/     Rego tests of the catalog, run by pdp test
  POLICY.md          how to test, check and serve it, and a CI snippet
With --from, the catalog lists the tools, prompts, resources and resource
templates of the live MCP server at URL (Streamable HTTP), each restricted
(hidden from everyone but holders of its own scope) until you decide.
Then: cd DIR && pdp test && pdp check.

`)
		fs.PrintDefaults()
	}
	from := fs.String("from", "", "URL of a running MCP server (Streamable HTTP) whose tools, prompts and resources the catalog lists")
	token := fs.String("token", "", "with --from: a bearer token for the server (or $PDP_INIT_TOKEN)")
	catalog := fs.String("catalog", "main", "the catalog's name")
	force := fs.Bool("force", false, "write into DIR even when policies/ or test/policies/ exist (files are overwritten)")
	timeout := fs.Duration("timeout", 30*time.Second, "with --from: bound on listing the server")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(stderr, "pdp init: one directory, not %d\n", len(pos))
		return 2
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	if !validCatalogName(*catalog) {
		fmt.Fprintf(stderr, "pdp init: --catalog %q: letters, digits, '_' and '-'\n", *catalog)
		return 2
	}
	if !*force {
		for _, d := range []string{defaultPolicyDir, defaultTestDir} {
			if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
				fmt.Fprintf(stderr, "pdp init: %s exists: not overwriting it (--force writes anyway)\n", filepath.Join(dir, d))
				return 1
			}
		}
	}
	var srv *listedServer
	if *from != "" {
		tok := *token
		if tok == "" {
			tok = os.Getenv("PDP_INIT_TOKEN")
		}
		lctx, cancel := context.WithTimeout(ctx, *timeout)
		var err error
		srv, err = listServer(lctx, *from, tok)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "pdp init: --from %s: %v\n", *from, err)
			return 1
		}
	}
	files, err := scaffold(*catalog, srv)
	if err != nil {
		fmt.Fprintln(stderr, "pdp init:", err)
		return 1
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(stderr, "pdp init:", err)
			return 1
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			fmt.Fprintln(stderr, "pdp init:", err)
			return 1
		}
		fmt.Fprintln(stdout, "wrote", p)
	}
	if srv != nil {
		fmt.Fprintf(stdout, "%s: %d tools, %d prompts, %d resources, %d resource templates, each restricted until you decide (%s)\n",
			srv.name, len(srv.tools), len(srv.prompts), len(srv.resources), len(srv.templates), filepath.Join(dir, defaultPolicyDir, "data.yaml"))
	}
	fmt.Fprintf(stdout, "next: cd %s && pdp test && pdp check\n", dir)
	return 0
}

func validCatalogName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// listedServer is what a live MCP server lists.
type listedServer struct {
	name, version, url string
	tools              []listedTool
	prompts            []string
	resources          []string // URIs
	templates          []string // URI templates
}

type listedTool struct {
	name                                 string
	readOnly, destructive, hasAnnotation bool
}

// maxListed bounds what is taken from one list (a hostile or huge server).
const maxListed = 10_000

// listServer connects to the MCP server at u as a client (go-sdk,
// Streamable HTTP) and lists what it offers, every page.
func listServer(ctx context.Context, u, token string) (*listedServer, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("not an http(s) URL")
	}
	hc := &http.Client{Transport: http.DefaultTransport}
	if token != "" {
		hc.Transport = bearer{token: token, next: http.DefaultTransport}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "pdp-init", Version: version}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: u, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		if strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "Unauthorized") {
			return nil, fmt.Errorf("the server wants a token: %w (give --token)", err)
		}
		return nil, fmt.Errorf("connecting: %w", err)
	}
	defer session.Close()
	init := session.InitializeResult()
	s := &listedServer{url: u}
	if init != nil && init.ServerInfo != nil {
		s.name, s.version = init.ServerInfo.Name, init.ServerInfo.Version
	}
	if s.name == "" {
		s.name = pu.Host
	}
	caps := &mcp.ServerCapabilities{}
	if init != nil && init.Capabilities != nil {
		caps = init.Capabilities
	}
	if caps.Tools != nil {
		for t, err := range session.Tools(ctx, nil) {
			if err != nil {
				return nil, fmt.Errorf("tools/list: %w", err)
			}
			lt := listedTool{name: t.Name}
			if a := t.Annotations; a != nil {
				lt.hasAnnotation = true
				lt.readOnly = a.ReadOnlyHint
				lt.destructive = a.DestructiveHint != nil && *a.DestructiveHint
			}
			if s.tools = append(s.tools, lt); len(s.tools) > maxListed {
				return nil, fmt.Errorf("tools/list: more than %d tools", maxListed)
			}
		}
	}
	if caps.Prompts != nil {
		for p, err := range session.Prompts(ctx, nil) {
			if err != nil {
				return nil, fmt.Errorf("prompts/list: %w", err)
			}
			if s.prompts = append(s.prompts, p.Name); len(s.prompts) > maxListed {
				return nil, fmt.Errorf("prompts/list: more than %d prompts", maxListed)
			}
		}
	}
	if caps.Resources != nil {
		for r, err := range session.Resources(ctx, nil) {
			if err != nil {
				return nil, fmt.Errorf("resources/list: %w", err)
			}
			if s.resources = append(s.resources, r.URI); len(s.resources) > maxListed {
				return nil, fmt.Errorf("resources/list: more than %d resources", maxListed)
			}
		}
		for r, err := range session.ResourceTemplates(ctx, nil) {
			if err != nil {
				return nil, fmt.Errorf("resources/templates/list: %w", err)
			}
			if s.templates = append(s.templates, r.URITemplate); len(s.templates) > maxListed {
				return nil, fmt.Errorf("resources/templates/list: more than %d templates", maxListed)
			}
		}
	}
	return s, nil
}

// bearer adds the Authorization header to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// scaffold returns the project's files (slash-separated paths).
func scaffold(catalog string, srv *listedServer) (map[string]string, error) {
	files := map[string]string{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		if err != nil {
			return err
		}
		files[path.Join(defaultPolicyDir, p)] = "# The default policy of mcp-pdp " + version + " (docs/policy.md). Extend it in files\n" +
			"# of your own in this directory rather than editing it, so that it can be updated.\n" + string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the embedded default policy: %w", err)
	}
	files[path.Join(defaultPolicyDir, "data.yaml")] = catalogYAML(catalog, srv)
	files[path.Join(defaultTestDir, "catalog_test.rego")] = catalogTests(catalog, srv)
	files["POLICY.md"] = policyReadme(srv)
	return files, nil
}

// q quotes s as a YAML (and JSON) string.
func q(s string) string { return strconv.Quote(s) }

// scopeFor is the scope a restricted entry starts with: its own, held by
// nobody until the author decides; characters a scope cannot hold (RFC
// 6749 §3.3: white space, '"', '\\', non-ASCII) become '_'.
func scopeFor(kind, name string) string {
	b := []byte(kind + ":" + name)
	for i, c := range b {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '_'
		}
	}
	return string(b)
}

func catalogYAML(catalog string, srv *listedServer) string {
	var b strings.Builder
	b.WriteString("# Policy data of the default policy (data.mcp): the catalog of your MCP server.\n")
	b.WriteString("# docs/policy.md, \"Catalog data\", has every key. Access classes:\n")
	b.WriteString("#   public      listed to all, callable anonymously\n")
	b.WriteString("#   step_up     listed to all, callable with a token holding its scopes (others get a challenge)\n")
	b.WriteString("#   restricted  exists only for callers holding its scopes (others: \"Unknown tool\")\n")
	b.WriteString("#   deny        never listed, never callable\n")
	if srv != nil {
		fmt.Fprintf(&b, "# Listed from %s (%s %s) by `pdp init --from` on %s: every entry is restricted to a\n", srv.url, srv.name, srv.version, time.Now().UTC().Format("2006-01-02"))
		b.WriteString("# scope of its own, so nobody sees it until you decide what it needs.\n")
	}
	b.WriteString("mcp:\n")
	fmt.Fprintf(&b, "  default_catalog: %s\n", catalog)
	b.WriteString("  resources: {}\n  revoked:\n    clients: {}\n    subjects: {}\n  hidden: []\n  catalogs:\n")
	fmt.Fprintf(&b, "    %s:\n", catalog)
	b.WriteString("      unknown: {access: deny}\n")
	section := func(key, kind string, names []string, note func(i int) string) {
		if len(names) == 0 {
			fmt.Fprintf(&b, "      %s: {}\n", key)
			return
		}
		fmt.Fprintf(&b, "      %s:\n", key)
		for i, n := range names {
			fmt.Fprintf(&b, "        %s: {access: restricted, scopes: [%s]}", q(n), q(scopeFor(kind, n)))
			if note != nil {
				if s := note(i); s != "" {
					b.WriteString("  # " + s)
				}
			}
			b.WriteString("\n")
		}
	}
	if srv == nil {
		b.WriteString("      tools:\n")
		b.WriteString("        # An example: anyone may call it. Replace with your server's tools.\n")
		b.WriteString("        echo: {access: public}\n")
		b.WriteString("        # Callable with a token holding files:write; others get a step-up challenge.\n")
		b.WriteString("        write_file: {access: step_up, scopes: [\"files:write\"]}\n")
		b.WriteString("      prompts: {}\n      resources: {}\n      resource_templates: {}\n")
	} else {
		var tools []string
		for _, t := range srv.tools {
			tools = append(tools, t.name)
		}
		section("tools", "tools", tools, func(i int) string {
			t := srv.tools[i]
			switch {
			case !t.hasAnnotation:
				return ""
			case t.readOnly:
				return "the server says: read-only"
			case t.destructive:
				return "the server says: destructive"
			}
			return ""
		})
		section("prompts", "prompts", srv.prompts, nil)
		section("resources", "resources", srv.resources, nil)
		section("resource_templates", "resources", srv.templates, nil)
	}
	b.WriteString("      methods:\n")
	for _, m := range []string{"completion/complete", "logging/setLevel", "subscriptions/listen", "tasks/get", "tasks/result", "tasks/list", "tasks/cancel"} {
		fmt.Fprintf(&b, "        %s: {access: public}\n", m)
	}
	return b.String()
}

func catalogTests(catalog string, srv *listedServer) string {
	var b strings.Builder
	b.WriteString(`# Tests of the catalog (pdp test). Each decides a request as the PDP would:
# input is what the PDP builds from a /v1/decide body (docs/policy.md,
# "The input document"); pdp eval --show-input prints it for any request.
package catalog_test

import data.mcp.authz

resource := "https://mcp.example.com/mcp"

anonymous := {"present": false, "valid": false, "scopes": [], "claims": {}}

token(scopes) := {"present": true, "valid": true, "sub": "alice", "client_id": "app", "grant": "user", "scopes": scopes, "claims": {}}

call(name, tok) := {
	"resource": resource, "method": "tools/call", "operation": "call", "kind": "tool",
	"target": {"kind": "tool", "name": name, "arguments": {}, "annotations": {}, "_meta": {}},
	"tool": {"kind": "tool", "name": name, "arguments": {}, "annotations": {}, "_meta": {}},
	"token": tok,
}

# A tool the catalog does not list is denied, with or without a token.
test_unknown_tool_denied if {
	not authz.decision.allow with input as call("no_such_tool", anonymous)
	not authz.decision.allow with input as call("no_such_tool", token(["files:write"]))
}
`)
	if srv == nil {
		b.WriteString(`
test_echo_is_public if {
	authz.decision.allow with input as call("echo", anonymous)
}

# write_file needs files:write: anonymous callers and tokens without it are
# challenged (not allowed, the scope named), a token with it is allowed.
test_write_file_needs_its_scope if {
	d := authz.decision with input as call("write_file", anonymous)
	not d.allow
	d.required_scopes == ["files:write"]
	not authz.decision.allow with input as call("write_file", token(["other"]))
	authz.decision.allow with input as call("write_file", token(["files:write"]))
}
`)
		return b.String()
	}
	if len(srv.tools) > 0 {
		t := srv.tools[0].name
		fmt.Fprintf(&b, `
# Every listed tool starts restricted to a scope of its own: hidden from
# callers without it. Change these tests as you decide each tool's access.
test_tools_start_restricted if {
	every name in %s {
		not authz.decision.allow with input as call(name, anonymous)
		not authz.decision.allow with input as call(name, token([]))
	}
}

test_a_restricted_tool_is_callable_with_its_scope if {
	authz.decision.allow with input as call(%s, token([%s]))
}
`, regoList(toolNames(srv)), q(t), q(scopeFor("tools", t)))
	}
	return b.String()
}

func toolNames(srv *listedServer) []string {
	var n []string
	for _, t := range srv.tools {
		n = append(n, t.name)
	}
	return n
}

func regoList(s []string) string {
	qs := make([]string, len(s))
	for i, v := range s {
		qs[i] = q(v)
	}
	return "[" + strings.Join(qs, ", ") + "]"
}

func policyReadme(srv *listedServer) string {
	from := ""
	if srv != nil {
		from = fmt.Sprintf("\nThe catalog lists what %s offered at %s; every entry is `restricted` to a scope of its\nown until you decide (`public`, `step_up`, `restricted` or `deny`, docs/policy.md).\n", srv.name, srv.url)
	}
	return "# The authorization policy of this MCP server\n" + from + `
- ` + "`policies/`" + `: the default policy of mcp-pdp and ` + "`policies/data.yaml`" + `, the catalog. Add rules in
  files of your own (docs/policy.md, "Extending the default policy").
- ` + "`test/policies/`" + `: Rego tests.

` + "```sh" + `
pdp test                    # the tests (./policies and ./test/policies)
pdp check --strict          # compile and validate the catalog, with file:line
pdp serve --dev --policy policies --resource http://127.0.0.1:3000/mcp   # try it with dev tokens
` + "```" + `

CI (GitHub Actions; any CI runs the same two commands):

` + "```yaml" + `
jobs:
  policy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-go@v5
        with: {go-version: stable}
      - run: go install github.com/mcp-pdp/pdp/cmd/pdp@latest
      - run: pdp test --format junit > pdp-test.xml
      - run: pdp check --strict
` + "```" + `
`
}
